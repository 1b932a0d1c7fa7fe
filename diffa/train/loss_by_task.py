"""The SFT loss of each task type (``asr``, ``mcq``, ``open_qa``, ...), for the training log.

A stage that trains on several tasks, or mixes in replay data (DIFFA-2 mixes 5% of the stage-1
ASR data into its stages 2-3), logs one loss over all of them; a task the model fits and one it
does not then hide each other. :class:`LossByTask` sums every row's share of the loss
(:class:`~diffa.train.sft.SFTLoss`) by its task, so that a log line can also say
``loss_asr=1.57 loss_mcq=0.05 loss_open_qa=0.09``. A task's loss is the ratio of its rows' sums,
i.e. the loss of a batch holding only that task's rows of the interval (with ``"batch"``
normalisation: weighted by answer tokens).

Example
-------
>>> import torch
>>> tally = LossByTask(["asr", "mcq"])
>>> tally.add(["asr", "mcq", "mcq"], torch.tensor([6.0, 1.0, 2.0]), torch.tensor([4.0, 2.0, 2.0]))
>>> tally.add(["asr"], torch.tensor([2.0]), torch.tensor([4.0]))
>>> tally.flush()
{'loss_asr': 1.0, 'loss_mcq': 0.75}
>>> tally.flush()                              # flushing starts a new interval
{}
"""

from __future__ import annotations

from typing import Dict, Sequence

import torch


class LossByTask:
    """Running per-task sums of the SFT loss between two log lines.

    Arguments
    ---------
    tasks : sequence of str
        Every task type of the data (the same list on every rank). With fewer than two, there is
        nothing to break down and :meth:`flush` returns ``{}``.
    """

    def __init__(self, tasks: Sequence[str]):
        self.tasks = sorted(set(tasks))
        self._index = {task: i for i, task in enumerate(self.tasks)}
        self._sums = torch.zeros(len(self.tasks), 2, dtype=torch.float64)  # loss share, weight

    def add(self, tasks: Sequence[str], row_sums: torch.Tensor, row_weights: torch.Tensor) -> None:
        """Add one batch: each row's task and its share of the loss (:class:`~diffa.train.sft.SFTLoss`);
        a batch with a non-finite share is left out."""
        if len(self.tasks) < 2:
            return
        shares = torch.stack([row_sums.detach(), row_weights.detach()], dim=1).to("cpu", torch.float64)
        if not torch.isfinite(shares).all():
            return  # its optimizer step is skipped too (SFTBrain)
        index = torch.tensor([self._index[task] for task in tasks], dtype=torch.long)
        self._sums.index_add_(0, index, shares)

    def flush(self, device=None, reduce: bool = False) -> Dict[str, float]:
        """``{"loss_<task>": loss}`` of the tasks seen since the last flush, then start again;
        ``reduce`` sums over the ranks first (every rank must call it then).

        Example
        -------
        >>> tally = LossByTask(["asr", "mcq"])
        >>> tally.add(["mcq"], torch.tensor([0.5]), torch.tensor([1.0]))
        >>> tally.flush()                          # asr had no row in the interval
        {'loss_mcq': 0.5}
        """
        if len(self.tasks) < 2:
            return {}
        sums = self._sums.to(device or "cpu", copy=True)
        self._sums.zero_()
        if reduce and torch.distributed.is_initialized():
            torch.distributed.all_reduce(sums)
        sums = sums.cpu()
        return {f"loss_{task}": float(sums[i, 0] / sums[i, 1]) for i, task in enumerate(self.tasks) if sums[i, 1] > 0}
