"""Reading and writing model files safely: JSON objects, safetensors and the shard indexes of
sharded checkpoints (``*.safetensors.index.json``) that fail with the file's name and what to do,
and atomic writes (a temporary name, then a rename): :func:`atomic_write` for files written
through a file object (manifests, maps, results), :func:`atomic_save` for libraries that write to
a file name (safetensors, transformers).

Every loader and saver of the library goes through these, so an interrupted save never leaves a half file that a later
stage trusts, and a truncated download is named rather than reported as a parser's traceback.

Example
-------
>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "config.json"
>>> atomic_save_text(path, '{"d_model": 32}')
>>> read_json_object(path, "write it again")
{'d_model': 32}
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Dict, Iterator, Set, Union

from safetensors import SafetensorError, safe_open

if TYPE_CHECKING:  # only for annotations: reading JSON needs no torch
    import torch


def read_json_object(path: Path, remedy: str) -> Dict[str, Any]:
    """The JSON object in ``path``; a malformed file is a ValueError naming it and what to do.

    Arguments
    ---------
    path : Path
        An existing JSON file.
    remedy : str
        What to do about a malformed file; ends the message.

    Returns
    -------
    dict

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "config.json"
    >>> _ = path.write_text('{"d_model": 32,')
    >>> read_json_object(path, "download it again")
    Traceback (most recent call last):
     ...
    ValueError: .../config.json: line 1: not valid JSON (Expecting property name ...); download it again
    """
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: line {err.lineno}: not valid JSON ({err.msg}); {remedy}") from err
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(value).__name__}; {remedy}")
    return value


def open_safetensors(path: Path, remedy: str, device: Union[str, torch.device] = "cpu"):
    """``safe_open(path)`` for PyTorch; an unreadable file is a ValueError naming it and what to do.

    Arguments
    ---------
    path : Path
        An existing safetensors file.
    remedy : str
        What to do about a truncated or corrupt file; ends the message.
    device : str or torch.device
        Where ``get_tensor`` puts the tensors.

    Returns
    -------
    safetensors.safe_open
        To use as a context manager.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "model.safetensors"
    >>> _ = path.write_bytes(b"\\x10")
    >>> open_safetensors(path, "download it again")
    Traceback (most recent call last):
     ...
    ValueError: .../model.safetensors: not a readable safetensors file (...); it is truncated or ...
    """
    try:
        return safe_open(str(path), framework="pt", device=str(device))
    except SafetensorError as err:
        raise ValueError(
            f"{path}: not a readable safetensors file ({err}); it is truncated or corrupt: {remedy}"
        ) from err


def load_safetensors(path: Path, remedy: str) -> Dict[str, torch.Tensor]:
    """Every tensor of a safetensors file, on the CPU (see :func:`open_safetensors` for ``remedy``).

    Example
    -------
    >>> import tempfile
    >>> import torch
    >>> from safetensors.torch import save_file
    >>> path = Path(tempfile.mkdtemp()) / "w.safetensors"
    >>> save_file({"w": torch.ones(2)}, str(path))
    >>> load_safetensors(path, "write it again")
    {'w': tensor([1., 1.])}
    """
    with open_safetensors(path, remedy) as f:
        return {key: f.get_tensor(key) for key in f.keys()}


def read_weight_map(index: Path, remedy: str) -> Dict[str, str]:
    """The ``weight_map`` (tensor name -> shard file name) of the index file ``index``, checked;
    a malformed one is a ValueError naming it and ending with ``remedy``.

    Example
    -------
    >>> import tempfile
    >>> index = Path(tempfile.mkdtemp()) / "model.safetensors.index.json"
    >>> _ = index.write_text('{"weight_map": {"a.weight": "model-00001-of-00002.safetensors", "b.weight": 2}}')
    >>> read_weight_map(index, "download it again")
    Traceback (most recent call last):
     ...
    ValueError: .../model.safetensors.index.json: 'weight_map' maps 'b.weight' to 2, not to a file name; download it again
    """
    weight_map = read_json_object(index, remedy).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{index}: 'weight_map' is missing or empty; {remedy}")
    for key, name in weight_map.items():
        if not isinstance(name, str):
            raise ValueError(f"{index}: 'weight_map' maps {key!r} to {name!r}, not to a file name; {remedy}")
    return weight_map


def read_shards(index: Path, remedy: str) -> Dict[Path, Set[str]]:
    """Shard file -> the tensor names the index file ``index`` maps to it (shards in index
    order, beside the index); a shard that is not there is a FileNotFoundError naming both and
    ending with ``remedy``. Used by every reader of sharded checkpoints (LLaDA, Whisper, the
    authors' DIFFA).

    Example
    -------
    >>> import tempfile
    >>> index = Path(tempfile.mkdtemp()) / "model.safetensors.index.json"
    >>> _ = index.write_text('{"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors", "c": "s1.safetensors"}}')
    >>> _ = (index.parent / "s1.safetensors").write_bytes(b"")
    >>> read_shards(index, "download it again")
    Traceback (most recent call last):
     ...
    FileNotFoundError: .../model.safetensors.index.json lists s2.safetensors, but .../s2.safetensors does not exist; download it again
    >>> _ = (index.parent / "s2.safetensors").write_bytes(b"")
    >>> {shard.name: sorted(keys) for shard, keys in read_shards(index, "download it again").items()}
    {'s1.safetensors': ['a', 'c'], 's2.safetensors': ['b']}
    """
    shards: Dict[Path, Set[str]] = {}
    for key, name in read_weight_map(index, remedy).items():
        shards.setdefault(index.parent / name, set()).add(key)
    for shard in shards:
        if not shard.is_file():
            raise FileNotFoundError(f"{index} lists {shard.name}, but {shard} does not exist; {remedy}")
    return shards


def default_mode(directory: bool = False) -> int:
    """The permission bits ``open`` / ``mkdir`` give a new file / directory under the process umask.

    ``tempfile`` creates files 0o600 and directories 0o700 (and safetensors writes 0o600); what is
    renamed into place gets this mode instead, so a saved model is as readable as any other file.

    Example
    -------
    >>> old = os.umask(0o022)
    >>> oct(default_mode()), oct(default_mode(directory=True))
    ('0o644', '0o755')
    >>> _ = os.umask(old)
    """
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def atomic_save(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` on a temporary name next to ``path``, then rename it to ``path``.

    The file gets :func:`default_mode`; on any error the temporary file is removed and ``path``
    is left as it was.

    Arguments
    ---------
    path : Path
        The file to (re)place; its directory is made when missing.
    write : callable
        Writes the content to the file name it is given.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.txt"
    >>> atomic_save(path, lambda tmp: Path(tmp).write_text("hi"))
    >>> path.read_text(), oct(path.stat().st_mode & 0o777) == oct(default_mode())
    ('hi', True)
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save_text(path: Path, text: str) -> None:
    """:func:`atomic_save` of UTF-8 ``text``.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "config.json"
    >>> atomic_save_text(path, "{}\\n")
    >>> path.read_text()
    '{}\\n'
    """
    atomic_save(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w") -> Iterator[IO]:
    """Open ``<path>.tmp`` for writing; on success rename it to ``path``, on error remove it.

    Text mode writes UTF-8 with ``\\n`` line ends. A run killed inside the block leaves only
    ``<path>.tmp`` behind, which the next run overwrites. Parent directories are created.

    Arguments
    ---------
    path : str
        The final file name.
    mode : str
        ``"w"`` (text) or ``"wb"`` (binary).

    Returns
    -------
    A context manager yielding the open temporary file.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "sub", "x.txt")
    >>> with atomic_write(path) as f:
    ...     _ = f.write("hello\\n")
    ...     os.path.exists(path), os.path.exists(path + ".tmp")
    (False, True)
    >>> open(path).read(), os.path.exists(path + ".tmp")
    ('hello\\n', False)
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}")
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    tmp = path + ".tmp"
    text_args = {"encoding": "utf-8", "newline": "\n"} if mode == "w" else {}
    try:
        with open(tmp, mode, **text_args) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    os.replace(tmp, path)
