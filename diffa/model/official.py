"""Import the authors' released DIFFA / DIFFA-2 checkpoints into a DIFFA directory.

The authors' checkpoint directory holds ``config.json`` (with ``whisper_config`` and ``llm_config``
dicts) and ``pytorch_model.bin`` (or ``model.safetensors``, or either sharded: HF's
``pytorch_model.bin.index.json`` / ``model.safetensors.index.json`` beside the shards it lists)
with ``semantic_connector.*``, ``acoustic_connector.*``,
``trainable_prompts.weight`` and, for LoRA-tuned DIFFA-2 stages, peft-wrapped
``llm_model.base_model.model.model.transformer.blocks.{i}.{q,k,v,ff,up}_proj.lora_{A,B}[.default].weight``
(or, saved by peft beside it, ``adapter_config.json`` + ``adapter_model.safetensors`` or
``adapter_model.bin`` with the same keys less ``llm_model.``; LoRA alpha is then read from
``adapter_config.json``).
Whisper and LLaDA weights come from their own official directories; frozen Whisper
(``whisper_model.*``) or LLaDA (``llm_model.*``) tensors the checkpoint holds with other values
(e.g. LoRA merged in) replace the official ones. Tensors are read with
``torch.load(weights_only=True)``, so a checkpoint cannot run code.

The imported model reproduces the authors' behaviour: Whisper input padded to 30 s, no padding mask
in the LLM, a Q-Former that attends to every frame (``DIFFAConfig`` switches, see
:mod:`diffa.model.config`); flip them in ``config.json`` for the faster, masked behaviour.

Example (command line)::

    python -m diffa.bin.import_official --src DIFFA-2-ckpt --whisper whisper-large-v3 \\
        --llada LLaDA-8B-Instruct --out_dir exp/diffa2_official
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import torch

from diffa.files import load_safetensors, read_json_object, read_shards
from diffa.model.config import OFFICIAL_TAPS, DIFFAConfig
from diffa.model.diffa import ADAPTER_PREFIXES, DIFFA
from diffa.nnet.adapters import AcousticAdapter, SemanticAdapter
from diffa.nnet.lora import LLADA_LORA_TARGETS, LoRAConfig, load_lora_state_dict

logger = logging.getLogger(__name__)
# what to do about a file of the authors' checkpoint that cannot be read
REDOWNLOAD = "download the authors' checkpoint again"

_LORA = re.compile(
    r"llm_model\.(?:base_model\.model\.)?(?:model\.)?transformer\.blocks\.(\d+)\.(\w+)\.lora_([AB])(?:\.default)?\.weight"
)


def _one_of(src: Path, names: Tuple[str, ...]) -> Optional[Path]:
    """The one file of ``names`` in ``src``, or None; two of them are an error (which to import?)."""
    found = [src / name for name in names if (src / name).exists()]
    if len(found) > 1:
        raise ValueError(f"{src}: both {found[0].name} and {found[1].name}: keep the one of the checkpoint to import")
    return found[0] if found else None


def _read_tensors(path: Path) -> Dict[str, torch.Tensor]:
    """The tensors of a safetensors file or of a torch pickle (read with ``weights_only=True``)."""
    if path.suffix == ".safetensors":
        return load_safetensors(path, REDOWNLOAD)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle with code, truncated file, ...
        raise ValueError(f"{path}: cannot be read as plain tensors (weights_only=True): {err}") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        what = f"a dict with keys {list(state)[:3]}" if isinstance(state, dict) else f"a {type(state).__name__}"
        raise ValueError(
            f"{path}: not a flat state dict of tensors ({what}): pass the authors' checkpoint "
            f"directory, whose {path.name} maps weight names to tensors"
        )
    return state


# where an authors' checkpoint keeps its tensors: one file, or HF's index (``weight_map``: key ->
# shard file) of the shards beside it
CHECKPOINT_FILES = ("pytorch_model.bin", "model.safetensors", "pytorch_model.bin.index.json", "model.safetensors.index.json")


def _read_checkpoint(src: Path) -> Dict[str, torch.Tensor]:
    """Tensors of the authors' checkpoint in ``src`` (one of :data:`CHECKPOINT_FILES`); each
    shard of an index is read once and must hold exactly the keys the index maps to it."""
    path = _one_of(src, CHECKPOINT_FILES)
    if path is None:
        raise FileNotFoundError(
            f"{src}: no {', '.join(CHECKPOINT_FILES[:-1])} or {CHECKPOINT_FILES[-1]} (an authors' DIFFA checkpoint has one)"
        )
    if not path.name.endswith(".index.json"):
        return _read_tensors(path)
    state: Dict[str, torch.Tensor] = {}
    for shard, keys in read_shards(path, REDOWNLOAD).items():
        tensors = _read_tensors(shard)
        lacking, unlisted = keys - set(tensors), set(tensors) - keys
        if lacking:
            raise ValueError(f"{shard}: lacks '{min(lacking)}', which {path} maps to it ({len(lacking)} in all): {REDOWNLOAD}")
        if unlisted:
            raise ValueError(f"{shard}: holds '{min(unlisted)}', which {path} does not map to it ({len(unlisted)} in all): {REDOWNLOAD}")
        state.update(tensors)
    return state


# where peft saves a LoRA adapter's weights: safetensors, or a torch pickle (older peft, or
# save_pretrained(safe_serialization=False))
PEFT_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def _add_peft_adapter(src: Path, state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], Optional[dict]]:
    """``state`` with peft's LoRA beside the checkpoint (``adapter_config.json`` + one of
    :data:`PEFT_WEIGHTS`) added, its keys prefixed ``llm_model.`` as in ``pytorch_model.bin``, and
    the adapter's config; ``(state, None)`` when there is none. A key in both is an error."""
    cfg_path = src / "adapter_config.json"
    weights = _one_of(src, PEFT_WEIGHTS)
    if not cfg_path.exists():
        if weights is not None:  # its LoRA would be dropped without a word
            raise FileNotFoundError(f"{weights}: no adapter_config.json beside it (peft saves both): {REDOWNLOAD}")
        return state, None
    if weights is None:
        raise FileNotFoundError(f"{cfg_path}: no {' or '.join(PEFT_WEIGHTS)} beside it (peft saves both): {REDOWNLOAD}")
    config = read_json_object(cfg_path, REDOWNLOAD)
    for name in ("use_rslora", "use_dora", "rank_pattern", "alpha_pattern"):  # other update rules or scalings
        if config.get(name):
            raise ValueError(f"{cfg_path}: {name} {config[name]!r} is not supported: the importer builds plain LoRA (alpha / r)")
    adapter = {f"llm_model.{k}": v for k, v in _read_tensors(weights).items()}
    twice = sorted(set(state) & set(adapter))
    if twice:
        raise ValueError(f"{src}: {twice[0]} is both in the checkpoint and in {weights.name}: keep one")
    return {**state, **adapter}, config


# config fields that must agree between the authors' config.json and the official directories
_SAME = {
    "whisper": ("whisper_config", ("num_mel_bins", "d_model", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim")),
    "llada": ("llm_config", ("d_model", "n_layers", "n_heads", "n_kv_heads", "mlp_hidden_size", "vocab_size", "embedding_size")),
}


def check_official_dir(authors: dict, cfg_path: Path, part: str, directory: Path) -> None:
    """Raise ValueError when ``directory`` (``part``: ``"whisper"`` or ``"llada"``) holds another
    model than the one the authors' ``config.json`` (``authors``, read from ``cfg_path``) was trained on.

    Example
    -------
    >>> import json, tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "config.json").write_text(json.dumps({"num_mel_bins": 80, "d_model": 1280}))
    >>> check_official_dir({"whisper_config": {"num_mel_bins": 128, "d_model": 1280}}, Path("ckpt/config.json"), "whisper", d)
    Traceback (most recent call last):
     ...
    ValueError: .../config.json: num_mel_bins 80, but ckpt/config.json was trained with 128: pass the --whisper directory of the model it names
    """
    field, names = _SAME[part]
    found = read_json_object(directory / "config.json", f"pass an official {part} directory as --{part}")
    for name in names:
        if name in authors[field] and found.get(name) != authors[field][name]:
            raise ValueError(
                f"{directory / 'config.json'}: {name} {found.get(name)!r}, but {cfg_path} was trained with "
                f"{authors[field][name]!r}: pass the --{part} directory of the model it names"
            )


def split_official_state_dict(state: Dict[str, torch.Tensor], where: str) -> Dict[str, Dict[str, torch.Tensor]]:
    """Sort the authors' keys into ``semantic``, ``acoustic``, ``prompts``, ``lora`` and ``frozen``.

    ``frozen`` collects frozen Whisper (``whisper_model.*``) and LLaDA base (``llm_model.*``)
    weights, which are loaded from their own official directories instead (tensors that differ
    from those: :func:`load_changed_frozen_weights`). Any other key, LoRA
    weights outside the blocks' linear layers or of another adapter included, is an error naming
    ``where`` and the key.

    Example
    -------
    >>> parts = split_official_state_dict({
    ...     "semantic_connector.conv.0.bias": 0, "trainable_prompts.weight": 1,
    ...     "llm_model.base_model.model.model.transformer.blocks.3.q_proj.lora_A.default.weight": 2,
    ...     "whisper_model.conv1.weight": 3}, "ckpt")
    >>> {k: sorted(v) for k, v in parts.items()}
    {'semantic': ['conv.0.bias'], 'acoustic': [], 'prompts': ['weight'], 'lora': ['model.transformer.blocks.3.q_proj.lora_A.weight'], 'frozen': ['whisper_model.conv1.weight']}
    """
    parts: Dict[str, Dict[str, torch.Tensor]] = {k: {} for k in ("semantic", "acoustic", "prompts", "lora", "frozen")}
    for key, value in state.items():
        lora = _LORA.fullmatch(key)
        if key.startswith("semantic_connector."):
            parts["semantic"][key.removeprefix("semantic_connector.")] = value
        elif key.startswith("acoustic_connector."):
            parts["acoustic"][key.removeprefix("acoustic_connector.")] = value
        elif key == "trainable_prompts.weight":
            parts["prompts"]["weight"] = value
        elif lora:
            name = "model.transformer.blocks.{}.{}.lora_{}.weight".format(*lora.groups())
            if name in parts["lora"]:
                raise ValueError(f"{where}: '{key}' and another key both hold {name}: keep one of them")
            parts["lora"][name] = value
        elif key.startswith(("whisper_model.", "llm_model.")) and ".lora_" not in key:
            parts["frozen"][key] = value
        else:
            why = ("LoRA is imported only as the 'default' adapter's lora_A/lora_B weights of the blocks' "
                   "linear layers" if ".lora_" in key else "not a weight of the authors' DIFFA models")
            raise ValueError(f"{where}: unknown key '{key}' ({why})")
    return parts


# the frozen parts of DIFFA an authors' checkpoint may hold copies of: DIFFA attribute -> (the
# checkpoint's key prefix, the model's name, the attribute's state-dict key of a key less the prefix)
FROZEN_PARTS = {
    "encoder": ("whisper_model.", "Whisper", lambda key: f"encoder.{key}"),
    "llm": ("llm_model.", "LLaDA", lambda key: key.removeprefix("base_model.model.").replace(".base_layer.", ".")),
}


def load_changed_frozen_weights(model: DIFFA, state: Dict[str, torch.Tensor], where: str) -> None:
    """Load the authors' frozen Whisper (``whisper_model.*``) and LLaDA (``llm_model.*``) tensors
    in ``state`` that differ from those of ``model.encoder`` / ``model.llm`` (see :data:`FROZEN_PARTS`).

    A checkpoint may carry the weights it was trained from (equal to the official ones: nothing to
    do) or its own, e.g. with LoRA merged in: those replace the official tensors, are logged, and
    the part is then written with the model instead of linked to its official directory. A key
    that names no weight of that shape is an error naming ``where`` and the key.

    Example
    -------
    >>> from diffa.model.diffa import tiny_config
    >>> model = DIFFA(tiny_config())
    >>> bias = model.encoder.encoder.conv1.bias.detach() + 1
    >>> load_changed_frozen_weights(model, {"whisper_model.conv1.bias": bias}, "ckpt")
    >>> torch.equal(model.encoder.encoder.conv1.bias, bias)
    True
    >>> load_changed_frozen_weights(model, {"llm_model.model.transformer.ln_f.weight": torch.ones(3)}, "ckpt")
    Traceback (most recent call last):
     ...
    ValueError: ckpt: unknown key 'llm_model.model.transformer.ln_f.weight' (no LLaDA weight model.transformer.ln_f.weight of shape (3,))
    """
    for part, (prefix, name, own_key) in FROZEN_PARTS.items():
        module = getattr(model, part)
        own = module.state_dict()
        changed = {}
        for key in (k for k in state if k.startswith(prefix)):
            value, mine = state[key], own_key(key.removeprefix(prefix))
            if mine not in own or own[mine].shape != value.shape:
                raise ValueError(f"{where}: unknown key '{key}' (no {name} weight {mine} of shape {tuple(value.shape)})")
            if not torch.equal(value.to(own[mine].dtype), own[mine]):
                changed[mine] = value
        if changed:
            logger.warning("%s: %d %s tensors differ from the official ones (e.g. %s); the checkpoint's are used",
                           where, len(changed), name, next(iter(changed)))
            module.load_state_dict(changed, strict=False)
            model.sources.pop(part, None)


def import_official(
    src: Union[str, Path],
    whisper_dir: Union[str, Path],
    llada_dir: Union[str, Path],
    out: Optional[Union[str, Path]] = None,
    layout: Optional[str] = None,
    lora_alpha: Optional[float] = None,
    dtype: Optional[torch.dtype] = None,
) -> DIFFA:
    """Build a :class:`DIFFA` from an authors' checkpoint (see module docstring).

    Arguments
    ---------
    src : path
        The authors' checkpoint directory: ``config.json`` + ``pytorch_model.bin``,
        ``model.safetensors`` or the index of either's shards (:data:`CHECKPOINT_FILES`).
    whisper_dir, llada_dir : path
        Official Whisper and LLaDA-8B-Instruct directories; their shapes (and Whisper's mel bins)
        must be those of the checkpoint's ``whisper_config`` / ``llm_config``.
    out : path, optional
        Where to write the converted DIFFA directory (LoRA kept unmerged).
    layout : str, optional
        ``"stage1"`` or ``"dual"``; default: ``"dual"`` when acoustic weights are present.
    lora_alpha : float, optional
        LoRA alpha; default: ``lora_alpha`` of a peft ``adapter_config.json`` in ``src``, else 16
        (DIFFA-2's; ``pytorch_model.bin`` does not store it). The rank is read from the weights.
    dtype : torch.dtype, optional
        Load Whisper and LLaDA in this dtype; default: the dtypes their directories store
        (float16 for whisper-large-v3, bfloat16 for LLaDA-8B-Instruct).

    Example
    -------
    A stage-1 checkpoint (semantic connector + 5 learned prompts) for a Whisper-tiny-shaped encoder:

    >>> import json, tempfile
    >>> from transformers import WhisperConfig
    >>> from diffa.model.diffa import tiny_config
    >>> from diffa.nnet.llada import LLaDAConfig, LLaDAModel
    >>> from diffa.nnet.whisper import WhisperEncoder
    >>> tmp = tempfile.TemporaryDirectory(); root = Path(tmp.name)
    >>> whisper = WhisperConfig(num_mel_bins=16, d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=32)
    >>> WhisperEncoder(whisper).save_pretrained(root / "whisper")
    >>> llada = tiny_config(d_llm=32).llm; LLaDAModel(LLaDAConfig.from_dict(llada)).save_pretrained(root / "llada")
    >>> authors = {"conv1": "conv.0", "conv2": "conv.2", "linear1": "linear_connector.0", "linear2": "linear_connector.2",
    ...            "norm": "layernorm"}
    >>> state = {"semantic_connector." + authors[k.split(".")[0]] + k[k.index("."):]: v
    ...          for k, v in SemanticAdapter(384, 32).state_dict().items()}
    >>> state["trainable_prompts.weight"] = torch.randn(5, 32)
    >>> (root / "ckpt").mkdir(); torch.save(state, root / "ckpt" / "pytorch_model.bin")
    >>> _ = (root / "ckpt" / "config.json").write_text(json.dumps({"whisper_config": whisper.to_dict(), "llm_config": llada}))
    >>> model = import_official(root / "ckpt", root / "whisper", root / "llada", out=root / "diffa")
    >>> c = model.config; c.layout, c.taps, c.n_prompts, c.pad_to_30s, c.llm_padding_mask, c.lora
    ('stage1', [0, 1, 2, 3], 5, True, False, None)
    >>> torch.equal(model.prompts.weight, state["trainable_prompts.weight"])
    True
    >>> sorted(p.name + ("@" if p.is_symlink() else "") for p in (root / "diffa").iterdir())  # @: link to the official dir
    ['adapters.safetensors', 'config.json', 'encoder@', 'llm@']
    >>> tmp.cleanup()
    """
    src = Path(src)
    cfg_path = src / "config.json"
    if not cfg_path.exists():
        raise FileNotFoundError(f"{src}: missing config.json (the authors' checkpoints have one with whisper_config/llm_config)")
    authors = read_json_object(cfg_path, REDOWNLOAD)
    for field in ("whisper_config", "llm_config"):
        if not isinstance(authors.get(field), dict):
            raise ValueError(f"{cfg_path}: '{field}' missing or not an object")
    check_official_dir(authors, cfg_path, "whisper", Path(whisper_dir))
    check_official_dir(authors, cfg_path, "llada", Path(llada_dir))
    state, peft_config = _add_peft_adapter(src, _read_checkpoint(src))
    parts = split_official_state_dict(state, str(src))
    if lora_alpha is None:
        lora_alpha = float((peft_config or {}).get("lora_alpha", 16.0))
    wc = authors["whisper_config"]
    shape = (wc.get("encoder_layers"), wc.get("d_model"))
    if shape not in OFFICIAL_TAPS:
        raise ValueError(f"{cfg_path}: no known acoustic taps for a Whisper encoder with (layers, d_model) = {shape}")
    layout = layout or ("dual" if parts["acoustic"] else "stage1")
    prompts = parts["prompts"].get("weight")
    queries = parts["acoustic"].get("layer_prompts.0")
    ffn = parts["acoustic"].get("qformer.layer.0.intermediate.dense.weight")
    config = DIFFAConfig(
        encoder=wc, llm=authors["llm_config"], taps=OFFICIAL_TAPS[shape], layout=layout,
        n_prompts=prompts.shape[0] if prompts is not None else 20,
        n_queries=queries.shape[1] if queries is not None else 64,
        qformer_ffn=ffn.shape[0] if ffn is not None else 3072,
        pad_to_30s=True, llm_padding_mask=False, qformer_padding_mask=False,
    )
    model = DIFFA.from_components(config, whisper_dir, llada_dir, dtype=dtype)
    model.llm.requires_grad_(False)  # frozen base, as in every DIFFA stage: saved as a link unless changed
    load_changed_frozen_weights(model, parts["frozen"], str(src))
    adapters = {}
    for part, adapter in (("semantic", SemanticAdapter), ("acoustic", AcousticAdapter)):
        try:
            adapters.update({f"{part}.{k}": v for k, v in adapter.convert_official_state_dict(parts[part]).items()})
        except ValueError as err:  # the converters name the part and the key, not the file
            raise ValueError(f"{src}: {err}") from err
    if prompts is not None:
        adapters["prompts.weight"] = prompts
    own = model.adapter_state_dict()
    # the layout's own parts, and every part the checkpoint has any tensor of, must be complete
    needed = {"semantic.", "prompts." if layout == "stage1" else "acoustic."}
    needed |= {p for p in ADAPTER_PREFIXES if any(k.startswith(p) for k in adapters)}
    absent = sorted(k for k in own if k not in adapters)
    lacking = [k for k in absent if k.startswith(tuple(needed))]
    if lacking:
        raise ValueError(
            f"{src}: layout {layout} needs {lacking[:5]} ({len(lacking)} tensors), which the checkpoint lacks: "
            f"{REDOWNLOAD}, or pick the --layout its stage trained"
        )
    if absent:
        logger.warning("%s: %d adapter tensors unused by layout %s keep their fresh initialisation (e.g. %s)", src, len(absent), layout, absent[0])
    model.load_adapters({**own, **adapters}, where=str(src))
    if parts["lora"]:
        some_a = next(v for k, v in parts["lora"].items() if k.endswith("lora_A.weight"))
        targets = sorted({k.split(".")[-3] for k in parts["lora"]}, key=lambda t: (t not in LLADA_LORA_TARGETS, t))
        model.add_lora(LoRAConfig(r=some_a.shape[0], alpha=lora_alpha, dropout=0.05, targets=targets))
        load_lora_state_dict(model.llm, parts["lora"], where=str(src))
    logger.info(
        "imported %s: layout %s, %d adapter tensors, %d LoRA tensors, %d frozen tensors checked against the official ones",
        src, layout, len(adapters), len(parts["lora"]), len(parts["frozen"]),
    )
    if out is not None:
        model.save_pretrained(out)
    return model
