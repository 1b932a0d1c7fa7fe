"""Score a decoder's ``results.jsonl`` and write the tables: ``scores.json``, ``scores.md``,
icefall-style WER files, and a recipe's ``RESULTS.md``.

Input: ``results.jsonl``, one JSON object per line, as the decoder writes it::

    {"id": str, "task": "asr" | "mcq" | "open_qa", "hypothesis": str, "reference": str,
     "choices": [str, ...] (mcq), "gold": int (mcq), "labels": {str: str}, "source": str,
     "failed": true, "error": str (only on rows the decoder could not decode), ...}

Other keys (``prompt``, ``nfe``, ``seconds``, ...) are ignored. With the set's ``tasks.jsonl``
(:func:`merge_tasks`) the manifest supplies ``task``, ``reference`` (its ``answer``),
``choices``, ``gold``, ``labels`` and ``source``, and ids the results lack are scored as failed.

Bad input is scored, counted and listed, never silently dropped: a truncated last line (a decoder
killed mid-write) is skipped and reported; a malformed line elsewhere is an error naming the
line; a repeated id keeps its last row (a resumed decode) and is counted; failed rows and missing
ids are scored as wrong (ASR: the empty hypothesis); a hypothesis that is not a string or is empty
is scored as wrong and counted.

Metrics (all percentages), keys of ``scores.json``'s ``metrics``:

``asr_wer``, ``asr_cer``
    Over ``asr`` rows, in the first ``--style`` (``asr_wer_<style>``, ``asr_cer_<style>`` for each).
``mcq_accuracy``
    Over ``mcq`` rows with the benchmark's rule (:mod:`diffa.scoring.mcq`): MMSU's letter rule
    (every item in the denominator, as the released scorer), or MMAU's token-set rule for MMAU,
    MMAR and generic sets. ``mcq_accuracy_parsed`` (MMSU: unparseable responses left out) and
    ``mcq_accuracy_letter_mapped`` (MMAU rule with the opt-in letter mapping) beside it.
``open_qa_accuracy``, ``open_qa_contains``
    Over ``open_qa`` rows: same word tokens as the answer; every answer token present.

Per-group tables split each figure by labels: MMSU by ``category``, ``category+sub-category``
and ``task_name``; MMAU by ``task``, ``difficulty`` and ``sub-category``; MMAR by ``modality``,
``category`` and ``sub-category``; plus any ``group_by`` spec (``key`` or ``key1+key2``). A
section gets a table only when some of its rows carry the label(s); rows without one fall in the
group :data:`NO_LABEL`.

Example
-------
>>> rows = [
...     {"id": "a1", "task": "asr", "hypothesis": "the cat sat", "reference": "THE CAT SAT"},
...     {"id": "q1", "task": "mcq", "hypothesis": "a dog", "choices": ["a cat", "a dog"], "gold": 1},
...     {"id": "q2", "task": "mcq", "failed": True, "error": "OOM", "choices": ["x", "y"], "gold": 0},
...     {"id": "o1", "task": "open_qa", "hypothesis": "Pink noise.", "reference": "pink noise"}]
>>> scores = score_results(rows, "mini_test", styles=("wenet",))
>>> scores.data["metric"], scores.data["primary"]
('mixed', ['asr_wer', 'mcq_accuracy', 'open_qa_accuracy'])
>>> {key: scores.data["metrics"][key] for key in scores.data["primary"]}
{'asr_wer': 0.0, 'mcq_accuracy': 50.0, 'open_qa_accuracy': 100.0}
>>> scores.data["counts"]["failed"], scores.data["failed_ids"]
(1, ['q2'])
"""

import datetime
import importlib.metadata
import json
import logging
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from diffa.data.kaldi import atomic_write
from diffa.data.tasks import read_tasks
from diffa.scoring import mcq
from diffa.scoring.text import STYLES
from diffa.scoring.wer import WerResult, score_wer, write_errs, write_recogs, write_wer_summary

logger = logging.getLogger(__name__)

TASKS = ("asr", "mcq", "open_qa")
"""Task types a results row may have."""

METRICS = ("auto", "wer", "mmsu", "mmau", "mmar", "mcq")
"""``metric`` values of :func:`score_results`: ``auto`` picks per task type; ``wer`` scores ASR
rows; the others score multiple-choice rows with a benchmark's rule (``mcq``: generic sets,
MMAU's token rule)."""

BENCHMARK_RULES = {"mmsu": "mmsu", "mmau": "mmau", "mmar": "mmau", "mcq": "mmau"}
"""The answer rule (:data:`diffa.scoring.mcq.RULES`) each multiple-choice metric uses."""

DEFAULT_GROUPS = {
    "mmsu": ("category", "category+sub-category", "task_name"),
    "mmau": ("task", "difficulty", "sub-category"),
    "mmar": ("modality", "category", "sub-category"),
    "mcq": (),
}
"""Per-label tables each benchmark reports (a table is kept when some row has the label)."""

DEFAULT_STYLES = ("wenet", "whisper_english")
"""WER conventions scored by default; the first is the headline (``asr_wer``)."""

VERSIONED_PACKAGES = ("torch", "transformers", "diffa")
"""Packages whose versions go into scores.json and RESULTS.md."""

NO_LABEL = "(none)"
"""Group value of a row that lacks the label."""


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


def _where(row: Mapping[str, Any]) -> str:
    """``id X (line N)`` for error messages."""
    line = row.get("_line")
    return f"id {row['id']!r}" + (f" (line {line})" if line else "")


def _check_row(row: Mapping[str, Any], path: str) -> None:
    """Raise ValueError naming the row when a field its task needs is missing or malformed."""
    task = row.get("task")
    if task not in TASKS:
        raise ValueError(f"{path}: {_where(row)}: 'task' must be one of {', '.join(TASKS)}, got {task!r}; "
                         "pass --data_dir so tasks.jsonl supplies it")
    if task == "mcq":
        choices, gold = row.get("choices"), row.get("gold")
        if (not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices)
                or isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < len(choices)):
            raise ValueError(f"{path}: {_where(row)}: an mcq row needs 'choices' (>= 2 strings) and an int "
                             f"'gold' index into them, got {choices!r} / {gold!r}; pass --data_dir")
    elif not isinstance(row.get("reference"), str):
        raise ValueError(f"{path}: {_where(row)}: a {task} row needs a string 'reference', got "
                         f"{row.get('reference')!r}; pass --data_dir so tasks.jsonl supplies it")


def _hypothesis(row: Mapping[str, Any]) -> Any:
    """The row's hypothesis, None for a failed row."""
    return None if row.get("failed") else row.get("hypothesis")


def is_invalid_hypothesis(value: Any) -> bool:
    """A hypothesis that cannot be right: not a string, or empty after stripping.

    Arguments
    ---------
    value : object
        A results row's ``hypothesis``.

    Returns
    -------
    bool

    Example
    -------
    >>> [is_invalid_hypothesis(v) for v in ["B", " ", None, 3]]
    [False, True, True, True]
    """
    return not isinstance(value, str) or not value.strip()


def resolve_metrics(rows: Sequence[Mapping[str, Any]], set_name: str, metric: str = "auto") -> Dict[str, str]:
    """Which metric scores each task type present.

    Arguments
    ---------
    rows : sequence of dict
        Results rows with ``task`` (and optionally ``source``).
    set_name : str
        The test set's name; ``mmsu`` / ``mmau`` / ``mmar`` in it pick that benchmark's rule.
    metric : str
        One of :data:`METRICS`. ``auto``: ASR rows -> ``wer``; multiple-choice rows -> the
        benchmark named by the rows' common ``source`` or by the set name, else ``mcq``; open
        rows -> ``open_qa``. Any other value must match every row's task type.

    Returns
    -------
    dict
        Task type -> metric, for the task types present.

    Example
    -------
    >>> resolve_metrics([{"task": "mcq", "source": "MMAU"}], "test_mini")
    {'mcq': 'mmau'}
    >>> resolve_metrics([{"task": "asr"}, {"task": "mcq"}], "mini_test")
    {'asr': 'wer', 'mcq': 'mcq'}
    >>> resolve_metrics([{"task": "asr"}], "x", "mmsu")
    Traceback (most recent call last):
    ...
    ValueError: --metric mmsu scores mcq rows, but the results hold 1 asr rows; use --metric auto
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    present = [task for task in TASKS if any(row["task"] == task for row in rows)]
    if metric != "auto":
        wanted = "asr" if metric == "wer" else "mcq"
        for task in present:
            if task != wanted:
                n = sum(row["task"] == task for row in rows)
                raise ValueError(f"--metric {metric} scores {wanted} rows, but the results hold {n} {task} "
                                 "rows; use --metric auto")
        return {wanted: metric} if present else {}
    chosen = {"asr": "wer", "open_qa": "open_qa"}
    if "mcq" in present:
        sources = {str(row.get("source", "")).lower() for row in rows if row["task"] == "mcq"}
        hints = list(sources) if len(sources) == 1 else []
        hints.append(set_name.lower())
        chosen["mcq"] = next((name for hint in hints for name in ("mmsu", "mmau", "mmar") if name in hint), "mcq")
    return {task: chosen[task] for task in present}


def group_rows(rows: Sequence[Mapping[str, Any]], spec: str) -> Dict[str, List[int]]:
    """Row indices per value of a label (``key``) or label combination (``key1+key2``).

    Arguments
    ---------
    rows : sequence of dict
        Rows with an optional ``labels`` dict.
    spec : str
        Label key(s) joined with ``+``.

    Returns
    -------
    dict of str to list of int
        Group value (values joined with `` / ``; :data:`NO_LABEL` where a row lacks one) ->
        indices, groups sorted by value.

    Example
    -------
    >>> rows = [{"labels": {"a": "x", "b": "1"}}, {"labels": {"a": "y"}}, {"labels": {"a": "x", "b": "2"}}]
    >>> group_rows(rows, "a"), group_rows(rows, "a+b")
    ({'x': [0, 2], 'y': [1]}, {'x / 1': [0], 'x / 2': [2], 'y / (none)': [1]})
    """
    keys = spec.split("+")
    groups: Dict[str, List[int]] = {}
    for index, row in enumerate(rows):
        labels = row.get("labels") or {}
        value = " / ".join(str(labels.get(key, NO_LABEL)) for key in keys)
        groups.setdefault(value, []).append(index)
    return dict(sorted(groups.items()))


def _labelled(rows: Sequence[Mapping[str, Any]], specs: Sequence[str]) -> List[str]:
    """The grouping specs some row has every label of (a table of ``(none)`` only says nothing)."""
    return [spec for spec in specs
            if any(all(key in (row.get("labels") or {}) for key in spec.split("+")) for row in rows)]


def _tables(rows: Sequence[Mapping[str, Any]], specs: Sequence[str],
            summarise: Callable[[List[int]], Dict[str, Any]]) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """``{spec: {group value: summarise(row indices of the group)}}`` for each grouping spec."""
    return {spec: {value: summarise(members) for value, members in group_rows(rows, spec).items()} for spec in specs}


def _score_asr(rows: List[Dict[str, Any]], styles: Sequence[str],
               group_by: Sequence[str]) -> Tuple[Dict[str, Any], Dict[str, float], List[WerResult]]:
    """The ``asr`` section, its metrics and the WER/CER results of every style."""
    refs = {row["id"]: row["reference"] for row in rows}
    hyps = {row["id"]: _hypothesis(row) for row in rows}
    results, section, metrics = [], {"n": len(rows), "styles": list(styles)}, {}
    for style in styles:
        for unit in ("word", "char"):
            result = score_wer(refs, hyps, style, unit)
            results.append(result)
            key = result.metric.lower()
            section.setdefault(key, {})[style] = result.counts.to_dict()
            metrics[f"asr_{key}_{style}"] = result.counts.rate
    headline = results[0]
    metrics = {"asr_wer": metrics[f"asr_wer_{styles[0]}"], "asr_cer": metrics[f"asr_cer_{styles[0]}"], **metrics}
    section["tables"] = _tables(rows, _labelled(rows, group_by), lambda members: {
        "n": len(members), **headline.subset(rows[i]["id"] for i in members).to_dict()})
    return section, metrics, results


def _score_mcq(rows: List[Dict[str, Any]], benchmark: str, letter_mapping: bool,
               group_by: Sequence[str]) -> Tuple[Dict[str, Any], Dict[str, float], List[mcq.Verdict]]:
    """The ``mcq`` section, its metrics and each row's verdict."""
    rule = BENCHMARK_RULES[benchmark]
    if letter_mapping and rule != "mmau":
        logger.info("letter mapping applies to the MMAU rule only; %s answers are letters already", benchmark)
        letter_mapping = False
    verdicts = [mcq.judge(rule, _hypothesis(row), row["choices"], row["gold"], letter_mapping) for row in rows]
    specs = _labelled(rows, [*DEFAULT_GROUPS[benchmark], *(spec for spec in group_by
                                                       if spec not in DEFAULT_GROUPS[benchmark])])
    summary = mcq.summarize(verdicts, rule)
    section = {"benchmark": benchmark, "rule": rule, "letter_mapping": letter_mapping, **summary,
               "tables": _tables(rows, specs, lambda members: mcq.summarize([verdicts[i] for i in members], rule))}
    metrics = {"mcq_accuracy": summary["accuracy"]}
    if rule == "mmsu":
        metrics["mcq_accuracy_parsed"] = summary["accuracy_parsed"]
    if letter_mapping:
        metrics["mcq_accuracy_letter_mapped"] = summary["accuracy_letter_mapped"]
    return section, metrics, verdicts


def _open_summary(matches: Sequence[Mapping[str, bool]]) -> Dict[str, Any]:
    """Counts and accuracies of open-question matches."""
    exact, contains = sum(m["exact"] for m in matches), sum(m["contains"] for m in matches)
    return {"n": len(matches), "exact": exact, "accuracy": mcq.percent(exact, len(matches)),
            "contains": contains, "accuracy_contains": mcq.percent(contains, len(matches))}


def _score_open(rows: List[Dict[str, Any]],
                group_by: Sequence[str]) -> Tuple[Dict[str, Any], Dict[str, float], List[Dict[str, bool]]]:
    """The ``open_qa`` section, its metrics and each row's matches."""
    matches = [mcq.open_match(row["reference"], _hypothesis(row)) for row in rows]
    section = {**_open_summary(matches),
               "tables": _tables(rows, _labelled(rows, group_by),
                                 lambda members: _open_summary([matches[i] for i in members]))}
    metrics = {"open_qa_accuracy": section["accuracy"], "open_qa_contains": section["accuracy_contains"]}
    return section, metrics, matches


@dataclass
class Scores:
    """Everything :func:`score_results` computed.

    Arguments
    ---------
    data : dict
        The content of ``scores.json`` (see :func:`score_results`).
    wer_results : list of WerResult
        ASR results per style and unit (empty without ASR rows).
    asr_texts : tuple of two dicts
        Raw references and hypotheses of the ASR rows by id (for ``recogs-<set>.txt``).
    judgements : list of dict
        One record per multiple-choice / open row: ``id``, ``task``, ``hypothesis`` and the
        verdict fields (for ``judgements-<set>.jsonl``).

    Example
    -------
    >>> Scores({"metrics": {}}).wer_results
    []
    """

    data: Dict[str, Any]
    wer_results: List[WerResult] = field(default_factory=list)
    asr_texts: Tuple[Dict[str, str], Dict[str, Any]] = field(default_factory=lambda: ({}, {}))
    judgements: List[Dict[str, Any]] = field(default_factory=list)


def score_results(rows: Sequence[Dict[str, Any]], set_name: str, metric: str = "auto",
                  styles: Sequence[str] = DEFAULT_STYLES, letter_mapping: bool = False,
                  group_by: Sequence[str] = (), source: str = "<rows>") -> Scores:
    """Score the rows of one test set.

    Arguments
    ---------
    rows : sequence of dict
        Results rows (see the module docstring), each checked for the fields its task needs.
    set_name : str
        The test set's name.
    metric : str
        One of :data:`METRICS` (see :func:`resolve_metrics`).
    styles : sequence of str
        WER conventions for ASR rows, headline first.
    letter_mapping : bool
        Also report MMAU-rule accuracy after mapping letter answers to options.
    group_by : sequence of str
        Extra per-label tables (``key`` or ``key1+key2``).
    source : str
        Where the rows come from (the results path; used in messages and scores.json).

    Returns
    -------
    Scores
        ``data`` holds ``set_name``, ``results``, ``metric`` (the single metric, or ``"mixed"``),
        ``primary`` (the headline metric keys), ``metrics`` (flat, percent), ``counts``
        (``rows``, ``asr``/``mcq``/``open_qa``, ``failed``, ``invalid_hypotheses``), ``failed_ids``,
        ``invalid_hypothesis_ids`` and one section per task type present.

    Example
    -------
    >>> rows = [{"id": "q1", "task": "mcq", "hypothesis": "The answer is B.", "choices": ["x", "y"],
    ...          "gold": 1, "labels": {"category": "Phonology"}},
    ...         {"id": "q2", "task": "mcq", "hypothesis": "no idea", "choices": ["x", "y"], "gold": 0,
    ...          "labels": {"category": "Semantics"}}]
    >>> d = score_results(rows, "mmsu").data
    >>> d["metrics"], d["mcq"]["tables"]["category"]["Phonology"]["accuracy"]
    ({'mcq_accuracy': 50.0, 'mcq_accuracy_parsed': 100.0}, 100.0)
    """
    if not rows:
        raise ValueError(f"{source}: no results rows to score; run decoding for set {set_name!r} first")
    unknown = [style for style in styles if style not in STYLES]
    if unknown or not styles:
        raise ValueError(f"unknown WER style(s) {unknown or styles!r}; use some of {', '.join(STYLES)}")
    for row in rows:
        _check_row(row, source)
    for spec in group_by:
        if not _labelled(rows, [spec]):
            logger.warning("%s: no row has the label(s) of --group_by %s; no table for it", source, spec)
    chosen = resolve_metrics(rows, set_name, metric)
    by_task = {task: [row for row in rows if row["task"] == task] for task in chosen}
    failed = [row["id"] for row in rows if row.get("failed")]
    invalid = [row["id"] for row in rows if not row.get("failed") and is_invalid_hypothesis(row.get("hypothesis"))]
    data: Dict[str, Any] = {
        "set_name": set_name, "results": source,
        "metric": next(iter(chosen.values())) if len(chosen) == 1 else "mixed",
        "primary": [], "metrics": {},
        "counts": {"rows": len(rows), **{task: len(by_task[task]) for task in chosen},
                   "failed": len(failed), "invalid_hypotheses": len(invalid)},
        "failed_ids": failed, "invalid_hypothesis_ids": invalid,
    }
    scores = Scores(data)
    if "asr" in chosen:
        data["asr"], metrics, scores.wer_results = _score_asr(by_task["asr"], styles, group_by)
        scores.asr_texts = ({row["id"]: row["reference"] for row in by_task["asr"]},
                            {row["id"]: _hypothesis(row) for row in by_task["asr"]})
        data["primary"].append("asr_wer")
        data["metrics"].update(metrics)
    if "mcq" in chosen:
        data["mcq"], metrics, verdicts = _score_mcq(by_task["mcq"], chosen["mcq"], letter_mapping, group_by)
        data["primary"].append("mcq_accuracy")
        data["metrics"].update(metrics)
        scores.judgements += [{"id": row["id"], "task": "mcq", "hypothesis": _hypothesis(row),
                               "gold": row["choices"][row["gold"]], **vars(verdict)}
                              for row, verdict in zip(by_task["mcq"], verdicts)]
    if "open_qa" in chosen:
        data["open_qa"], metrics, matches = _score_open(by_task["open_qa"], group_by)
        data["primary"].append("open_qa_accuracy")
        data["metrics"].update(metrics)
        scores.judgements += [{"id": row["id"], "task": "open_qa", "hypothesis": _hypothesis(row),
                               "reference": row["reference"], **match}
                              for row, match in zip(by_task["open_qa"], matches)]
    return scores


def _fmt(value: Any) -> str:
    """A table cell: percentages with two decimals, None as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value).replace("|", "\\|")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table.

    Arguments
    ---------
    header : sequence of str
        Column titles.
    rows : iterable of sequences
        Cells (floats printed with two decimals, None as ``-``, ``|`` escaped).

    Returns
    -------
    str
        The table, one line per row, ending with a newline.

    Example
    -------
    >>> print(markdown_table(["set", "WER"], [["test_clean", 2.345], ["test_other", None]]), end="")
    | set | WER |
    |---|---|
    | test_clean | 2.35 |
    | test_other | - |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


MCQ_COLUMNS = (("n", "n"), ("correct", "correct"), ("accuracy", "accuracy"), ("unparseable", "unparseable"),
               ("accuracy_parsed", "accuracy (parsed only)"), ("accuracy_letter_mapped", "accuracy (letter mapped)"))
OPEN_COLUMNS = (("n", "n"), ("exact", "exact"), ("accuracy", "accuracy"), ("contains", "contains"),
                ("accuracy_contains", "accuracy (contains)"))
ASR_COLUMNS = (("n", "utts"), ("ref", "ref words"), ("errors", "errors"), ("sub", "sub"), ("del", "del"),
               ("ins", "ins"), ("rate", "WER"))


def _section_tables(title: str, tables: Mapping[str, Mapping[str, Mapping[str, Any]]],
                    columns: Sequence[Tuple[str, str]]) -> List[str]:
    """Markdown for a section's per-group tables (columns absent from every row are left out)."""
    parts = []
    for spec, table in tables.items():
        present = [(key, name) for key, name in columns if any(key in cells for cells in table.values())]
        parts.append(f"### {title} by {spec.replace('+', ' / ')}\n\n" + markdown_table(
            [spec.replace("+", " / "), *(name for _, name in present)],
            ([value, *(cells.get(key) for key, _ in present)] for value, cells in table.items())))
    return parts


def scores_markdown(data: Mapping[str, Any]) -> str:
    """The human-readable ``scores.md`` of one set.

    Arguments
    ---------
    data : dict
        ``Scores.data`` (the content of scores.json).

    Returns
    -------
    str

    Example
    -------
    >>> rows = [{"id": "q", "task": "mcq", "hypothesis": "A", "choices": ["x", "y"], "gold": 0,
    ...          "labels": {"task_name": "stress"}}]
    >>> md = scores_markdown(score_results(rows, "mmsu").data)
    >>> "| mcq_accuracy | 100.00 |" in md, "### Multiple choice by task_name" in md
    (True, True)
    """
    counts = data["counts"]
    lines = [f"# Scores: {data['set_name']}", "",
             f"Results: `{data['results']}`; metric: {data['metric']}; rows: {counts['rows']} ("
             + ", ".join(f"{task} {counts[task]}" for task in TASKS if task in counts)
             + f"); failed: {counts['failed']}; invalid hypotheses: {counts['invalid_hypotheses']}; "
             f"skipped lines: {len(data.get('skipped_lines', []))}. All figures are percentages.", "",
             markdown_table(["metric", "value"], data["metrics"].items())]
    if "asr" in data:
        asr = data["asr"]
        rows = ([style, asr["wer"][style]["rate"], asr["cer"][style]["rate"],
                 *(asr["wer"][style][key] for key in ("ref", "sub", "del", "ins"))] for style in asr["styles"])
        lines.append("## ASR\n\n" + markdown_table(["style", "WER", "CER", "ref words", "sub", "del", "ins"], rows))
        lines += _section_tables(f"WER ({asr['styles'][0]})", asr["tables"], ASR_COLUMNS)
    if "mcq" in data:
        section = data["mcq"]
        lines.append(f"## Multiple choice ({section['benchmark']}, {section['rule']} rule)\n\n"
                     + markdown_table([name for key, name in MCQ_COLUMNS if key in section],
                                      [[section[key] for key, _ in MCQ_COLUMNS if key in section]]))
        lines += _section_tables("Multiple choice", section["tables"], MCQ_COLUMNS)
    if "open_qa" in data:
        section = data["open_qa"]
        lines.append("## Open questions\n\n" + markdown_table([name for _, name in OPEN_COLUMNS],
                                                             [[section[key] for key, _ in OPEN_COLUMNS]]))
        lines += _section_tables("Open questions", section["tables"], OPEN_COLUMNS)
    problems = [f"- {what}: {_id_list(data.get(key, []))}"
                for what, key in (("failed", "failed_ids"), ("invalid hypotheses", "invalid_hypothesis_ids"),
                                  ("repeated ids (last row kept)", "duplicate_ids")) if data.get(key)]
    problems += [f"- line {skip['line']} skipped: {skip['reason']}" for skip in data.get("skipped_lines", [])]
    if problems:
        lines.append("## Problems\n\n" + "\n".join(problems) + "\n")
    return "\n".join(lines)


def _id_list(ids: Sequence[str], limit: int = 50) -> str:
    """Ids joined by commas, the first ``limit`` of them and a count of the rest."""
    shown = ", ".join(ids[:limit])
    return shown + (f" ... ({len(ids) - limit} more, see scores.json)" if len(ids) > limit else "")


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


def write_scores(out_dir: str, scores: Scores, extra: Optional[Mapping[str, Any]] = None) -> List[str]:
    """Write a set's score files into ``out_dir``.

    Files: ``scores.json`` (``scores.data`` plus ``extra`` and the environment: git hash and
    package versions), ``scores.md``; with ASR rows ``recogs-<set>.txt``,
    ``errs-<set>-<style>.txt`` (WER alignments; CER in ``errs-<set>-<style>-char.txt``) and
    ``wer-summary-<set>.txt``; with multiple-choice or open rows ``judgements-<set>.jsonl`` (one
    verdict per row).

    Arguments
    ---------
    out_dir : str
        Output directory (created).
    scores : Scores
        From :func:`score_results`.
    extra : dict, optional
        More top-level keys for scores.json (e.g. ``skipped_lines``, ``duplicate_ids``).

    Returns
    -------
    list of str
        The files written.

    Example
    -------
    >>> import os, tempfile
    >>> rows = [{"id": "u1", "task": "asr", "hypothesis": "a b", "reference": "A C"}]
    >>> d = tempfile.mkdtemp()
    >>> [os.path.basename(p) for p in write_scores(d, score_results(rows, "t", styles=("wenet",)))]
    ['scores.json', 'scores.md', 'recogs-t.txt', 'errs-t-wenet.txt', 'errs-t-wenet-char.txt', 'wer-summary-t.txt']
    """
    data = {**scores.data, **(extra or {}), "environment": {"git": git_hash(), "versions": package_versions()}}
    set_name = data["set_name"]
    written = [os.path.join(out_dir, "scores.json"), os.path.join(out_dir, "scores.md")]
    with atomic_write(written[0]) as f:
        json.dump(data, f, indent=1, ensure_ascii=False)
        f.write("\n")
    with atomic_write(written[1]) as f:
        f.write(scores_markdown(data))
    if scores.wer_results:
        written.append(os.path.join(out_dir, f"recogs-{set_name}.txt"))
        write_recogs(written[-1], *scores.asr_texts)
        for result in scores.wer_results:
            suffix = "" if result.unit == "word" else "-char"
            written.append(os.path.join(out_dir, f"errs-{set_name}-{result.style}{suffix}.txt"))
            write_errs(written[-1], result)
        written.append(os.path.join(out_dir, f"wer-summary-{set_name}.txt"))
        write_wer_summary(written[-1], scores.wer_results)
    if scores.judgements:
        written.append(os.path.join(out_dir, f"judgements-{set_name}.jsonl"))
        with atomic_write(written[-1]) as f:
            f.writelines(json.dumps(j, ensure_ascii=False) + "\n" for j in scores.judgements)
    return written


def score_results_file(results_path: str, set_name: str, out_dir: str, data_dir: Optional[str] = None,
                       **options: Any) -> Scores:
    """Read, score and write one set: :func:`read_results` (+ :func:`merge_tasks` with
    ``data_dir``), :func:`score_results`, :func:`write_scores`.

    Arguments
    ---------
    results_path : str
        The decoder's ``results.jsonl``.
    set_name : str
        The test set's name.
    out_dir : str
        Where the score files go.
    data_dir : str, optional
        The set's data directory; its ``tasks.jsonl`` fills and checks the rows.
    **options
        ``metric``, ``styles``, ``letter_mapping``, ``group_by`` of :func:`score_results`.

    Returns
    -------
    Scores
        With ``skipped_lines``, ``duplicate_ids`` and ``missing_ids`` added to ``data``.

    Example
    -------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp(); path = os.path.join(d, "results.jsonl")
    >>> _ = open(path, "w").write('{"id": "o", "task": "open_qa", "hypothesis": "red", "reference": "Red"}\\n{"id"')
    >>> s = score_results_file(path, "t", d)
    >>> s.data["metrics"]["open_qa_accuracy"], s.data["skipped_lines"][0]["line"]
    (100.0, 2)
    """
    results = read_results(results_path)
    missing: List[str] = []
    if data_dir is not None:
        tasks_path = os.path.join(data_dir, "tasks.jsonl")
        if not os.path.isfile(tasks_path):
            raise ValueError(f"{tasks_path} does not exist; run data preparation (stage 1) for this set "
                             "or leave out --data_dir")
        missing = merge_tasks(results, read_tasks(tasks_path))
    scores = score_results(results.rows, set_name, source=results_path, **options)
    extra = {"skipped_lines": results.skipped, "duplicate_ids": results.duplicates, "missing_ids": missing}
    scores.data.update(extra)
    write_scores(out_dir, scores)
    return scores


@dataclass
class ResultsEntry:
    """One set's scores as a RESULTS.md row.

    Arguments
    ---------
    scores_path : str
        The scores.json file.
    scores : dict
        Its content.
    model : str
        Model name or path.
    decode : str
        Decode settings, ``key=value`` separated by spaces.
    git : str
        Git hash of the code that decoded (settings.json) or scored (scores.json).
    versions : dict of str to str
        Package versions, from the same place.

    Example
    -------
    >>> ResultsEntry("s.json", {"set_name": "mmsu"}, "m", "steps=16", "abc", {}).set_name
    'mmsu'
    """

    scores_path: str
    scores: Dict[str, Any]
    model: str
    decode: str
    git: str
    versions: Dict[str, str]

    @property
    def set_name(self) -> str:
        """The test set's name."""
        return self.scores["set_name"]


SETTINGS_MODEL_KEYS = ("model", "model_dir", "model_path")
"""Keys of settings.json that name the model (the first present wins)."""


def _flatten(settings: Mapping[str, Any], prefix: str = "") -> List[str]:
    """``key=value`` strings of a (nested) settings dict; lists joined by commas."""
    items = []
    for key, value in settings.items():
        if isinstance(value, Mapping):
            items += _flatten(value, f"{prefix}{key}.")
        else:
            shown = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
            items.append(f"{prefix}{key}={shown}")
    return items


def _load_json_object(path: Path, remedy: str) -> Dict[str, Any]:
    """A JSON file holding one object; ValueError naming the file and ``remedy`` otherwise."""
    with open(path, encoding="utf-8") as f:
        try:
            value = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: malformed JSON ({err.msg}, line {err.lineno}); {remedy}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(value).__name__}; {remedy}")
    return value


def _find_settings(scores_dir: Path, decode_dir: Path) -> Dict[str, Any]:
    """The nearest settings.json from the scores' directory up to the decode directory."""
    for folder in [scores_dir, *scores_dir.parents]:
        path = folder / "settings.json"
        if path.is_file():
            return _load_json_object(path, "fix or delete it")
        if folder == decode_dir:
            break
    return {}


def collect_entries(decode_dirs: Sequence[str]) -> List[ResultsEntry]:
    """Find the scored sets of some decode directories.

    A decode directory is ``exp/<model>/decode_<tag>``; its sets' scores are
    ``<set>/scores.json`` or ``<set>/score/scores.json`` (a decode directory may also be a set
    directory). The decode settings come from the nearest ``settings.json`` (the set's folder,
    then the decode directory): ``model`` (or ``model_dir`` / ``model_path``) names the model,
    ``git`` and ``versions`` record the decoding code, every other key is a decode setting.
    Without it the model is the decode directory's parent folder and the settings its name.

    Arguments
    ---------
    decode_dirs : sequence of str
        The directories.

    Returns
    -------
    list of ResultsEntry
        In the order given, sets sorted by path. Raises ValueError when a directory holds no
        scores.json (score it first: stage 9).

    Example
    -------
    >>> import os, json, tempfile
    >>> d = os.path.join(tempfile.mkdtemp(), "exp", "sft", "decode_steps16")
    >>> os.makedirs(os.path.join(d, "mmsu", "score"))
    >>> _ = open(os.path.join(d, "mmsu", "score", "scores.json"), "w").write(json.dumps(
    ...     {"set_name": "mmsu", "metrics": {"mcq_accuracy": 60.0}}))
    >>> e, = collect_entries([d])
    >>> e.set_name, e.model, e.decode
    ('mmsu', 'sft', 'decode_steps16')
    """
    entries = []
    for decode_dir in decode_dirs:
        root = Path(decode_dir)
        found = sorted({p for pattern in ("scores.json", "score/scores.json", "*/scores.json", "*/score/scores.json")
                        for p in root.glob(pattern)})
        if not found:
            raise ValueError(f"{decode_dir}: no scores.json (looked in <set>/ and <set>/score/); "
                             "score the decoding results first (stage 9, python -m diffa.bin.score)")
        for path in found:
            scores = _load_json_object(path, "re-run scoring for this set (stage 9)")
            settings = dict(_find_settings(path.parent, root))
            model = next((str(settings.pop(k)) for k in SETTINGS_MODEL_KEYS if k in settings),
                         root.resolve().parent.name)
            environment = scores.get("environment", {})
            git = str(settings.pop("git", environment.get("git", "unknown")))
            versions = settings.pop("versions", environment.get("versions", {}))
            decode = " ".join(_flatten(settings)) or root.resolve().name
            entries.append(ResultsEntry(str(path), scores, model, decode, git, versions))
    return entries


def results_markdown(entries: Sequence[ResultsEntry], title: str = "Results", base_dir: str = ".") -> str:
    """The content of RESULTS.md: one table per test set.

    Arguments
    ---------
    entries : sequence of ResultsEntry
        From :func:`collect_entries`.
    title : str
        The top heading.
    base_dir : str
        Directory the links to each set's scores.md are relative to (RESULTS.md's).

    Returns
    -------
    str

    Example
    -------
    >>> e = ResultsEntry("exp/m/decode/mmsu/scores.json", {"set_name": "mmsu", "primary": ["mcq_accuracy"],
    ...     "metrics": {"mcq_accuracy": 60.1}, "counts": {"rows": 10, "failed": 1, "invalid_hypotheses": 0}},
    ...     "m", "steps=16", "abc1234", {"torch": "2.13.0"})
    >>> print(results_markdown([e]).split("## ")[1], end="")
    mmsu
    <BLANKLINE>
    | model | decode settings | mcq_accuracy | rows | failed | invalid hyps | skipped lines | git | versions | details |
    |---|---|---|---|---|---|---|---|---|---|
    | m | steps=16 | 60.10 | 10 | 1 | 0 | 0 | abc1234 | torch 2.13.0 | [scores.md](exp/m/decode/mmsu/scores.md) |
    """
    env = package_versions()
    lines = [f"# {title}", "",
             f"Collected by `python -m diffa.bin.score --write_results_md` on "
             f"{datetime.date.today().isoformat()} (git {git_hash()}; "
             + ", ".join(f"{k} {v}" for k, v in env.items()) + ").",
             "Error rates (WER/CER) and accuracies are percentages. `failed` counts rows the decoder "
             "could not decode or never wrote (scored as wrong); `invalid hyps` counts empty or "
             "non-string hypotheses (scored as wrong); `skipped lines` counts truncated results lines. "
             "`git` and `versions` are the decoding run's when its settings.json records them, else "
             "the scoring run's. Per-group tables are in each set's scores.md.", ""]
    by_set: Dict[str, List[ResultsEntry]] = {}
    for entry in entries:
        by_set.setdefault(entry.set_name, []).append(entry)
    for set_name in sorted(by_set):
        group = by_set[set_name]
        keys: List[str] = []
        for entry in group:
            for key in [*entry.scores.get("primary", []), *entry.scores.get("metrics", {})]:
                if key not in keys:
                    keys.append(key)
        header = ["model", "decode settings", *keys, "rows", "failed", "invalid hyps", "skipped lines",
                  "git", "versions", "details"]
        rows = []
        for entry in group:
            counts = entry.scores.get("counts", {})
            link = os.path.relpath(os.path.join(os.path.dirname(entry.scores_path), "scores.md"), base_dir)
            rows.append([entry.model, entry.decode, *(entry.scores.get("metrics", {}).get(k) for k in keys),
                         counts.get("rows"), counts.get("failed"), counts.get("invalid_hypotheses"),
                         len(entry.scores.get("skipped_lines", [])), entry.git,
                         ", ".join(f"{k} {v}" for k, v in entry.versions.items()), f"[scores.md]({link})"])
        lines += [f"## {set_name}", "", markdown_table(header, rows)]
    return "\n".join(lines)


def write_results_md(path: str, entries: Sequence[ResultsEntry], title: str = "Results") -> None:
    """Write a recipe's RESULTS.md (see :func:`results_markdown`) atomically.

    Arguments
    ---------
    path : str
        Output file.
    entries : sequence of ResultsEntry
        From :func:`collect_entries`.
    title : str
        The top heading.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "RESULTS.md")
    >>> write_results_md(path, [], title="mini")
    >>> open(path).readline()
    '# mini\\n'
    """
    if not entries:
        logger.warning("%s: no scored sets to report", path)
    with atomic_write(path) as f:
        f.write(results_markdown(entries, title, os.path.dirname(os.path.abspath(path))))
