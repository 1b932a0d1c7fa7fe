"""Kaldi data-directory files: ``<key> <value>`` maps, atomic writes, and dumped features.

Every file of a Kaldi data directory (``wav.scp``, ``text``, ``utt2spk``, ``spk2utt``,
``utt2dur``, ``utt2num_frames``, ``feats.scp``, ``bad_utts``) is a text map with one entry per
line: the key (an utterance or speaker id, no whitespace), whitespace, then the value (the rest of
the line). Files are UTF-8 and sorted by key in C-locale byte order (``LC_ALL=C sort``); for UTF-8
text that is the code-point order of Python's ``sorted`` on ``str``, which :func:`write_map` uses.

:func:`read_map` checks what a later stage would trip over and names the file and line: bytes that
are not UTF-8, a byte-order mark, blank lines, duplicate keys, unsorted keys, empty values (an
empty transcript in ``text``) and values that do not parse as the requested type. Paths in
``wav.scp`` and ``feats.scp`` are used as written: relative ones are relative to the directory the
recipe runs in.

Everything is written through :func:`diffa.files.atomic_write`: to ``<path>.tmp`` first, renamed over ``path``
once complete, so an interrupted run never leaves a half-written file under the final name.

Example
-------
>>> import os, tempfile
>>> d = tempfile.mkdtemp()
>>> write_map(os.path.join(d, "utt2spk"), {"spk1-u2": "spk1", "spk1-u1": "spk1", "spk2-u1": "spk2"})
>>> print(open(os.path.join(d, "utt2spk")).read(), end="")
spk1-u1 spk1
spk1-u2 spk1
spk2-u1 spk2
>>> utt2spk_to_spk2utt(read_map(os.path.join(d, "utt2spk")))
{'spk1': 'spk1-u1 spk1-u2', 'spk2': 'spk2-u1'}
"""

from __future__ import annotations

import codecs
import os
from typing import Callable, Dict, Iterator, Mapping, Tuple, TypeVar

import kaldiio

from diffa.files import atomic_write

V = TypeVar("V")


def iter_lines(path: str) -> Iterator[Tuple[int, str]]:
    """Yield ``(line_number, line)`` of a UTF-8 text file, line ends removed, numbered from 1.

    Arguments
    ---------
    path : str
        The file to read.

    Returns
    -------
    An iterator of (int, str). Raises ValueError naming ``path:line`` at the first line that is
    not valid UTF-8, and at a UTF-8 byte-order mark starting the file (it would be read as part
    of the first key).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "text")
    >>> _ = open(path, "wb").write(b"a caf\\xc3\\xa9\\nb \\xe9t\\xe9\\n")
    >>> next(iter_lines(path))
    (1, 'a café')
    >>> list(iter_lines(path))
    Traceback (most recent call last):
    ...
    ValueError: /...text:2: not valid UTF-8 (invalid continuation byte at byte 2);
    re-encode the file as UTF-8 (e.g. iconv -t UTF-8)
    >>> _ = open(path, "wb").write(b"\\xef\\xbb\\xbfa 1\\n")
    >>> list(iter_lines(path))
    Traceback (most recent call last):
    ...
    ValueError: /...text:1: starts with a UTF-8 byte-order mark; remove it
    (e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' /...text)
    """
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raise ValueError(
                    f"{path}:1: starts with a UTF-8 byte-order mark; remove it "
                    f"(e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' {path})"
                )
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{path}:{number}: not valid UTF-8 ({err.reason} at byte {err.start}); "
                    "re-encode the file as UTF-8 (e.g. iconv -t UTF-8)"
                ) from None
            yield number, line.rstrip("\r\n")


class KeyOrder:
    """Checks that keys arrive unique and sorted (C-locale byte order), naming the file and line.

    Arguments
    ---------
    path : str
        The file being read (for messages).

    Example
    -------
    >>> order = KeyOrder("data/train/text")
    >>> order.add("u1", 1); order.add("u2", 2)
    >>> order.add("u10", 3)
    Traceback (most recent call last):
    ...
    ValueError: data/train/text:3: key 'u10' comes after 'u2': the file is not sorted;
    sort it with: LC_ALL=C sort -o data/train/text data/train/text
    """

    def __init__(self, path: str):
        self.path = path
        self.first_line: Dict[str, int] = {}
        self.previous = None

    def add(self, key: str, line: int) -> None:
        """Record ``key`` read at ``line``; raise ValueError if it is a duplicate or out of order.

        Arguments
        ---------
        key : str
            The key.
        line : int
            Its line number (1-based).
        """
        if key in self.first_line:
            raise ValueError(
                f"{self.path}:{line}: duplicate key '{key}' (first at line "
                f"{self.first_line[key]}); keep one entry per key"
            )
        if self.previous is not None and key < self.previous:
            raise ValueError(
                f"{self.path}:{line}: key '{key}' comes after '{self.previous}': the file is not "
                f"sorted; sort it with: LC_ALL=C sort -o {self.path} {self.path}"
            )
        self.first_line[key] = line
        self.previous = key


def read_map(
    path: str, value_type: Callable[[str], V] = str, allow_empty: bool = False
) -> Dict[str, V]:
    """Read a Kaldi ``<key> <value>`` file, checking encoding, order, duplicates and values.

    Arguments
    ---------
    path : str
        The file (``wav.scp``, ``text``, ``utt2spk``, ``utt2num_frames``, ...).
    value_type : callable
        Applied to each value string (``int`` for ``utt2num_frames``, ``float`` for
        ``utt2dur``); a value it rejects is an error naming the line.
    allow_empty : bool
        Accept lines that hold a key and no value (the value is then ``""``).

    Returns
    -------
    dict mapping key -> value, in file (sorted) order.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "text")
    >>> _ = open(path, "w").write("u1 HELLO  WORLD\\nu2\\n")
    >>> read_map(path)
    Traceback (most recent call last):
    ...
    ValueError: /...text:2: key 'u2' has an empty value (an empty transcript?);
    fill it in (non-speech audio: <nospeech>) or remove the line
    >>> read_map(path, allow_empty=True)
    {'u1': 'HELLO  WORLD', 'u2': ''}
    >>> os.rename(path, path + ".scp"); read_map(path + ".scp")
    Traceback (most recent call last):
    ...
    ValueError: /...text.scp:2: key 'u2' has an empty value; fill it in or remove the line
    """
    mapping: Dict[str, V] = {}
    order = KeyOrder(path)
    for number, line in iter_lines(path):
        parts = line.strip().split(maxsplit=1)
        if not parts:
            raise ValueError(f"{path}:{number}: blank line; remove it")
        key = parts[0]
        value = parts[1] if len(parts) == 2 else ""
        if not value and not allow_empty:
            hint = (" (an empty transcript?); fill it in (non-speech audio: <nospeech>) or remove the line"
                    if os.path.basename(path) == "text" else "; fill it in or remove the line")
            raise ValueError(f"{path}:{number}: key '{key}' has an empty value{hint}")
        order.add(key, number)
        try:
            mapping[key] = value_type(value)
        except ValueError as err:
            raise ValueError(f"{path}:{number}: bad value for '{key}': {err}") from None
    return mapping


def write_map(path: str, mapping: Mapping[str, object]) -> None:
    """Write a Kaldi ``<key> <value>`` file sorted by key, atomically.

    Arguments
    ---------
    path : str
        Destination file.
    mapping : Mapping
        key -> value; values are written with ``str()``. Keys must be non-empty without
        whitespace, values non-empty without line breaks.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "utt2num_frames")
    >>> write_map(path, {"b": 12, "a": 7})
    >>> read_map(path, value_type=int)
    {'a': 7, 'b': 12}
    >>> write_map(path, {"a b": 1})
    Traceback (most recent call last):
    ...
    ValueError: write_map(/...utt2num_frames): key 'a b' is empty or contains whitespace
    """
    lines = []
    for key in sorted(mapping):
        value = str(mapping[key])
        if not key or any(char.isspace() for char in key):
            raise ValueError(f"write_map({path}): key {key!r} is empty or contains whitespace")
        if not value.strip() or "\n" in value or "\r" in value:
            raise ValueError(
                f"write_map({path}): value of '{key}' is empty or contains a line break: {value!r}"
            )
        lines.append(f"{key} {value}\n")
    with atomic_write(path) as f:
        f.writelines(lines)


def utt2spk_to_spk2utt(utt2spk: Mapping[str, str]) -> Dict[str, str]:
    """Invert ``utt2spk`` into Kaldi's ``spk2utt`` (value: the speaker's utts, sorted, spaced).

    Arguments
    ---------
    utt2spk : Mapping
        utterance id -> speaker id.

    Returns
    -------
    dict speaker id -> ``"utt1 utt2 ..."``, sorted by speaker.

    Example
    -------
    >>> utt2spk_to_spk2utt({"b-2": "b", "a-1": "a", "b-1": "b"})
    {'a': 'a-1', 'b': 'b-1 b-2'}
    """
    utts: Dict[str, list] = {}
    for utt in sorted(utt2spk):
        utts.setdefault(utt2spk[utt], []).append(utt)
    return {spk: " ".join(utts[spk]) for spk in sorted(utts)}


def load_feats(scp: str) -> Mapping:
    """Open a ``feats.scp`` (from ``diffa.bin.extract_feats``) as a lazy utt -> matrix mapping.

    Matrices are read from the ark files on access, as numpy arrays (T, n_mels) in the dtype they
    were stored with (float32 or float16).

    Arguments
    ---------
    scp : str
        Path of ``dump/<set>/feats.scp``.

    Returns
    -------
    A read-only Mapping (kaldiio's lazy loader); ``len()``, ``in``, ``keys()`` and ``[utt]`` work.

    Example
    -------
    >>> import os, tempfile, numpy as np, kaldiio
    >>> d = tempfile.mkdtemp()
    >>> kaldiio.save_ark(os.path.join(d, "f.ark"), {"u1": np.ones((3, 2), np.float32)},
    ...                  scp=os.path.join(d, "feats.scp"))
    >>> feats = load_feats(os.path.join(d, "feats.scp"))
    >>> list(feats), feats["u1"].shape
    (['u1'], (3, 2))
    """
    if not os.path.isfile(scp):
        raise FileNotFoundError(
            f"{scp} not found; it is written by the feature stage (diffa.bin.extract_feats)"
        )
    try:
        return kaldiio.load_scp(scp)
    except (ValueError, UnicodeDecodeError) as err:  # kaldiio names the line, not the file
        found = " ".join(str(err).split())  # e.g. "Invalid line is found: > u00"
        raise ValueError(f"{scp}: {found}; each line must be '<utt> <ark>:<offset>' (rerun the feature stage)") from None
