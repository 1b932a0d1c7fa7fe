"""Markdown tables and a recipe's ``RESULTS.md``: the scored sets of some decode directories, one
table per test set, with the run's provenance (:mod:`diffa.provenance`).
"""

import datetime
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Sequence

from diffa.files import atomic_write, read_json_object
from diffa.provenance import git_hash, package_versions

logger = logging.getLogger(__name__)



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


def _find_settings(scores_dir: Path, decode_dir: Path) -> Dict[str, Any]:
    """The nearest settings.json from the scores' directory up to the decode directory."""
    for folder in [scores_dir, *scores_dir.parents]:
        path = folder / "settings.json"
        if path.is_file():
            return read_json_object(path, "fix or delete it")
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
        In the order given, sets sorted by path. A directory without scores.json is left out with a
        warning; ValueError when none has one (score them first: stage 9).

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
        if not found:  # e.g. a decoding that failed or was never scored: the others still make a table
            logger.warning("%s: no scores.json (looked in <set>/ and <set>/score/): left out; score its results "
                           "first (stage 9, python -m diffa.bin.score)", decode_dir)
        for path in found:
            scores = read_json_object(path, "re-run scoring for this set (stage 9)")
            settings = dict(_find_settings(path.parent, root))
            model = next((str(settings.pop(k)) for k in SETTINGS_MODEL_KEYS if k in settings),
                         root.resolve().parent.name)
            environment = scores.get("environment", {})
            git = str(settings.pop("git", environment.get("git", "unknown")))
            versions = settings.pop("versions", environment.get("versions", {}))
            decode = " ".join(_flatten(settings)) or root.resolve().name
            entries.append(ResultsEntry(str(path), scores, model, decode, git, versions))
    if not entries:
        raise ValueError(f"no scores.json in {', '.join(decode_dirs)} (looked in <set>/ and <set>/score/); "
                         "score the decoding results first (stage 9, python -m diffa.bin.score)")
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
             "MMSU's `mcq_accuracy` leaves unparseable responses out of the denominator, as its official "
             "scorer does (failed rows stay in); `mcq_accuracy_all` keeps every item. "
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
