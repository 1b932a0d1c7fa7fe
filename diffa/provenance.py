"""The provenance of a run: the git commit of the code and the versions of the packages it ran
with, as ``settings.json`` (decoding), ``scores.json`` and RESULTS.md (scoring) record them."""

import importlib.metadata
import subprocess
from typing import Dict, Optional, Sequence

VERSIONED_PACKAGES = ("torch", "transformers", "diffa")
"""Packages whose versions go into scores.json and RESULTS.md."""


def git_hash(cwd: Optional[str] = None) -> str:
    """``git rev-parse --short HEAD`` (``+dirty`` when tracked files changed), or ``unknown``.

    Arguments
    ---------
    cwd : str, optional
        Directory inside the repository (default: the current one).

    Returns
    -------
    str

    Example
    -------
    >>> import tempfile
    >>> git_hash(tempfile.mkdtemp())
    'unknown'
    """
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True,
                              text=True, timeout=20)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def package_versions(names: Sequence[str] = VERSIONED_PACKAGES) -> Dict[str, str]:
    """Installed versions of some packages (``not installed`` when absent).

    Arguments
    ---------
    names : sequence of str
        Distribution names.

    Returns
    -------
    dict of str to str

    Example
    -------
    >>> package_versions(("diffa", "no-such-package-xyz"))
    {'diffa': '...', 'no-such-package-xyz': 'not installed'}
    """
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
