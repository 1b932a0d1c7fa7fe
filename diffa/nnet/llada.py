"""LLaDA, the masked-diffusion transformer, with native loading of official checkpoints.

LLaDA (Nie et al., 2025) is a Llama-style transformer without a causal mask: every position
attends to every other (padding keys excepted), and the model predicts the tokens hidden behind
``<|mdm_mask|>``. A block computes (LLaDA-8B-Instruct's released model)::

    h   = x + attn_out(attention(RoPE(q_proj(a)), RoPE(k_proj(a)), v_proj(a))),  a = attn_norm(x)
    out = h + ff_out(silu(ff_proj(n)) * up_proj(n)),                            n = ff_norm(h)

with RMSNorm computed in float32 and rotate-half (non-interleaved) rotary embeddings computed and
applied in float32. There are no biases; the output head is untied unless ``weight_tying``.

:meth:`LLaDAModel.from_pretrained` reads an official directory (``config.json`` with
``model_type: "llada"`` and the official field names, plus safetensors shards with
``model.safetensors.index.json`` or a single ``model.safetensors``) with no
``trust_remote_code``: the model is built on the meta device and each shard's tensors become the
parameters themselves, so loading never holds two copies of the weights.
:meth:`LLaDAModel.save_pretrained` writes the same layout back. ``state_dict()`` keys are the
official ones (``model.transformer.blocks.{i}.q_proj.weight``, ...), and the projections are plain
``nn.Linear`` modules named ``q_proj, k_proj, v_proj, attn_out, ff_proj, up_proj, ff_out`` so that
LoRA can target them by name.

Example
-------
>>> import tempfile
>>> cfg = LLaDAConfig(d_model=32, n_layers=2, n_heads=4, mlp_hidden_size=64, vocab_size=100)
>>> net = LLaDAModel(cfg)
>>> with tempfile.TemporaryDirectory() as d:
...     net.save_pretrained(d)
...     again = LLaDAModel.from_pretrained(d)
>>> ids = torch.randint(0, 100, (2, 7))
>>> torch.equal(net(ids), again(ids))
True
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from diffa.files import (
    atomic_save,
    atomic_save_text,
    open_safetensors,
    read_json_object,
    read_shards,
    read_weight_map,
)

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
# what to do about a weight or config file that cannot be read
READ_ERROR_REMEDY = "download the checkpoint again (or, inside a DIFFA directory, export the model again)"

# Official config fields that select behaviour this module does not implement, with the values it
# accepts (the first one is the official default). They live in ``LLaDAConfig.extra``; those that
# LLaDA-8B-Instruct's config.json spells out are filled in when missing, so a config built in code
# is written out like an official one.
_ARCHITECTURE_FIELDS: Dict[str, Tuple[Any, ...]] = {
    "block_type": ("llama",),
    "activation_type": ("silu",),
    "layer_norm_type": ("rms",),
    "layer_norm_with_affine": (True,),
    "bias_for_layer_norm": (False, None),
    "include_bias": (False,),
    "include_qkv_bias": (False,),
    "rope": (True,),
    "alibi": (False,),
    "attention_layer_norm": (False,),
    "input_emb_norm": (False,),
    "scale_logits": (False,),
    "clip_qkv": (None,),
    "block_group_size": (1,),
    "embedding_dropout": (0.0,),
    "attention_dropout": (0.0,),
    "residual_dropout": (0.0,),
}
_DEFAULT_EXTRA: Dict[str, Any] = {
    "architectures": ["LLaDAModelLM"],
    **{name: accepted[0] for name, accepted in _ARCHITECTURE_FIELDS.items() if name != "clip_qkv"},
}
_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
               "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


@dataclasses.dataclass
class LLaDAConfig:
    """Hyper-parameters of a LLaDA transformer, under the official ``config.json`` field names.

    The fields below are the ones the model uses; every other field of an official config
    (``auto_map``, ``init_device``, ``precision``, ...) is kept verbatim in ``extra`` so that
    :meth:`to_dict` writes back what :meth:`from_dict` read. Fields in ``extra`` that select an
    architecture this module does not implement (``alibi: true``, ``include_bias: true``,
    ``block_type`` other than ``"llama"``, ...) raise ``ValueError`` naming the field.

    Arguments
    ---------
    d_model : int
        Hidden width (4096 for LLaDA-8B).
    n_layers : int
        Number of transformer blocks.
    n_heads : int
        Number of query heads; ``d_model / n_heads`` is the head width (must be even).
    n_kv_heads : int, optional
        Number of key/value heads (grouped-query attention when fewer than ``n_heads``);
        None means ``n_heads`` (or 1 when ``multi_query_attention``).
    multi_query_attention : bool, optional
        Official switch for a single key/value head when ``n_kv_heads`` is None.
    mlp_hidden_size : int, optional
        SwiGLU width (12288 for LLaDA-8B); None means ``mlp_ratio * d_model``.
    mlp_ratio : int
        Used only when ``mlp_hidden_size`` is None.
    vocab_size : int
        Number of token ids in use.
    embedding_size : int, optional
        Rows of the embedding and of the output head (>= ``vocab_size``); None means ``vocab_size``.
    rms_norm_eps : float
        RMSNorm epsilon.
    rope_theta : float
        RoPE base.
    rope_full_precision : bool
        Apply RoPE in float32 (official default); otherwise in the activations' dtype.
    max_sequence_length : int
        Training context length (informative; longer inputs are not refused).
    mask_token_id, eos_token_id, pad_token_id : int
        Special ids (``<|mdm_mask|>``, ``<|endoftext|>``).
    weight_tying : bool
        Use the embedding matrix as the output head (no ``model.transformer.ff_out.weight``).
    extra : dict
        Every other official field, preserved for writing back.

    Example
    -------
    >>> cfg = LLaDAConfig(d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=100)
    >>> cfg.head_dim, cfg.num_kv_heads, cfg.ffn_size, cfg.num_embeddings
    (8, 2, 128, 100)
    >>> d = cfg.to_dict()
    >>> d["model_type"], d["block_type"]
    ('llada', 'llama')
    >>> LLaDAConfig.from_dict(d) == cfg
    True
    >>> LLaDAConfig.from_dict({**d, "alibi": True})
    Traceback (most recent call last):
    ...
    ValueError: LLaDA config field 'alibi' = True is not supported (supported: False)
    """

    d_model: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: Optional[int] = None
    multi_query_attention: Optional[bool] = None
    mlp_hidden_size: Optional[int] = None
    mlp_ratio: int = 4
    vocab_size: int = 126464
    embedding_size: Optional[int] = None
    rms_norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    rope_full_precision: bool = True
    max_sequence_length: int = 4096
    mask_token_id: int = 126336
    eos_token_id: int = 126081
    pad_token_id: int = 126081
    weight_tying: bool = False
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.extra = {**copy.deepcopy(_DEFAULT_EXTRA), **self.extra}
        for name, accepted in _ARCHITECTURE_FIELDS.items():
            value = self.extra.get(name, accepted[0])
            if not any(_same_value(value, a) for a in accepted):
                raise ValueError(
                    f"LLaDA config field {name!r} = {value!r} is not supported "
                    f"(supported: {', '.join(repr(a) for a in accepted)})"
                )
        for name in ("d_model", "n_layers", "n_heads", "mlp_ratio", "vocab_size", "max_sequence_length"):
            _check_positive_int(name, getattr(self, name))
        for name in ("n_kv_heads", "mlp_hidden_size", "embedding_size"):
            if getattr(self, name) is not None:
                _check_positive_int(name, getattr(self, name))
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(
                f"LLaDA config: d_model={self.d_model} must split into n_heads={self.n_heads} "
                "heads of even width"
            )
        if self.n_heads % self.num_kv_heads:
            raise ValueError(
                f"LLaDA config field 'n_kv_heads' = {self.num_kv_heads} must divide n_heads={self.n_heads}"
            )
        if self.num_embeddings < self.vocab_size:
            raise ValueError(
                f"LLaDA config field 'embedding_size' = {self.embedding_size} is smaller than "
                f"vocab_size={self.vocab_size}"
            )
        for name in ("rms_norm_eps", "rope_theta"):
            if not isinstance(getattr(self, name), (int, float)) or getattr(self, name) <= 0:
                raise ValueError(
                    f"LLaDA config field {name!r} = {getattr(self, name)!r} must be a positive number"
                )

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.d_model // self.n_heads

    @property
    def num_kv_heads(self) -> int:
        """Effective number of key/value heads."""
        if self.n_kv_heads is not None:
            return self.n_kv_heads
        return 1 if self.multi_query_attention else self.n_heads

    @property
    def ffn_size(self) -> int:
        """Effective SwiGLU width."""
        return self.mlp_hidden_size if self.mlp_hidden_size is not None else self.mlp_ratio * self.d_model

    @property
    def num_embeddings(self) -> int:
        """Rows of the embedding matrix and of the output head (the logits' last dimension)."""
        return self.embedding_size if self.embedding_size is not None else self.vocab_size

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "LLaDAConfig":
        """Build from an official ``config.json`` dictionary (``model_type`` must be ``"llada"``).

        Arguments
        ---------
        d : dict
            Parsed ``config.json``.

        Returns
        -------
        LLaDAConfig
        """
        if d.get("model_type") != "llada":
            raise ValueError(
                f"LLaDA config field 'model_type' = {d.get('model_type')!r}, expected 'llada' "
                "(this is not an official LLaDA config)"
            )
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        extra = {k: copy.deepcopy(v) for k, v in d.items() if k not in names and k != "model_type"}
        return cls(**known, extra=extra)

    def to_dict(self) -> Dict[str, Any]:
        """Official ``config.json`` dictionary: ``model_type``, the fields, and ``extra``.

        Returns
        -------
        dict
            Keys sorted, ready for ``json.dump``.
        """
        out = copy.deepcopy(self.extra)
        out.update({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"})
        out["model_type"] = "llada"
        return dict(sorted(out.items()))

    @classmethod
    def from_json_file(cls, path: Union[str, Path]) -> "LLaDAConfig":
        """Read an official ``config.json``; errors name the file.

        Arguments
        ---------
        path : str or Path
            The ``config.json`` file.

        Returns
        -------
        LLaDAConfig
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: a LLaDA directory needs its config.json")
        d = read_json_object(path, READ_ERROR_REMEDY)
        try:
            return cls.from_dict(d)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from err


def _same_value(value: Any, accepted: Any) -> bool:
    """JSON-aware equality: booleans and null match only themselves, numbers match by value."""
    if accepted is None or isinstance(accepted, bool) or isinstance(value, bool):
        return value is accepted
    return value == accepted


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"LLaDA config field {name!r} = {value!r} must be a positive integer")


class RMSNorm(nn.Module):
    """Root-mean-square normalisation computed in float32, cast back, then scaled by a weight.

    Arguments
    ---------
    size : int
        Feature dimension.
    eps : float
        Added to the mean square.

    Example
    -------
    >>> norm = RMSNorm(8)
    >>> y = norm(torch.randn(2, 3, 8, dtype=torch.bfloat16))
    >>> y.shape, y.dtype
    (torch.Size([2, 3, 8]), torch.float32)
    >>> y = norm.to(torch.bfloat16)(torch.full((1, 8), 3.0, dtype=torch.bfloat16))
    >>> y.dtype, y.float().unique().tolist()
    (torch.bfloat16, [1.0])
    """

    def __init__(self, size: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise the last dimension.

        Arguments
        ---------
        x : torch.Tensor
            (..., size).

        Returns
        -------
        torch.Tensor
            Same shape; the product of ``x``'s dtype and the weight's dtype.
        """
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(x.dtype)


def rotary_cos_sin(
    length: int, head_dim: int, theta: float, device: Optional[torch.device] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Float32 cosines and sines of the rotate-half RoPE angles for positions ``0 .. length-1``.

    The angle of position ``p`` and frequency ``i < head_dim/2`` is ``p / theta^(2i/head_dim)``;
    both halves of the head use the same frequencies.

    Arguments
    ---------
    length : int
        Number of positions.
    head_dim : int
        Head width (even).
    theta : float
        RoPE base.
    device : torch.device, optional
        Where to build the tables.

    Returns
    -------
    (cos, sin) : tuple of torch.Tensor
        Each (length, head_dim), float32.

    Example
    -------
    >>> cos, sin = rotary_cos_sin(5, 4, 10000.0)
    >>> cos.shape, cos[0].tolist(), sin[1, 0].item() == sin[1, 2].item()
    (torch.Size([5, 4]), [1.0, 1.0, 1.0, 1.0], True)
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, full_precision: bool = True
) -> torch.Tensor:
    """Rotate ``x`` by RoPE (rotate-half layout: dimension ``i`` pairs with ``i + head_dim/2``).

    Arguments
    ---------
    x : torch.Tensor
        (batch, heads, time, head_dim).
    cos, sin : torch.Tensor
        (time, head_dim) tables from :func:`rotary_cos_sin`.
    full_precision : bool
        Compute in float32 (else in ``x``'s dtype); the result has ``x``'s dtype.

    Returns
    -------
    torch.Tensor
        Same shape and dtype as ``x``.

    Example
    -------
    >>> cos, sin = rotary_cos_sin(3, 4, 10000.0)
    >>> x = torch.randn(1, 2, 3, 4)
    >>> y = apply_rotary(x, cos, sin)
    >>> torch.allclose(y.norm(dim=-1), x.norm(dim=-1)), torch.equal(y[:, :, 0], x[:, :, 0])
    (True, True)
    """
    work = torch.float32 if full_precision else x.dtype
    xw = x.to(work)
    first, second = xw.chunk(2, dim=-1)
    rotated = torch.cat((-second, first), dim=-1)
    return (xw * cos.to(work) + rotated * sin.to(work)).to(x.dtype)


class LLaDABlock(nn.Module):
    """One bidirectional LLaDA block: pre-norm self-attention with RoPE, then a SwiGLU MLP.

    Submodule names are the official ones (``attn_norm, q_proj, k_proj, v_proj, attn_out,
    ff_norm, ff_proj, up_proj, ff_out``); ``ff_proj`` is the gate that goes through SiLU.

    Arguments
    ---------
    config : LLaDAConfig
        Model hyper-parameters.

    Example
    -------
    >>> block = LLaDABlock(LLaDAConfig(d_model=16, n_heads=2, n_kv_heads=1, mlp_hidden_size=32))
    >>> block.k_proj.weight.shape  # one key/value head of width 8 shared by both query heads
    torch.Size([8, 16])
    >>> x = torch.randn(2, 5, 16)
    >>> no_padding = torch.ones(2, 1, 1, 5, dtype=torch.bool)
    >>> torch.allclose(block(x, *rotary_cos_sin(5, 8, 1e4)), block(x, *rotary_cos_sin(5, 8, 1e4), no_padding))
    True
    """

    def __init__(self, config: LLaDAConfig):
        super().__init__()
        self.config = config
        d, kv = config.d_model, config.num_kv_heads * config.head_dim
        self.attn_norm = RMSNorm(d, config.rms_norm_eps)
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, kv, bias=False)
        self.v_proj = nn.Linear(d, kv, bias=False)
        self.attn_out = nn.Linear(d, d, bias=False)
        self.ff_norm = RMSNorm(d, config.rms_norm_eps)
        self.ff_proj = nn.Linear(d, config.ffn_size, bias=False)
        self.up_proj = nn.Linear(d, config.ffn_size, bias=False)
        self.ff_out = nn.Linear(config.ffn_size, d, bias=False)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, attn_mask: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """Apply the block.

        Arguments
        ---------
        x : torch.Tensor
            (batch, time, d_model).
        cos, sin : torch.Tensor
            (time, head_dim) RoPE tables.
        attn_mask : torch.BoolTensor, optional
            (batch, 1, 1, time), True = key may be attended; None = every key.

        Returns
        -------
        torch.Tensor
            (batch, time, d_model).
        """
        cfg = self.config
        batch, time, _ = x.shape
        a = self.attn_norm(x)
        q = self.q_proj(a).view(batch, time, cfg.n_heads, cfg.head_dim).transpose(1, 2)
        k = self.k_proj(a).view(batch, time, cfg.num_kv_heads, cfg.head_dim).transpose(1, 2)
        v = self.v_proj(a).view(batch, time, cfg.num_kv_heads, cfg.head_dim).transpose(1, 2)
        q = apply_rotary(q, cos, sin, cfg.rope_full_precision)
        k = apply_rotary(k, cos, sin, cfg.rope_full_precision)
        if cfg.num_kv_heads != cfg.n_heads:
            group = cfg.n_heads // cfg.num_kv_heads
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=False)
        h = x + self.attn_out(att.transpose(1, 2).reshape(batch, time, cfg.d_model))
        n = self.ff_norm(h)
        return h + self.ff_out(F.silu(self.ff_proj(n)) * self.up_proj(n))


class LLaDAModel(nn.Module):
    """The LLaDA mask predictor: token embedding, bidirectional blocks, final RMSNorm, LM head.

    A freshly constructed model is randomly initialised (:meth:`init_weights`); use
    :meth:`from_pretrained` to load an official checkpoint directory.

    Arguments
    ---------
    config : LLaDAConfig
        Model hyper-parameters.

    Example
    -------
    >>> cfg = LLaDAConfig(d_model=32, n_layers=2, n_heads=4, mlp_hidden_size=64, vocab_size=100)
    >>> net = LLaDAModel(cfg)
    >>> ids = torch.randint(0, 100, (2, 6))
    >>> keep = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]])
    >>> net(ids, attention_mask=keep).shape
    torch.Size([2, 6, 100])
    >>> hidden = net.forward_hidden(inputs_embeds=net.get_input_embeddings()(ids))
    >>> torch.allclose(net.lm_head(hidden[:, -2:]), net(ids)[:, -2:], atol=1e-6)
    True
    >>> list(net.state_dict())[:2]
    ['model.transformer.wte.weight', 'model.transformer.blocks.0.attn_norm.weight']
    """

    def __init__(self, config: LLaDAConfig):
        super().__init__()
        self.config = config
        transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(config.num_embeddings, config.d_model),
                "blocks": nn.ModuleList(LLaDABlock(config) for _ in range(config.n_layers)),
                "ln_f": RMSNorm(config.d_model, config.rms_norm_eps),
            }
        )
        if not config.weight_tying:
            transformer["ff_out"] = nn.Linear(config.d_model, config.num_embeddings, bias=False)
        self.model = nn.Module()
        self.model.transformer = transformer
        self.init_weights()

    @property
    def transformer(self) -> nn.ModuleDict:
        """The official ``model.transformer`` container (wte, blocks, ln_f, ff_out)."""
        return self.model.transformer

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the embedding matrix (the model's working dtype)."""
        return self.transformer.wte.weight.dtype

    @property
    def device(self) -> torch.device:
        """Device of the embedding matrix."""
        return self.transformer.wte.weight.device

    def init_weights(self, std: float = 0.02, generator: Optional[torch.Generator] = None) -> None:
        """Random initialisation: N(0, std) for every linear and embedding weight, ones for norms.

        Arguments
        ---------
        std : float
            Standard deviation of the normal initialisation.
        generator : torch.Generator, optional
            Random source (for reproducible tiny models).
        """
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, (nn.Linear, nn.Embedding)):
                    module.weight.normal_(0.0, std, generator=generator)
                elif isinstance(module, RMSNorm):
                    module.weight.fill_(1.0)

    def get_input_embeddings(self) -> nn.Embedding:
        """The token embedding (``model.transformer.wte``).

        Returns
        -------
        nn.Embedding
            (num_embeddings, d_model).
        """
        return self.transformer.wte

    def forward_hidden(
        self,
        input_ids: Optional[torch.Tensor] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Final normalised hidden states (the input of the LM head).

        Arguments
        ---------
        input_ids : torch.LongTensor, optional
            (batch, time) token ids; give exactly one of ``input_ids`` and ``inputs_embeds``.
        inputs_embeds : torch.Tensor, optional
            (batch, time, d_model) input embeddings, cast to the model's dtype.
        attention_mask : torch.Tensor, optional
            (batch, time) bool or 0/1, True = real token. Padding keys are hidden from every query;
            a row with no real token attends to all its keys so that nothing becomes NaN (its
            outputs are meaningless and must be ignored). None = every position is real.

        Returns
        -------
        torch.Tensor
            (batch, time, d_model).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("LLaDAModel: give exactly one of input_ids and inputs_embeds")
        length = (input_ids if inputs_embeds is None else inputs_embeds).shape[1]
        if length > self.config.max_sequence_length:
            raise ValueError(
                f"LLaDAModel: a sequence of {length} positions is longer than the model's "
                f"max_sequence_length {self.config.max_sequence_length} (config.json); shorten the "
                "prompt, the audio or gen_length"
            )
        if inputs_embeds is None:
            x = self.transformer.wte(input_ids)
        else:
            x = inputs_embeds.to(self.dtype)
        batch, time = x.shape[:2]
        attn_mask = None
        if attention_mask is not None:
            if tuple(attention_mask.shape) != (batch, time):
                raise ValueError(
                    f"LLaDAModel: attention_mask has shape {tuple(attention_mask.shape)}, "
                    f"expected (batch, time) = {(batch, time)}"
                )
            keep = attention_mask.to(device=x.device, dtype=torch.bool)
            keep = keep | ~keep.any(dim=1, keepdim=True)
            attn_mask = keep[:, None, None, :]
        cos, sin = rotary_cos_sin(time, self.config.head_dim, self.config.rope_theta, x.device)
        for block in self.transformer.blocks:
            x = block(x, cos, sin, attn_mask)
        return self.transformer.ln_f(x)

    def lm_head(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits from final hidden states (e.g. only at the positions one needs).

        Arguments
        ---------
        hidden : torch.Tensor
            (..., d_model) from :meth:`forward_hidden`.

        Returns
        -------
        torch.Tensor
            (..., num_embeddings) logits.
        """
        if self.config.weight_tying:
            return F.linear(hidden, self.transformer.wte.weight)
        return self.transformer.ff_out(hidden)

    def forward(
        self,
        input_ids: Optional[torch.Tensor] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Logits at every position (see :meth:`forward_hidden` for the arguments).

        Returns
        -------
        torch.Tensor
            (batch, time, num_embeddings); ids ``>= vocab_size`` are unused rows.
        """
        return self.lm_head(self.forward_hidden(input_ids, inputs_embeds, attention_mask))

    @classmethod
    def from_pretrained(
        cls,
        directory: Union[str, Path],
        dtype: Optional[Union[torch.dtype, str]] = None,
        device: Optional[Union[torch.device, str]] = None,
    ) -> "LLaDAModel":
        """Load an official LLaDA directory (no ``trust_remote_code``), shard by shard.

        The model is built on the meta device; each tensor read from a shard is cast and moved
        once and then becomes the parameter itself, so at no point are two copies of the weights
        held. Errors name the directory, shard file and key at fault.

        Arguments
        ---------
        directory : str or Path
            Holds ``config.json`` and ``model.safetensors`` or ``model.safetensors.index.json``
            plus the shards it lists.
        dtype : torch.dtype or str, optional
            Cast floating-point weights to this dtype (e.g. ``torch.bfloat16`` or
            ``"bfloat16"``); None keeps the checkpoint's dtype.
        device : torch.device or str, optional
            Where the weights go; default CPU.

        Returns
        -------
        LLaDAModel
            In eval mode.
        """
        directory = Path(directory)
        dtype = _resolve_dtype(dtype)
        device = torch.device(device if device is not None else "cpu")
        config = LLaDAConfig.from_json_file(directory / CONFIG_NAME)
        files, index = _weight_files(directory)
        with torch.device("meta"):
            model = cls(config)
        expected = {key: tuple(t.shape) for key, t in model.state_dict().items()}
        loaded: Dict[str, Path] = {}
        for path in files:
            shard = {}
            with open_safetensors(path, READ_ERROR_REMEDY) as f:
                for key in f.keys():
                    if key not in expected:
                        raise ValueError(
                            f"{path}: unexpected tensor {key!r}: not a parameter of the LLaDA model "
                            f"described by {directory / CONFIG_NAME} (n_layers={config.n_layers}, "
                            f"weight_tying={config.weight_tying})"
                        )
                    if key in loaded:
                        raise ValueError(f"{path}: tensor {key!r} is also stored in {loaded[key]}")
                    shape = tuple(f.get_slice(key).get_shape())
                    if shape != expected[key]:
                        raise ValueError(
                            f"{path}: tensor {key!r} has shape {shape}, expected {expected[key]} "
                            f"from {directory / CONFIG_NAME}"
                        )
                    tensor = f.get_tensor(key)
                    shard[key] = tensor.to(device=device, dtype=dtype if tensor.is_floating_point() else None)
                    loaded[key] = path
            model.load_state_dict(shard, strict=False, assign=True)
            del shard
            logger.debug("loaded %s", path)
        missing = sorted(set(expected) - set(loaded))
        if missing:
            where = ""
            if index is not None:
                file = read_weight_map(index, READ_ERROR_REMEDY).get(missing[0])
                listed = f"maps the first one to {file}" if file else f"does not list {missing[0]!r}"
                where = f" ({index} {listed})"
            raise ValueError(
                f"{directory}: {len(missing)} LLaDA weight(s) missing from the checkpoint, e.g. "
                f"{missing[:5]}{where}; the checkpoint is incomplete or was written for another config"
            )
        logger.info(
            "loaded LLaDA (%d layers, d_model %d) from %s", config.n_layers, config.d_model, directory
        )
        return model.eval()

    def save_pretrained(
        self,
        directory: Union[str, Path],
        max_shard_size: Union[int, str] = "5GB",
        state_dict: Optional[Dict[str, torch.Tensor]] = None,
    ) -> None:
        """Write ``config.json`` and safetensors weights in the official layout, atomically per file.

        One file ``model.safetensors`` when the weights fit in ``max_shard_size``, else shards
        ``model-00001-of-0000N.safetensors`` plus ``model.safetensors.index.json``. Weight files of
        an earlier save in ``directory`` that the new layout no longer uses are removed.

        Arguments
        ---------
        directory : str or Path
            Created if missing.
        max_shard_size : int or str
            Bytes per shard, as an int or a string such as ``"5GB"`` / ``"500MiB"``; a tensor
            larger than this gets a shard of its own.
        state_dict : dict, optional
            Weights to write instead of ``self.state_dict()`` (e.g. the base weights of a model
            carrying LoRA layers, :func:`diffa.nnet.lora.base_state_dict`).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        limit = _parse_size(max_shard_size)
        previous = _previous_weight_files(directory)
        state = self.state_dict() if state_dict is None else state_dict
        groups: List[List[str]] = []
        size = 0
        for key, tensor in state.items():
            nbytes = tensor.numel() * tensor.element_size()
            if not groups or (size + nbytes > limit and groups[-1]):
                groups.append([])
                size = 0
            groups[-1].append(key)
            size += nbytes
        names = (
            [WEIGHTS_NAME]
            if len(groups) == 1
            else [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
        )
        for keys, name in zip(groups, names):
            tensors = {k: state[k].detach().to("cpu").contiguous() for k in keys}
            atomic_save(
                directory / name, lambda tmp, t=tensors: save_file(t, tmp, metadata={"format": "pt"})
            )
        if len(groups) > 1:
            index = {
                "metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())},
                "weight_map": dict(sorted((k, name) for keys, name in zip(groups, names) for k in keys)),
            }
            atomic_save_text(directory / INDEX_NAME, json.dumps(index, indent=2) + "\n")
        for stale in sorted(previous - set(names) - ({INDEX_NAME} if len(groups) > 1 else set())):
            (directory / stale).unlink()
        atomic_save_text(directory / CONFIG_NAME, json.dumps(self.config.to_dict(), indent=2) + "\n")
        logger.info("saved LLaDA to %s (%d weight file(s))", directory, len(names))


def _resolve_dtype(dtype: Optional[Union[torch.dtype, str]]) -> Optional[torch.dtype]:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}: use a torch dtype or a name such as 'bfloat16'")
    return resolved


def _weight_files(directory: Path) -> Tuple[List[Path], Optional[Path]]:
    """The weight files to read (single file first, as transformers does) and the index used."""
    single, index = directory / WEIGHTS_NAME, directory / INDEX_NAME
    if single.is_file():
        return [single], None
    if not index.is_file():
        raise FileNotFoundError(
            f"{directory}: neither {WEIGHTS_NAME} nor {INDEX_NAME} found; "
            "is this a LLaDA checkpoint directory?"
        )
    return list(read_shards(index, READ_ERROR_REMEDY)), index


def _previous_weight_files(directory: Path) -> set:
    """Weight-file names (relative) that an earlier save left in ``directory``."""
    found = {name for name in (WEIGHTS_NAME, INDEX_NAME) if (directory / name).is_file()}
    if INDEX_NAME in found:
        listed = read_weight_map(directory / INDEX_NAME, READ_ERROR_REMEDY).values()
        found |= {n for n in listed if (directory / n).is_file()}
    return found


def _parse_size(size: Union[int, str]) -> int:
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return size
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]I?B|B)?\s*", str(size).upper())
    if not m or float(m[1]) <= 0:
        raise ValueError(
            f"max_shard_size={size!r}: expected a positive byte count such as 5000000, '5GB' or '500MiB'"
        )
    return int(float(m[1]) * _SIZE_UNITS[m[2] or ""])
