#!/usr/bin/env python3
"""Check Kaldi-style data directories; name the file, line and id of every defect.

Usage:
    utils/validate_data_dir.py [--no_audio_check] [--max_errors N] <data-dir> [<data-dir>...]

A data directory needs wav.scp, utt2spk and spk2utt, and may have text (transcripts; a set of audio
questions needs none), utt2dur and tasks.jsonl (see utils/datadir.py). The checks: every file is
UTF-8 without a byte-order mark or blank lines; ids are unique and sorted (C locale); wav.scp lists
at least one utterance, and utt2spk (and text, utt2dur) have the same ids; spk2utt is the inverse
of utt2spk; no transcript is empty; audio files exist and are not pipe commands (relative paths
from the current directory; --no_audio_check skips this); durations are positive; tasks.jsonl has
one JSON object per line with unique sorted "id"s and an "utt" of wav.scp (and passes
diffa.data.tasks's schema check when the diffa package is importable).

Prints "<dir>: OK (...)" for a valid directory. Exits 1 when any directory has a defect, after
listing at most --max_errors of them per directory; utils/fix_data_dir.py repairs id mismatches.
"""

import argparse
import sys

from datadir import SPK2UTT, check, run_cli


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data_dirs", nargs="+", metavar="data-dir", help="directories to check")
    parser.add_argument(
        "--no_audio_check", "--no-audio-check", action="store_true",
        help="do not check that the audio files exist",
    )
    parser.add_argument(
        "--max_errors", "--max-errors", type=int, default=20,
        help="list at most this many defects per directory (default: %(default)s)",
    )
    return parser


def main(argv=None):
    args = get_parser().parse_args(argv)
    status = 0
    for path in args.data_dirs:
        data, problems = check(path, audio=not args.no_audio_check, limit=args.max_errors)
        if problems:
            print(f"{path}: {len(problems)} problem(s):\n{problems.report()}", file=sys.stderr)
            status = 1
            continue
        speakers = len(set(data.tables["utt2spk"].values()))
        tasks = "" if data.tasks is None else f", {len(data.tasks)} tasks"
        print(f"{path}: OK ({len(data.utts)} utterances, {speakers} speakers{tasks})")
        off_gold = [row["id"] for row in data.tasks or () if row.get("task") == "mcq"
                    and isinstance(row.get("gold"), int) and 0 <= row["gold"] < len(row.get("choices") or ())
                    and row.get("answer") != row["choices"][row["gold"]]]
        if off_gold:
            print(f"{path}: note: {len(off_gold)} multiple-choice row(s) whose answer is not their gold choice "
                  f"(first: {off_gold[0]}); scoring follows gold")
    if status:
        print("Fix the files above; utils/fix_data_dir.py keeps only the utterances every file "
              f"has and remakes {SPK2UTT}.", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(run_cli(main))
