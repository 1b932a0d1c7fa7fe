#!/usr/bin/env python3
"""Repair a data directory: keep the utterances that every file has, sorted, and say what went.

Usage:
    utils/fix_data_dir.py <data-dir>

Reads wav.scp, text, utt2spk (and utt2dur, tasks.jsonl when there). Keeps an utterance when each
of those files has a well-formed, non-empty line for it (for a duplicate id the first line
counts), then writes every file sorted, remakes spk2utt from utt2spk and keeps the tasks whose
"utt" is kept (bad JSON lines and duplicate task ids go). The old files are copied to
<data-dir>/.backup/ first. Prints, per file, how many lines were dropped. Audio files are not
checked: run utils/validate_data_dir.py afterwards.
"""

import argparse
import os
import shutil
import sys

from datadir import REQUIRED, SPK2UTT, TASKS, UTT_FILES, DataDir, Problems, run_cli


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data_dir", metavar="data-dir", help="the directory to repair in place")
    return parser


def count_lines(path):
    """Return the number of lines of a file.

    Arguments
    ---------
    path : str
        The file.

    Returns
    -------
    int

    Example
    -------
    >>> import tempfile
    >>> path = tempfile.mktemp()
    >>> _ = open(path, "w").write("a\\n\\nb\\n")
    >>> count_lines(path)
    3
    """
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def main(argv=None):
    path = get_parser().parse_args(argv).data_dir
    missing = [name for name in REQUIRED if not os.path.isfile(os.path.join(path, name))]
    if missing:
        raise ValueError(f"{path} has no {', '.join(missing)}: nothing to repair them from")
    data = DataDir.load(path, Problems())
    keep = set.intersection(
        *({utt for utt, value in table.items() if value} for table in data.tables.values())
    )
    if not keep:
        raise ValueError(f"no utterance of {path} is in every one of {sorted(data.tables)}; "
                         "nothing written")
    fixed = data.select(keep)
    present = [name for name in UTT_FILES + (SPK2UTT, TASKS) if os.path.isfile(os.path.join(path, name))]
    before = {name: count_lines(os.path.join(path, name)) for name in present}
    backup = os.path.join(path, ".backup")
    os.makedirs(backup, exist_ok=True)
    for name in present:
        shutil.copy2(os.path.join(path, name), os.path.join(backup, name))
    fixed.write(path)
    print(f"{path}: kept {len(keep)} utterances (old files in {backup})")
    for name in present:
        after = count_lines(os.path.join(path, name))
        print(f"  {name}: {before[name]} -> {after} lines ({before[name] - after} dropped)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
