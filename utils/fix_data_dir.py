#!/usr/bin/env python3
"""Repair a data directory: keep the utterances that every file has, sorted, and say what went.

Usage:
    utils/fix_data_dir.py <data-dir>

Reads wav.scp, utt2spk (and text, utt2dur, tasks.jsonl when there). Keeps an utterance when each
of those files has a well-formed, non-empty line for it (for a duplicate id the first line
counts), then writes every file sorted, remakes spk2utt from utt2spk and keeps the tasks whose
"utt" is kept (bad JSON lines, duplicate task ids and, when the diffa package is importable, rows
that fail diffa.data.tasks's schema check go). A UTF-8 byte-order mark starting a file is
removed. The old files are copied first to <data-dir>/.backup/, or, when that exists, to the
first free one of <data-dir>/.backup.1/, .backup.2/, ...: a backup is never overwritten. Prints,
per file, how many lines were dropped, then the lines dropped or repaired and why. Audio files
are not checked: run utils/validate_data_dir.py afterwards.
"""

import argparse
import itertools
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


def make_backup_dir(path):
    """Create and return the first of ``path/.backup``, ``path/.backup.1``, ... that is free.

    Arguments
    ---------
    path : str
        The data directory.

    Returns
    -------
    str
        The new, empty directory.

    Example
    -------
    >>> import tempfile
    >>> path = tempfile.mkdtemp()
    >>> [os.path.basename(make_backup_dir(path)) for _ in range(3)]
    ['.backup', '.backup.1', '.backup.2']
    """
    for number in itertools.count():
        backup = os.path.join(path, f".backup.{number}" if number else ".backup")
        try:
            os.mkdir(backup)
        except FileExistsError:
            continue
        return backup


def main(argv=None):
    path = get_parser().parse_args(argv).data_dir
    missing = [name for name in REQUIRED if not os.path.isfile(os.path.join(path, name))]
    if missing:
        raise ValueError(f"{path} has no {', '.join(missing)}: nothing to repair them from")
    problems = Problems()
    data = DataDir.load(path, problems)
    keep = set.intersection(
        *({utt for utt, value in table.items() if value} for table in data.tables.values())
    )
    if not keep:
        raise ValueError(f"no utterance of {path} is in every one of {sorted(data.tables)}; "
                         "nothing written")
    fixed = data.select(keep)
    present = [name for name in UTT_FILES + (SPK2UTT, TASKS) if os.path.isfile(os.path.join(path, name))]
    before = {name: count_lines(os.path.join(path, name)) for name in present}
    backup = make_backup_dir(path)
    for name in present:
        shutil.copy2(os.path.join(path, name), os.path.join(backup, name))
    fixed.write(path)
    print(f"{path}: kept {len(keep)} utterances (old files in {backup})")
    for name in present:
        after = count_lines(os.path.join(path, name))
        print(f"  {name}: {before[name]} -> {after} lines ({before[name] - after} dropped)")
    if problems:
        print(f"Lines dropped or repaired ({len(problems)}):\n{problems.report()}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
