"""Resumable, checksummed downloads and marker-guarded tarball extraction.

:func:`fetch` downloads with ``curl -C -`` into ``<dest>.part`` (so an
interrupted download resumes where it stopped; from a server that cannot
resume it starts over), checks the MD5 and only then renames the file to
``dest``. :func:`extract` unpacks a tarball once and leaves a marker, so
re-running a recipe stage skips finished work. Any URL
that curl understands works, ``file://`` included.
"""
import hashlib
import logging
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Union

logger = logging.getLogger(__name__)


CURL_CANNOT_RESUME = 33
"""curl's exit status when the server ignores the byte range of a resumed download."""


class DownloadError(RuntimeError):
    """A download failed or its checksum is wrong; the message says what to do.

    Example
    -------
    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as d:
    ...     dest = os.path.join(d, "a.tar.gz"); _ = open(dest, "wb").write(b"abc")
    ...     fetch("file:///unused", dest, "0" * 32)  # already there, but the checksum is wrong
    Traceback (most recent call last):
    ...
    diffa.data.corpora.download.DownloadError: /.../a.tar.gz: MD5 9001...72 != expected 000...0; delete ... and download again
    """


def md5sum(path: Union[str, Path], chunk: int = 1 << 20) -> str:
    """MD5 hex digest of a file, read in chunks.

    Arguments
    ---------
    path : str or Path
        The file.
    chunk : int
        Bytes read at a time.

    Returns
    -------
    str
        32 lower-case hex digits.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "x")
    >>> _ = open(p, "wb").write(b"abc")
    >>> md5sum(p)
    '900150983cd24fb0d6963f7d28e17f72'
    """
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, dest: Union[str, Path], md5: str) -> Path:
    """Download ``url`` to ``dest`` (resuming a partial download) and verify its MD5.

    A ``dest`` that already exists with the right checksum is kept as is.

    Arguments
    ---------
    url : str
        Source (``https://``, ``file://``, ...).
    dest : str or Path
        Final file name; the download goes to ``<dest>.part`` first.
    md5 : str
        Expected MD5 hex digest.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    DownloadError
        If curl fails or the checksum differs (the message names the file to delete).

    Example
    -------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); src = os.path.join(d, "src.bin")
    >>> _ = open(src, "wb").write(b"abc")
    >>> fetch("file://" + src, os.path.join(d, "got.bin"), "900150983cd24fb0d6963f7d28e17f72").name
    'got.bin'
    """
    dest = Path(dest)
    if dest.exists():
        _verify(dest, md5)
        logger.info("%s: already downloaded, checksum ok", dest)
        return dest
    if shutil.which("curl") is None:
        raise DownloadError("curl is not installed; install it (apt-get install curl) or download by hand")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    logger.info("downloading %s -> %s", url, dest)
    code = _curl(url, part)
    if code == CURL_CANNOT_RESUME and md5sum(part) != md5:
        logger.warning("%s: the server cannot resume; downloading %s from the start", url, part)
        part.unlink()
        code = _curl(url, part)
    if code != 0 and not (part.exists() and md5sum(part) == md5):
        again = f"rerun to resume, or delete {part} to start over" if part.exists() else "rerun"
        raise DownloadError(
            f"curl exited with {code} fetching {url} (its message is above); check the URL and "
            f"the network and {again}, or put the file at {dest} by hand (its MD5 is checked)"
        )
    _verify(part, md5)
    part.rename(dest)
    return dest


def _curl(url: str, part: Path) -> int:
    """Run curl, resuming into ``part``; return its exit status."""
    return subprocess.run(["curl", "-L", "--fail", "-sS", "-C", "-", "-o", str(part), url]).returncode


def _verify(path: Path, md5: str) -> None:
    got = md5sum(path)
    if got != md5:
        raise DownloadError(f"{path}: MD5 {got} != expected {md5}; delete {path} and download again")


def extract(archive: Union[str, Path], dest_dir: Union[str, Path]) -> Path:
    """Unpack a tarball into ``dest_dir`` once (a marker file records completion).

    Members are filtered with ``tarfile``'s ``"data"`` filter (no absolute
    paths, no links leaving ``dest_dir``).

    Arguments
    ---------
    archive : str or Path
        ``.tar``, ``.tar.gz``, ...
    dest_dir : str or Path
        Where to unpack.

    Returns
    -------
    Path
        The marker file ``<dest_dir>/.<archive name>.extracted``.

    Example
    -------
    >>> import tempfile, os, tarfile
    >>> d = tempfile.mkdtemp(); f = os.path.join(d, "a.txt")
    >>> _ = open(f, "w").write("hi")
    >>> with tarfile.open(os.path.join(d, "a.tar.gz"), "w:gz") as t:
    ...     t.add(f, arcname="top/a.txt")
    >>> _ = extract(os.path.join(d, "a.tar.gz"), os.path.join(d, "out"))
    >>> open(os.path.join(d, "out", "top", "a.txt")).read()
    'hi'
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    marker = dest_dir / f".{archive.name}.extracted"
    if marker.exists():
        logger.info("%s: already extracted into %s", archive, dest_dir)
        return marker
    dest_dir.mkdir(parents=True, exist_ok=True)
    logger.info("extracting %s -> %s", archive, dest_dir)
    with tarfile.open(archive) as tar:
        tar.extractall(dest_dir, filter="data")
    marker.write_text(f"{archive}\n", encoding="utf-8")
    return marker
