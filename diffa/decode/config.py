"""Decoding settings: one YAML file (``conf/decode_*.yaml``), one command-line flag per key.

Keys: :data:`KEYS` says what each one means (it is also the help of its flag, in ``--help``);
:class:`DecodeConfig` holds the defaults.

With ``factor`` and ``threshold`` both null the quota rule decides how many tokens each step
commits (LLaDA's sampler); ``steps`` is then ignored by the other two rules. ``task_overrides`` lets one
file decode a set that mixes task types (ASR rows need longer answers than multiple-choice
rows); examples are batched per task type.

Example
-------
>>> cfg = DecodeConfig(gen_length=16, block_length=16, steps=16, factor=1.0,
...                    task_overrides={"asr": {"gen_length": 128, "block_length": 128, "steps": 128}})
>>> cfg.sampling("mcq")["factor"], cfg.sampling("asr")["gen_length"]
(1.0, 128)
>>> DecodeConfig(gen_length=12, block_length=5)
Traceback (most recent call last):
 ...
ValueError: decode config: gen_length (12) must be a positive multiple of block_length (5)
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence

from diffa.data.tasks import TASK_TYPES

KEYS = {
    "gen_length": "answer positions appended after the prompt",
    "block_length": "positions per block, divides gen_length",
    "steps": "total steps of LLaDA's quota rule, a multiple of the number of blocks",
    "remasking": "low_confidence or random (quota rule only)",
    "factor": "Fast-dLLM factor f > 0: factor-based parallel decoding (DIFFA-2: 1.0; none: off)",
    "threshold": "confidence threshold in [0, 1]: threshold decoding (none: off)",
    "temperature": "0 = argmax; > 0 = Gumbel-max sampling",
    "cfg_scale": "classifier-free guidance scale, 0 = off",
    "stop_at_eos": "a row stops once it has committed eos with nothing masked before it (true/false)",
    "batch_size": "examples per batch",
    "max_tokens": "optional cap on batch size x longest row (prompt + audio + answer)",
    "seed": "seed of the sampling noise and random remasking",
    "system_prompt": "system prompt; none = the template's default, the authors' at inference",
    "task_overrides": "per task type (asr, mcq, open_qa): any of the first eight keys, as YAML",
}
"""Every key of a decoding config and what it means."""

SAMPLING_KEYS = ("gen_length", "block_length", "steps", "remasking", "factor", "threshold",
                 "temperature", "cfg_scale")
"""The keys a task override may set: the arguments of :func:`diffa.diffusion.sampler.generate`."""

REMASKING = ("low_confidence", "random")


@dataclass
class DecodeConfig:
    """Settings of one decoding run (module docstring); invalid values raise ValueError.

    Arguments
    ---------
    gen_length, block_length, steps : int
        Answer length, block length and total quota steps.
    remasking : str
        ``"low_confidence"`` or ``"random"``.
    factor, threshold : float, optional
        Parallel-decoding rule (at most one).
    temperature, cfg_scale : float
        Sampling temperature and guidance scale.
    stop_at_eos : bool
        Pass the tokenizer's eos to the sampler for the early stop.
    batch_size : int
        Examples per batch.
    max_tokens : int, optional
        Cap on (examples x longest row) per batch.
    seed : int
        Seed of the sampler's randomness.
    system_prompt : str, optional
        System prompt (None: the template's).
    task_overrides : dict
        Task type -> {sampling key: value}.
    where : str
        Where the settings come from, for error messages (not a setting).

    Example
    -------
    >>> DecodeConfig(factor=1.0, threshold=0.9)
    Traceback (most recent call last):
     ...
    ValueError: decode config: give factor or threshold, not both
    """

    gen_length: int = 128
    block_length: int = 128
    steps: int = 128
    remasking: str = "low_confidence"
    factor: Optional[float] = None
    threshold: Optional[float] = None
    temperature: float = 0.0
    cfg_scale: float = 0.0
    stop_at_eos: bool = True
    batch_size: int = 16
    max_tokens: Optional[int] = None
    seed: int = 0
    system_prompt: Optional[str] = None
    task_overrides: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    where: str = field(default="decode config", compare=False, repr=False)

    def __post_init__(self) -> None:
        for key in ("batch_size", "seed"):
            _check_type(self.where, key, getattr(self, key), int)
        _check_type(self.where, "stop_at_eos", self.stop_at_eos, bool)
        if self.batch_size < 1:
            raise ValueError(f"{self.where}: batch_size must be >= 1, got {self.batch_size}")
        if self.max_tokens is not None:
            _check_type(self.where, "max_tokens", self.max_tokens, int)
            if self.max_tokens < 1:
                raise ValueError(f"{self.where}: max_tokens must be >= 1 or null, got {self.max_tokens}")
        if self.system_prompt is not None:
            _check_type(self.where, "system_prompt", self.system_prompt, str)
        if not isinstance(self.task_overrides, Mapping):
            raise ValueError(f"{self.where}: task_overrides must map task types to settings, got "
                             f"{type(self.task_overrides).__name__}")
        for task, keys in self.task_overrides.items():
            if keys is not None and not isinstance(keys, Mapping):
                raise ValueError(f"{self.where}: task_overrides.{task} must map settings to values, got {keys!r}")
        self.task_overrides = {task: dict(keys or {}) for task, keys in self.task_overrides.items()}
        for task, keys in self.task_overrides.items():
            if task not in TASK_TYPES:
                raise ValueError(f"{self.where}: task_overrides: unknown task type {task!r} "
                                 f"(valid: {', '.join(TASK_TYPES)})")
            unknown = sorted(set(keys) - set(SAMPLING_KEYS))
            if unknown:
                raise ValueError(f"{self.where}: task_overrides.{task}: unknown keys {unknown} "
                                 f"(valid: {', '.join(SAMPLING_KEYS)})")
        _check_sampling(self.where, self.sampling(None))
        for task in self.task_overrides:
            _check_sampling(f"{self.where}: task_overrides.{task}", self.sampling(task))

    def sampling(self, task: Optional[str]) -> Dict[str, Any]:
        """The sampler's settings for one task type (the overrides applied).

        Arguments
        ---------
        task : str or None
            Task type; None gives the file's top-level settings.

        Returns
        -------
        dict
            ``gen_length, block_length, steps, remasking, factor, threshold, temperature,
            cfg_scale``: keyword arguments of :func:`diffa.diffusion.sampler.generate`.

        Example
        -------
        >>> DecodeConfig(task_overrides={"asr": {"steps": 64}}).sampling("asr")["steps"]
        64
        """
        settings = {key: getattr(self, key) for key in SAMPLING_KEYS}
        settings.update(self.task_overrides.get(task, {}))
        return settings

    def to_dict(self) -> Dict[str, Any]:
        """The settings as plain JSON-able data (the keys of a config file).

        Example
        -------
        >>> DecodeConfig.from_dict(DecodeConfig(steps=64).to_dict()).steps
        64
        """
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "where"}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "decode config") -> "DecodeConfig":
        """Build from a mapping; unknown keys are errors naming ``where``.

        Arguments
        ---------
        values : mapping
            Config keys and values (missing keys take their defaults).
        where : str
            Source name for errors (e.g. the YAML file).

        Returns
        -------
        DecodeConfig

        Example
        -------
        >>> DecodeConfig.from_dict({"gen_lenght": 16}, where="conf/x.yaml")
        Traceback (most recent call last):
         ...
        ValueError: conf/x.yaml: unknown keys ['gen_lenght'] (valid: ...)
        """
        if not isinstance(values, Mapping):
            raise ValueError(f"{where}: expected a mapping of decode settings, got {type(values).__name__}")
        names = [f.name for f in dataclasses.fields(cls) if f.name != "where"]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown} (valid: {', '.join(names)})")
        return cls(**values, where=where)

    @classmethod
    def from_yaml(cls, path: str, overrides: Optional[Mapping[str, Any]] = None) -> "DecodeConfig":
        """Read a (HyperPyYAML) config file, then apply ``overrides`` (e.g. command-line flags).

        Arguments
        ---------
        path : str
            The YAML file.
        overrides : mapping, optional
            Keys replacing the file's values; ``task_overrides`` is merged task by task and key by
            key (``{mcq: {steps: 8}}`` keeps the file's ASR settings; ``{asr: null}`` drops
            them). Errors then name the command line too.

        Returns
        -------
        DecodeConfig

        Example
        -------
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "decode.yaml")
        >>> _ = open(path, "w").write("gen_length: 16\\nblock_length: 16\\nsteps: 16\\nfactor: 1.0\\n")
        >>> cfg = DecodeConfig.from_yaml(path, {"factor": None, "steps": 8})
        >>> cfg.factor, cfg.steps
        (None, 8)
        >>> _ = open(path, "a").write("task_overrides: {asr: {gen_length: 64, block_length: 64, steps: 64}}\\n")
        >>> DecodeConfig.from_yaml(path, {"task_overrides": {"mcq": {"steps": 8}}}).task_overrides
        {'asr': {'gen_length': 64, 'block_length': 64, 'steps': 64}, 'mcq': {'steps': 8}}
        """
        from hyperpyyaml import load_hyperpyyaml

        try:
            with open(path, encoding="utf-8") as f:
                values = load_hyperpyyaml(f) or {}
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such decode config; a recipe's are its conf/decode*.yaml") from None
        if not isinstance(values, Mapping):
            raise ValueError(f"{path}: expected a mapping of decode settings")
        merged = {**values, **(overrides or {})}
        file_tasks, flag_tasks = values.get("task_overrides"), (overrides or {}).get("task_overrides")
        if isinstance(file_tasks, Mapping) and isinstance(flag_tasks, Mapping):
            merged["task_overrides"] = tasks = dict(file_tasks)
            for task, keys in flag_tasks.items():
                if keys is None:  # {asr: null}: the file's settings for asr are dropped
                    tasks.pop(task, None)
                elif isinstance(keys, Mapping) and isinstance(tasks.get(task), Mapping):
                    tasks[task] = {**tasks[task], **keys}
                else:
                    tasks[task] = keys  # checked by DecodeConfig
        return cls.from_dict(merged, where=f"{path} and the command line" if overrides else path)


def _check_type(where: str, key: str, value: Any, kind: type) -> None:
    """Raise ValueError unless ``value`` is a ``kind`` (bool is not an int here)."""
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ValueError(f"{where}: {key} must be a {kind.__name__}, got {value!r}")


def _check_sampling(where: str, s: Mapping[str, Any]) -> None:
    """Raise ValueError for sampler settings :func:`~diffa.diffusion.sampler.generate` refuses."""
    for key in ("gen_length", "block_length", "steps"):
        _check_type(where, key, s[key], int)
    for key in ("temperature", "cfg_scale", "factor", "threshold"):
        if s[key] is not None and (isinstance(s[key], bool) or not isinstance(s[key], (int, float))):
            raise ValueError(f"{where}: {key} must be a number, got {s[key]!r}")
    gen, block, steps = s["gen_length"], s["block_length"], s["steps"]
    if block <= 0 or gen <= 0 or gen % block:
        raise ValueError(f"{where}: gen_length ({gen}) must be a positive multiple of block_length ({block})")
    adaptive = s["factor"] is not None or s["threshold"] is not None
    if not adaptive and (steps <= 0 or steps % (gen // block)):
        raise ValueError(f"{where}: steps ({steps}) must be a positive multiple of the number of "
                         f"blocks ({gen // block})")
    if s["remasking"] not in REMASKING:
        raise ValueError(f"{where}: remasking must be one of {REMASKING}, got {s['remasking']!r}")
    if s["factor"] is not None and s["threshold"] is not None:
        raise ValueError(f"{where}: give factor or threshold, not both")
    if adaptive and s["remasking"] != "low_confidence":
        raise ValueError(f"{where}: factor/threshold decoding needs remasking: low_confidence")
    if s["factor"] is not None and s["factor"] <= 0:
        raise ValueError(f"{where}: factor must be > 0, got {s['factor']}")
    if s["threshold"] is not None and not 0 <= s["threshold"] <= 1:
        raise ValueError(f"{where}: threshold must be in [0, 1], got {s['threshold']}")
    if s["temperature"] < 0 or s["cfg_scale"] < 0:
        raise ValueError(f"{where}: temperature and cfg_scale must be >= 0")


def _optional_float(text: str) -> Optional[float]:
    return None if text.lower() in ("none", "null") else float(text)


def _optional_int(text: str) -> Optional[int]:
    return None if text.lower() in ("none", "null") else int(text)


# argparse names the type in its error ("invalid <name> value: 'x'")
_optional_float.__name__, _optional_int.__name__ = "number (or none)", "integer (or none)"


def _optional_str(text: str) -> Optional[str]:
    return None if text.lower() in ("none", "null") else text


def _bool(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return text.lower() == "true"


def _mapping(text: str) -> Dict[str, Any]:
    import yaml

    value = yaml.safe_load(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a YAML mapping such as '{{asr: {{gen_length: 128}}}}', got {text!r}")
    return value


_FLAG_TYPES = {"gen_length": int, "block_length": int, "steps": int, "remasking": str,
               "factor": _optional_float, "threshold": _optional_float, "temperature": float,
               "cfg_scale": float, "stop_at_eos": _bool, "batch_size": int, "max_tokens": _optional_int,
               "seed": int, "system_prompt": _optional_str, "task_overrides": _mapping}


def add_config_arguments(parser: argparse.ArgumentParser, keys: Sequence[str] = tuple(KEYS)) -> None:
    """Add one ``--<key>`` flag per config key (default: the config file's value).

    ``none`` clears an optional key (``--factor none`` switches factor decoding off);
    ``--task_overrides`` takes YAML, e.g. ``'{asr: {gen_length: 128}}'``.

    Arguments
    ---------
    parser : argparse.ArgumentParser
        Gets an argument group "decode settings".
    keys : sequence of str
        The keys that get a flag (default: all; a program that has no batches leaves out
        ``batch_size`` and ``max_tokens``).

    Example
    -------
    >>> p = argparse.ArgumentParser(); add_config_arguments(p)
    >>> config_overrides(p.parse_args(["--factor", "none", "--steps", "32"]))
    {'steps': 32, 'factor': None}
    """
    group = parser.add_argument_group("decode settings (override the config file; see diffa.decode.config)")
    for f in dataclasses.fields(DecodeConfig):
        if f.name in keys:
            default = ("{}" if f.default is dataclasses.MISSING else "none" if f.default is None
                       else str(f.default).lower() if isinstance(f.default, bool) else f.default)
            group.add_argument(f"--{f.name}", type=_FLAG_TYPES[f.name], default=argparse.SUPPRESS,
                               metavar=f.name.upper(), help=f"{KEYS[f.name]} (default: {default})")


def add_config_file_argument(parser: argparse.ArgumentParser) -> None:
    """Add the decoding config file, given either way: ``CONFIG`` or ``--config CONFIG``
    (:func:`config_file` reads it back).

    Example
    -------
    >>> p = argparse.ArgumentParser(); add_config_file_argument(p)
    >>> config_file(p.parse_args(["a.yaml"])), config_file(p.parse_args(["--config", "a.yaml"]))
    ('a.yaml', 'a.yaml')
    >>> config_file(p.parse_args(["a.yaml", "--config", "b.yaml"]))
    Traceback (most recent call last):
     ...
    ValueError: command line: two decoding configs, a.yaml and --config b.yaml; give one
    """
    parser.add_argument("config", nargs="?", help="decoding config (YAML; default: the built-in defaults)")
    parser.add_argument("--config", dest="config_flag", metavar="CONFIG", help="the same, as an option")


def config_file(args: argparse.Namespace) -> Optional[str]:
    """The config file given to a parser that has :func:`add_config_file_argument` (None: none).

    Example
    -------
    >>> p = argparse.ArgumentParser(); add_config_file_argument(p)
    >>> config_file(p.parse_args([])) is None   # no file: the built-in defaults
    True
    """
    if args.config and args.config_flag:
        raise ValueError(f"command line: two decoding configs, {args.config} and --config {args.config_flag}; give one")
    return args.config or args.config_flag


def config_overrides(args: argparse.Namespace) -> Dict[str, Any]:
    """The config keys given on the command line (flags added by :func:`add_config_arguments`).

    Example
    -------
    >>> p = argparse.ArgumentParser(); add_config_arguments(p)
    >>> config_overrides(p.parse_args([]))   # no flags: the file's values stand
    {}
    >>> config_overrides(p.parse_args(["--task_overrides", "{asr: {steps: 64}}", "--stop_at_eos", "false"]))
    {'stop_at_eos': False, 'task_overrides': {'asr': {'steps': 64}}}
    """
    return {key: getattr(args, key) for key in _FLAG_TYPES if hasattr(args, key)}


def config_from_args(args: argparse.Namespace, path: Optional[str]) -> DecodeConfig:
    """The config file ``path`` (or the defaults when None) with the command line's flags applied.

    Arguments
    ---------
    args : argparse.Namespace
        Parsed arguments of a parser given :func:`add_config_arguments`.
    path : str, optional
        The YAML config file.

    Returns
    -------
    DecodeConfig

    Example
    -------
    >>> p = argparse.ArgumentParser(); add_config_arguments(p)
    >>> config_from_args(p.parse_args(["--steps", "64"]), None).steps
    64
    """
    overrides = config_overrides(args)
    return DecodeConfig.from_yaml(path, overrides) if path else DecodeConfig.from_dict(overrides, where="command line")
