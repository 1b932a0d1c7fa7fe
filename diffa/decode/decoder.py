"""Batched decoding with a DIFFA model: prompts + audio in, answer strings and NFE out.

:func:`decode_batch` runs the reverse process (:func:`diffa.diffusion.sampler.generate`) on one
left-padded batch from :func:`diffa.data.collate.collate_prompts`, with the tokenizer's mask id,
its eos for the early stop and the model's vocabulary size; :func:`answer_text` turns the answer
ids into text. :func:`decode_dataset` decodes a whole :class:`~diffa.data.dataset.TaskDataset` in
planned batches (:mod:`diffa.decode.batching`) and hands each batch's result rows to a writer.
A batch that runs out of GPU memory is split in two and retried; a single example that does not
fit, or whose features cannot be read, becomes a failed row and decoding goes on.

Example
-------
>>> import torch
>>> from diffa.model.diffa import DIFFA, tiny_config
>>> class Tok:  # the ids decode_batch needs; decode() joins ids for the example
...     mask_id, eos_id, eot_id, vocab_size, special_ids = 99, 98, 97, 100, {97, 98, 99}
...     def decode(self, ids, skip_special_tokens=True):
...         return " ".join(map(str, ids))
>>> batch = {"feats": torch.randn(2, 40, 16), "feat_lens": torch.tensor([40, 25]),
...          "input_ids": torch.tensor([[98, 5, 6, 7], [4, 5, 6, 7]]),
...          "attention_mask": torch.tensor([[False, True, True, True], [True] * 4]),
...          "audio_pos": torch.tensor([2, 1])}
>>> texts, nfe = decode_batch(DIFFA(tiny_config()).eval(), Tok(), batch, dict(
...     gen_length=4, block_length=4, steps=4, remasking="low_confidence", factor=None,
...     threshold=None, temperature=0.0, cfg_scale=0.0))
>>> len(texts), all(isinstance(t, str) for t in texts), [0 < n <= 4 for n in nfe]
(2, True, [True, True])
>>> texts, nfe = decode_batch(DIFFA(tiny_config()).eval(), Tok(), batch, DecodeConfig(
...     gen_length=4, block_length=4, steps=4).sampling(None), stop_at_eos=False, copies=2)
>>> len(texts), nfe, texts[:2] == texts[2:]   # greedy: [row 0, row 1, row 0, row 1], the copies agree
(4, [4, 4, 4, 4], True)
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import torch
from tqdm import tqdm

from diffa.data.collate import collate_prompts
from diffa.decode.batching import plan_batches
from diffa.decode.config import DecodeConfig
from diffa.decode.results import result_row
from diffa.diffusion.sampler import generate

logger = logging.getLogger(__name__)


def answer_text(tokenizer, ids: Sequence[int]) -> str:
    """The answer text: ids up to the first eos or eot, special tokens and unknown ids dropped.

    Arguments
    ---------
    tokenizer : object
        A :mod:`diffa.text.tokenizer` tokenizer.
    ids : sequence of int
        The answer region of a generated sequence.

    Returns
    -------
    str
        Stripped of surrounding whitespace.

    Example
    -------
    >>> class Tok:
    ...     eos_id, eot_id, vocab_size, special_ids = 2, 6, 10, {2, 6}
    ...     def decode(self, ids, skip_special_tokens=True):
    ...         return "".join("abcdefghij"[i] for i in ids if i not in self.special_ids)
    >>> answer_text(Tok(), [7, 8, 6, 9, 2])
    'hi'
    """
    ids = [int(i) for i in ids]
    stops = [k for k, i in enumerate(ids) if i in (tokenizer.eos_id, tokenizer.eot_id)]
    ids = ids[: stops[0]] if stops else ids
    # a model whose embedding table is padded past the tokenizer can propose ids it cannot spell
    return tokenizer.decode([i for i in ids if i < tokenizer.vocab_size], skip_special_tokens=True).strip()


@torch.no_grad()
def decode_batch(
    model,
    tokenizer,
    batch: Mapping[str, Any],
    sampling: Mapping[str, Any],
    stop_at_eos: bool = True,
    generator: Optional[torch.Generator] = None,
    copies: int = 1,
) -> Tuple[List[str], List[int]]:
    """Decode one left-padded batch (each row ``copies`` times, e.g. to sample several answers).

    Arguments
    ---------
    model : DIFFA
        The model (its device is used).
    tokenizer : object
        Supplies ``mask_id``, ``eos_id`` and the text.
    batch : mapping
        ``feats, feat_lens, input_ids, attention_mask, audio_pos`` from
        :func:`~diffa.data.collate.collate_prompts`.
    sampling : mapping
        :meth:`DecodeConfig.sampling` settings.
    stop_at_eos : bool
        Stop a row at its first eos (DIFFA-2); hypotheses are the same either way.
    generator : torch.Generator, optional
        Randomness for temperature sampling and random remasking (on the model's device).
    copies : int
        Decode every row this many times in one reverse process, its audio encoded once (with
        ``temperature`` > 0 the copies differ).

    Returns
    -------
    (list of str, list of int)
        Hypotheses and NFE per decoded row, copy-major: ``[copy 0 of every row, copy 1, ...]``.

    The module docstring has an example, with ``copies``.
    """
    device = model.llm.device
    n = batch["input_ids"].shape[0]
    prompt = batch["input_ids"].to(device).repeat(copies, 1)
    denoise = model.denoiser(batch["feats"].to(device), batch["feat_lens"].to(device),
                             batch["audio_pos"].to(device))

    def denoiser(x, attention_mask=None, rows=None):  # decoded row r holds the audio of example r % n
        rows = torch.arange(x.shape[0], device=x.device) if rows is None else rows
        return denoise(x, attention_mask, rows % n)

    out = generate(denoiser, prompt, **sampling, mask_id=tokenizer.mask_id,
                   eos_id=tokenizer.eos_id if stop_at_eos else None,
                   attention_mask=batch["attention_mask"].to(device).repeat(copies, 1), generator=generator,
                   vocab_size=model.llm.config.vocab_size)
    answers = out.sequences[:, prompt.shape[1]:].tolist()
    return [answer_text(tokenizer, a) for a in answers], out.nfe.tolist()


def audio_token_count(model, num_frames: int) -> int:
    """How many LLM positions the audio of ``num_frames`` log-mel frames takes (for batching).

    Example
    -------
    >>> from diffa.model.diffa import DIFFA, tiny_config
    >>> audio_token_count(DIFFA(tiny_config()), 100)   # 4 queries + (100 / 2) // 4 semantic
    16
    """
    frames = min(int(num_frames), model.encoder.max_frames)
    encoded = model.encoder.max_frames // 2 if model.config.pad_to_30s else (frames - 1) // 2 + 1
    prefix = model.config.n_prompts if model.config.layout == "stage1" else model.config.n_queries
    return prefix + encoded // 4


class DecodeStats(NamedTuple):
    """What :func:`decode_dataset` did: examples decoded and failed, NFE and seconds spent.

    Example
    -------
    >>> stats = DecodeStats(decoded=4, failed=1, nfe=24, seconds=0.5)
    >>> stats.nfe / stats.decoded, stats._fields   # mean NFE per decoded example
    (6.0, ('decoded', 'failed', 'nfe', 'seconds'))
    """

    decoded: int
    failed: int
    nfe: int
    seconds: float


def decode_dataset(
    model,
    tokenizer,
    dataset,
    config: DecodeConfig,
    write: Callable[[List[Dict[str, Any]]], None],
    done: Optional[Sequence[str]] = None,
    progress: bool = True,
) -> DecodeStats:
    """Decode every example of ``dataset`` whose id is not in ``done``, batch by batch.

    Arguments
    ---------
    model : DIFFA
        The model, in eval mode.
    tokenizer : object
        Its tokenizer.
    dataset : TaskDataset
        Built with ``with_answer=False`` (prompts only).
    config : DecodeConfig
        Settings (per task type through ``task_overrides``).
    write : callable
        Receives each batch's result rows (:func:`~diffa.decode.results.result_row`), e.g.
        :meth:`ResultsFile.append <diffa.decode.results.ResultsFile.append>`.
    done : sequence of str, optional
        Ids to skip (already decoded).
    progress : bool
        Show a tqdm bar over batches.

    Returns
    -------
    DecodeStats

    Example
    -------
    >>> import tempfile
    >>> from diffa.data.dataset import TaskDataset
    >>> from diffa.model.diffa import DIFFA, tiny_config
    >>> from diffa.text.tokenizer import load_tokenizer
    >>> from diffa.train.toy import make_toy_setup
    >>> tmp = tempfile.TemporaryDirectory()
    >>> toy = make_toy_setup(tmp.name, n_examples=3)   # dump/train/{feats.scp,tasks.jsonl}, tokenizer/
    >>> tok = load_tokenizer(toy["tokenizer_dir"])
    >>> data = TaskDataset(f"{toy['dump']}/tasks.jsonl", f"{toy['dump']}/feats.scp", tok, with_answer=False)
    >>> rows = []
    >>> stats = decode_dataset(DIFFA(tiny_config(vocab=tok.vocab_size)).eval(), tok, data,
    ...                        DecodeConfig(gen_length=4, block_length=4, steps=4, batch_size=2),
    ...                        rows.extend, done=["utt001-asr"], progress=False)
    >>> stats.decoded, stats.failed, sorted(r["id"] for r in rows)
    (2, 0, ['utt000-asr', 'utt002-asr'])
    >>> sorted(rows[0]), 0 < stats.nfe <= 2 * 4
    (['hypothesis', 'id', 'nfe', 'prompt', 'reference', 'seconds', 'task', 'utt'], True)
    >>> tmp.cleanup()
    """
    done = set(done or ())
    tasks = [row["task"] for row in dataset.rows]
    frames = dataset.num_frames()
    costs = [n_tok + audio_token_count(model, n_fr) + config.sampling(task)["gen_length"]
             for n_tok, n_fr, task in zip(dataset.num_tokens(), frames, tasks)]
    plan = plan_batches(tasks, costs, config.batch_size, config.max_tokens)
    todo = [(number, [i for i in batch if dataset.rows[i]["id"] not in done]) for number, batch in enumerate(plan)]
    todo = [(number, batch) for number, batch in todo if batch]
    decoded = failed = nfe_total = 0
    seconds = 0.0
    for number, batch in tqdm(todo, desc="decode", unit="batch", disable=not progress):
        examples, rows = [], []
        for i in batch:
            try:
                examples.append(dataset[i])
            except (OSError, ValueError, KeyError) as err:  # unreadable ark, bad offset, ...
                logger.error("%s: cannot read the features of utt %s: %s", dataset.rows[i]["id"], dataset.rows[i]["utt"], err)
                rows.append(result_row(dataset.rows[i], error=f"unreadable features: {err}"))
        start = time.perf_counter()
        if examples:
            # one seed per planned batch: a resumed run draws the same noise as an uninterrupted one
            generator = torch.Generator(model.llm.device).manual_seed(config.seed * 1_000_003 + number)
            decoded_rows = _decode_examples(model, tokenizer, examples, config, generator)
            share = (time.perf_counter() - start) / len(examples)
            for row in decoded_rows:
                row["seconds"] = 0.0 if row.get("failed") else round(share, 6)
            rows += decoded_rows
        write(rows)
        seconds += time.perf_counter() - start
        n_failed = sum(bool(row.get("failed")) for row in rows)
        decoded, failed = decoded + len(rows) - n_failed, failed + n_failed
        nfe_total += sum(row["nfe"] for row in rows)
    return DecodeStats(decoded, failed, nfe_total, seconds)


def _decode_examples(model, tokenizer, examples, config: DecodeConfig, generator) -> List[Dict[str, Any]]:
    """Result rows of examples of one task type; halves the batch when it runs out of memory."""
    if not examples:
        return []
    sampling = config.sampling(examples[0].row["task"])

    def run(part):
        texts, nfe = decode_batch(model, tokenizer, collate_prompts(part, pad_id=tokenizer.pad_id), sampling,
                                  config.stop_at_eos, generator)
        return [result_row(ex.row, text, n) for ex, text, n in zip(part, texts, nfe)]

    return in_halves_on_oom(run, examples, lambda ex: result_row(ex.row, error="out of memory"))


def in_halves_on_oom(run: Callable[[Sequence[Any]], List[Any]], items: Sequence[Any],
                     alone: Callable[[Any], Any]) -> List[Any]:
    """``run(items)``; when that runs out of GPU memory, the two halves of ``items`` in turn (and
    so on down), and ``alone(item)`` for an item that does not fit by itself (logged as an error).

    Arguments
    ---------
    run : callable
        ``run(items) -> one result per item``.
    items : sequence
        The batch (items with an ``id`` attribute or key name themselves in the error).
    alone : callable
        ``alone(item) -> its result`` when it does not fit even alone.

    Returns
    -------
    list
        One result per item, in order.

    Example
    -------
    >>> def run(batch):  # a "GPU" that holds 2 items
    ...     if len(batch) > 2:
    ...         raise torch.cuda.OutOfMemoryError("CUDA out of memory (example)")
    ...     return [x * 10 for x in batch]
    >>> in_halves_on_oom(run, [1, 2, 3, 4, 5], alone=lambda x: None)
    [10, 20, 30, 40, 50]
    """
    try:
        return run(items)
    except torch.cuda.OutOfMemoryError as err:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        if len(items) == 1:
            item = items[0]
            name = getattr(item, "id", None) or (item.get("id") if isinstance(item, Mapping) else item)
            logger.error("%s: out of memory even alone: %s", name, str(err).splitlines()[0])
            return [alone(item)]
        logger.warning("out of memory with %d examples; retrying in halves (lower batch_size or set "
                       "max_tokens)", len(items))
        half = len(items) // 2
        return in_halves_on_oom(run, items[:half], alone) + in_halves_on_oom(run, items[half:], alone)
