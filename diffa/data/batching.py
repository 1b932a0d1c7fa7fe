"""Length-bucketed dynamic batches, disjoint per distributed rank, with replay mixing.

:class:`BucketBatchSampler` is a ``batch_sampler`` for ``torch.utils.data.DataLoader``. Each epoch:

1. **Selection.** Every example of the main data (indices ``[0, replay_from)``) and, when
   ``replay_ratio`` r > 0, ``round(r / (1 - r) * n_main)`` examples of the replay data (indices
   ``[replay_from, N)``) drawn afresh each epoch, so that a fraction r of the epoch's examples
   are replayed (DIFFA-2 mixes 5% stage-1 ASR data into stages 2-3).
2. **Buckets.** Examples are grouped into ``num_buckets`` length buckets (quantiles of all the
   lengths, fixed for the run). A bucket whose longest example has length ``U`` holds batches of
   ``max(1, min(max_batch_size, max_tokens // U))`` examples, so no batch costs more than
   ``max_tokens`` padded positions (an example longer than ``max_tokens`` gets a batch of its
   own). Without ``max_tokens`` every batch has ``max_batch_size`` examples (the released
   recipes' fixed global batch sizes).
3. **Order.** Examples are shuffled inside their bucket and batches across buckets.
4. **Shards.** The batch list is cut to a multiple of ``world_size`` (the few batches left over
   differ from epoch to epoch) and rank k takes batches k, k + world_size, ... — every rank
   gets the same number of batches and no example appears on two ranks.

Everything is a function of ``(seed, epoch)``, so all ranks agree without communicating, and
resuming at ``(epoch, consumed)`` (:meth:`state_dict` / :meth:`load_state_dict`) continues with
exactly the batches an uninterrupted run would have seen.

Example
-------
>>> lengths = [10, 12, 30, 31, 29, 11, 50, 52]
>>> rank0 = BucketBatchSampler(lengths, max_tokens=64, num_buckets=3, seed=1, rank=0, world_size=2)
>>> rank1 = BucketBatchSampler(lengths, max_tokens=64, num_buckets=3, seed=1, rank=1, world_size=2)
>>> b0, b1 = list(rank0), list(rank1)
>>> len(b0) == len(b1) == len(rank0)
True
>>> set(sum(b0, [])) & set(sum(b1, []))
set()
>>> all(len(b) * max(lengths[i] for i in b) <= 64 for b in b0 + b1)
True
"""

from __future__ import annotations

import logging
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import torch

logger = logging.getLogger(__name__)


class BucketBatchSampler(torch.utils.data.Sampler):
    """Deterministic length-bucketed batches for one rank (see module docstring).

    Arguments
    ---------
    lengths : sequence of int
        Cost of every example (e.g. LLM positions: audio tokens + text tokens); main examples
        first, then replay examples.
    max_tokens : int, optional
        Budget of padded positions per batch (batch size x longest length).
    max_batch_size : int, optional
        Most examples per batch (required when ``max_tokens`` is None).
    num_buckets : int
        Number of length buckets.
    shuffle : bool
        Shuffle inside buckets and the batch order (else: ascending length, stable).
    seed : int
        Seed of every random choice (combined with the epoch).
    rank, world_size : int
        This process's rank and the number of processes.
    replay_from : int, optional
        Index where replay examples start (default: no replay examples).
    replay_ratio : float
        Fraction r in [0, 1) of each epoch's examples drawn from the replay examples.

    Example
    -------
    >>> s = BucketBatchSampler([3, 4, 5, 6], max_batch_size=2, num_buckets=1, shuffle=False)
    >>> list(s)
    [[0, 1], [2, 3]]
    >>> s.load_state_dict({"epoch": 0, "consumed": 1}); list(s)
    [[2, 3]]
    """

    def __init__(
        self,
        lengths: Sequence[int],
        max_tokens: Optional[int] = None,
        max_batch_size: Optional[int] = None,
        num_buckets: int = 10,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        replay_from: Optional[int] = None,
        replay_ratio: float = 0.0,
    ):
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if self.lengths.ndim != 1 or len(self.lengths) == 0:
            raise ValueError(f"lengths must be a non-empty 1-D sequence, got shape {self.lengths.shape}")
        if (self.lengths <= 0).any():
            raise ValueError(f"lengths must be positive; example {int(np.argmin(self.lengths))} has {self.lengths.min()}")
        if max_tokens is None and max_batch_size is None:
            raise ValueError("give max_tokens, max_batch_size or both")
        for name, value in (("max_tokens", max_tokens), ("max_batch_size", max_batch_size), ("num_buckets", num_buckets)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        if not 0.0 <= replay_ratio < 1.0:
            raise ValueError(f"replay_ratio must be in [0, 1), got {replay_ratio}")
        self.replay_from = len(self.lengths) if replay_from is None else int(replay_from)
        if not 0 < self.replay_from <= len(self.lengths):
            raise ValueError(f"replay_from must be in [1, {len(self.lengths)}], got {replay_from}")
        if replay_ratio > 0 and self.replay_from == len(self.lengths):
            raise ValueError("replay_ratio > 0 needs replay examples (indices from replay_from on)")
        self.max_tokens, self.max_batch_size = max_tokens, max_batch_size
        self.shuffle, self.seed = shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.replay_ratio = replay_ratio
        self.n_replay = int(round(replay_ratio / (1.0 - replay_ratio) * self.replay_from))
        edges = np.quantile(self.lengths, np.linspace(0, 1, num_buckets + 1)[1:-1])
        self.bucket = np.searchsorted(np.unique(edges), self.lengths, side="left")
        upper = np.zeros(self.bucket.max() + 1, dtype=np.int64)
        np.maximum.at(upper, self.bucket, self.lengths)
        self.capacity = self._capacity(upper)
        too_long = int((self.lengths > max_tokens).sum()) if max_tokens else 0
        if too_long:
            logger.warning("%d examples are longer than max_tokens=%d; each gets a batch of its own", too_long, max_tokens)
        self.epoch, self.consumed = 0, 0
        self._cache: Dict[int, List[List[int]]] = {}
        if len(self) == 0:
            raise ValueError(
                f"{len(self.lengths)} examples make fewer batches than the {world_size} ranks; "
                "lower max_tokens / max_batch_size or use fewer processes"
            )

    def _capacity(self, upper: np.ndarray) -> np.ndarray:
        """Examples per batch in each bucket, from the bucket's longest length."""
        cap = np.full(upper.shape, self.max_batch_size or np.iinfo(np.int64).max, dtype=np.int64)
        if self.max_tokens:
            cap = np.minimum(cap, self.max_tokens // np.maximum(upper, 1))
        return np.maximum(cap, 1)

    def _rng(self, epoch: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, stream])

    def selection(self, epoch: int) -> np.ndarray:
        """Indices of the examples used in ``epoch`` (main examples, then the replayed ones)."""
        main = np.arange(self.replay_from)
        if self.n_replay == 0:
            return main
        n_pool = len(self.lengths) - self.replay_from
        rng = self._rng(epoch, 0)
        reps = -(-self.n_replay // n_pool)  # more draws than replay examples: every one, repeated
        picks = np.concatenate([rng.permutation(n_pool) for _ in range(reps)])[: self.n_replay]
        return np.concatenate([main, self.replay_from + picks])

    def batches(self, epoch: int) -> List[List[int]]:
        """This rank's batches (lists of example indices) of ``epoch``, in order."""
        if epoch not in self._cache:
            self._cache = {epoch: self._make_batches(epoch)}
        return self._cache[epoch]

    def _make_batches(self, epoch: int) -> List[List[int]]:
        idx = self.selection(epoch)
        rng = self._rng(epoch, 1)
        tie = rng.random(len(idx)) if self.shuffle else self.lengths[idx]
        order = idx[np.lexsort((tie, self.bucket[idx]))]
        bucket = self.bucket[order]
        starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
        sizes = np.diff(np.r_[starts, len(order)])
        # Position of every example inside its bucket -> batch number inside the bucket.
        within = np.arange(len(order)) - np.repeat(starts, sizes)
        batch_in_bucket = within // self.capacity[bucket]
        new_batch = np.r_[True, (bucket[1:] != bucket[:-1]) | (batch_in_bucket[1:] != batch_in_bucket[:-1])]
        groups = np.split(order, np.flatnonzero(new_batch)[1:])
        perm = rng.permutation(len(groups)) if self.shuffle else np.arange(len(groups))
        usable = len(groups) - len(groups) % self.world_size
        return [groups[i].tolist() for i in perm[:usable][self.rank :: self.world_size]]

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch (no-op when it is already the current epoch)."""
        if epoch != self.epoch:
            self.epoch, self.consumed = epoch, 0

    def state_dict(self) -> dict:
        """``{"epoch", "consumed"}``: the epoch and how many of its batches were handed out."""
        return {"epoch": self.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict) -> None:
        """Continue at ``state["epoch"]`` after its first ``state["consumed"]`` batches."""
        epoch, consumed = int(state["epoch"]), int(state["consumed"])
        if not 0 <= consumed <= len(self.batches(epoch)):
            raise ValueError(f"consumed={consumed} is outside epoch {epoch}'s {len(self.batches(epoch))} batches")
        self.epoch, self.consumed = epoch, consumed

    def __iter__(self) -> Iterator[List[int]]:
        batches = self.batches(self.epoch)
        while self.consumed < len(batches):
            self.consumed += 1
            yield batches[self.consumed - 1]

    def __len__(self) -> int:
        """Batches of the current epoch for this rank (the same on every rank)."""
        return len(self.batches(self.epoch))
