"""The model a training stage starts from.

* With ``init_from`` (every stage after the first): the DIFFA directory the previous stage wrote
  (``exp/<stage>/final``; an experiment directory holding ``final/`` is accepted too). Keys of the
  config's ``model`` section, if any, must match the loaded model (a DIFFA-2 stage run on a DIFFA
  v1 model fails early, naming the fields); so must the ``lora`` section when the loaded model
  already carries LoRA, which the stage keeps (a model without LoRA gets the section's).
* Without it (curriculum stage 1): pretrained Whisper + LLaDA from ``init.whisper_dir`` /
  ``init.llada_dir`` and fresh adapters shaped by the ``model`` section (``taps`` default to the
  authors' taps for the Whisper size).

Then :func:`diffa.train.stages.prepare_stage` sets the layout, attaches LoRA when the stage
needs it and sets the trainable flags. Frozen weights take ``frozen_dtype``; the trainable ones
(adapters, prompts, LoRA) are kept in float32 for the optimizer.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Tuple

import torch

from diffa.files import read_json_object
from diffa.model.config import OFFICIAL_TAPS, DIFFAConfig
from diffa.model.diffa import DIFFA, holds_tokenizer, resolve_model_dir
from diffa.nnet.llada import READ_ERROR_REMEDY
from diffa.nnet.lora import LoRAConfig
from diffa.train.stages import TrainableSummary, prepare_stage

logger = logging.getLogger(__name__)


def require_model_dir(path: str) -> Path:
    """:func:`~diffa.model.diffa.resolve_model_dir` (``path``, or ``path/final`` in an experiment
    directory), and a ValueError when neither holds a DIFFA model.

    Example
    -------
    >>> require_model_dir("/nonexistent")
    Traceback (most recent call last):
     ...
    ValueError: no DIFFA model in /nonexistent (expected /nonexistent/config.json or /nonexistent/final/config.json): run the training stage that writes it first
    """
    found = resolve_model_dir(path)
    if (found / "config.json").is_file():
        return found
    raise ValueError(
        f"no DIFFA model in {path} (expected {path}/config.json or {path}/final/config.json): run the "
        "training stage that writes it first"
    )


def _fresh_config(section: Dict[str, Any], whisper_dir: str) -> DIFFAConfig:
    section = dict(section or {})
    if "taps" not in section:
        whisper = read_json_object(Path(whisper_dir) / "config.json", READ_ERROR_REMEDY)
        key = (whisper.get("encoder_layers"), whisper.get("d_model"))
        if key not in OFFICIAL_TAPS:
            raise ValueError(f"{whisper_dir}: no official acoustic taps for a Whisper with (layers, d_model) = {key}; set model.taps")
        section["taps"] = OFFICIAL_TAPS[key]
    return DIFFAConfig(encoder={}, llm={}, **section)


def _mismatches(section: str, wanted: Dict[str, Any], loaded: Dict[str, Any], path: Path) -> List[str]:
    """``"<section>.<key>: <config's> in the config, <model's> in <path>"`` for each key that differs.

    Example
    -------
    >>> _mismatches("lora", {"r": 4, "alpha": 16}, {"r": 8, "alpha": 16}, Path("exp/base/final"))
    ['lora.r: 4 in the config, 8 in exp/base/final']
    """
    return [f"{section}.{k}: {v!r} in the config, {loaded[k]!r} in {path}" for k, v in wanted.items() if loaded[k] != v]


def init_model(config: Dict[str, Any]) -> Tuple[DIFFA, TrainableSummary]:
    """Build or load the stage's starting model (see module docstring).

    Arguments
    ---------
    config : dict
        Training config (:mod:`diffa.train.hparams`); uses ``init_from``, ``init``, ``model``,
        ``lora``, ``stage`` and ``frozen_dtype``.

    Returns
    -------
    model : DIFFA
        On CPU, prepared for the stage.
    summary : TrainableSummary
        What trains.

    Example
    -------
    >>> import tempfile, torch
    >>> from diffa.model.diffa import DIFFA, tiny_config
    >>> d = tempfile.mkdtemp()
    >>> DIFFA(tiny_config(layout="stage1")).save_pretrained(d)
    >>> model, summary = init_model({"init_from": d, "stage": "sft", "frozen_dtype": "float32",
    ...                              "model": {"n_queries": 4}, "lora": {"r": 2, "alpha": 4, "dropout": 0.0,
    ...                              "targets": ["q_proj"]}, "init": {}})
    >>> model.config.layout, sorted(summary.counts)
    ('dual', ['acoustic', 'lora', 'semantic'])
    """
    dtype = getattr(torch, config["frozen_dtype"])
    section = config.get("model") or {}
    if config.get("init_from"):
        path = require_model_dir(config["init_from"])
        model = DIFFA.from_pretrained(path, dtype=dtype)
        differ = _mismatches("model", section, vars(model.config), path)
        if model.config.lora is not None:
            differ += _mismatches("lora", config["lora"], model.config.lora, path)
        if differ:
            raise ValueError(f"--init_from {path} does not match the config: {'; '.join(differ)}")
        logger.info("starting from %s", path)
    else:
        init = config.get("init") or {}
        missing = [k for k in ("whisper_dir", "llada_dir") if not init.get(k)]
        if missing:
            raise ValueError(
                f"stage {config['stage']!r} has no model to start from: pass --init_from (the previous stage's "
                f"model) or set init.whisper_dir and init.llada_dir (missing: {', '.join(missing)})"
            )
        for key in ("whisper_dir", "llada_dir"):
            if not os.path.isdir(init[key]):
                raise ValueError(f"init.{key} {init[key]} is not a directory")
        model = DIFFA.from_components(_fresh_config(section, init["whisper_dir"]), init["whisper_dir"], init["llada_dir"], dtype=dtype)
        logger.info("fresh adapters on %s + %s", init["whisper_dir"], init["llada_dir"])
    if config.get("tokenizer_dir") and holds_tokenizer(config["tokenizer_dir"]):
        model.set_tokenizer(config["tokenizer_dir"])  # saved with the model: its directory and export are self-contained
    for module in (model.semantic, model.acoustic, model.prompts):
        module.float()
    summary = prepare_stage(model, config["stage"], LoRAConfig.from_dict(config["lora"]))
    for name, param in model.named_parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
            logger.debug("%s kept in float32 for training", name)
    return model, summary
