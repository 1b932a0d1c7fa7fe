"""Training checkpoints: atomic directories, trainable weights only, compatibility checks, averaging.

SpeechBrain's :class:`~speechbrain.utils.checkpoints.Checkpointer` writes a checkpoint directory
``CKPT+<time>`` and marks it valid with ``CKPT.yaml`` — but it writes ``CKPT.yaml`` *first*, so a
run killed while saving leaves a directory that looks complete. :class:`AtomicCheckpointer` writes
everything into ``.tmp-CKPT+<time>`` and renames it when every file (``CKPT.yaml`` last) is
there; a leftover ``.tmp-*`` is never listed and is removed by the next run.

:class:`TrainableWeights` is the recoverable for the model: only the trainable parameters
(adapters, prompts, LoRA — 99M of DIFFA-2's 8.8B) go into the checkpoint, as safetensors, with
a record of the model config, the stage and the settings that fix the data order. Loading a
checkpoint written under another record fails with the list of fields that differ.

Example
-------
>>> import tempfile, torch
>>> net = torch.nn.Linear(2, 2)
>>> net.bias.requires_grad_(False)
Parameter containing:
...
>>> weights = TrainableWeights(net, record={"stage": "sft"})
>>> ckpt = AtomicCheckpointer(tempfile.mkdtemp(), {"model": weights})
>>> saved = ckpt.save_checkpoint()
>>> sorted(p.name for p in saved.path.iterdir())
['CKPT.yaml', 'model.ckpt']
>>> TrainableWeights(net, record={"stage": "vrpo"}).load(saved.paramfiles["model"])
Traceback (most recent call last):
 ...
ValueError: .../model.ckpt was written with a different configuration: stage: 'sft' in the checkpoint, 'vrpo' now. Train in a new --output_folder (starting from this one's model with --init_from), or run with the configuration it was written with.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import torch
from safetensors.torch import save_file
from speechbrain.utils.checkpoints import (
    METAFNAME,
    PARAMFILE_EXT,
    Checkpoint,
    Checkpointer,
    get_default_hook,
    DEFAULT_SAVE_HOOKS,
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from speechbrain.utils.distributed import ddp_barrier, ddp_broadcast, if_main_process

from diffa.files import load_safetensors, open_safetensors

logger = logging.getLogger(__name__)

TMP_PREFIX = ".tmp-"
# Keys of the HF Whisper config that describe the saving software, not the model.
_IGNORED_KEYS = ("transformers_version", "_name_or_path")


def config_diff(old: dict, new: dict, prefix: str = "") -> List[str]:
    """Human-readable differences between two nested dicts, one ``key: old vs new`` per field.

    Example
    -------
    >>> config_diff({"a": 1, "b": {"c": 2, "d": 3}}, {"a": 1, "b": {"c": 5}})
    ['b.c: 2 in the checkpoint, 5 now', 'b.d: 3 in the checkpoint, missing now']
    """
    out = []
    for key in sorted(set(old) | set(new)):
        if key in _IGNORED_KEYS:
            continue
        name = f"{prefix}{key}"
        a, b = old.get(key, "missing"), new.get(key, "missing")
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(config_diff(a, b, prefix=f"{name}."))
        elif a != b:
            fmt = lambda v: v if v == "missing" else repr(v)  # noqa: E731
            out.append(f"{name}: {fmt(a)} in the checkpoint, {fmt(b)} now")
    return out


@register_checkpoint_hooks
class TrainableWeights:
    """Checkpoint recoverable: a module's trainable parameters + a compatibility record.

    Arguments
    ---------
    module : torch.nn.Module
        The model (not a DDP wrapper); parameters with ``requires_grad`` are saved.
    record : dict
        JSON-serialisable description that must match on load (model config, stage, data-order
        settings).

    Example
    -------
    >>> import os, tempfile, torch
    >>> net = torch.nn.Linear(2, 1)
    >>> path = os.path.join(tempfile.mkdtemp(), "w.ckpt")
    >>> TrainableWeights(net, {"v": 1}).save(path)
    >>> other = torch.nn.Linear(2, 1)
    >>> TrainableWeights(other, {"v": 1}).load(path); torch.equal(other.weight, net.weight)
    True
    """

    def __init__(self, module: torch.nn.Module, record: dict):
        self.module = module
        self.record = json.loads(json.dumps(record))  # plain JSON types, as they will be read back

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """The trainable parameters (detached, contiguous, on CPU)."""
        return {n: p.detach().contiguous().cpu() for n, p in self.module.named_parameters() if p.requires_grad}

    @mark_as_saver
    def save(self, path: str) -> None:
        """Write the trainable parameters and the record (safetensors metadata)."""
        save_file(self.state_dict(), str(path), metadata={"record": json.dumps(self.record)})

    @mark_as_loader
    def load(self, path: str, end_of_epoch: bool = True) -> None:
        """Check the record, then copy the weights in; errors name ``path`` and the differences."""
        del end_of_epoch
        diff = config_diff(read_record(path), self.record)
        if diff:
            raise ValueError(
                f"{path} was written with a different configuration: {'; '.join(diff)}. Train in a new "
                "--output_folder (starting from this one's model with --init_from), or run with the "
                "configuration it was written with."
            )
        self.load_state_dict(load_safetensors(Path(path), _remedy(path)), where=str(path))

    def load_state_dict(self, state: Dict[str, torch.Tensor], where: str) -> None:
        """Copy ``state`` into the trainable parameters (names and shapes must match)."""
        params = {n: p for n, p in self.module.named_parameters() if p.requires_grad}
        missing, unknown = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        if missing or unknown:
            raise ValueError(f"{where}: trainable weights do not match the model: missing {missing[:5]}, unknown {unknown[:5]}")
        with torch.no_grad():
            for name, value in state.items():
                if params[name].shape != value.shape:
                    raise ValueError(f"{where}: {name} has shape {tuple(value.shape)}, the model's is {tuple(params[name].shape)}")
                params[name].copy_(value)


def read_record(path: str) -> dict:
    """The record stored by :meth:`TrainableWeights.save` in ``path``.

    Example
    -------
    >>> import os, tempfile, torch
    >>> path = os.path.join(tempfile.mkdtemp(), "model.ckpt")
    >>> TrainableWeights(torch.nn.Linear(1, 1), {"stage": "sft"}).save(path)
    >>> read_record(path)
    {'stage': 'sft'}
    """
    with open_safetensors(Path(path), _remedy(path)) as f:
        meta = f.metadata() or {}
    if "record" not in meta:
        raise ValueError(f"{path} is not a diffa training checkpoint (no record in its metadata)")
    return json.loads(meta["record"])


def _remedy(path) -> str:
    """What to do about an unreadable checkpoint file: drop its checkpoint, resume from the one before."""
    return f"delete {Path(path).parent} and run again (training resumes from the checkpoint before it)"


class AtomicCheckpointer(Checkpointer):
    """A :class:`~speechbrain.utils.checkpoints.Checkpointer` whose checkpoints appear atomically.

    Same arguments as SpeechBrain's; see the module docstring. Stale ``.tmp-*`` directories of an
    interrupted save are removed when the checkpointer is created (on the main process).

    Example
    -------
    >>> import tempfile, torch
    >>> ckpt = AtomicCheckpointer(tempfile.mkdtemp(), {"model": TrainableWeights(torch.nn.Linear(1, 1), {})})
    >>> saved = ckpt.save_checkpoint(meta={"step": 3})
    >>> saved.path.name.startswith("CKPT+"), ckpt.list_checkpoints()[0].meta["step"]
    (True, 3)
    """

    def __init__(self, checkpoints_dir, recoverables=None, **kwargs):
        super().__init__(checkpoints_dir, recoverables, **kwargs)
        if if_main_process():
            for stale in self.checkpoints_dir.glob(f"{TMP_PREFIX}*"):
                logger.warning("removing %s, left by an interrupted checkpoint save", stale)
                shutil.rmtree(stale, ignore_errors=True)

    def save_checkpoint(self, meta={}, end_of_epoch=True, name=None, verbosity=logging.INFO):  # noqa: B006 (SB's signature)
        """Save every recoverable into a temporary directory, then rename it into place."""
        final = tmp = None
        if if_main_process():
            final = self._new_checkpoint_dirpath() if name is None else self._custom_checkpoint_dirpath(name)
            tmp = final.with_name(TMP_PREFIX + final.name)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        final, tmp = ddp_broadcast((final, tmp), src=0)
        paramfiles = {}
        for key, obj in self.recoverables.items():
            path = tmp / f"{key}{PARAMFILE_EXT}"
            hook = self.custom_save_hooks.get(key) or get_default_hook(obj, DEFAULT_SAVE_HOOKS)
            if hook is None:
                raise RuntimeError(f"don't know how to save recoverable {key!r} ({type(obj).__name__})")
            hook(obj, path)
            paramfiles[key] = final / path.name
        ddp_barrier()
        saved_meta = None
        if if_main_process():
            saved_meta = self._save_checkpoint_metafile(tmp / METAFNAME, meta, end_of_epoch)
            _fsync_dir(tmp)
            if final.exists():  # a custom name saved twice: replace the old one
                shutil.rmtree(final)
            os.rename(tmp, final)
            _fsync_dir(final.parent)
            kind = "end-of-epoch" if end_of_epoch else "intra-epoch"
            logger.log(verbosity, "saved an %s checkpoint in %s", kind, final)
        ddp_barrier()
        return Checkpoint(final, saved_meta, paramfiles) if if_main_process() else None


def _fsync_dir(path: Path) -> None:
    """Flush a directory's entries (the files inside and renames) to disk."""
    for child in path.iterdir() if path.is_dir() and path.name.startswith(TMP_PREFIX) else ():
        with open(child, "rb") as f:
            os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def average_trainable(checkpoints: Iterable[Checkpoint], name: str = "model") -> Dict[str, torch.Tensor]:
    """Average the :class:`TrainableWeights` saved as ``name`` in ``checkpoints`` (icefall's --avg).

    Example
    -------
    >>> import tempfile, torch
    >>> net = torch.nn.Linear(1, 1, bias=False)
    >>> ckpt = AtomicCheckpointer(tempfile.mkdtemp(), {"model": TrainableWeights(net, {})})
    >>> saved = []
    >>> for w in (1.0, 2.0, 6.0):
    ...     _ = net.weight.data.fill_(w)
    ...     saved.append(ckpt.save_checkpoint(name=str(w)))
    >>> average_trainable(saved)["weight"].item()
    3.0
    """
    checkpoints = list(checkpoints)
    if not checkpoints:
        raise ValueError("no checkpoint to average")
    first = load_safetensors(checkpoints[0].paramfiles[name], _remedy(checkpoints[0].paramfiles[name]))
    total = {k: v.double() for k, v in first.items()}
    for ckpt in checkpoints[1:]:
        state = load_safetensors(ckpt.paramfiles[name], _remedy(ckpt.paramfiles[name]))
        if set(state) != set(total):
            raise ValueError(f"{ckpt.path}: its trainable weights are not those of {checkpoints[0].path}; cannot average")
        for k, v in state.items():
            total[k] += v.double()
    return {k: (v / len(checkpoints)).to(first[k].dtype) for k, v in total.items()}


def latest_checkpoints(checkpointer: Checkpointer, n: Optional[int] = None) -> List[Checkpoint]:
    """The ``n`` most recent checkpoints (all when ``n`` is None), newest first.

    Example
    -------
    >>> import tempfile, torch
    >>> ckpt = AtomicCheckpointer(tempfile.mkdtemp(), {"model": TrainableWeights(torch.nn.Linear(1, 1), {})})
    >>> for step in (1, 2, 3):
    ...     _ = ckpt.save_checkpoint(meta={"step": step})
    >>> [c.meta["step"] for c in latest_checkpoints(ckpt, 2)]
    [3, 2]
    """
    found = sorted(checkpointer.list_checkpoints(), key=lambda c: c.meta["unixtime"], reverse=True)
    return found if n is None else found[:n]

