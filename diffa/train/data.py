"""Training data of a stage: dump directories -> one indexed dataset, its lengths, its loader.

A training set is a dump directory written by the recipe's feature stage: ``feats.scp`` (+ arks),
``utt2num_frames`` and a copy of ``tasks.jsonl``. :func:`open_split` checks it (missing, empty or
unreadable files are errors that name the file and the stage that makes it), leaves out examples
whose answer is empty (counted and logged; the rest of the manifest is validated as usual) and
returns a :class:`~diffa.data.dataset.TaskDataset`.

:class:`TrainingSet` concatenates the main sets, then the replay sets, and yields
``(index, example)`` pairs: the index is the example's key for the keyed diffusion noise
(:mod:`diffa.train.keyed_noise`). :class:`Collate` turns such pairs into a training batch
(:func:`diffa.data.collate.collate_train` plus ``keys`` and each example's ``tasks`` type).

Example
-------
>>> import os, tempfile, numpy as np, kaldiio, json
>>> from diffa.text.tokenizer import SentencePieceTokenizer, train_sentencepiece
>>> d = tempfile.mkdtemp()
>>> tok = SentencePieceTokenizer(train_sentencepiece(["hello world", "what is said"] * 5,
...                                                  os.path.join(d, "spm.model"), vocab_size=300))
>>> with kaldiio.WriteHelper(f"ark,scp:{d}/feats.ark,{d}/feats.scp") as w:
...     w("u1", np.zeros((30, 8), dtype=np.float32)); w("u2", np.zeros((20, 8), dtype=np.float32))
>>> rows = [{"id": "a", "utt": "u1", "task": "asr", "instruction": "what is said", "answer": "hello"},
...         {"id": "b", "utt": "u2", "task": "asr", "instruction": "what is said", "answer": " "}]
>>> _ = open(f"{d}/tasks.jsonl", "w").write("".join(json.dumps(r) + "\\n" for r in rows))
>>> split = open_split(d, tok, work_dir=os.path.join(d, "work"))
>>> len(split), split.empty_answers
(1, 1)
>>> train = TrainingSet([split])
>>> index, example = train[0]
>>> batch = Collate(tok.pad_id)([train[0]])
>>> batch["keys"].tolist(), batch["input_ids"].shape[0], batch["tasks"], train.tasks()
([0], 1, ['asr'], ['asr'])
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from diffa.data.collate import collate_train
from diffa.data.dataset import Example, TaskDataset
from diffa.files import atomic_save_text

logger = logging.getLogger(__name__)

FEATURES_STAGE = "stage 2 (feature extraction)"


def _empty_answer(line: str) -> bool:
    """True for a manifest line whose JSON object has a missing, null or blank ``answer``.

    The line is parsed (a blank can be written as an escape: ``"\\t"``, ``"\\u2003"``); blank
    means what :func:`~diffa.data.jsonl.check_text` rejects, so no such row reaches it.

    Example
    -------
    >>> [_empty_answer(json.dumps(row)) for row in ({"answer": "\\t\\r\\n"}, {"answer": None}, {"id": "a"})]
    [True, True, True]
    >>> [_empty_answer(line) for line in ('{"answer": "\\\\u0041"}', '{"answer": 3}', '{"answer": ', '[]')]
    [False, False, False, False]
    """
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return False  # read_tasks reports malformed lines with their line number
    if not isinstance(row, dict):
        return False
    answer = row.get("answer")
    return answer is None or (isinstance(answer, str) and not answer.strip())


def _lines(path: str, what: str) -> Iterator[str]:
    """The non-blank lines of ``path``; errors name the file and what to do."""
    if not os.path.isfile(path):
        raise ValueError(f"{path} is missing: the {what} comes from {FEATURES_STAGE}; run it first")
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield line
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read {path} ({err}); check the file and its permissions") from None


def open_split(
    dump_dir: str,
    tokenizer,
    work_dir: str,
    system: Optional[str] = None,
    max_answer_tokens: Optional[int] = None,
) -> TaskDataset:
    """Check a dump directory and open it as a :class:`TaskDataset` (see module docstring).

    Arguments
    ---------
    dump_dir : str
        ``dump/<set>`` with ``feats.scp`` and ``tasks.jsonl``.
    tokenizer : object
        A :mod:`diffa.text.tokenizer` tokenizer.
    work_dir : str
        Where a manifest without the empty-answer examples is written when there are some.
    system : str, optional
        System prompt.
    max_answer_tokens : int, optional
        Truncate longer answers.

    Returns
    -------
    TaskDataset
        With an extra attribute ``empty_answers`` (examples left out) and ``name`` (the set).

    Example
    -------
    >>> open_split("dump/nowhere", tokenizer=None, work_dir="exp/data")
    Traceback (most recent call last):
     ...
    ValueError: training data dump/nowhere does not exist: run stage 2 (feature extraction) for it first
    """
    if not os.path.isdir(dump_dir):
        raise ValueError(f"training data {dump_dir} does not exist: run {FEATURES_STAGE} for it first")
    tasks = os.path.join(dump_dir, "tasks.jsonl")
    feats_scp = os.path.join(dump_dir, "feats.scp")
    total, empty = 0, set()  # empty: numbers of the (non-blank) lines whose answer is empty
    for line in _lines(tasks, "task manifest copy"):
        total += 1
        if _empty_answer(line):
            empty.add(total)
    if total == 0:
        raise ValueError(f"{tasks} has no examples: check data/<set>/tasks.jsonl and rerun {FEATURES_STAGE}")
    if next(_lines(feats_scp, "feature index"), None) is None:
        raise ValueError(f"{feats_scp} is empty: every utterance failed feature extraction (see {dump_dir}/bad_utts)")
    if len(empty) == total:
        raise ValueError(f"{tasks}: every example has an empty answer; check how data/<set>/tasks.jsonl was made")
    if empty:
        name = os.path.basename(os.path.normpath(dump_dir))
        filtered = os.path.join(work_dir, name, "tasks.jsonl")
        kept = (line for number, line in enumerate(_lines(tasks, "task manifest copy"), start=1) if number not in empty)
        # every rank writes it at once (on a shared file system in multi-node training): through a
        # temporary file of its own
        atomic_save_text(Path(filtered), "".join(kept))
        logger.warning("%s: %d examples with an empty answer left out (kept %s)", tasks, len(empty), filtered)
        tasks = filtered
    dataset = TaskDataset(tasks, feats_scp, tokenizer, system=system, max_answer_tokens=max_answer_tokens)
    dataset.empty_answers = len(empty)
    dataset.name = os.path.basename(os.path.normpath(dump_dir))
    return dataset


class TrainingSet(torch.utils.data.Dataset):
    """Main sets then replay sets as one dataset of ``(index, Example)``.

    Arguments
    ---------
    main : sequence of TaskDataset
        The stage's own data.
    replay : sequence of TaskDataset
        Data mixed in at ``replay_ratio`` (indices from :attr:`replay_from` on).
    """

    def __init__(self, main: Sequence[TaskDataset], replay: Sequence[TaskDataset] = ()):
        if not main:
            raise ValueError("no main training set: every set given is a replay set")
        self.parts = list(main) + list(replay)
        self.concat = torch.utils.data.ConcatDataset(self.parts)
        self.replay_from = sum(len(d) for d in main)

    def __len__(self) -> int:
        return len(self.concat)

    def __getitem__(self, index: int) -> Tuple[int, Example]:
        return index, self.concat[index]

    def num_tokens(self) -> List[int]:
        """Text tokens of every example."""
        return [n for d in self.parts for n in d.num_tokens()]

    def num_frames(self) -> List[int]:
        """Feature frames of every example."""
        return [n for d in self.parts for n in d.num_frames()]

    def tasks(self) -> List[str]:
        """The task types of the examples (``asr``, ``mcq``, ...), sorted."""
        return sorted({row["task"] for d in self.parts for row in d.rows})


class Collate:
    """``[(index, Example), ...]`` -> :func:`collate_train` batch + ``keys`` (B,) LongTensor + ``tasks``.

    Arguments
    ---------
    pad_id : int
        Padding id (eos).
    """

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items: Sequence[Tuple[int, Example]]) -> Dict[str, object]:
        batch = collate_train([ex for _, ex in items], self.pad_id)
        batch["keys"] = torch.tensor([i for i, _ in items], dtype=torch.long)
        batch["tasks"] = [ex.row["task"] for _, ex in items]
        return batch
