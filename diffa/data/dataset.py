"""Examples for training and decoding: task manifest + cached features + chat template.

One :class:`TaskDataset` item is one row of ``tasks.jsonl`` (format: ``utils/datadir.py``) with
its log-mel features (read lazily from ``feats.scp`` with kaldiio) and its token ids laid out by
:func:`diffa.text.template.encode_example`. Rows whose utterance has no features (dropped at
feature extraction, see ``dump/<set>/bad_utts``) are left out, counted and logged — never
silently. An ``utt2num_frames`` beside ``feats.scp`` must list every utterance kept (checked when
the dataset is opened); without one the frame counts are read from the features.

Example
-------
>>> import os, tempfile, numpy as np, kaldiio
>>> from diffa.data.tasks import write_tasks
>>> from diffa.text.tokenizer import SentencePieceTokenizer, train_sentencepiece
>>> tmp = tempfile.mkdtemp()
>>> tok = SentencePieceTokenizer(train_sentencepiece(["hello world", "what is said"] * 5,
...                                                  os.path.join(tmp, "spm.model"), vocab_size=300))
>>> with kaldiio.WriteHelper(f"ark,scp:{tmp}/feats.ark,{tmp}/feats.scp") as w:
...     w("u1", np.zeros((30, 8), dtype=np.float32))
>>> write_tasks(f"{tmp}/tasks.jsonl", [
...     {"id": "u1-asr", "utt": "u1", "task": "asr", "instruction": "what is said", "answer": "hello world"},
...     {"id": "u2-asr", "utt": "u2", "task": "asr", "instruction": "what is said", "answer": "hello"}])
>>> ds = TaskDataset(f"{tmp}/tasks.jsonl", f"{tmp}/feats.scp", tok)
>>> len(ds), ds.missing_feats
(1, ['u2'])
>>> ex = ds[0]
>>> ex.feats.shape, ex.input_ids[ex.prompt_len:].tolist() == tok.encode("hello world") + [tok.eot_id]
(torch.Size([30, 8]), True)
"""

from __future__ import annotations

import logging
import os
from typing import Dict, List, NamedTuple, Optional, Sequence

import kaldiio
import numpy as np
import torch

from diffa.data.kaldi import read_map
from diffa.data.tasks import read_tasks
from diffa.text.template import encode_example

logger = logging.getLogger(__name__)


def listed_frames(utt2num_frames: str, utts: Sequence[str]) -> Optional[Dict[str, int]]:
    """utt -> feature frames from ``utt2num_frames``; None when the file does not exist.

    Errors name the file (and line): unreadable lines, and utterances of ``utts`` it has no entry
    for (an emptied or truncated file), counted with the first one.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "utt2num_frames")
    >>> listed_frames(path, ["u1"]) is None
    True
    >>> _ = open(path, "w").write("u1 301\\n")
    >>> listed_frames(path, ["u1"])
    {'u1': 301}
    >>> listed_frames(path, ["u1", "u2"])
    Traceback (most recent call last):
    ...
    ValueError: /.../utt2num_frames has no entry for 1 utterances with features (first: u2): rerun stage 2 (feature extraction)
    """
    if not os.path.exists(utt2num_frames):
        return None
    frames = read_map(utt2num_frames, value_type=int, allow_empty=True)
    missing = sorted(set(utts).difference(frames))
    if missing:
        raise ValueError(
            f"{utt2num_frames} has no entry for {len(missing)} utterances with features (first: {missing[0]}): "
            "rerun stage 2 (feature extraction)"
        )
    return frames


class Example(NamedTuple):
    """One encoded example.

    id : example id; feats : (T, n_mels) float32; input_ids : (L,) long (prompt + answer + eot,
    or the prompt alone when the dataset has no answers); prompt_len, audio_pos : int;
    row : the manifest row (answer, choices, labels, ...).

    Example
    -------
    >>> ex = Example("u1-asr", torch.zeros(30, 8), torch.tensor([5, 6, 7, 8]), prompt_len=2, audio_pos=1,
    ...              row={"answer": "hi"})
    >>> ex.feats.shape, ex.input_ids[ex.prompt_len:].tolist(), ex.row["answer"]
    (torch.Size([30, 8]), [7, 8], 'hi')
    """

    id: str
    feats: torch.Tensor
    input_ids: torch.Tensor
    prompt_len: int
    audio_pos: int
    row: dict


class TaskDataset(torch.utils.data.Dataset):
    """Rows of a task manifest with features and token ids.

    Arguments
    ---------
    tasks : str
        Path of ``tasks.jsonl``.
    feats_scp : str
        Path of ``feats.scp`` (kaldiio).
    tokenizer : object
        A :mod:`diffa.text.tokenizer` tokenizer.
    system : str, optional
        System prompt (default: the template's).
    with_answer : bool
        Append answer + eot (training) or keep the prompt only (decoding).
    max_answer_tokens : int, optional
        Truncate longer answers (the eot is kept), counted in ``truncated_answers``.

    Example
    -------
    Training items (answers cut to 3 tokens, eot included) against decoding items (prompt only):

    >>> import tempfile
    >>> from diffa.data.tasks import write_tasks
    >>> from diffa.text.tokenizer import SentencePieceTokenizer, train_sentencepiece
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     tok = SentencePieceTokenizer(train_sentencepiece(["a cat and a dog", "name the animals"] * 4,
    ...                                                      f"{tmp}/spm.model", vocab_size=60, byte_fallback=False))
    ...     kaldiio.save_ark(f"{tmp}/f.ark", {"u1": np.ones((12, 8), np.float32)}, scp=f"{tmp}/feats.scp")
    ...     write_tasks(f"{tmp}/tasks.jsonl", [{"id": "u1-qa", "utt": "u1", "task": "open_qa",
    ...                                         "instruction": "name the animals", "answer": "a cat and a dog"}])
    ...     train = TaskDataset(f"{tmp}/tasks.jsonl", f"{tmp}/feats.scp", tok, max_answer_tokens=3)
    ...     decode = TaskDataset(f"{tmp}/tasks.jsonl", f"{tmp}/feats.scp", tok, with_answer=False)
    ...     ex, prompt, frames = train[0], decode[0], train.num_frames()  # features are read lazily
    >>> train.truncated_answers, frames, train.num_tokens()[0] - decode.num_tokens()[0]
    (1, [12], 3)
    >>> ex.input_ids[-1].item() == tok.eot_id, len(prompt.input_ids) == prompt.prompt_len, prompt.row["answer"]
    (True, True, 'a cat and a dog')
    """

    def __init__(
        self,
        tasks: str,
        feats_scp: str,
        tokenizer,
        system: Optional[str] = None,
        with_answer: bool = True,
        max_answer_tokens: Optional[int] = None,
    ):
        self.tokenizer = tokenizer
        self.system = system
        self.with_answer = with_answer
        self.max_answer_tokens = max_answer_tokens
        self.feats = kaldiio.load_scp(feats_scp)
        self.utt2num_frames = os.path.join(os.path.dirname(feats_scp), "utt2num_frames")
        rows = read_tasks(tasks)
        self.rows = [r for r in rows if r["utt"] in self.feats]
        self.missing_feats = sorted({r["utt"] for r in rows if r["utt"] not in self.feats})
        if self.missing_feats:
            logger.warning(
                "%s: %d examples left out because %d utterances have no features in %s (first: %s)",
                tasks, len(rows) - len(self.rows), len(self.missing_feats), feats_scp, self.missing_feats[0],
            )
        if not self.rows:
            raise ValueError(f"{tasks}: no example has features in {feats_scp}; run feature extraction (stage 2) first")
        self.listed_frames = listed_frames(self.utt2num_frames, [r["utt"] for r in self.rows])  # fails now, not later
        self.truncated_answers = 0
        self._encoded = [self._encode(r) for r in self.rows]

    def _encode(self, row: dict):
        enc = encode_example(self.tokenizer, row["instruction"], row["answer"] if self.with_answer else None, self.system)
        ids = enc.input_ids
        if self.with_answer and self.max_answer_tokens and len(ids) - enc.prompt_len > self.max_answer_tokens:
            ids = ids[: enc.prompt_len + self.max_answer_tokens - 1] + [self.tokenizer.eot_id]
            self.truncated_answers += 1
        return ids, enc.prompt_len, enc.audio_pos

    def __len__(self) -> int:
        return len(self.rows)

    def num_tokens(self) -> List[int]:
        """Token count of every item (for length bucketing)."""
        return [len(ids) for ids, _, _ in self._encoded]

    def num_frames(self) -> List[int]:
        """Feature frames of every item, from ``utt2num_frames`` beside ``feats.scp`` when present."""
        if self.listed_frames is not None:
            return [self.listed_frames[r["utt"]] for r in self.rows]
        return [int(self.feats[r["utt"]].shape[0]) for r in self.rows]

    def __getitem__(self, i: int) -> Example:
        row = self.rows[i]
        ids, prompt_len, audio_pos = self._encoded[i]
        feats = torch.from_numpy(np.array(self.feats[row["utt"]], dtype=np.float32))
        return Example(row["id"], feats, torch.tensor(ids, dtype=torch.long), prompt_len, audio_pos, row)
