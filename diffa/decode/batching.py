"""Decoding batches: one task type per batch, similar lengths together, longest first.

Rows of a batch are left-padded to its longest prompt (``diffa.data.collate.collate_prompts``)
and its audio to the longest clip, so sorting by cost (prompt tokens + audio tokens + answer
length) keeps padding small. Batches hold ``batch_size`` examples, fewer when ``max_tokens``
(examples x longest cost) would be exceeded; the longest batches come first, so a batch size
that does not fit in memory fails at once rather than at the end.

The plan depends only on the examples, never on which of them are already decoded: a resumed
run sees the same batches (and the same random seeds per batch) as an uninterrupted one.

Example
-------
>>> plan_batches(["asr", "mcq", "asr", "mcq", "asr"], [30, 8, 50, 9, 40], batch_size=2)
[[2, 4], [0], [3, 1]]
>>> plan_batches(["asr"] * 4, [30, 10, 20, 40], batch_size=4, max_tokens=80)
[[3, 0], [2, 1]]
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np


def plan_batches(
    tasks: Sequence[str], costs: Sequence[int], batch_size: int, max_tokens: Optional[int] = None
) -> List[List[int]]:
    """Group example indices into decoding batches (module docstring).

    Arguments
    ---------
    tasks : sequence of str
        Task type of each example (examples of different types never share a batch).
    costs : sequence of int
        Positions each example occupies in the LLM (prompt + audio + answer).
    batch_size : int
        Most examples per batch.
    max_tokens : int, optional
        Most ``len(batch) * max(cost)`` per batch (an example costlier than this decodes alone).

    Returns
    -------
    list of list of int
        Batches in decoding order: task types in order of first appearance, then descending
        cost, ties in input order.

    Example
    -------
    >>> plan_batches(["mcq"] * 3, [5, 5, 5], batch_size=8)
    [[0, 1, 2]]
    """
    if len(tasks) != len(costs):
        raise ValueError(f"plan_batches: {len(tasks)} task types but {len(costs)} costs")
    if batch_size < 1 or (max_tokens is not None and max_tokens < 1):
        raise ValueError(f"plan_batches: batch_size ({batch_size}) and max_tokens ({max_tokens}) must be >= 1")
    kinds = list(dict.fromkeys(tasks))
    kind = np.array([kinds.index(t) for t in tasks], dtype=np.int64)
    cost = np.asarray(costs, dtype=np.int64)
    order = np.lexsort((np.arange(len(cost)), -cost, kind))  # type, then cost descending, stable
    batches: List[List[int]] = []
    for i in order.tolist():
        last = batches[-1] if batches else None
        # sorted by descending cost: the batch's first example is its longest
        fits = last is not None and kind[last[0]] == kind[i] and len(last) < batch_size and (
            max_tokens is None or (len(last) + 1) * int(cost[last[0]]) <= max_tokens)
        if fits:
            last.append(i)
        else:
            batches.append([i])
    return batches
