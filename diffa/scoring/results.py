"""Read a decoder's ``results.jsonl`` and fill it from the set's ``tasks.jsonl``.

Input: ``results.jsonl``, one JSON object per line, as the decoder writes it::

    {"id": str, "task": "asr" | "mcq" | "open_qa", "hypothesis": str, "reference": str,
     "choices": [str, ...] (mcq), "gold": int or null (mcq), "labels": {str: str}, "source": str,
     "failed": true, "error": str (only on rows the decoder could not decode), ...}

Other keys (``prompt``, ``nfe``, ``seconds``, ...) are ignored by the scorers. With the set's
``tasks.jsonl`` (:func:`merge_tasks`) the manifest supplies ``task``, ``reference`` (its
``answer``), ``choices``, ``gold``, ``labels`` and ``source``, and ids the results lack become
failed rows.

Bad input is counted and listed, never silently dropped: a truncated last line (a decoder killed
mid-write) is skipped and reported; a malformed line elsewhere is an error naming the line; a
repeated id keeps its last row (a resumed decode) and is counted.
"""

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Sequence

logger = logging.getLogger(__name__)

TASKS = ("asr", "mcq", "open_qa")
"""Task types a results row may have."""


@dataclass
class ResultsFile:
    """What :func:`read_results` read.

    Arguments
    ---------
    path : str
        The file.
    rows : list of dict
        One row per id (the last one when an id repeats), in file order.
    skipped : list of dict
        ``{"line": int, "reason": str}`` for each line left out (a truncated last line).
    duplicates : list of str
        Ids that appeared more than once.

    Example
    -------
    >>> ResultsFile("r.jsonl", [{"id": "a"}]).ids
    ['a']
    """

    path: str
    rows: List[Dict[str, Any]]
    skipped: List[Dict[str, Any]] = field(default_factory=list)
    duplicates: List[str] = field(default_factory=list)

    @property
    def ids(self) -> List[str]:
        """The row ids in order."""
        return [row["id"] for row in self.rows]


def read_results(path: str) -> ResultsFile:
    """Read a decoder's ``results.jsonl``, tolerating a truncated last line.

    Arguments
    ---------
    path : str
        The file.

    Returns
    -------
    ResultsFile
        Raises ValueError naming ``path:line`` for a malformed line that is not the last one
        (or is a complete last line), and for a row without a string ``id``.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "results.jsonl")
    >>> _ = open(path, "w").write('{"id": "a", "hypothesis": "x"}\\n{"id": "b", "hypo')
    >>> res = read_results(path)
    >>> res.ids, res.skipped
    (['a'], [{'line': 2, 'reason': 'truncated last line (no line end, not valid JSON)'}])
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 ({err}); re-run decoding for this set") from None
    lines = text.split("\n")
    complete = lines[-1] == ""
    if complete:
        lines.pop()
    by_id: Dict[str, Dict[str, Any]] = {}
    skipped: List[Dict[str, Any]] = []
    duplicates: List[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines) and not complete:
                skipped.append({"line": number, "reason": "truncated last line (no line end, not valid JSON)"})
                logger.warning("%s:%d: truncated last line skipped (a decode interrupted mid-write?)", path, number)
                continue
            raise ValueError(f"{path}:{number}: malformed JSON ({err.msg} at column {err.colno}); "
                             "the file is damaged: re-run decoding for this set") from None
        if not isinstance(row, dict) or not isinstance(row.get("id"), str):
            raise ValueError(f"{path}:{number}: a results row must be a JSON object with a string 'id', "
                             f"got {line[:80]!r}")
        try:  # a lone escaped surrogate decodes, then breaks writing the score files, unnamed
            json.dumps(row, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{path}:{number}: row {row['id']!r} holds an escaped lone UTF-16 surrogate "
                             "(\\ud800-\\udfff without its pair), which is not text; fix the row or re-run "
                             "decoding for this set") from None
        if row["id"] in by_id:
            duplicates.append(row["id"])
            del by_id[row["id"]]
        row["_line"] = number
        by_id[row["id"]] = row
    if duplicates:
        logger.warning("%s: %d ids appear more than once (kept the last row of each), e.g. %s",
                       path, len(duplicates), duplicates[:3])
    return ResultsFile(path, list(by_id.values()), skipped, duplicates)


def merge_tasks(results: ResultsFile, tasks: Sequence[Mapping[str, Any]]) -> List[str]:
    """Fill results rows from the set's task manifest and add rows for ids never decoded.

    The manifest is the authority for ``task``, ``reference`` (its ``answer``), ``choices``,
    ``gold``, ``labels`` and ``source``. An id of the manifest that the results lack becomes a
    failed row (``"error": "missing from results"``).

    Arguments
    ---------
    results : ResultsFile
        Modified in place.
    tasks : sequence of dict
        Rows of ``tasks.jsonl`` (:func:`diffa.data.tasks.read_tasks`).

    Returns
    -------
    list of str
        The ids that were missing. Raises ValueError when the results hold an id the manifest
        does not have (results of another set).

    Example
    -------
    >>> res = ResultsFile("r.jsonl", [{"id": "q1", "hypothesis": "B"}])
    >>> tasks = [{"id": "q1", "task": "mcq", "answer": "y", "choices": ["x", "y"], "gold": 1},
    ...          {"id": "q2", "task": "mcq", "answer": "x", "choices": ["x", "y"], "gold": 0}]
    >>> merge_tasks(res, tasks), res.rows[0]["reference"], res.rows[1]["failed"]
    (['q2'], 'y', True)
    """
    by_id = {task["id"]: task for task in tasks}
    unknown = [row["id"] for row in results.rows if row["id"] not in by_id]
    if unknown:
        raise ValueError(f"{results.path}: {len(unknown)} ids are not in the set's tasks.jsonl, e.g. "
                         f"{unknown[:3]}; score results against the data dir they were decoded from")
    for row in results.rows:
        task = by_id[row["id"]]
        row.update({key: task[key] for key in ("task", "choices", "gold", "labels", "source") if key in task})
        row["reference"] = task["answer"]
    present = {row["id"] for row in results.rows}
    missing = [task["id"] for task in tasks if task["id"] not in present]
    for task_id in missing:
        task = by_id[task_id]
        results.rows.append({**{k: task[k] for k in ("id", "task", "choices", "gold", "labels", "source") if k in task},
                             "reference": task["answer"], "failed": True, "error": "missing from results"})
    if missing:
        logger.warning("%s: %d ids of tasks.jsonl have no result (scored as wrong), e.g. %s",
                       results.path, len(missing), missing[:3])
    return missing

