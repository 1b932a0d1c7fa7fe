"""The training configuration: its keys, defaults, loading (HyperPyYAML) and overrides.

A recipe's ``conf/<stage>.yaml`` sets any of the keys below; the rest keep their defaults.
Command-line overrides use dotted paths (``--lr 1e-4``, ``--batching.max_tokens 4000``,
``--model.taps [3,7]``); values are read as YAML, and a mapping updates its section like the file's
(``--batching '{max_tokens: 4000}'``). A key that is not in the schema — in the file or on the
command line, at any depth — is an error that lists the valid keys; a value of the wrong type
(``--lr abc``) is an error naming the key and the type it must have. Overrides of keys written in
the file are applied before ``!ref`` references are resolved, so references follow them.

Keys (default in brackets):

*What and where* — ``stage`` (required): ``semantic`` | ``acoustic`` | ``sft`` | ``vrpo``
(:mod:`diffa.train.stages`); ``output_folder``: the experiment directory ``exp/<stage>``;
``train_data``: comma-separated dump directories (``feats.scp`` + ``tasks.jsonl``);
``valid_data`` [null]: one dump directory scored for validation loss; ``init_from`` [null]: the
DIFFA directory to start from (or an experiment directory holding ``final/``) — these four
usually come from the command line (``--output_folder`` ...).

*Model* — ``init.whisper_dir`` / ``init.llada_dir`` [null]: official Whisper and LLaDA
directories of a model built from scratch (stage 1, no ``init_from``); ``tokenizer_dir``
(required): ``tokenizer.json`` or ``spm.model`` directory; ``model`` [null]:
:class:`~diffa.model.config.DIFFAConfig` fields of a fresh model (``taps``, ``n_prompts``,
``n_queries``, ``qformer_*``, ``pad_to_30s``, ``*_padding_mask``), checked against the loaded
model with ``init_from``; ``lora.{r, alpha, dropout, targets}`` [8, 16, 0.05, q/k/v/ff_proj/
up_proj]: the LoRA a LoRA stage attaches; ``frozen_dtype`` [float32]: dtype of the frozen
encoder and LLM (other than float32 needs ``precision`` bf16 or fp16; trainable weights stay
float32).

*Data* — ``seed`` [1234]: initialisation, data order and diffusion noise; ``system_prompt``
[null: the template's]; ``max_answer_tokens`` [null]: truncate longer answers; ``replay_sets``
[[]]: basenames of ``train_data`` directories that are replay data, ``replay_ratio`` [0]: the
fraction of each epoch's examples drawn from them; ``batching.max_tokens`` [null]: padded LLM
positions (audio + text) per batch; ``batching.max_batch_size`` [8]; ``batching.num_buckets``
[10]; ``batching.shuffle`` [true]; ``num_workers`` [0].

*Optimisation* — ``number_of_epochs`` [1]; AdamW ``lr`` [1e-4], ``weight_decay`` [0],
``betas`` [[0.9, 0.999]], ``adam_eps`` [1e-8]; ``warmup_steps`` [0], ``lr_decay`` [cosine |
constant], ``min_lr_ratio`` [0] (:mod:`diffa.train.schedule`); ``grad_accumulation_factor``
[1]; ``max_grad_norm`` [1.0]; ``precision`` [fp32 | bf16 | fp16]: autocast;
``loss_normalization`` [batch (DIFFA) | row (LLaDA)]; ``t_eps`` [1e-3]: smallest diffusion time;
``nonfinite_patience`` [3]: non-finite losses in a row that are skipped (one more aborts);
``optimizer_step_limit`` [null]: stop after this many optimizer steps.

*Checkpoints and logs* — ``ckpt_interval_steps`` [0: end of epoch only]: checkpoint every N
optimizer steps, or ``ckpt_interval_minutes`` [0] every N minutes; ``keep_checkpoints`` [3]:
the newest kept; ``avg`` [1]: the final model averages the newest N; ``log_interval`` [10]:
optimizer steps between ``train_log.txt`` lines.

*VRPO only* — ``ref_model``, ``pairs`` [null]; ``vrpo.{beta, n_draws, valid_n_draws, stratified_draws,
coupled_draws}`` [0.2, 4, 8, false, false] (:mod:`diffa.train.vrpo`).

Example
-------
>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "c.yaml")
>>> _ = open(path, "w").write("stage: sft\\ntokenizer_dir: tok\\nlr: 1.0e-3\\nbatching:\\n  max_tokens: 800\\n")
>>> cfg = load_config(path, parse_overrides(["--lr", "5e-5", "--batching.num_buckets=4"]))
>>> cfg["lr"], cfg["batching"], cfg["avg"]
(5e-05, {'max_tokens': 800, 'max_batch_size': 8, 'num_buckets': 4, 'shuffle': True}, 1)
>>> load_config(path, parse_overrides(["--batching.max_token", "9"]))
Traceback (most recent call last):
 ...
ValueError: unknown config key 'batching.max_token' (command line); valid keys under 'batching': max_tokens, max_batch_size, num_buckets, shuffle
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Dict, List, Sequence

import yaml
from hyperpyyaml import load_hyperpyyaml

from diffa.diffusion.loss import NORMALIZATIONS
from diffa.model.config import DIFFAConfig
from diffa.nnet.lora import LoRAConfig
from diffa.train.stages import STAGES
from diffa.train.vrpo import VRPO_DEFAULTS

REQUIRED = object()
# DIFFAConfig fields a config may set for a fresh model (the rest come from the checkpoints), with
# their defaults (``taps`` has none).
MODEL_FIELDS = {
    f.name: f.default for f in dataclasses.fields(DIFFAConfig) if f.name not in ("encoder", "llm", "lora", "layout", "model_type")
}
OPEN_SECTIONS = {"model": MODEL_FIELDS}  # sections whose default is null

SCHEMA: Dict[str, Any] = {
    "stage": REQUIRED,
    "output_folder": None,
    "train_data": None,
    "valid_data": None,
    "init_from": None,
    "init": {"whisper_dir": None, "llada_dir": None},
    "tokenizer_dir": REQUIRED,
    "model": None,
    "lora": LoRAConfig().to_dict(),
    "frozen_dtype": "float32",
    "seed": 1234,
    "system_prompt": None,
    "max_answer_tokens": None,
    "replay_sets": [],
    "replay_ratio": 0.0,
    "batching": {"max_tokens": None, "max_batch_size": 8, "num_buckets": 10, "shuffle": True},
    "num_workers": 0,
    "number_of_epochs": 1,
    "lr": 1.0e-4,
    "weight_decay": 0.0,
    "betas": [0.9, 0.999],
    "adam_eps": 1.0e-8,
    "warmup_steps": 0,
    "lr_decay": "cosine",
    "min_lr_ratio": 0.0,
    "grad_accumulation_factor": 1,
    "max_grad_norm": 1.0,
    "precision": "fp32",
    "loss_normalization": "batch",
    "t_eps": 1.0e-3,
    "nonfinite_patience": 3,
    "ckpt_interval_steps": 0,
    "ckpt_interval_minutes": 0,
    "keep_checkpoints": 3,
    "avg": 1,
    "log_interval": 10,
    "optimizer_step_limit": None,
    "ref_model": None,
    "pairs": None,
    "vrpo": dict(VRPO_DEFAULTS),
}
# What a key holds where its default does not show it (null, a list, or an int where any number does).
KINDS = {
    "stage": "a string", "output_folder": "a string", "train_data": "a string", "valid_data": "a string",
    "init_from": "a string", "init.whisper_dir": "a string", "init.llada_dir": "a string",
    "tokenizer_dir": "a string", "model": "a mapping", "model.taps": "a list of integers",
    "lora.alpha": "a number", "lora.targets": "a list of strings", "system_prompt": "a string",
    "max_answer_tokens": "an integer", "replay_sets": "a list of strings", "batching.max_tokens": "an integer",
    "betas": "a list of numbers", "ckpt_interval_minutes": "a number", "optimizer_step_limit": "an integer",
    "ref_model": "a string", "pairs": "a string",
}
NULLABLE = ("batching.max_batch_size",)  # null allowed besides the keys whose default is null
KIND_OF_DEFAULT = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping"}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


IS_KIND = {
    "true or false": lambda v: isinstance(v, bool),
    "an integer": _is_int,
    "a number": _is_number,
    "a string": lambda v: isinstance(v, str),
    "a mapping": lambda v: isinstance(v, dict),
    "a list of integers": lambda v: isinstance(v, list) and all(map(_is_int, v)),
    "a list of numbers": lambda v: isinstance(v, list) and all(map(_is_number, v)),
    "a list of strings": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
}
DTYPES = ("float32", "bfloat16", "float16")
PRECISIONS = ("fp32", "bf16", "fp16")


def parse_overrides(args: Sequence[str]) -> Dict[str, Any]:
    """``["--a.b", "3", "--c=x"]`` -> ``{"a.b": 3, "c": "x"}`` (values read as YAML).

    Example
    -------
    >>> parse_overrides(["--lr", "1e-3", "--model.taps=[1, 2]", "--system_prompt", "Hi there"])
    {'lr': 0.001, 'model.taps': [1, 2], 'system_prompt': 'Hi there'}
    >>> parse_overrides(["lr", "1"])
    Traceback (most recent call last):
     ...
    ValueError: unexpected argument 'lr': overrides look like --key value or --key=value
    """
    out: Dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise ValueError(f"unexpected argument {arg!r}: overrides look like --key value or --key=value")
        if "=" in arg:
            key, text = arg[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(args):
                raise ValueError(f"override {arg} has no value")
            key, text = arg[2:], args[i + 1]
            i += 2
        out[key] = _yaml_value(text)
    return out


def _yaml_value(text: str) -> Any:
    # YAML 1.1 reads "1e-3" as a string; a float is what anyone typing it means.
    value = yaml.safe_load(text) if text.strip() else ""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _valid_keys(path: List[str]) -> List[str]:
    """Valid child keys of a schema path."""
    node: Any = SCHEMA
    for part in path:
        if part in OPEN_SECTIONS and node is SCHEMA:
            return list(OPEN_SECTIONS[part])
        node = node[part]
    return list(node) if isinstance(node, dict) else []


def check_key(dotted: str, where: str) -> None:
    """Raise ValueError unless ``dotted`` is a schema key (the message lists the valid ones).

    Example
    -------
    >>> check_key("lora.r", "here")
    >>> check_key("lora.rank", "here")
    Traceback (most recent call last):
     ...
    ValueError: unknown config key 'lora.rank' (here); valid keys under 'lora': r, alpha, dropout, targets
    """
    parts = dotted.split(".")
    for depth in range(len(parts)):
        valid = _valid_keys(parts[:depth])
        if parts[depth] not in valid:
            scope = f"under '{'.'.join(parts[:depth])}'" if depth else "at the top level"
            raise ValueError(f"unknown config key '{dotted}' ({where}); valid keys {scope}: {', '.join(valid)}")
        if depth + 1 < len(parts) and not _valid_keys(parts[: depth + 1]):
            raise ValueError(f"config key '{'.'.join(parts[: depth + 1])}' has no sub-keys ({where}): '{dotted}'")


def _check_tree(tree: dict, where: str, prefix: str = "") -> None:
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        check_key(dotted, where)
        if isinstance(value, dict) and _valid_keys(dotted.split(".")):
            _check_tree(value, where, prefix=f"{dotted}.")


def _set(tree: dict, dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        if not isinstance(tree.get(part), dict):
            tree[part] = {}
        tree = tree[part]
    tree[leaf] = value


def _merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(path: str, overrides: Dict[str, Any] = None) -> Dict[str, Any]:
    """Defaults <- the YAML file ``path`` <- ``overrides`` (dotted keys), validated.

    Arguments
    ---------
    path : str
        HyperPyYAML file.
    overrides : dict, optional
        ``{"dotted.key": value}`` (see :func:`parse_overrides`).

    Returns
    -------
    dict
        Every schema key, nested like the schema.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "c.yaml")
    >>> _ = open(path, "w").write("stage: acoustic\\ntokenizer_dir: tok\\nreplay_sets: [asr]\\n")
    >>> load_config(path, {"replay_ratio": 0.05})["replay_ratio"]
    0.05
    """
    overrides = dict(overrides or {})
    _check_tree(overrides, "command line")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as err:
        raise ValueError(f"cannot read config {path}: {err.strerror}") from None
    plain = load_hyperpyyaml(text) or {}
    if not isinstance(plain, dict):
        raise ValueError(f"{path}: a config is a mapping of keys, got {type(plain).__name__}")
    _check_tree(plain, path)
    # Overrides of keys the file writes go through HyperPyYAML (so !ref follows them).
    in_file, after = {}, {}
    for key, value in overrides.items():
        parts = key.split(".")
        node, inside = plain, True
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
            inside = inside and isinstance(node, dict)
        (in_file if inside and parts[0] in plain else after)[key] = value
    nested, rest = {}, {}
    for key, value in in_file.items():
        _set(nested, key, value)
    for key, value in after.items():
        _set(rest, key, value)
    loaded = load_hyperpyyaml(text, nested) if nested else plain
    # A mapping updates its section, as HyperPyYAML does with the file's.
    config = _merge(_merge({k: v for k, v in SCHEMA.items() if v is not REQUIRED}, loaded), rest)
    missing = [k for k, v in SCHEMA.items() if v is REQUIRED and config.get(k) is None]
    if missing:
        raise ValueError(f"{path}: missing required key(s) {missing}")
    validate(config, path)
    return config


def _check_kinds(tree: dict, defaults: dict, where: str, prefix: str = "") -> None:
    """Raise ValueError naming the first key of ``tree`` whose value is not of its kind (:data:`KINDS`)."""
    for key, value in tree.items():
        dotted, default = f"{prefix}{key}", defaults[key]
        kind = KINDS.get(dotted) or KIND_OF_DEFAULT[type(default)]
        nullable = default is None or dotted in NULLABLE
        if value is None and nullable:
            continue
        if not IS_KIND[kind](value):
            raise ValueError(f"{where}: {dotted} must be {kind}{' or null' if nullable else ''}, got {value!r}")
        if isinstance(value, dict):
            _check_kinds(value, default or OPEN_SECTIONS[dotted], where, prefix=f"{dotted}.")


def validate(config: Dict[str, Any], where: str) -> None:
    """Check value types, then values (choices and ranges); errors name ``where`` and the key.

    Example
    -------
    >>> config = {k: v for k, v in SCHEMA.items() if v is not REQUIRED}
    >>> validate({**config, "stage": "sft", "loss_normalization": "token"}, "c.yaml")
    Traceback (most recent call last):
     ...
    ValueError: c.yaml: loss_normalization must be one of ['batch', 'row'], got 'token'
    >>> validate({**config, "stage": "sft", "lr": "abc"}, "c.yaml")
    Traceback (most recent call last):
     ...
    ValueError: c.yaml: lr must be a number, got 'abc'
    """
    _check_kinds(config, SCHEMA, where)

    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise ValueError(f"{where}: {key} {what}, got {_get(config, key)!r}")

    need(config["stage"] in STAGES, "stage", f"must be one of {list(STAGES)}")
    need(config["frozen_dtype"] in DTYPES, "frozen_dtype", f"must be one of {list(DTYPES)}")
    need(config["precision"] in PRECISIONS, "precision", f"must be one of {list(PRECISIONS)}")
    need(config["loss_normalization"] in NORMALIZATIONS, "loss_normalization", f"must be one of {list(NORMALIZATIONS)}")
    need(config["lr_decay"] in ("cosine", "constant"), "lr_decay", "must be 'cosine' or 'constant'")
    need(0.0 <= config["replay_ratio"] < 1.0, "replay_ratio", "must be in [0, 1)")
    need(isinstance(config["replay_sets"], list), "replay_sets", "must be a list of set names")
    need(not config["replay_ratio"] or bool(config["replay_sets"]), "replay_ratio", "> 0 needs replay_sets")
    need(bool(config["replay_ratio"]) or not config["replay_sets"], "replay_sets", "are never used with replay_ratio 0")
    for key in ("number_of_epochs", "grad_accumulation_factor", "keep_checkpoints", "avg", "log_interval", "batching.num_buckets"):
        need(isinstance(_get(config, key), int) and _get(config, key) >= 1, key, "must be an integer >= 1")
    for key in ("warmup_steps", "nonfinite_patience", "ckpt_interval_steps", "num_workers"):
        need(isinstance(_get(config, key), int) and _get(config, key) >= 0, key, "must be an integer >= 0")
    need(config["avg"] <= config["keep_checkpoints"], "avg", f"cannot exceed keep_checkpoints={config['keep_checkpoints']}")
    need(not (config["ckpt_interval_steps"] and config["ckpt_interval_minutes"]), "ckpt_interval_minutes", "is exclusive with ckpt_interval_steps")
    need(config["lr"] > 0 and config["max_grad_norm"] > 0, "lr", "and max_grad_norm must be > 0")
    need(0.0 <= config["t_eps"] < 1.0, "t_eps", "must be in [0, 1)")
    batching = config["batching"]
    need(bool(batching["max_tokens"] or batching["max_batch_size"]), "batching", "needs max_tokens or max_batch_size")
    need(config["frozen_dtype"] == "float32" or config["precision"] != "fp32", "frozen_dtype",
         "other than float32 needs precision bf16 or fp16 (autocast)")


def _get(config: Dict[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in dotted.split("."):
        node = node[part]
    return node
