"""Score the rows of one test set: WER/CER for ASR, benchmark rules for multiple choice,
token match for open questions, overall and per label group.

Rows are those of :mod:`diffa.scoring.results`. Failed rows are scored as wrong (ASR: the empty
hypothesis) and counted in ``counts.failed``; they stay in every denominator, MMSU's included. A
hypothesis that is not a string or is empty is scored as wrong and counted (for MMSU it is an
unparseable response).

Metrics (all percentages), keys of ``scores.json``'s ``metrics``:

``asr_wer``, ``asr_cer``
    Over ``asr`` rows, in the first ``--style`` (``asr_wer_<style>``, ``asr_cer_<style>`` for each).
``mcq_accuracy``
    Over ``mcq`` rows with the benchmark's rule (:mod:`diffa.scoring.mcq`): MMSU's letter rule,
    with unparseable responses left out of the denominator as MMSU's official scorer does (failed rows
    stay in, as wrong), or MMAU's token-set rule (every item in the denominator) for MMAU, MMAR
    and generic sets. Beside it: ``mcq_accuracy_all`` (MMSU: every item in the denominator,
    unparseable responses counted wrong) and ``mcq_accuracy_letter_mapped`` (MMAU rule with the
    opt-in letter mapping). The ``mcq`` section and its per-group tables carry the same figures
    (``accuracy`` is the headline's; MMSU adds ``unparseable``, ``failed`` and ``accuracy_all``).
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

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Sequence, Tuple

from diffa.scoring import mcq
from diffa.scoring.results import TASKS
from diffa.scoring.text import STYLES
from diffa.scoring.wer import WerResult, score_wer

logger = logging.getLogger(__name__)

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

NO_LABEL = "(none)"
"""Group value of a row that lacks the label."""


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
        by_text = gold is None and isinstance(row.get("reference"), str) and bool(row["reference"].strip())
        if (not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices)
                or not by_text and (isinstance(gold, bool) or not isinstance(gold, int) or not 0 <= gold < len(choices))):
            raise ValueError(f"{path}: {_where(row)}: an mcq row needs 'choices' (>= 2 strings) and an int "
                             f"'gold' index into them (or gold null and the answer as 'reference'), got "
                             f"{choices!r} / {gold!r}; pass --data_dir")
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
    verdicts = [mcq.judge(rule, _hypothesis(row), row["choices"], row["gold"], letter_mapping,
                          failed=bool(row.get("failed")), answer=row.get("reference")) for row in rows]
    specs = _labelled(rows, [*DEFAULT_GROUPS[benchmark], *(spec for spec in group_by
                                                       if spec not in DEFAULT_GROUPS[benchmark])])
    summary = mcq.summarize(verdicts, rule)
    section = {"benchmark": benchmark, "rule": rule, "letter_mapping": letter_mapping, **summary,
               "tables": _tables(rows, specs, lambda members: mcq.summarize([verdicts[i] for i in members], rule))}
    metrics = {"mcq_accuracy": summary["accuracy"]}
    if rule == "mmsu":
        metrics["mcq_accuracy_all"] = summary["accuracy_all"]
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
        Results rows (:mod:`diffa.scoring.results`), each checked for the fields its task needs.
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
    ...          "labels": {"category": "Semantics"}},
    ...         {"id": "q3", "task": "mcq", "failed": True, "choices": ["x", "y"], "gold": 0,
    ...          "labels": {"category": "Semantics"}}]
    >>> d = score_results(rows, "mmsu").data
    >>> d["metrics"], d["mcq"]["unparseable"], d["mcq"]["failed"]
    ({'mcq_accuracy': 50.0, 'mcq_accuracy_all': 33.33...}, 1, 1)
    >>> d["mcq"]["tables"]["category"]["Semantics"]["accuracy"]
    0.0
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
                               "gold": mcq.gold_text(row["choices"], row["gold"], row.get("reference")),
                               **vars(verdict)}
                              for row, verdict in zip(by_task["mcq"], verdicts)]
    if "open_qa" in chosen:
        data["open_qa"], metrics, matches = _score_open(by_task["open_qa"], group_by)
        data["primary"].append("open_qa_accuracy")
        data["metrics"].update(metrics)
        scores.judgements += [{"id": row["id"], "task": "open_qa", "hypothesis": _hypothesis(row),
                               "reference": row["reference"], **match}
                              for row, match in zip(by_task["open_qa"], matches)]
    return scores

