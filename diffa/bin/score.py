"""Score a test set's decoding results, or collect the scores of a recipe into RESULTS.md.

Usage:
  # one set (recipe stage 9): writes the score files into --out_dir and prints a summary
  python -m diffa.bin.score \\
      --results exp/stage4_vrpo/decode_f16/mmsu/results.jsonl --data_dir data/mmsu \\
      --out_dir exp/stage4_vrpo/decode_f16/mmsu/score [--set_name mmsu] [--metric auto] \\
      [--style wenet --style whisper_english] [--letter_mapping] [--group_by category]

  # every scored set of some decode directories -> RESULTS.md
  python -m diffa.bin.score --write_results_md RESULTS.md --decode_dirs exp/*/decode_*/ [--title DIFFA-2]

Scoring one set reads ``results.jsonl`` (the decoder's rows: id, task, hypothesis, reference,
choices, gold, labels, failed/error; see ``diffa.scoring.results``). With ``--data_dir`` the set's
``tasks.jsonl`` supplies references, choices and labels, and ids never decoded count as failed.
``--metric auto`` scores each task type present: ASR rows by WER/CER, multiple-choice rows by the
benchmark's rule (MMSU when the set or the rows' source says mmsu, MMAU's token rule for mmau,
mmar and any other set), open questions by word-token match. Files written into ``--out_dir``:

  scores.json                   every figure, machine-readable (metrics, counts, per-group tables)
  scores.md                     the same as markdown tables
  recogs-<set>.txt              ASR: raw reference / hypothesis words per utterance
  errs-<set>-<style>.txt        ASR: WER alignment per utterance, error counts per word
  errs-<set>-<style>-char.txt   ASR: the same for CER
  wer-summary-<set>.txt         ASR: WER and CER per style
  judgements-<set>.jsonl        multiple-choice / open questions: each row's verdict

A truncated last line of results.jsonl is skipped and reported; failed rows, missing ids and
empty or non-string hypotheses are scored as wrong and counted.

``--write_results_md`` finds ``<set>/scores.json`` or ``<set>/score/scores.json`` in each decode
directory and writes one table per test set with the model, decode settings (from the decoder's
``settings.json``), the metrics, failure counts, git hash and package versions.
"""

import argparse
import logging
import os
import sys
from typing import List, Optional

from diffa.bin._cli import entry_point_parser, options_given
from diffa.scoring.report import collect_entries, write_results_md
from diffa.scoring.score_files import score_results_file
from diffa.scoring.scores import DEFAULT_STYLES, METRICS
from diffa.scoring.text import STYLES


ONE, MANY = "score one set", "collect RESULTS.md"  # the two modes' option groups


def get_parser() -> argparse.ArgumentParser:
    """The command-line parser.

    Example
    -------
    >>> args = get_parser().parse_args(["--results", "r.jsonl", "--style", "wenet", "--group_by", "a"])
    >>> args.metric, args.style, args.group_by, args.letter_mapping
    ('auto', ['wenet'], ['a'], False)
    """
    parser = entry_point_parser("diffa.bin.score", __doc__)
    one = parser.add_argument_group(ONE)
    one.add_argument("--results", help="the decoder's results.jsonl")
    one.add_argument("--set_name", help="test set name (default: the --data_dir folder's name, else the "
                     "folder holding --results)")
    one.add_argument("--data_dir", help="the set's data directory: its tasks.jsonl supplies references, "
                     "choices and labels, and ids missing from the results count as failed")
    one.add_argument("--out_dir", help="where the score files go (default: the folder holding --results)")
    one.add_argument("--metric", default="auto", choices=METRICS,
                     help="auto (per task type), wer, mmsu, mmau, mmar or mcq (generic multiple choice)")
    one.add_argument("--style", action="append", choices=STYLES,
                     help=f"WER convention, repeatable; the first is the headline (default: "
                     f"{' and '.join(DEFAULT_STYLES)})")
    one.add_argument("--letter_mapping", action="store_true",
                     help="also report MMAU-rule accuracy after mapping letter answers (A, (B), C.) to "
                     "their option's text")
    one.add_argument("--group_by", action="append", default=[], metavar="KEY[+KEY]",
                     help="extra per-label table, repeatable (e.g. asks, or category+sub-category)")
    many = parser.add_argument_group(MANY)
    many.add_argument("--write_results_md", metavar="PATH", help="write RESULTS.md from --decode_dirs")
    many.add_argument("--decode_dirs", nargs="+", default=[], help="decode directories (exp/<model>/decode_<tag>)")
    many.add_argument("--title", default="Results", help="RESULTS.md heading")
    return parser


def default_set_name(results: str, data_dir: Optional[str]) -> str:
    """The set name when ``--set_name`` is not given.

    Arguments
    ---------
    results : str
        The results file.
    data_dir : str or None
        The set's data directory.

    Returns
    -------
    str

    Example
    -------
    >>> default_set_name("exp/m/decode_a/test_clean/results.jsonl", None)
    'test_clean'
    >>> default_set_name("r.jsonl", "data/mmsu/")
    'mmsu'
    """
    folder = data_dir if data_dir else os.path.dirname(os.path.abspath(results))
    return os.path.basename(os.path.normpath(folder))


def summary_line(data: dict) -> str:
    """The one-line summary printed after scoring a set.

    Arguments
    ---------
    data : dict
        The content of scores.json.

    Returns
    -------
    str

    Example
    -------
    >>> summary_line({"set_name": "mmsu", "metric": "mmsu", "metrics": {"mcq_accuracy": 60.1234},
    ...               "counts": {"rows": 5, "failed": 1, "invalid_hypotheses": 0}, "skipped_lines": []})
    'mmsu (mmsu): mcq_accuracy 60.12 | rows 5, failed 1, invalid hypotheses 0, skipped lines 0'
    """
    metrics = ", ".join(f"{k} {'-' if v is None else f'{v:.2f}'}" for k, v in data["metrics"].items())
    counts = data["counts"]
    return (f"{data['set_name']} ({data['metric']}): {metrics} | rows {counts['rows']}, failed "
            f"{counts['failed']}, invalid hypotheses {counts['invalid_hypotheses']}, skipped lines "
            f"{len(data.get('skipped_lines', []))}")


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line.

    Arguments
    ---------
    argv : list of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status.

    Example
    -------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp(); path = os.path.join(d, "results.jsonl")
    >>> _ = open(path, "w").write('{"id": "u", "task": "asr", "hypothesis": "hi", "reference": "HI"}\\n')
    >>> main(["--results", path, "--set_name", "t", "--style", "wenet"])
    t (wer): asr_wer 0.00, asr_cer 0.00, asr_wer_wenet 0.00, asr_cer_wenet 0.00 | rows 1, failed 0, ...
    0
    """
    parser = get_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.write_results_md:
        if not args.decode_dirs:
            parser.error("--write_results_md takes --decode_dirs")
        misplaced = options_given(parser, args, ONE)
        if misplaced:
            parser.error(f"{', '.join(misplaced)}: options of scoring one set, not of --write_results_md")
        try:
            entries = collect_entries(args.decode_dirs)
            write_results_md(args.write_results_md, entries, args.title)
        except (ValueError, OSError) as err:
            print(f"ERROR: writing {args.write_results_md}: {err}", file=sys.stderr)
            return 1
        print(f"{args.write_results_md}: {len(entries)} scored sets from {len(args.decode_dirs)} decode directories")
        return 0
    if not args.results:
        parser.error("give --results (score one set) or --write_results_md with --decode_dirs")
    misplaced = options_given(parser, args, MANY)
    if misplaced:
        parser.error(f"{', '.join(misplaced)}: options of --write_results_md, not of scoring one set")
    set_name = args.set_name or default_set_name(args.results, args.data_dir)
    out_dir = args.out_dir or os.path.dirname(os.path.abspath(args.results))
    try:
        scores = score_results_file(args.results, set_name, out_dir, args.data_dir, metric=args.metric,
                                    styles=tuple(args.style or DEFAULT_STYLES),
                                    letter_mapping=args.letter_mapping, group_by=args.group_by)
    except (ValueError, OSError) as err:
        print(f"ERROR: scoring {args.results}: {err}", file=sys.stderr)
        return 1
    print(summary_line(scores.data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
