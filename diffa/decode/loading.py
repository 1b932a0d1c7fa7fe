"""Load a DIFFA model directory and its tokenizer for decoding, naming whatever is missing.

The model directory is a DIFFA directory, or a training stage's experiment directory
(``exp/<stage>``) whose ``final/`` is one. The tokenizer is looked for in ``--tokenizer_dir`` when
given, else in ``<model>/tokenizer/``, else in ``<model>/llm/`` (an official LLaDA directory
carries ``tokenizer.json``), else in the ``tokenizer_dir`` of the training run that wrote the
model (``exp/<stage>/config.yaml`` beside ``final/``). Every missing piece is named in one
error, and a weights file or tokenizer that cannot be read (truncated, corrupt) is named, before
gigabytes of weights are read.

Example
-------
>>> import tempfile
>>> load_for_decoding(tempfile.mkdtemp())  # doctest: +ELLIPSIS
Traceback (most recent call last):
 ...
FileNotFoundError: ... is not a complete DIFFA model directory: missing config.json, adapters.safetensors, encoder/, llm/, a tokenizer (...)
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Optional, Tuple, Union

import torch

from diffa.files import open_safetensors, read_json_object
from diffa.model.diffa import DIFFA, check_frozen_links, holds_tokenizer, resolve_model_dir
from diffa.text.tokenizer import HF_TOKENIZER_NAME, SPM_MODEL_NAME, load_tokenizer

logger = logging.getLogger(__name__)
REMEDY = "copy, export or import the model again"  # what to do about an unreadable model file

PathLike = Union[str, os.PathLike]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "float64": torch.float64}
SAME = "same"  # --audio_dtype: the encoder and the adapters in the LLM's dtype
AUDIO_DTYPE = "float32"  # the authors' inference: encoder and adapters in float32, LLaDA in bfloat16


def _training_tokenizer(model_dir: Path) -> Optional[Path]:
    """The ``tokenizer_dir`` of the training run whose ``final/`` is ``model_dir``, if recorded."""
    config = model_dir.parent / "config.yaml"
    if model_dir.name != "final" or not config.is_file():
        return None
    import yaml

    try:
        value = (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("tokenizer_dir")
    except (yaml.YAMLError, AttributeError):
        logger.warning("%s: not a readable training config; its tokenizer_dir is not used", config)
        return None
    return Path(value) if isinstance(value, str) else None


def find_tokenizer(model_dir: PathLike, tokenizer_dir: Optional[PathLike] = None) -> Optional[Path]:
    """Where the tokenizer of a model directory is (module docstring), or None.

    Arguments
    ---------
    model_dir : path
        The DIFFA directory.
    tokenizer_dir : path, optional
        An explicit tokenizer directory (wins when given).

    Returns
    -------
    Path or None

    Example
    -------
    >>> import tempfile
    >>> find_tokenizer(tempfile.mkdtemp()) is None
    True
    """
    if tokenizer_dir is not None:
        return Path(tokenizer_dir) if holds_tokenizer(Path(tokenizer_dir)) else None
    model_dir = Path(model_dir)
    for folder in (model_dir / "tokenizer", model_dir / "llm", _training_tokenizer(model_dir)):
        if folder is not None and holds_tokenizer(folder):
            return folder
    return None


def resolve_device(device: Optional[str] = None, dtype: Optional[str] = None) -> Tuple[torch.device, torch.dtype]:
    """Device and dtype for decoding: CUDA with bfloat16 when available, else CPU with float32.

    Arguments
    ---------
    device : str, optional
        ``cuda``, ``cuda:1``, ``cpu``, ... (default: ``cuda`` if available).
    dtype : str, optional
        One of ``float32, bfloat16, float16, float64`` (default: bfloat16 on CUDA, else float32).

    Returns
    -------
    (torch.device, torch.dtype)

    Example
    -------
    >>> resolve_device("cpu")
    (device(type='cpu'), torch.float32)
    >>> resolve_device("cpu", "half")
    Traceback (most recent call last):
     ...
    ValueError: unknown dtype 'half'; use one of float32, bfloat16, float16, float64
    >>> resolve_device("gpu")
    Traceback (most recent call last):
     ...
    ValueError: --device 'gpu' is not a device; use cpu, cuda or cuda:N
    """
    try:
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError:
        raise ValueError(f"--device {device!r} is not a device; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if not count:
            raise ValueError(f"--device {device}: no CUDA device is usable here (torch.cuda.is_available() "
                             "is False); use --device cpu")
        if (dev.index or 0) >= count:
            raise ValueError(f"--device {device}: there are {count} CUDA devices, cuda:0 to cuda:{count - 1}")
    if dtype is None:
        return dev, torch.bfloat16 if dev.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return dev, DTYPES[dtype]


def resolve_audio_dtype(audio_dtype: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype of the encoder and the adapters: ``audio_dtype``, or the LLM's ``dtype`` for ``same``.

    Arguments
    ---------
    audio_dtype : str
        One of ``float32, bfloat16, float16, float64`` or ``same``.
    dtype : torch.dtype
        The LLM's dtype (:func:`resolve_device`).

    Returns
    -------
    torch.dtype

    Example
    -------
    >>> resolve_audio_dtype("float32", torch.bfloat16), resolve_audio_dtype("same", torch.bfloat16)
    (torch.float32, torch.bfloat16)
    """
    if audio_dtype == SAME:
        return dtype
    if audio_dtype not in DTYPES:
        raise ValueError(f"unknown audio dtype {audio_dtype!r}; use one of {', '.join(DTYPES)} or {SAME}")
    return DTYPES[audio_dtype]


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--tokenizer_dir``, ``--device``, ``--dtype`` and ``--audio_dtype`` (the arguments of
    :func:`load_for_decoding`).

    Example
    -------
    >>> p = argparse.ArgumentParser(); add_model_arguments(p)
    >>> vars(p.parse_args(["--dtype", "bfloat16"]))
    {'tokenizer_dir': None, 'device': None, 'dtype': 'bfloat16', 'audio_dtype': 'float32'}
    >>> p.parse_args(["--tokenizer", "tok"]).tokenizer_dir   # the older spelling
    'tok'
    """
    parser.add_argument("--tokenizer_dir", "--tokenizer", dest="tokenizer_dir",
                        help="tokenizer directory (default: beside the model, see diffa.decode.loading)")
    parser.add_argument("--device", help="cuda, cuda:N or cpu (default: cuda when available)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), help="LLM dtype (default: bfloat16 on cuda, float32 on cpu)")
    parser.add_argument("--audio_dtype", choices=sorted(DTYPES) + [SAME], default=AUDIO_DTYPE,
                        help="dtype of the Whisper encoder and the adapters; 'same' = --dtype. The default, "
                             "float32, is the authors' inference (their audio embeddings are cast to the "
                             "LLM's dtype where they are spliced in); for Whisper-large-v3 + DIFFA-2's "
                             "adapters (721M parameters) it takes 2.9 GB, 1.4 GB more than bfloat16 "
                             "(default: %(default)s)")


def check_model_dir(model_dir: PathLike, tokenizer_dir: Optional[PathLike] = None) -> Tuple[Path, Path]:
    """Check a model directory without loading it: every missing piece is named in one error, and
    a safetensors file that cannot be read (truncated, not safetensors) is named.

    Only the safetensors headers are read (the files of the directory, ``encoder/`` and
    ``llm/``), not the weights.

    Arguments
    ---------
    model_dir : path
        A directory written by :meth:`diffa.model.diffa.DIFFA.save_pretrained`, or an
        experiment directory holding one in ``final/``.
    tokenizer_dir : path, optional
        The tokenizer directory (default: module docstring).

    Returns
    -------
    (Path, Path)
        The DIFFA directory and the tokenizer directory.

    Example
    -------
    >>> import tempfile
    >>> check_model_dir(tempfile.mkdtemp() + "/nope")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
     ...
    FileNotFoundError: .../nope: no such model directory; ...
    """
    model_dir = resolve_model_dir(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"{model_dir}: no such model directory; train one (recipe stages 3-7) "
                                "or pass the directory of an exported / imported model")
    check_frozen_links(model_dir)
    missing = [name for name in ("config.json", "adapters.safetensors") if not (model_dir / name).is_file()]
    missing += [f"{name}/" for name in ("encoder", "llm") if not (model_dir / name).is_dir()]
    config_file = model_dir / "config.json"
    if config_file.is_file():
        lora = read_json_object(config_file, REMEDY).get("lora")
        if lora is not None and not (model_dir / "lora.safetensors").is_file():
            missing.append("lora.safetensors (config.json declares LoRA)")
    tokenizer_path = find_tokenizer(model_dir, tokenizer_dir)
    if tokenizer_path is None:
        where = (f"{tokenizer_dir}" if tokenizer_dir is not None else
                 f"{model_dir}/tokenizer/, {model_dir}/llm/ or the training config's tokenizer_dir")
        missing.append(f"a tokenizer ({HF_TOKENIZER_NAME} or {SPM_MODEL_NAME} in {where}; pass --tokenizer_dir DIR)")
    if missing:
        raise FileNotFoundError(f"{model_dir} is not a complete DIFFA model directory: missing {', '.join(missing)}")
    for weights in sorted(p for folder in (model_dir, model_dir / "encoder", model_dir / "llm")
                          for p in folder.glob("*.safetensors")):
        with open_safetensors(weights, REMEDY):
            pass
    return model_dir, tokenizer_path


def load_for_decoding(
    model_dir: PathLike,
    tokenizer_dir: Optional[PathLike] = None,
    device: Optional[str] = None,
    dtype: Optional[str] = None,
    audio_dtype: str = AUDIO_DTYPE,
):
    """Check (:func:`check_model_dir`) and load ``(model, tokenizer)`` in eval mode on ``device``.

    Arguments
    ---------
    model_dir, tokenizer_dir : path
        See :func:`check_model_dir`.
    device, dtype : str, optional
        See :func:`resolve_device`; ``dtype`` is the LLM's.
    audio_dtype : str
        The encoder's and the adapters' dtype (:func:`resolve_audio_dtype`); float32 by default,
        as in the authors' inference.

    Returns
    -------
    (DIFFA, tokenizer)

    Example
    -------
    >>> import os, tempfile
    >>> from diffa.model.diffa import DIFFA, tiny_config
    >>> from diffa.text.tokenizer import train_sentencepiece
    >>> tmp = tempfile.TemporaryDirectory()
    >>> _ = train_sentencepiece(["what is said"] * 4, os.path.join(tmp.name, "tok", "spm.model"), vocab_size=300)
    >>> model = DIFFA(tiny_config(vocab=300)); model.set_tokenizer(os.path.join(tmp.name, "tok"))
    >>> model.save_pretrained(os.path.join(tmp.name, "model"))   # copies the tokenizer to model/tokenizer/
    >>> model, tok = load_for_decoding(os.path.join(tmp.name, "model"), device="cpu")
    >>> type(model).__name__, model.training, model.llm.dtype, type(tok).__name__, tok.mask_id
    ('DIFFA', False, torch.float32, 'SentencePieceTokenizer', 3)
    >>> tmp.cleanup()
    """
    model_dir, tokenizer_path = check_model_dir(model_dir, tokenizer_dir)
    dev, dt = resolve_device(device, dtype)
    audio_dt = resolve_audio_dtype(audio_dtype, dt)
    tokenizer = load_tokenizer(tokenizer_path)  # a file it cannot parse is a ValueError naming it
    model = DIFFA.from_pretrained(model_dir, dtype=dt, device=dev, audio_dtype=audio_dt).eval()
    vocab = model.llm.config.vocab_size
    if tokenizer.mask_id >= vocab or tokenizer.eos_id >= vocab:
        raise ValueError(f"{tokenizer_path}: the tokenizer's mask/eos ids ({tokenizer.mask_id}, {tokenizer.eos_id}) "
                         f"are outside the model's vocabulary ({vocab}); pass the tokenizer the model was trained with")
    if not model.config.llm_padding_mask:
        logger.warning("%s: llm_padding_mask is false (the authors' behaviour): a batched row sees its "
                       "padding, so hypotheses depend on the batch; set it to true in config.json or "
                       "decode with batch_size 1 to reproduce single-example outputs", model_dir)
    logger.info("loaded %s (%s, LLM %s, audio side %s) and tokenizer %s", model_dir, dev, dt, audio_dt, tokenizer_path)
    return model, tokenizer
