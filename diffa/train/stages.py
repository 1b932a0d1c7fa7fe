"""What trains in each curriculum stage (DIFFA and DIFFA-2 papers) and how the model is prepared for it.

=============  ==========  ===========================================  =====================
stage          layout      trainable                                    LLM
=============  ==========  ===========================================  =====================
``semantic``   ``stage1``  semantic adapter + 20 learned prompts        frozen
``acoustic``   ``dual``    semantic + acoustic adapters                 frozen
``sft``        ``dual``    semantic + acoustic adapters + LoRA          frozen base + LoRA
``vrpo``       ``dual``    semantic + acoustic adapters + LoRA          frozen base + LoRA
=============  ==========  ===========================================  =====================

The Whisper encoder is always frozen. LoRA (r=8, alpha=16 on q/k/v/ff_proj/up_proj by default)
is attached when a LoRA stage starts from a model that has none; only the ``default`` adapter
trains (a frozen ``reference`` adapter, if any, stays frozen).

Example
-------
>>> from diffa.model.diffa import DIFFA, tiny_config
>>> model = DIFFA(tiny_config())
>>> summary = prepare_stage(model, "semantic")
>>> model.config.layout, sorted(summary.counts)
('stage1', ['prompts', 'semantic'])
>>> summary = prepare_stage(model, "sft")
>>> sorted(summary.counts), model.config.lora["r"]
(['acoustic', 'lora', 'semantic'], 8)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch

from diffa.nnet.lora import LoRAConfig, has_lora


@dataclass(frozen=True)
class Stage:
    """One curriculum stage: audio layout, trainable groups, and whether the LLM carries LoRA.

    Example
    -------
    >>> STAGES["acoustic"]
    Stage(name='acoustic', layout='dual', trains=('semantic', 'acoustic'), lora=False)
    """

    name: str
    layout: str
    trains: Tuple[str, ...]
    lora: bool


STAGES: Dict[str, Stage] = {
    "semantic": Stage("semantic", "stage1", ("semantic", "prompts"), False),
    "acoustic": Stage("acoustic", "dual", ("semantic", "acoustic"), False),
    "sft": Stage("sft", "dual", ("semantic", "acoustic", "lora"), True),
    "vrpo": Stage("vrpo", "dual", ("semantic", "acoustic", "lora"), True),
}


@dataclass
class TrainableSummary:
    """Trainable parameters after :func:`set_trainable`.

    names : sorted trainable parameter names; counts : parameters per group (``semantic``,
    ``acoustic``, ``prompts``, ``lora``); total : all parameters of the model.

    Example
    -------
    >>> s = TrainableSummary(["a.w"], {"semantic": 30, "prompts": 10}, total=1000)
    >>> s.trainable, str(s).splitlines()[-1]
    (40, '  total                 40 of 1,000 (4.00%)')
    """

    names: List[str]
    counts: Dict[str, int]
    total: int

    @property
    def trainable(self) -> int:
        """Number of trainable parameters."""
        return sum(self.counts.values())

    def __str__(self) -> str:
        rows = [f"  {group:<9s} {n:>14,d}" for group, n in sorted(self.counts.items())]
        share = 100.0 * self.trainable / max(self.total, 1)
        return "\n".join(
            ["trainable parameters:", *rows, f"  {'total':<9s} {self.trainable:>14,d} of {self.total:,d} ({share:.2f}%)"]
        )


def get_stage(name: str) -> Stage:
    """The :class:`Stage` called ``name``; ValueError listing the valid names otherwise.

    Example
    -------
    >>> get_stage("sft").trains
    ('semantic', 'acoustic', 'lora')
    """
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; valid stages: {', '.join(STAGES)}")
    return STAGES[name]


def _group(name: str) -> Optional[str]:
    """Trainable group a DIFFA parameter name belongs to (None: never trains)."""
    head = name.split(".", 1)[0]
    if head in ("semantic", "acoustic", "prompts"):
        return head
    if head == "llm" and (".lora_A.default." in name or ".lora_B.default." in name):
        return "lora"
    return None


def set_trainable(model: torch.nn.Module, stage: str) -> TrainableSummary:
    """Freeze everything except the groups ``stage`` trains; return what trains.

    Arguments
    ---------
    model : DIFFA
        The model (any device, ``meta`` included).
    stage : str
        A key of :data:`STAGES`.

    Returns
    -------
    TrainableSummary

    Example
    -------
    >>> from diffa.model.diffa import DIFFA, tiny_config
    >>> s = set_trainable(DIFFA(tiny_config()), "acoustic")
    >>> sorted(s.counts), s.trainable == s.counts["semantic"] + s.counts["acoustic"]
    (['acoustic', 'semantic'], True)
    """
    spec = get_stage(stage)
    if spec.lora and not has_lora(model.llm):
        raise ValueError(f"stage {stage!r} trains LoRA but the model has none; use prepare_stage()")
    names, counts, total = [], {}, 0
    for name, param in model.named_parameters():
        group = _group(name)
        train = group in spec.trains
        param.requires_grad_(train)
        total += param.numel()
        if train:
            names.append(name)
            counts[group] = counts.get(group, 0) + param.numel()
    return TrainableSummary(sorted(names), counts, total)


def prepare_stage(model: torch.nn.Module, stage: str, lora: Optional[LoRAConfig] = None) -> TrainableSummary:
    """Set the audio layout, attach LoRA if the stage needs it, and set the trainable flags.

    Arguments
    ---------
    model : DIFFA
        The model to prepare (changed in place).
    stage : str
        A key of :data:`STAGES`.
    lora : LoRAConfig, optional
        LoRA to attach when a LoRA stage finds none (default: DIFFA-2's r=8, alpha=16).

    Returns
    -------
    TrainableSummary

    Example
    -------
    >>> from diffa.model.diffa import DIFFA, tiny_config
    >>> model = DIFFA(tiny_config())
    >>> prepare_stage(model, "sft", LoRAConfig(r=2, alpha=4)).counts["lora"] > 0, model.config.lora["r"]
    (True, 2)
    """
    spec = get_stage(stage)
    model.config.layout = spec.layout
    if spec.lora and not has_lora(model.llm):
        model.add_lora(lora or LoRAConfig())
    return set_trainable(model, stage)
