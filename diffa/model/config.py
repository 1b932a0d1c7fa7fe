"""The configuration of a DIFFA model: one JSON file that says how to rebuild it.

``config.json`` of a DIFFA directory holds the Whisper encoder's config (HF field names), the LLaDA
config (official field names), the adapter shapes, the audio layout and the behaviour switches
where the authors' code and the right thing differ:

=====================  ==========================================  =======================
switch                 meaning                                     imported checkpoints
=====================  ==========================================  =======================
``pad_to_30s``         Whisper sees 30 s of (padded) log-mel        True (what they saw)
``llm_padding_mask``   padding keys are masked inside the LLM       False (no mask at all)
``qformer_padding_mask``  the Q-Former ignores padded frames         False
=====================  ==========================================  =======================

New models default to the faster, correct settings (variable length, masks on).

Example
-------
>>> cfg = DIFFAConfig(encoder={"d_model": 32}, llm={"d_model": 64}, taps=[1, 2])
>>> DIFFAConfig.from_dict(cfg.to_dict()) == cfg
True
>>> DIFFAConfig.from_dict({**cfg.to_dict(), "layout": "both"})
Traceback (most recent call last):
 ...
ValueError: DIFFA config: layout must be 'stage1' or 'dual', got 'both'
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import List, Optional

# Acoustic-adapter taps (indices into Whisper's hidden_states, 0 = embedding output) used by the
# authors for each Whisper size, keyed by (encoder_layers, d_model).
OFFICIAL_TAPS = {
    (4, 384): [0, 1, 2, 3],  # tiny
    (12, 768): [2, 5, 8, 11],  # small (DIFFA)
    (24, 1024): [5, 11, 17, 23],  # medium
    (32, 1280): [3, 7, 11, 15, 19, 23, 27, 31],  # large-v3 (DIFFA-2)
}


@dataclass
class DIFFAConfig:
    """Everything needed to rebuild a :class:`~diffa.model.DIFFA` (see module docstring).

    Arguments
    ---------
    encoder : dict
        Whisper config (``transformers.WhisperConfig.to_dict()`` fields).
    llm : dict
        LLaDA config (official ``config.json`` fields).
    taps : list of int
        Encoder hidden-state indices the acoustic adapter reads.
    layout : str
        ``"stage1"``: [learned prompts ; semantic tokens]; ``"dual"``: [acoustic ; semantic].
    n_prompts, n_queries : int
        Learned stage-1 prompts (20) and acoustic queries per tap (64).
    qformer_layers, qformer_ffn : int
        Q-Former depth and feed-forward width.
    qformer_dropout : float
        Dropout inside the Q-Former.
    pad_to_30s, llm_padding_mask, qformer_padding_mask : bool
        Behaviour switches (module docstring).
    lora : dict, optional
        :class:`diffa.nnet.lora.LoRAConfig` fields when the LLM carries an unmerged LoRA.

    Example
    -------
    >>> cfg = DIFFAConfig(encoder={}, llm={}, taps=(3, 7))
    >>> cfg.taps, cfg.layout, cfg.n_queries, cfg.pad_to_30s, cfg.llm_padding_mask, cfg.lora
    ([3, 7], 'dual', 64, False, True, None)
    >>> DIFFAConfig.from_dict({"encoder": {}, "llm": {}, "taps": [1], "n_query": 8}, where="exp/config.json")
    Traceback (most recent call last):
     ...
    ValueError: exp/config.json: unknown keys ['n_query'] (valid: ['encoder', ..., 'taps'])
    """

    encoder: dict
    llm: dict
    taps: List[int]
    layout: str = "dual"
    n_prompts: int = 20
    n_queries: int = 64
    qformer_layers: int = 2
    qformer_ffn: int = 3072
    qformer_dropout: float = 0.1
    pad_to_30s: bool = False
    llm_padding_mask: bool = True
    qformer_padding_mask: bool = True
    lora: Optional[dict] = None
    model_type: str = field(default="diffa")

    def __post_init__(self) -> None:
        if self.layout not in ("stage1", "dual"):
            raise ValueError(f"DIFFA config: layout must be 'stage1' or 'dual', got {self.layout!r}")
        if self.model_type != "diffa":
            raise ValueError(f"DIFFA config: model_type must be 'diffa', got {self.model_type!r}")
        self.taps = list(self.taps)

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "DIFFA config") -> "DIFFAConfig":
        """Inverse of :meth:`to_dict`; unknown keys are errors naming ``where``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown} (valid: {sorted(names)})")
        return cls(**d)
