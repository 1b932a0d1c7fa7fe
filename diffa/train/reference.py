"""The frozen VRPO reference model, sharing the policy's frozen encoder and LLaDA base.

VRPO compares the policy's ELBOs with those of the frozen stage-3 model (DIFFA-2 paper). The
authors keep two full copies of the 8B model; here the two differ only where training changed
anything, so only that is duplicated:

* the Whisper encoder and the LLaDA base weights are the *same* modules as the policy's (one
  copy in memory);
* the policy trains the LoRA adapter ``"default"``; the reference is a second LoRA adapter
  ``"reference"`` injected into the same LLaDA layers (peft keeps named adapters side by side),
  holding a frozen copy of the stage-3 LoRA weights; :meth:`SharedReference.active` switches the
  layers to it and back (:func:`diffa.nnet.lora.set_active_adapter`);
* the small audio adapters (semantic, acoustic, stage-1 prompts) are deep copies, frozen.

Inside :meth:`SharedReference.active` the model runs in eval mode (no dropout) without gradients
(VRPO scores the policy without dropout too, :func:`dropout_off`).
The reference parameters never require grad; the policy's checkpoints and exports only ever
contain the ``"default"`` adapter (:func:`diffa.nnet.lora.lora_state_dict`), so the reference
never reaches a saved model.

Example
-------
>>> import torch
>>> from diffa.model.diffa import DIFFA, tiny_config
>>> from diffa.nnet.lora import LoRAConfig
>>> policy = DIFFA(tiny_config()); policy.add_lora(LoRAConfig())
>>> ref = SharedReference(policy)
>>> ref.model.llm is policy.llm, ref.model.semantic is policy.semantic
(True, False)
>>> feats, lens, ids, pos = torch.randn(1, 40, 16), torch.tensor([40]), torch.randint(0, 90, (1, 6)), torch.tensor([2])
>>> with ref.active():
...     logits = ref.model(feats, lens, ids, pos)
>>> logits.requires_grad, torch.allclose(logits, policy.eval()(feats, lens, ids, pos))
(False, True)
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Iterator, Union

import torch

from diffa.files import load_safetensors, read_json_object
from diffa.model.config import DIFFAConfig
from diffa.model.diffa import REWRITE
from diffa.nnet.lora import LoRAConfig, add_lora, has_lora, load_lora_state_dict, lora_state_dict, set_active_adapter
from diffa.train.checkpoint import config_diff

logger = logging.getLogger(__name__)

POLICY_ADAPTER = "default"
REFERENCE_ADAPTER = "reference"


@contextlib.contextmanager
def dropout_off(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``module`` in eval mode (no dropout; gradients are not affected); on exit every submodule
    gets back its own train/eval mode.

    Example
    -------
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Dropout(0.5)).train()
    >>> _ = net[0].eval()
    >>> with dropout_off(net):
    ...     net[1].training, net(torch.ones(1, 2)).requires_grad
    (False, True)
    >>> net.training, net[0].training, net[1].training
    (True, False, True)
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


class SharedReference:
    """A frozen copy of a LoRA-carrying DIFFA that shares its encoder and LLaDA base.

    Arguments
    ---------
    policy : DIFFA
        The model to be trained, with its LoRA adapter ``"default"`` (the stage-3 model it
        starts from). Its current weights become the reference's; use :meth:`from_pretrained`
        to take them from a directory instead (resuming a run whose policy has moved).

    Attributes
    ----------
    model : DIFFA
        The reference: ``model.encoder is policy.encoder``, ``model.llm is policy.llm``; its
        ``semantic`` / ``acoustic`` / ``prompts`` are frozen copies. Run it only inside
        :meth:`active`.

    Example
    -------
    >>> from diffa.model.diffa import DIFFA, tiny_config
    >>> from diffa.nnet.lora import LoRAConfig
    >>> policy = DIFFA(tiny_config())
    >>> policy.add_lora(LoRAConfig(r=4))
    >>> ref = SharedReference(policy)
    >>> any(p.requires_grad for p in ref.parameters()), any(p.requires_grad for p in policy.parameters())
    (False, True)
    >>> with ref.active() as model:
    ...     model is ref.model, policy.llm.training, torch.is_grad_enabled()
    (True, False, False)
    >>> policy.llm.training, torch.is_grad_enabled()  # restored on exit
    (True, True)
    >>> SharedReference(DIFFA(tiny_config()))
    Traceback (most recent call last):
    ...
    ValueError: the VRPO policy needs a LoRA adapter (a stage-3 SFT model); attach LoRA first
    """

    def __init__(self, policy: torch.nn.Module):
        if not has_lora(policy.llm) or policy.config.lora is None:
            raise ValueError("the VRPO policy needs a LoRA adapter (a stage-3 SFT model); attach LoRA first")
        self.policy = policy
        shared = {id(policy.encoder): policy.encoder, id(policy.llm): policy.llm}
        self.model = copy.deepcopy(policy, memo=shared)
        with warnings.catch_warnings():  # peft warns whenever a second adapter is injected: intended here
            warnings.filterwarnings("ignore", message=".*multiple adapters.*")
            add_lora(policy.llm, LoRAConfig.from_dict(policy.config.lora), adapter_name=REFERENCE_ADAPTER)
        set_active_adapter(policy.llm, POLICY_ADAPTER)  # injecting activated the new adapter
        for param in self.parameters():
            param.requires_grad_(False)
        load_lora_state_dict(policy.llm, lora_state_dict(policy.llm, POLICY_ADAPTER), adapter_name=REFERENCE_ADAPTER)
        # eval mode for the reference's own modules only: model.eval() would reach the shared ones
        self.model.training = False
        for name, child in self.model.named_children():
            if name not in ("encoder", "llm"):
                child.eval()

    @classmethod
    def from_pretrained(cls, policy: torch.nn.Module, path: Union[str, os.PathLike]) -> "SharedReference":
        """A reference whose adapters and LoRA are read from the DIFFA directory ``path``.

        The directory's model must have the policy's architecture (encoder, LLM, LoRA and audio
        layout configs); its frozen encoder/LLM weights are not read: the policy's are shared.
        """
        path = Path(path)
        for name in ("config.json", "adapters.safetensors", "lora.safetensors"):
            if not (path / name).is_file():
                raise FileNotFoundError(f"{path}/{name} not found: the VRPO reference must be a DIFFA directory with LoRA (stage 3's model)")
        where = str(path / "config.json")
        config = DIFFAConfig.from_dict(read_json_object(path / "config.json", REWRITE), where=where)
        plain = lambda c: {k: v for k, v in json.loads(json.dumps(c.to_dict())).items() if k != "layout"}  # noqa: E731
        differ = config_diff(plain(config), plain(policy.config))
        if differ:
            raise ValueError(
                f"{where}: the reference model is not the policy's architecture ({'; '.join(differ[:3])}; "
                "'in the checkpoint' = the reference); start the policy from this model (--init_from)"
            )
        ref = cls(policy)
        adapters, lora = path / "adapters.safetensors", path / "lora.safetensors"
        ref.model.load_adapters(load_safetensors(adapters, REWRITE), where=str(adapters))
        load_lora_state_dict(policy.llm, load_safetensors(lora, REWRITE), adapter_name=REFERENCE_ADAPTER, where=str(lora))
        logger.info("VRPO reference: adapters and LoRA of %s (encoder and LLaDA base shared with the policy)", path)
        return ref

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        """The reference's own weights: its audio adapters and the ``"reference"`` LoRA adapter."""
        for name, param in self.model.named_parameters():
            if not name.startswith(("encoder.", "llm.")):
                yield param
        for name, param in self.policy.llm.named_parameters():
            if f".{REFERENCE_ADAPTER}." in name:
                yield param

    @contextlib.contextmanager
    def active(self) -> Iterator[torch.nn.Module]:
        """Run the reference: shared layers switched to the reference adapter, eval mode, no grad.

        Yields :attr:`model`; on exit the policy adapter and the shared modules' train/eval
        modes are restored.
        """
        try:
            set_active_adapter(self.policy.llm, REFERENCE_ADAPTER)
            with dropout_off(self.policy.encoder), dropout_off(self.policy.llm), torch.no_grad():
                yield self.model
        finally:
            set_active_adapter(self.policy.llm, POLICY_ADAPTER)
