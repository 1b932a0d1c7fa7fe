#!/usr/bin/env python3
"""Copy part of a data directory: the first or last N utterances, or those of a list.

Usage:
    utils/subset_data_dir.py --first N <src-dir> <dest-dir>
    utils/subset_data_dir.py --last N <src-dir> <dest-dir>
    utils/subset_data_dir.py --utt_list FILE <src-dir> <dest-dir>
    utils/subset_data_dir.py --tasks asr <src-dir> <dest-dir>

Utterances are in sorted id order. FILE has an utterance id as the first field of each line;
every id must be in <src-dir>. <dest-dir> gets wav.scp, utt2spk, spk2utt and (when the source
has them) text, utt2dur and tasks.jsonl with the tasks of the kept utterances. ``--tasks T1,T2``
keeps only the task rows of those types (the "task" field of tasks.jsonl) and the utterances that
still have one; it combines with the other selections (e.g. an ASR-only training set for
semantic alignment). The source must pass utils/validate_data_dir.py (audio aside).
"""

import argparse
import os
import sys

from datadir import DataDir, Problems, load_valid, read_lines, run_cli


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--first", type=int, metavar="N", help="the first N utterances")
    which.add_argument("--last", type=int, metavar="N", help="the last N utterances")
    which.add_argument("--utt_list", "--utt-list", metavar="FILE", help="utterances listed in FILE")
    parser.add_argument("--tasks", metavar="T1,T2", help="keep only tasks of these types (comma-separated)")
    parser.add_argument("src", metavar="src-dir")
    parser.add_argument("dest", metavar="dest-dir")
    return parser


def read_utt_list(path, known):
    """Return the first field of each non-blank line of ``path``; every one must be in ``known``.

    A line that is not UTF-8 (or a byte-order mark) is an error naming the file and line.

    Arguments
    ---------
    path : str
        The list.
    known : collection of str
        The utterances there are.

    Returns
    -------
    list of str

    Example
    -------
    >>> import tempfile
    >>> path = tempfile.mktemp()
    >>> _ = open(path, "w").write("u2 extra fields\\n\\nu1\\n")
    >>> read_utt_list(path, {"u1", "u2", "u3"})
    ['u2', 'u1']
    >>> _ = open(path, "wb").write(b"u1\\nu\\xe9\\n")
    >>> read_utt_list(path, {"u1"})
    Traceback (most recent call last):
    ...
    ValueError: ... cannot be read as a list of utterance ids:
    ...:2: not valid UTF-8 (byte 1 of the line); re-encode the file as UTF-8
    """
    problems = Problems()
    utts = [line.split()[0] for _, line in read_lines(path, problems, strict=False)]
    if problems:
        raise ValueError(f"{path} cannot be read as a list of utterance ids:\n{problems.report()}")
    unknown = [utt for utt in utts if utt not in known]
    if unknown:
        raise ValueError(f"{path}: {len(unknown)} id(s) are not utterances of the source, "
                         f"e.g. {', '.join(unknown[:5])}")
    return utts


def keep_tasks(data, keep, task_types, src):
    """Drop the task rows whose "task" is not in ``task_types``, and the utterances of ``keep``
    left without a task.

    Arguments
    ---------
    data : DataDir
        The source directory (it must have tasks.jsonl).
    keep : list of str
        The utterances selected so far.
    task_types : list of str
        The task types to keep; each must occur in the source.
    src : str
        The source's path, for messages.

    Returns
    -------
    (DataDir, list of str)

    Example
    -------
    >>> d = DataDir({"wav.scp": {"a": "a.wav", "b": "b.wav"}, "text": {"a": "x", "b": "y"},
    ...              "utt2spk": {"a": "s", "b": "s"}},
    ...             [{"id": "a-0", "utt": "a", "task": "asr"}, {"id": "b-0", "utt": "b", "task": "mcq"}])
    >>> d, keep = keep_tasks(d, ["a", "b"], ["asr"], "data/x")
    >>> keep, [row["id"] for row in d.tasks]
    (['a'], ['a-0'])
    >>> keep_tasks(d, ["a"], ["qa"], "data/x")
    Traceback (most recent call last):
     ...
    ValueError: data/x/tasks.jsonl has no task of type qa (it has: asr)
    """
    if data.tasks is None:
        raise ValueError(f"{src} has no tasks.jsonl, so --tasks cannot select from it")
    present = sorted({row["task"] for row in data.tasks})
    missing = [t for t in task_types if t not in present]
    if missing:
        raise ValueError(f"{src}/tasks.jsonl has no task of type {', '.join(missing)} (it has: {', '.join(present)})")
    rows = [row for row in data.tasks if row["task"] in task_types]
    with_task = {row["utt"] for row in rows}
    keep = [utt for utt in keep if utt in with_task]
    if not keep:
        raise ValueError(f"{src}: none of the selected utterances has a task of type {', '.join(task_types)}")
    return DataDir(data.tables, rows), keep


def main(argv=None):
    args = get_parser().parse_args(argv)
    if args.first is None and args.last is None and args.utt_list is None and args.tasks is None:
        raise ValueError("say what to keep: --first N, --last N, --utt_list FILE and/or --tasks T1,T2")
    if os.path.abspath(args.src) == os.path.abspath(args.dest):
        raise ValueError(f"the destination must differ from the source {args.src}")
    data = load_valid(args.src)
    utts = data.utts
    count = args.first if args.first is not None else args.last
    if count is not None and not 1 <= count <= len(utts):
        raise ValueError(f"{args.src} has {len(utts)} utterances; N must be 1..{len(utts)}, got {count}")
    if args.utt_list is not None:
        keep = read_utt_list(args.utt_list, set(utts))
    elif count is not None:
        keep = utts[:count] if args.first is not None else utts[len(utts) - count:]
    else:
        keep = utts
    if args.tasks is not None:
        data, keep = keep_tasks(data, keep, args.tasks.split(","), args.src)
    data.select(keep).write(args.dest)
    print(f"{args.dest}: {len(set(keep))} of the {len(utts)} utterances of {args.src}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
