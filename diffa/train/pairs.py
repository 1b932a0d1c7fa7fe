"""Building preference pairs (curriculum stage 4 data) from task manifests.

Every pair keeps the task's reference answer as ``chosen`` and finds a dispreferred ``rejected``
answer in one of three ways (the ``source`` field of :mod:`diffa.data.pairs` says which):

``swap`` (``source = "swap:<label>"``)
    A rule rewrites the reference so that it states exactly one wrong fact and stays fluent:

    * question rows (``mcq`` / ``open_qa``): the property the answer states is
      ``labels["asks"]`` when the row names it (the ``egs/mini`` corpus), else every label whose
      value occurs in the answer as a whole word; one of them is drawn, and every mention of its
      value in the answer (whole words, any case) is replaced by *another value of that property
      seen in the same set*, written in the case of the mention (``Male``/``male``/``MALE`` ->
      ``Female``/``female``/``FEMALE``), so the answer does not contradict itself. Values come
      from the ``labels`` of all rows, so MCQ distractors, which no clip has, are never used;
      values are compared case-insensitively (``male`` and ``Male`` are one value) and empty
      values are no facts (never swapped; counted in ``ignored:empty_label``);
    * ``asr`` rows (``source = "swap:transcript"``): one word of the transcript, drawn at random,
      is replaced by another word of the set's transcript vocabulary.

    A row with no swappable fact (no other value seen, value not in the answer, ``<nospeech>``)
    gives no pair.
``external`` (``source = "external"``)
    The row carries its own dispreferred answer in ``labels["rejected"]`` (the authors' VRPO index,
    :mod:`diffa.data.corpora.authors_json`): ``chosen = answer``, ``rejected = labels["rejected"]``.
    A ``rejected`` that is empty or equal to the answer gives no pair (a warning counts them).
``sampled`` (``source = "sampled"``)
    A model (the stage-3 SFT model, :class:`diffa.train.pair_sampler.ModelSampler`) answers the row ``n`` times; every answer
    is scored against the reference (:func:`answer_error`: multiple choice by the MMAU rule, other
    tasks by word error rate) and the worst one that is really wrong (error > 0) is ``rejected``.

Pair ids are ``<task id>-<mode>``; a pair's ``labels`` are its task's labels (without
``rejected``).

Example
-------
>>> import random
>>> rows = [{"id": "a-open_qa-0", "utt": "a", "task": "open_qa", "instruction": "Male or female?",
...          "answer": "The speaker is male.", "labels": {"asks": "gender", "gender": "male"}},
...         {"id": "b-open_qa-0", "utt": "b", "task": "open_qa", "instruction": "Male or female?",
...          "answer": "female", "labels": {"asks": "gender", "gender": "female"}}]
>>> pairs, stats = build_pairs(rows, modes=("swap",), rng=random.Random(0))
>>> [(p["chosen"], p["rejected"], p["source"]) for p in pairs]
[('The speaker is male.', 'The speaker is female.', 'swap:gender'), ('female', 'male', 'swap:gender')]
"""

from __future__ import annotations

import logging
import random
import re
from collections import Counter
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple


from diffa.data.corpora.datadir import NOSPEECH
from diffa.scoring.mcq import judge
from diffa.scoring.text import tokenize
from diffa.scoring.wer import ErrorCounts, align

logger = logging.getLogger(__name__)

MODES = ("swap", "external", "sampled")
META_LABELS = frozenset({"asks", "rejected"})
"""Labels that describe the row, not a fact about the audio."""
TRANSCRIPT = "transcript"

Sampler = Callable[[Sequence[dict]], List[List[str]]]
"""``sampler(task rows) -> for each row, a list of sampled answers``."""


def _facts(labels: Mapping[str, str]) -> Dict[str, str]:
    """The labels that state a fact about the audio: no meta label, no empty value."""
    return {key: value for key, value in labels.items() if key not in META_LABELS and value.strip()}


def _distinct(values: Iterable[str]) -> List[str]:
    """Sorted values, one per case-insensitive spelling (the first in code-point order)."""
    first: Dict[str, str] = {}
    for value in sorted(values):
        first.setdefault(value.casefold(), value)
    return sorted(first.values())


def property_values(rows: Sequence[Mapping]) -> Dict[str, List[str]]:
    """The values each label takes in a set of task rows (sorted; meta labels and empty values
    left out; spellings that differ only in case are one value, the first in code-point order).

    For a property some row asks about (``labels["asks"]``), only the values of the rows that ask
    it count: what the set's answers about it say. (In ``egs/mini``, speech clips carry
    ``kind=speech`` but only sounds are asked their kind, where "speech" is a distractor.)

    Example
    -------
    >>> property_values([{"labels": {"gender": "male", "kind": "speech"}},
    ...                  {"labels": {"kind": "noise", "asks": "kind"}}, {"labels": {"gender": "female"}},
    ...                  {"labels": {"gender": "Male", "accent": ""}}])
    {'gender': ['Male', 'female'], 'kind': ['noise']}
    """
    seen: Dict[str, Set[str]] = {}
    asked: Dict[str, Set[str]] = {}
    for row in rows:
        labels = row.get("labels", {})
        facts = _facts(labels)
        for key, value in facts.items():
            seen.setdefault(key, set()).add(value)
        if labels.get("asks") in facts:
            asked.setdefault(labels["asks"], set()).add(facts[labels["asks"]])
    return {key: _distinct(asked.get(key, values)) for key, values in sorted(seen.items())}


def transcript_vocabulary(rows: Sequence[Mapping]) -> List[str]:
    """The sorted distinct words of the ``asr`` answers of a set (``<nospeech>`` left out).

    Example
    -------
    >>> transcript_vocabulary([{"task": "asr", "answer": "THE CAT"}, {"task": "mcq", "answer": "DOG"},
    ...                        {"task": "asr", "answer": "THE MAT"}])
    ['CAT', 'MAT', 'THE']
    """
    words = {w for row in rows if row["task"] == "asr" and row["answer"] != NOSPEECH for w in row["answer"].split()}
    return sorted(words)


def _whole_word(value: str) -> re.Pattern:
    return re.compile(rf"(?<!\w){re.escape(value)}(?!\w)", re.IGNORECASE)


def _in_case_of(found: str, other: str) -> str:
    """``other`` in the case style of ``found``: all capitals, lower case or capitalised."""
    if found.isupper() and len(found) > 1:
        return other.upper()
    if found.islower():
        return other.lower()
    if found[:1].isupper():
        return other[:1].upper() + other[1:]
    return other


def _replace_all(text: str, value: str, other: str) -> Optional[str]:
    """``text`` with every whole-word, case-insensitive occurrence of ``value`` replaced by
    ``other`` in that occurrence's case style, or None when ``value`` does not occur.

    Example
    -------
    >>> _replace_all("Male. A male voice (MALE), not female.", "male", "female")
    'Female. A female voice (FEMALE), not female.'
    >>> _replace_all("A woman.", "male", "female") is None
    True
    """
    replaced, count = _whole_word(value).subn(lambda match: _in_case_of(match.group(0), other), text)
    return replaced if count else None


def swap_fact(row: Mapping, values: Mapping[str, Sequence[str]], rng: random.Random) -> Optional[Tuple[str, str]]:
    """One wrong fact in a question row's answer: ``(label, rejected answer)`` or None.

    Arguments
    ---------
    row : Mapping
        A task row (``mcq`` or ``open_qa``).
    values : Mapping
        :func:`property_values` of the set.
    rng : random.Random
        Draws the property (when several are stated) and the wrong value.

    Example
    -------
    >>> row = {"task": "mcq", "answer": "three", "labels": {"asks": "beeps", "beeps": "three", "tone": "low"}}
    >>> swap_fact(row, {"beeps": ["one", "three", "two"], "tone": ["high", "low"]}, random.Random(1))
    ('beeps', 'one')
    >>> row = {"task": "open_qa", "answer": "Male. The speaker is a male adult.", "labels": {"gender": "male"}}
    >>> swap_fact(row, {"gender": ["female", "male"]}, random.Random(0))
    ('gender', 'Female. The speaker is a female adult.')
    """
    labels = row.get("labels", {})
    facts = _facts(labels)
    if "asks" in labels:
        stated = [labels["asks"]] if labels["asks"] in facts else []
    else:
        stated = [k for k in sorted(facts) if _whole_word(facts[k]).search(row["answer"])]
    others = {k: [v for v in values.get(k, ()) if v.casefold() != facts[k].casefold()] for k in stated}
    candidates = [k for k in stated if others[k]]
    if not candidates:
        return None
    label = rng.choice(candidates)
    rejected = _replace_all(row["answer"], facts[label], rng.choice(others[label]))
    return None if rejected is None else (label, rejected)


def swap_word(transcript: str, vocabulary: Sequence[str], rng: random.Random) -> Optional[str]:
    """The transcript with one word, drawn at random, replaced by another vocabulary word.

    Example
    -------
    >>> swapped = swap_word("THE CAT SAT", ["CAT", "DOG", "SAT", "THE"], random.Random(0))
    >>> swapped, sum(a != b for a, b in zip(swapped.split(), "THE CAT SAT".split()))
    ('THE SAT SAT', 1)
    """
    words = transcript.split()
    if transcript == NOSPEECH or not words:
        return None
    position = rng.randrange(len(words))
    others = [w for w in vocabulary if w != words[position]]
    if not others:
        return None
    words[position] = rng.choice(others)
    return " ".join(words)


def answer_error(row: Mapping, text: str) -> float:
    """How wrong ``text`` is as an answer to ``row``: 0 is right.

    Multiple choice: 0 or 1 by the MMAU rule (the answer's words and no other option's,
    :func:`diffa.scoring.mcq.judge`); other tasks: the word error rate against the reference
    (WeNet normalisation), as a fraction.

    Example
    -------
    >>> answer_error({"task": "asr", "answer": "THE CAT SAT"}, "the hat sat")
    0.333...
    >>> answer_error({"task": "mcq", "answer": "pink", "choices": ["white", "pink"], "gold": 1}, "pink")
    0.0
    """
    if row["task"] == "mcq":
        return 0.0 if judge("mmau", text, row["choices"], row["gold"], answer=row["answer"]).correct else 1.0
    ref = tokenize(row["answer"], "wenet")
    counts = ErrorCounts.from_alignment(align(ref, tokenize(text, "wenet")))
    return counts.errors / max(counts.ref, 1)


def rank_samples(row: Mapping, samples: Sequence[str]) -> Optional[str]:
    """The worst sampled answer that is wrong (error > 0 and not the reference), or None.

    Ties go to the earliest sample.

    Example
    -------
    >>> rank_samples({"task": "asr", "answer": "A B C"}, ["A B C", "A X C", "X Y C"])
    'X Y C'
    >>> rank_samples({"task": "asr", "answer": "A B C"}, ["a b c"]) is None
    True
    """
    errors = [answer_error(row, s) if s.strip() and s != row["answer"] else 0.0 for s in samples]
    if not errors or max(errors) <= 0:
        return None
    return samples[max(range(len(errors)), key=errors.__getitem__)]  # the first of the worst


def _pair(row: Mapping, mode: str, rejected: str, source: str) -> dict:
    pair = {"id": f"{row['id']}-{mode}", "utt": row["utt"], "prompt": row["instruction"], "chosen": row["answer"],
            "rejected": rejected, "source": source}
    labels = {k: v for k, v in row.get("labels", {}).items() if k != "rejected"}
    if labels:
        pair["labels"] = labels
    return pair


def build_pairs(
    rows: Sequence[dict],
    modes: Sequence[str] = ("swap", "external"),
    rng: Optional[random.Random] = None,
    sampler: Optional[Sampler] = None,
    max_sampled: Optional[int] = None,
) -> Tuple[List[dict], Counter]:
    """Preference pairs of a set of task rows (see the module docstring).

    Arguments
    ---------
    rows : sequence of dict
        Validated task rows (:func:`diffa.data.tasks.read_tasks`); swap values and the transcript
        vocabulary are taken from these rows.
    modes : sequence of str
        Any of ``"swap"``, ``"external"``, ``"sampled"``; each row gives at most one pair per mode.
    rng : random.Random, optional
        Draws the swaps (default: seeded with 0).
    sampler : callable, optional
        Needed by ``"sampled"``: ``sampler(rows) -> [[answer, ...] per row]``.
    max_sampled : int, optional
        Stop sampling once this many ``"sampled"`` pairs are made: the rows are then visited in a
        random order (drawn from ``rng``), and those never sampled are counted in
        ``unvisited:sampled``. Sampling is the slow part (a model run per row); default: every row.

    Returns
    -------
    pairs : list of dict
        Rows of ``pairs.jsonl`` (:mod:`diffa.data.pairs`).
    stats : Counter
        Pairs made per ``source``, rows without a pair per ``skipped:<mode>`` and, with mode
        ``"swap"``, the empty label values left out (``ignored:empty_label``, with a warning).

    Example
    -------
    >>> rows = [{"id": f"{u}-0", "utt": u, "task": "mcq", "instruction": "Which?", "answer": "pink",
    ...          "choices": ["white", "pink"], "gold": 1} for u in "abcdef"]
    >>> calls = []
    >>> def sampler(batch):
    ...     calls.append(len(batch))
    ...     return [["pink", "white"] if r["utt"] in "abc" else ["pink"] for r in batch]
    >>> pairs, stats = build_pairs(rows, ("sampled",), random.Random(0), sampler, max_sampled=2)
    >>> len(pairs), stats["skipped:sampled"] + stats["unvisited:sampled"], sum(calls) < len(rows)
    (2, 4, True)
    """
    unknown = sorted(set(modes) - set(MODES))
    if unknown or not modes:
        raise ValueError(f"modes must be a non-empty subset of {MODES}, got {list(modes)}")
    if "sampled" in modes and sampler is None:
        raise ValueError("mode 'sampled' needs a sampler (a model to sample answers from)")
    rng = rng or random.Random(0)
    values, vocabulary = property_values(rows), transcript_vocabulary(rows)
    pairs: List[dict] = []
    stats: Counter = Counter()

    def add(row: Mapping, mode: str, rejected: Optional[str], source: str) -> None:
        if rejected is None:
            stats[f"skipped:{mode}"] += 1
            return
        pairs.append(_pair(row, mode, rejected, source))
        stats[source] += 1

    empty = [(row["id"], k) for row in rows for k, v in row.get("labels", {}).items() if k not in META_LABELS and not v.strip()]
    if empty and "swap" in modes:
        stats["ignored:empty_label"] = len(empty)
        logger.warning("%d empty label values are not facts and are never swapped (first: task %r, label %r); "
                       "fill them in or leave the labels out of tasks.jsonl", len(empty), *empty[0])
    unusable: List[str] = []  # rows whose external 'rejected' is empty or the answer itself
    for row in rows:
        if "swap" in modes:
            if row["task"] == "asr":
                swapped = (TRANSCRIPT, swap_word(row["answer"], vocabulary, rng))
            else:
                swapped = swap_fact(row, values, rng) or ("", None)
            add(row, "swap", swapped[1], f"swap:{swapped[0]}")
        if "external" in modes:
            rejected = row.get("labels", {}).get("rejected")
            if rejected is not None and (not rejected.strip() or rejected == row["answer"]):
                unusable.append(row["id"])
                rejected = None
            add(row, "external", rejected, "external")
    if unusable:
        logger.warning("%d rows have a 'rejected' answer that is empty or equal to their answer (first: task %r): "
                       "no external pair for them (counted in skipped:external); check the preference data",
                       len(unusable), unusable[0])
    if "sampled" in modes:
        todo, made = list(rows), 0
        if max_sampled:
            rng.shuffle(todo)  # a random part of the set, not its first rows
        while todo and not (max_sampled and made >= max_sampled):
            # each row gives at most one pair: sample only as many rows as pairs are still missing
            take = max_sampled - made if max_sampled else len(todo)
            batch, todo = todo[:take], todo[take:]
            samples = sampler(batch)
            if len(samples) != len(batch):
                raise ValueError(f"the sampler returned answers for {len(samples)} of {len(batch)} rows")
            for row, answers in zip(batch, samples):
                rejected = rank_samples(row, answers)
                add(row, "sampled", rejected, "sampled")
                made += rejected is not None
        if todo:
            stats["unvisited:sampled"] = len(todo)
    logger.info("built %d pairs from %d rows: %s", len(pairs), len(rows), dict(sorted(stats.items())))
    return pairs, stats


def split_by_utterance(pairs: Sequence[dict], fraction: float, rng: random.Random) -> Tuple[List[dict], List[dict]]:
    """Hold out the pairs of a random ``fraction`` of the utterances (at least one utterance
    when ``fraction`` > 0 and there are two or more): ``(train pairs, held-out pairs)``.

    No utterance has pairs on both sides, so held-out accuracy is measured on unseen audio.

    Example
    -------
    >>> pairs = [{"utt": u} for u in "aabbcd"]
    >>> train, held_out = split_by_utterance(pairs, 0.25, random.Random(0))
    >>> len(train) + len(held_out), {p["utt"] for p in train} & {p["utt"] for p in held_out}
    (6, set())
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the held-out fraction must be in [0, 1), got {fraction}")
    utts = sorted({p["utt"] for p in pairs})
    n_held = max(round(fraction * len(utts)), 1) if fraction > 0 else 0
    held = set(rng.sample(utts, min(n_held, len(utts) - 1))) if len(utts) > 1 else set()
    return [p for p in pairs if p["utt"] not in held], [p for p in pairs if p["utt"] in held]
