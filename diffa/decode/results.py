"""Decoding results: the row format, a resumable writer, and the run's ``settings.json``.

``results.jsonl`` holds one JSON object per example, sorted like the task manifest (by id)::

    {"id": str, "utt": str, "task": "asr" | "mcq" | "open_qa",
     "prompt": str (the instruction), "hypothesis": str (the decoded answer),
     "reference": str (the manifest's answer),
     "choices": [str, ...], "gold": int or null (mcq), "labels": {...}, "source": str (when present),
     "nfe": int (forward passes), "seconds": float (the batch's time / its size)}

A row the decoder could not produce (no features, unreadable features, out of memory) has
``"failed": true`` and ``"error": str``, ``hypothesis`` null and ``nfe`` 0; the scorer counts it
as wrong (:mod:`diffa.scoring.report`).

:class:`ResultsFile` appends rows to ``<results>.partial`` batch by batch (flushed and fsynced),
so a killed run loses at most the batch in flight; a re-run reads the rows there (dropping and
logging a truncated last line), restarts the partial file from the rows it keeps and decodes the
other ids. :meth:`ResultsFile.finish` writes the complete, sorted ``results.jsonl`` atomically and
removes the partial file, so ``results.jsonl`` exists only when every example has a row — a later
stage never trusts a half file.

Example
-------
>>> import os, tempfile
>>> path = os.path.join(tempfile.mkdtemp(), "results.jsonl")
>>> res = ResultsFile(path)
>>> res.read()
{}
>>> res.append([{"id": "b", "hypothesis": "yes"}])
>>> _ = open(res.partial, "a").write('{"id": "a", "hypo')   # killed mid-write
>>> kept = ResultsFile(path).read()                        # the half line is dropped
>>> sorted(kept)
['b']
>>> res.restart(kept.values())
>>> res.append([{"id": "a", "hypothesis": "no"}])
>>> [row["id"] for row in res.finish(["a", "b"])], os.path.exists(res.partial)
(['a', 'b'], False)
"""

from __future__ import annotations

import glob
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from diffa.files import atomic_save_text, atomic_write

logger = logging.getLogger(__name__)

TASK_KEYS = ("choices", "gold", "labels", "source")
"""Manifest keys copied into a result row when the task has them."""


def result_row(
    task: Mapping[str, Any],
    hypothesis: Optional[str] = None,
    nfe: int = 0,
    seconds: float = 0.0,
    error: Optional[str] = None,
) -> Dict[str, Any]:
    """One line of ``results.jsonl`` for a manifest row (module docstring).

    Arguments
    ---------
    task : mapping
        The ``tasks.jsonl`` row.
    hypothesis : str, optional
        The decoded answer (None for a failed row).
    nfe : int
        Forward passes spent on it.
    seconds : float
        Its share of the batch's decoding time.
    error : str, optional
        Why it failed; makes the row ``"failed": true``.

    Returns
    -------
    dict

    Example
    -------
    >>> task = {"id": "q1", "utt": "u1", "task": "mcq", "instruction": "Who?", "answer": "a cat",
    ...         "choices": ["a cat", "a dog"], "gold": 0}
    >>> result_row(task, "a cat", nfe=3, seconds=0.5)["gold"]
    0
    >>> result_row(task, error="no features")["failed"]
    True
    """
    row = {"id": task["id"], "utt": task["utt"], "task": task["task"], "prompt": task["instruction"],
           "hypothesis": hypothesis, "reference": task["answer"]}
    row.update({key: task[key] for key in TASK_KEYS if key in task})
    row.update({"nfe": int(nfe), "seconds": round(float(seconds), 6)})
    if error is not None:
        row.update({"failed": True, "error": error})
    return row


class ResultsFile:
    """The results of one decoding job, resumable (module docstring).

    Arguments
    ---------
    path : str
        The final ``results.jsonl`` (``results.<job>.jsonl`` for a job of a sharded run); rows
        are collected in ``<path>.partial`` until :meth:`finish`.

    Example
    -------
    >>> import os, tempfile
    >>> res = ResultsFile(os.path.join(tempfile.mkdtemp(), "results.1.jsonl"))
    >>> os.path.basename(res.partial)
    'results.1.jsonl.partial'
    """

    def __init__(self, path: str):
        self.path = str(path)
        self.partial = self.path + ".partial"

    def read(self) -> Dict[str, Dict[str, Any]]:
        """Rows written so far, by id: from the partial file, else from a finished results file.

        Reads only. A truncated last line of the partial file (a run killed mid-write) is
        dropped, with a warning; :meth:`restart` then writes the file without it. A malformed
        line elsewhere raises ValueError naming the line.

        Returns
        -------
        dict
            id -> row.
        """
        if os.path.exists(self.partial):
            return self._read(self.partial)
        if os.path.exists(self.path):
            return self._read(self.path)
        return {}

    def _read(self, path: str) -> Dict[str, Dict[str, Any]]:
        with open(path, "rb") as f:
            data = f.read()
        lines = data.split(b"\n")
        # the piece after the last newline is a line whose write was cut short (or empty)
        complete, tail = lines[:-1], lines[-1]
        rows: Dict[str, Dict[str, Any]] = {}
        dropped = [tail] if tail.strip() else []
        for number, line in enumerate(complete, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                if number == len(complete):  # garbage at the end of a crashed write
                    dropped.append(line)
                    continue
                raise ValueError(f"{path}:{number}: malformed results line ({err}); delete the line "
                                 f"(its example is decoded again) or the file to start over") from None
            if not isinstance(row, dict) or not isinstance(row.get("id"), str):
                raise ValueError(f"{path}:{number}: a results line must be a JSON object with a string "
                                 f"'id'; delete the line or the file to start over")
            if row["id"] in rows:
                logger.warning("%s:%d: id %s appears twice; keeping the later row", path, number, row["id"])
            rows[row["id"]] = row
        if dropped:
            logger.warning("%s: dropped %d truncated line(s) at the end (a run killed while writing); "
                           "their examples are decoded again", path, len(dropped))
        return rows

    def restart(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Replace the partial file with ``rows`` atomically: the rows a resumed run keeps (from
        :meth:`read`); the rows it decodes are appended after them.

        Arguments
        ---------
        rows : iterable of dict
            Result rows.
        """
        os.makedirs(os.path.dirname(os.path.abspath(self.partial)), exist_ok=True)
        with atomic_write(self.partial) as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)

    def decoded_files(self) -> List[str]:
        """The results files a ``settings.json`` beside this one describes: this file and its
        partial file, and the files of the other jobs of a sharded run (``<stem>.*.jsonl`` and
        their partial files, where ``<stem>`` is this file's name up to its first dot), those
        that exist.

        The jobs' concatenation ``<stem>.jsonl`` is not a job's file: it is made from theirs
        (and a forced redo of the recipe's stage 8 removes only the job files).

        Returns
        -------
        list of str
            Sorted paths.
        """
        folder = os.path.dirname(os.path.abspath(self.path))
        jobs = os.path.join(glob.escape(folder), glob.escape(os.path.basename(self.path).split(".")[0]) + ".*.jsonl")
        own = [os.path.abspath(p) for p in (self.path, self.partial) if os.path.exists(p)]
        return sorted(set(glob.glob(jobs) + glob.glob(jobs + ".partial") + own))

    def append(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append rows (one batch) to the partial file, flushed and fsynced.

        Arguments
        ---------
        rows : sequence of dict
            Result rows (:func:`result_row`).
        """
        if not rows:
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.partial)), exist_ok=True)
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        with open(self.partial, "a", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    def finish(self, order: Sequence[str]) -> List[Dict[str, Any]]:
        """Write ``results.jsonl`` (rows in ``order``, from :meth:`read`) atomically and remove the
        partial file.

        Arguments
        ---------
        order : sequence of str
            Every example id of the job, in output order. Rows of other ids (left by a run over
            another split) are dropped with a warning.

        Returns
        -------
        list of dict
            The rows written.
        """
        rows = self.read()
        missing = [i for i in order if i not in rows]
        if missing:
            raise ValueError(f"{self.partial}: no result for {len(missing)} ids (first: {missing[0]}); "
                             "decode them before finishing")
        extra = sorted(set(rows) - set(order))
        if extra:
            logger.warning("%s: dropping %d rows whose ids are not in this job's tasks (first: %s)",
                           self.partial, len(extra), extra[0])
        out = [rows[i] for i in order]
        with atomic_write(self.path) as f:
            f.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in out)
        if os.path.exists(self.partial):
            os.remove(self.partial)
        return out


def check_settings(path: str, settings: Mapping[str, Any], decoded: Sequence[str]) -> None:
    """Refuse to mix settings in one results folder: raise ValueError naming the differing keys
    when ``path`` records other settings and results decoded with them exist.

    ``git`` and ``versions`` are informational; every other key is compared. A ``settings.json``
    without ``audio_dtype`` (written before that setting existed, when the whole model ran in
    ``dtype``) counts as ``audio_dtype = dtype``. With no results
    beside it (none yet, or removed to decode again) an old ``settings.json`` is simply replaced
    by :func:`write_settings`. ``decoded`` must be listed before this reads ``path``: the jobs of a
    sharded run write ``settings.json`` before their first row, so a job that sees another's rows
    also sees its settings.

    Arguments
    ---------
    path : str
        ``settings.json`` beside the results.
    settings : mapping
        ``model``, decode settings, ``git``, ``versions``.
    decoded : sequence of str
        The results files beside it (:meth:`ResultsFile.decoded_files`).

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "settings.json")
    >>> write_settings(path, {"model": "m", "steps": 16, "git": "abc"})
    >>> check_settings(path, {"model": "m", "steps": 16, "git": "def"}, ["results.1.jsonl"])
    >>> check_settings(path, {"model": "m", "steps": 8, "git": "def"}, [])
    >>> check_settings(path, {"model": "m", "steps": 8, "git": "def"}, ["results.1.jsonl"])
    Traceback (most recent call last):
     ...
    ValueError: .../settings.json: the results beside it (results.1.jsonl) were decoded with other settings (steps: 16 -> 8); ...
    """
    if not decoded or not os.path.exists(path):
        return
    with open(path, encoding="utf-8") as f:
        try:
            old = json.load(f)
        except json.JSONDecodeError:
            return
    if not isinstance(old, dict):
        return
    if "dtype" in old:
        old.setdefault("audio_dtype", old["dtype"])
    keys = sorted((set(old) | set(settings)) - {"git", "versions"})
    changed = [f"{k}: {old.get(k)} -> {settings.get(k)}" for k in keys if old.get(k) != settings.get(k)]
    if changed:
        names = [os.path.basename(p) for p in decoded]
        listed = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise ValueError(f"{path}: the results beside it ({listed}) were decoded with other settings "
                         f"({'; '.join(changed)}); use the same settings to resume or to decode more "
                         "jobs, or another output directory, or delete those results (the recipe: "
                         "--force true) to start over")


def write_settings(path: str, settings: Mapping[str, Any]) -> None:
    """Write a decoding run's ``settings.json`` (after :func:`check_settings`).

    The file is shared by the jobs of a sharded run, so it is written through a unique temporary
    name and renamed.

    Arguments
    ---------
    path, settings
        See :func:`check_settings`.

    Example
    -------
    >>> import tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "decode_x", "settings.json")
    >>> write_settings(path, {"steps": 8}); open(path).read()
    '{\\n  "steps": 8\\n}\\n'
    """
    atomic_save_text(Path(path), json.dumps(settings, indent=2, ensure_ascii=False) + "\n")
