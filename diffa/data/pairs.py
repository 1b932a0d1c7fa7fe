"""Preference pairs ``pairs.jsonl``: schema, validation, dataset and collation for VRPO.

This docstring is the one place the format is documented.

A pairs directory (``exp/pairs``, written by ``python -m diffa.bin.make_pairs``, read by VRPO
training through ``--pairs``) holds ``pairs.jsonl`` (the training pairs), ``feats.scp`` (the
features of their utterances) and ``utt2num_frames``, and the same three files for the held-out
pairs under ``valid/`` (utterance ids may repeat across data sets, so each side has its own
``feats.scp``).

``pairs.jsonl`` holds one preference pair per line, a JSON object (UTF-8), lines sorted by ``id``
(code-point order, like ``tasks.jsonl``). Keys:

============  ==========  ===================================================================
key           type        meaning
============  ==========  ===================================================================
``id``        str         unique pair id, no whitespace (``<task id>-<kind>``)
``utt``       str         the audio: an utterance id of the ``feats.scp`` beside the file
``prompt``    str         the user's instruction (placed after the audio by the chat
                          template, :mod:`diffa.text.template`), non-empty
``chosen``    str         the preferred answer y_w, non-empty
``rejected``  str         the dispreferred answer y_l, non-empty and different from ``chosen``
``source``    str         how the pair was made: ``"swap:<label>"`` (a rule swapped one fact,
                          ``<label>`` names it: ``gender``, ``beeps``, ``transcript``, ...),
                          ``"sampled"`` (a model's answer ranked against the reference) or
                          ``"external"`` (given with the data, e.g. the authors' ``rejected``)
``labels``    dict        optional: the task row's labels, str -> str (for analysis)
============  ==========  ===================================================================

No other keys are allowed. :func:`read_pairs` validates every line and names ``file:line`` in each
error; :func:`write_pairs` validates, sorts by id and writes atomically. The pairs are built by
:mod:`diffa.train.pairs` (``python -m diffa.bin.make_pairs``).

Batches (:func:`collate_pairs`) put the B chosen sequences first and the B rejected ones after
them: rows ``b`` and ``B + b`` are the two answers to pair ``b``, each ``[prompt ; answer ; eot]``
right-padded with eos like an SFT batch (:func:`diffa.data.collate.collate_train`: the eos padding
is part of the answer). As in the authors' VRPO collator, which tokenizes the chosen and the
rejected sequences as two batches, each side is padded to its own longest sequence: ``widths``
gives every row's canvas, and the columns past it (when the other side is longer) are outside
``answer_mask`` and never seen by the model (:class:`diffa.train.vrpo.PairELBO`). The audio is
stored once per pair; ``audio_index`` maps each of the 2B rows to it.

Example
-------
>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "pairs.jsonl")
>>> write_pairs(path, [{"id": "u1-mcq-0-swap", "utt": "u1", "prompt": "Who speaks?",
...                     "chosen": "male", "rejected": "female", "source": "swap:gender"}])
>>> read_pairs(path)[0]["rejected"]
'female'
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence

import kaldiio
import numpy as np
import torch

from diffa.data.collate import collate_train
from diffa.data.dataset import Example, TaskDataset, listed_frames
from diffa.data.jsonl import check_keys, check_labels, check_text, read_jsonl, write_jsonl
from diffa.text.template import encode_example

logger = logging.getLogger(__name__)

FIELDS = ("id", "utt", "prompt", "chosen", "rejected", "source", "labels")
REQUIRED = ("id", "utt", "prompt", "chosen", "rejected", "source")
PAIRS_FILE, FEATS_FILE, VALID_DIR = "pairs.jsonl", "feats.scp", "valid"
SOURCE_PATTERN = re.compile(r"^(swap:\S+|sampled|external)$")


def validate_pair(row: Any, where: str) -> None:
    """Check one ``pairs.jsonl`` row against the schema of this module; raise ValueError if off.

    Arguments
    ---------
    row : Any
        The decoded JSON value of one line: an object with the :data:`REQUIRED` keys, all
        non-empty strings, two different answers and a ``source`` of the forms documented above.
    where : str
        Where the row comes from (``"exp/pairs/pairs.jsonl:12"``); every message starts with it.

    Example
    -------
    >>> validate_pair({"id": "a", "utt": "u", "prompt": "Q?", "chosen": "x", "rejected": "x",
    ...                "source": "sampled"}, "pairs.jsonl:3")
    Traceback (most recent call last):
    ...
    ValueError: pairs.jsonl:3: 'rejected' equals 'chosen' ('x'); a pair needs two different answers
    """
    check_keys(row, where, FIELDS, REQUIRED)
    for key in REQUIRED:
        check_text(row, key, where, token=key in ("id", "utt"))
    if row["chosen"] == row["rejected"]:
        raise ValueError(f"{where}: 'rejected' equals 'chosen' ({row['chosen']!r}); a pair needs two different answers")
    if not SOURCE_PATTERN.match(row["source"]):
        raise ValueError(f"{where}: 'source' must be 'swap:<label>', 'sampled' or 'external', got {row['source']!r}")
    check_labels(row, where)


def read_pairs(path: str) -> List[Dict[str, Any]]:
    """Read and validate a ``pairs.jsonl`` file; errors name ``path:line``.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "pairs.jsonl")
    >>> _ = open(path, "w").write('{"id": "a", "utt": "u", "prompt": "Q?", "chosen": "x"}\\n')
    >>> read_pairs(path)
    Traceback (most recent call last):
    ...
    ValueError: /...pairs.jsonl:1: missing required key(s) ['rejected', 'source']
    """
    return read_jsonl(path, validate_pair)


def write_pairs(path: str, rows: Iterable[Mapping[str, Any]]) -> None:
    """Validate pairs, sort them by id and write them atomically (keys in schema order).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "pairs.jsonl")
    >>> row = {"id": "a", "utt": "u", "prompt": "Q?", "chosen": "x", "rejected": "y", "source": "external"}
    >>> write_pairs(path, [row, row])
    Traceback (most recent call last):
    ...
    ValueError: row 1: duplicate id 'a' (also row 0)
    """
    write_jsonl(path, rows, validate_pair, FIELDS)


class PairExample(NamedTuple):
    """One encoded pair: ``id``; ``feats`` (T, n_mels); ``prompt_ids`` (Lp,); ``chosen_ids`` and
    ``rejected_ids`` (answer + eot); ``audio_pos``; ``row`` (the pairs.jsonl row).

    Example
    -------
    >>> ex = PairExample("p1", torch.zeros(20, 8), torch.tensor([1, 2, 3]), torch.tensor([7, 9]),
    ...                  torch.tensor([8, 8, 9]), 1, {"chosen": "male", "rejected": "female"})
    >>> torch.cat([ex.prompt_ids, ex.chosen_ids]).tolist(), torch.cat([ex.prompt_ids, ex.rejected_ids]).tolist()
    ([1, 2, 3, 7, 9], [1, 2, 3, 8, 8, 9])
    >>> ex.feats.shape, ex.row["rejected"]
    (torch.Size([20, 8]), 'female')
    """

    id: str
    feats: torch.Tensor
    prompt_ids: torch.Tensor
    chosen_ids: torch.Tensor
    rejected_ids: torch.Tensor
    audio_pos: int
    row: dict


class PairDataset(torch.utils.data.Dataset):
    """Rows of ``pairs.jsonl`` with their features and token ids.

    Arguments
    ---------
    pairs : str
        Path of ``pairs.jsonl``.
    feats_scp : str
        Path of the ``feats.scp`` holding the pairs' utterances.
    tokenizer : object
        A :mod:`diffa.text.tokenizer` tokenizer.
    system : str, optional
        System prompt (default: the template's).
    max_answer_tokens : int, optional
        Truncate longer answers (their eot kept), counted in ``truncated_answers``. A pair whose
        two answers are then the same tokens is left out (it prefers nothing), counted in
        ``identical_answers`` with a warning.

    Example
    -------
    >>> import os, tempfile, numpy as np, kaldiio
    >>> from diffa.text.tokenizer import SentencePieceTokenizer, train_sentencepiece
    >>> tmp = tempfile.mkdtemp()
    >>> tok = SentencePieceTokenizer(train_sentencepiece(["male female who speaks"] * 4,
    ...     os.path.join(tmp, "spm.model"), vocab_size=60, byte_fallback=False))
    >>> kaldiio.save_ark(f"{tmp}/f.ark", {"u1": np.zeros((20, 8), np.float32)}, scp=f"{tmp}/feats.scp")
    >>> write_pairs(f"{tmp}/pairs.jsonl", [{"id": "p1", "utt": "u1", "prompt": "who speaks",
    ...     "chosen": "male", "rejected": "female", "source": "swap:gender"}])
    >>> ds = PairDataset(f"{tmp}/pairs.jsonl", f"{tmp}/feats.scp", tok)
    >>> ex = ds[0]
    >>> tok.decode(ex.rejected_ids.tolist()), ex.rejected_ids[-1].item() == tok.eot_id
    ('female', True)
    """

    def __init__(
        self,
        pairs: str,
        feats_scp: str,
        tokenizer,
        system: Optional[str] = None,
        max_answer_tokens: Optional[int] = None,
    ):
        self.tokenizer, self.system, self.max_answer_tokens = tokenizer, system, max_answer_tokens
        self.feats = kaldiio.load_scp(feats_scp)
        self.utt2num_frames = os.path.join(os.path.dirname(feats_scp), "utt2num_frames")
        rows = read_pairs(pairs)
        self.rows = [r for r in rows if r["utt"] in self.feats]
        missing = sorted({r["utt"] for r in rows if r["utt"] not in self.feats})
        if missing:
            logger.warning("%s: %d pairs left out: %d utterances have no features in %s (first: %s)",
                           pairs, len(rows) - len(self.rows), len(missing), feats_scp, missing[0])
        if not self.rows:
            raise ValueError(f"{pairs}: no pair has features in {feats_scp}; rerun stage 6 (diffa.bin.make_pairs)")
        self.truncated_answers = 0
        encoded = [self._encode(r) for r in self.rows]
        keep = [chosen != rejected for _, chosen, rejected, _ in encoded]
        self.identical_answers = keep.count(False)
        if self.identical_answers:
            why = "chosen and rejected are the same tokens"
            if max_answer_tokens:
                why += f" after the cut to max_answer_tokens={max_answer_tokens}; raise max_answer_tokens"
            if not any(keep):
                raise ValueError(f"{pairs}: no pair left: {why}")
            first = self.rows[keep.index(False)]["id"]
            logger.warning("%s: %d pairs left out: %s (first: %r)", pairs, self.identical_answers, why, first)
            self.rows = [row for row, kept in zip(self.rows, keep) if kept]
            encoded = [e for e, kept in zip(encoded, keep) if kept]
        self._encoded = encoded
        self.listed_frames = listed_frames(self.utt2num_frames, [r["utt"] for r in self.rows])

    def _answer(self, full: List[int], prompt_len: int) -> List[int]:
        answer = full[prompt_len:]
        if self.max_answer_tokens and len(answer) > self.max_answer_tokens:
            self.truncated_answers += 1
            answer = answer[: self.max_answer_tokens - 1] + [self.tokenizer.eot_id]
        return answer

    def _encode(self, row: dict):
        chosen = encode_example(self.tokenizer, row["prompt"], row["chosen"], self.system)
        rejected = encode_example(self.tokenizer, row["prompt"], row["rejected"], self.system)
        prompt = chosen.input_ids[: chosen.prompt_len]
        return (prompt, self._answer(chosen.input_ids, chosen.prompt_len),
                self._answer(rejected.input_ids, rejected.prompt_len), chosen.audio_pos)

    def __len__(self) -> int:
        return len(self.rows)

    def num_tokens(self) -> List[int]:
        """Text tokens of each pair's longer sequence (prompt + longer answer + eot).

        A batch of B pairs holds 2B sequences of the batch's longest such length."""
        return [len(p) + max(len(c), len(r)) for p, c, r, _ in self._encoded]

    # feature frames of every pair: the task dataset's lookup (rows, feats, utt2num_frames alike)
    num_frames = TaskDataset.num_frames

    def __getitem__(self, i: int) -> PairExample:
        row = self.rows[i]
        prompt, chosen, rejected, audio_pos = self._encoded[i]
        feats = torch.from_numpy(np.array(self.feats[row["utt"]], dtype=np.float32))
        as_long = lambda ids: torch.tensor(ids, dtype=torch.long)  # noqa: E731
        return PairExample(row["id"], feats, as_long(prompt), as_long(chosen), as_long(rejected), audio_pos, row)


def collate_pairs(examples: Sequence[PairExample], pad_id: int) -> Dict[str, object]:
    """Batch B pairs as 2B right-padded sequences (chosen rows first), audio stored once.

    Returns a dict with ``ids`` (B pair ids), ``feats`` (B, T, n_mels), ``feat_lens`` (B,),
    ``input_ids`` (2B, L), ``prompt_lens`` (2B,), ``audio_pos`` (2B,), ``widths`` (2B,): each
    row's canvas, its side's longest sequence (L is the longer side's), ``answer_mask`` (2B, L)
    bool (the answer and its side's eos padding, as in SFT) and ``audio_index`` (2B,): the pair
    (row of ``feats``) each sequence belongs to.

    Example
    -------
    >>> ex = PairExample("p", torch.zeros(5, 2), torch.tensor([1, 2]), torch.tensor([7, 9]),
    ...                  torch.tensor([8, 8, 9]), 1, {})
    >>> b = collate_pairs([ex], pad_id=0)
    >>> b["input_ids"].tolist(), b["widths"].tolist()
    ([[1, 2, 7, 9, 0], [1, 2, 8, 8, 9]], [4, 5])
    >>> b["answer_mask"].int().tolist(), b["audio_index"].tolist()
    ([[0, 0, 1, 1, 0], [0, 0, 1, 1, 1]], [0, 0])
    >>> b["feats"].shape
    torch.Size([1, 5, 2])
    """
    def sequence(ex: PairExample, answer: torch.Tensor) -> Example:
        return Example(ex.id, ex.feats, torch.cat([ex.prompt_ids, answer]), ex.prompt_ids.shape[0], ex.audio_pos, ex.row)

    sequences = [sequence(ex, ex.chosen_ids) for ex in examples] + [sequence(ex, ex.rejected_ids) for ex in examples]
    batch = collate_train(sequences, pad_id)
    n = len(examples)
    sizes = torch.tensor([ex.input_ids.shape[0] for ex in sequences])
    batch["widths"] = torch.cat([sizes[:n].max().expand(n), sizes[n:].max().expand(n)])
    batch["answer_mask"] &= torch.arange(batch["input_ids"].shape[1])[None] < batch["widths"][:, None]
    batch["ids"] = batch["ids"][:n]
    batch["feats"], batch["feat_lens"] = batch["feats"][:n].clone(), batch["feat_lens"][:n]
    batch["audio_index"] = torch.arange(n).repeat(2)
    return batch
