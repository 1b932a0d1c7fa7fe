"""Write one test set's score files: ``scores.json``, ``scores.md``, icefall-style WER files
and the per-row judgements; :func:`score_results_file` reads, scores and writes a set in one call.
"""

import json
import os
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from diffa.files import atomic_write
from diffa.data.tasks import read_tasks
from diffa.provenance import git_hash, package_versions
from diffa.scoring.report import markdown_table
from diffa.scoring.results import TASKS, merge_tasks, read_results
from diffa.scoring.scores import Scores, score_results
from diffa.scoring.wer_files import write_errs, write_recogs, write_wer_summary


MCQ_COLUMNS = (("n", "n"), ("correct", "correct"), ("accuracy", "accuracy"), ("unparseable", "unparseable"),
               ("failed", "failed"), ("accuracy_all", "accuracy (all items)"),
               ("accuracy_letter_mapped", "accuracy (letter mapped)"))
"""Multiple-choice columns: ``accuracy`` is the headline (``mcq_accuracy``); for MMSU it leaves
unparseable responses out of the denominator and ``accuracy (all items)`` keeps them."""

MMSU_NOTE = ("MMSU's official rule: `accuracy` (the headline `mcq_accuracy`) leaves unparseable responses "
             "out of the denominator; `accuracy (all items)` (`mcq_accuracy_all`) keeps every item, "
             "unparseable ones counted wrong. Failed rows are wrong and stay in both denominators.")
"""The sentence scores.md puts under the MMSU-rule multiple-choice table."""
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
    >>> "| n | correct | accuracy | unparseable | failed | accuracy (all items) |" in md
    True
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
        if section["rule"] == "mmsu":
            lines.append(MMSU_NOTE + "\n")
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



def write_scores(out_dir: str, scores: Scores) -> List[str]:
    """Write a set's score files into ``out_dir``.

    Files: ``scores.json`` (``scores.data`` plus the environment: git hash and
    package versions), ``scores.md``; with ASR rows ``recogs-<set>.txt``,
    ``errs-<set>-<style>.txt`` (WER alignments; CER in ``errs-<set>-<style>-char.txt``) and
    ``wer-summary-<set>.txt``; with multiple-choice or open rows ``judgements-<set>.jsonl`` (one
    verdict per row).

    Arguments
    ---------
    out_dir : str
        Output directory (created).
    scores : Scores
        From :func:`diffa.scoring.scores.score_results`.

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
    data = {**scores.data, "environment": {"git": git_hash(), "versions": package_versions()}}
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
    """Read, score and write one set: :func:`diffa.scoring.results.read_results` (+
    :func:`diffa.scoring.results.merge_tasks` with ``data_dir``),
    :func:`diffa.scoring.scores.score_results`, :func:`write_scores`.

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
        ``metric``, ``styles``, ``letter_mapping``, ``group_by`` of :func:`diffa.scoring.scores.score_results`.

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
    if not os.path.isfile(results_path):
        raise ValueError(f"{results_path} does not exist; run decoding (stage 8) for set {set_name!r} first "
                         "or fix --results")
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

