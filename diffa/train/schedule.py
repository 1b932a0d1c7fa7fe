"""Learning-rate schedule: linear warmup, then cosine decay (or a constant rate).

The rate is a pure function of the optimizer step, so resuming a run only needs the step count
(which the Brain checkpoints); there is no scheduler state to drift.

Example
-------
>>> sched = WarmupCosine(peak_lr=1e-3, warmup_steps=10, total_steps=110)
>>> [round(sched(s), 6) for s in (1, 5, 10, 60, 110, 500)]
[0.0001, 0.0005, 0.001, 0.0005, 0.0, 0.0]
"""

from __future__ import annotations

import math


class WarmupCosine:
    """``lr(step)`` for optimizer steps counted from 1.

    * ``step <= warmup_steps``: ``peak_lr * step / warmup_steps``;
    * after that, ``decay="cosine"``: from ``peak_lr`` down to ``min_lr_ratio * peak_lr`` along
      half a cosine that ends at ``total_steps`` (and stays there); ``decay="constant"``:
      ``peak_lr``.

    Arguments
    ---------
    peak_lr : float
        Rate reached at the end of warmup.
    warmup_steps : int
        Linear warmup length (0: none).
    total_steps : int
        Step at which the cosine reaches its floor.
    min_lr_ratio : float
        Floor as a fraction of ``peak_lr``.
    decay : str
        ``"cosine"`` or ``"constant"``.

    Example
    -------
    >>> WarmupCosine(1.0, 0, 100, decay="constant")(50)
    1.0
    >>> WarmupCosine(1.0, 0, 100, min_lr_ratio=0.1)(100)
    0.1
    """

    DECAYS = ("cosine", "constant")

    def __init__(self, peak_lr: float, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0, decay: str = "cosine"):
        if peak_lr <= 0:
            raise ValueError(f"peak_lr must be > 0, got {peak_lr}")
        if warmup_steps < 0 or total_steps < 1:
            raise ValueError(f"need warmup_steps >= 0 and total_steps >= 1, got {warmup_steps} and {total_steps}")
        if not 0.0 <= min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")
        if decay not in self.DECAYS:
            raise ValueError(f"decay must be one of {self.DECAYS}, got {decay!r}")
        self.peak_lr, self.warmup_steps, self.total_steps = peak_lr, warmup_steps, total_steps
        self.min_lr_ratio, self.decay = min_lr_ratio, decay

    def __call__(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (1 = the first update)."""
        if step <= self.warmup_steps:
            return self.peak_lr * step / self.warmup_steps
        if self.decay == "constant":
            return self.peak_lr
        span = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / span, 1.0)
        floor = self.min_lr_ratio * self.peak_lr
        return floor + (self.peak_lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
