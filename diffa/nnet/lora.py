"""LoRA on any module through peft, injected in place (no wrapper model).

DIFFA-2 trains LoRA (r=8, alpha=16, dropout 0.05) on LLaDA's ``q_proj, k_proj, v_proj, ff_proj,
up_proj`` in curriculum stages 3-4, and merges it into the base weights at export. peft's
``inject_adapter_in_model`` swaps the targeted ``nn.Linear`` layers for LoRA layers inside the
existing module, so the model keeps its own class and ``forward``; several named adapters may live
side by side (VRPO keeps a frozen ``reference`` copy next to the trained ``default`` one).

Checkpoints stay in official layouts: :func:`base_state_dict` returns the frozen base weights under
their original keys (peft's ``.base_layer`` removed), :func:`lora_state_dict` only the adapter
weights, keyed ``<module>.lora_A.weight`` / ``<module>.lora_B.weight``.

Example
-------
>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
>>> add_lora(net, LoRAConfig(r=2, alpha=4, dropout=0.0, targets=("0", "2")))
>>> sorted(lora_state_dict(net))
['0.lora_A.weight', '0.lora_B.weight', '2.lora_A.weight', '2.lora_B.weight']
>>> sorted(base_state_dict(net)) == sorted(torch.nn.Sequential(
...     torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).state_dict())
True
>>> x = torch.randn(3, 4); y = net(x)
>>> merge_lora(net); torch.allclose(net(x), y)
True
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Dict, Iterator, Sequence, Tuple

import torch
from peft import LoraConfig as PeftLoraConfig
from peft import inject_adapter_in_model
from peft.tuners.lora import LoraLayer
from peft.tuners.tuners_utils import set_adapter

LLADA_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "ff_proj", "up_proj")

_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])\.(?P<adapter>[^.]+)\.weight$")


@dataclass
class LoRAConfig:
    """LoRA hyper-parameters (DIFFA-2 defaults).

    Arguments
    ---------
    r : int
        Rank.
    alpha : float
        Scaling numerator (the update is ``alpha / r * B @ A``).
    dropout : float
        Dropout on the LoRA branch input.
    targets : sequence of str
        Module-name suffixes to adapt.

    Example
    -------
    >>> LoRAConfig().to_dict()["targets"]
    ['q_proj', 'k_proj', 'v_proj', 'ff_proj', 'up_proj']
    """

    r: int = 8
    alpha: float = 16
    dropout: float = 0.05
    targets: Sequence[str] = field(default_factory=lambda: list(LLADA_LORA_TARGETS))

    def to_dict(self) -> dict:
        """Plain-JSON form."""
        out = asdict(self)
        out["targets"] = list(self.targets)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "LoRAConfig":
        """Inverse of :meth:`to_dict`; unknown keys are errors."""
        unknown = set(d) - {"r", "alpha", "dropout", "targets"}
        if unknown:
            raise ValueError(f"unknown LoRA config keys {sorted(unknown)} (valid: r, alpha, dropout, targets)")
        return cls(**d)


def add_lora(module: torch.nn.Module, config: LoRAConfig, adapter_name: str = "default") -> None:
    """Inject a LoRA adapter into ``module`` in place (LoRA B starts at zero: output unchanged).

    Arguments
    ---------
    module : torch.nn.Module
        Model whose ``config.targets`` linear layers get adapters.
    config : LoRAConfig
        Hyper-parameters.
    adapter_name : str
        Name of the adapter; several may coexist (see :func:`set_active_adapter`).
        The new layers take ``module``'s train/eval mode.

    Example
    -------
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3)).eval()
    >>> x = torch.randn(2, 4); y = net(x)
    >>> add_lora(net, LoRAConfig(r=2, targets=("0",)))
    >>> net[0].lora_A["default"].weight.shape, net[0].lora_B["default"].weight.shape, net[0].training
    (torch.Size([2, 4]), torch.Size([3, 2]), False)
    >>> torch.equal(net(x), y)                                  # lora_B is zero: same output
    True
    """
    peft_config = PeftLoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.targets),
        bias="none",
    )
    inject_adapter_in_model(peft_config, module, adapter_name=adapter_name)
    module.train(module.training)  # new LoRA layers (dropout) follow the module's train/eval mode


def lora_layers(module: torch.nn.Module) -> Iterator[Tuple[str, LoraLayer]]:
    """Yield ``(name, layer)`` for every LoRA layer inside ``module``.

    Example
    -------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> add_lora(net, LoRAConfig(r=2, targets=("0", "2")))
    >>> [name for name, _ in lora_layers(net)]
    ['0', '2']
    """
    for name, sub in module.named_modules():
        if isinstance(sub, LoraLayer):
            yield name, sub


def has_lora(module: torch.nn.Module) -> bool:
    """True when ``module`` holds at least one LoRA layer.

    Example
    -------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 4))
    >>> before = has_lora(net); add_lora(net, LoRAConfig(r=2, targets=("0",)))
    >>> before, has_lora(net)
    (False, True)
    """
    return next(lora_layers(module), None) is not None


def set_active_adapter(module: torch.nn.Module, adapter_name: str) -> None:
    """Make ``adapter_name`` the adapter used in ``module``'s forward pass.

    peft's ``set_adapter`` also flips ``requires_grad`` to True on the adapter it activates;
    this function keeps every parameter's ``requires_grad`` as it was, so a frozen reference
    adapter stays frozen.

    Example
    -------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 4))
    >>> add_lora(net, LoRAConfig(r=2, targets=("0",))); add_lora(net, LoRAConfig(r=2, targets=("0",)), "ref")
    >>> for name, p in net.named_parameters():
    ...     _ = p.requires_grad_(".default." in name)
    >>> set_active_adapter(net, "ref")
    >>> net[0].active_adapters, sorted(n for n, p in net.named_parameters() if p.requires_grad)
    (['ref'], ['0.lora_A.default.weight', '0.lora_B.default.weight'])
    """
    flags = {n: p.requires_grad for n, p in module.named_parameters()}
    set_adapter(module, adapter_name)
    for n, p in module.named_parameters():
        p.requires_grad_(flags[n])


def lora_state_dict(module: torch.nn.Module, adapter_name: str = "default") -> Dict[str, torch.Tensor]:
    """Adapter weights of ``adapter_name``, keyed ``<module path>.lora_{A,B}.weight``.

    Example
    -------
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3))
    >>> add_lora(net, LoRAConfig(r=2, targets=("0",))); add_lora(net, LoRAConfig(r=1, targets=("0",)), "old")
    >>> {k: tuple(v.shape) for k, v in lora_state_dict(net, "old").items()}
    {'0.lora_A.weight': (1, 4), '0.lora_B.weight': (3, 1)}
    """
    out = {}
    for key, value in module.state_dict().items():
        m = _LORA_KEY.match(key)
        if m and m["adapter"] == adapter_name:
            out[f"{m['module'].removesuffix('.base_layer')}.lora_{m['ab']}.weight"] = value
    return out


def load_lora_state_dict(
    module: torch.nn.Module, state: Dict[str, torch.Tensor], adapter_name: str = "default", where: str = "state dict"
) -> None:
    """Copy :func:`lora_state_dict`-style weights into the injected adapter ``adapter_name``.

    Raises ``ValueError`` naming ``where`` and the key for unknown keys, missing keys and shape
    mismatches.

    Example
    -------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 4)); add_lora(net, LoRAConfig(r=2, targets=("0",)))
    >>> state = {k: torch.ones_like(v) for k, v in lora_state_dict(net).items()}
    >>> load_lora_state_dict(net, state); bool((net[0].lora_B["default"].weight == 1).all())
    True
    >>> load_lora_state_dict(net, {"0.lora_A.weight": state["0.lora_A.weight"]}, where="lora.safetensors")
    Traceback (most recent call last):
     ...
    ValueError: lora.safetensors: LoRA weights do not match the model: missing ['0.lora_B.weight'], unknown []
    """
    params = dict(module.named_parameters())
    expected = {k for k in lora_state_dict(module, adapter_name)}
    missing = sorted(expected - set(state))
    unknown = sorted(set(state) - expected)
    if missing or unknown:
        raise ValueError(f"{where}: LoRA weights do not match the model: missing {missing[:5]}, unknown {unknown[:5]}")
    with torch.no_grad():
        for key, value in state.items():
            mod, ab = key.rsplit(".lora_", 1)
            target = params[f"{mod}.lora_{ab[0]}.{adapter_name}.weight"]
            if target.shape != value.shape:
                raise ValueError(f"{where}: {key} has shape {tuple(value.shape)}, the model expects {tuple(target.shape)}")
            target.copy_(value)


def base_state_dict(module: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """``module.state_dict()`` without LoRA weights and with peft's ``.base_layer`` removed.

    Example
    -------
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3)); add_lora(net, LoRAConfig(r=2, targets=("0",)))
    >>> sorted(net.state_dict())
    ['0.base_layer.bias', '0.base_layer.weight', '0.lora_A.default.weight', '0.lora_B.default.weight']
    >>> sorted(base_state_dict(net))
    ['0.bias', '0.weight']
    """
    out = {}
    for key, value in module.state_dict().items():
        if ".lora_" in key:
            continue
        out[key.replace(".base_layer.", ".")] = value
    return out


def merge_lora(module: torch.nn.Module, adapter_name: str = "default") -> None:
    """Merge ``adapter_name`` into the base weights and put the plain layers back (in place).

    Example
    -------
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3)); add_lora(net, LoRAConfig(r=2, dropout=0.0, targets=("0",)))
    >>> _ = torch.nn.init.ones_(net[0].lora_B["default"].weight)          # a non-zero update
    >>> x = torch.randn(2, 4); y = net(x)
    >>> merge_lora(net)
    >>> type(net[0]), has_lora(net), torch.allclose(net(x), y, atol=1e-6)
    (<class 'torch.nn.modules.linear.Linear'>, False, True)
    """
    for name, layer in list(lora_layers(module)):
        layer.merge(adapter_names=[adapter_name])
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, layer.get_base_layer())
