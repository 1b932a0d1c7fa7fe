#!/usr/bin/env python3
"""Copy part of a data directory: the first or last N utterances, or those of a list.

Usage:
    utils/subset_data_dir.py --first N <src-dir> <dest-dir>
    utils/subset_data_dir.py --last N <src-dir> <dest-dir>
    utils/subset_data_dir.py --utt_list FILE <src-dir> <dest-dir>

Utterances are in sorted id order. FILE has an utterance id as the first field of each line;
every id must be in <src-dir>. <dest-dir> gets wav.scp, text, utt2spk, spk2utt and (when the
source has them) utt2dur and tasks.jsonl with the tasks of the kept utterances. The source must
pass utils/validate_data_dir.py (audio aside).
"""

import argparse
import os
import sys

from datadir import load_valid, run_cli


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--first", type=int, metavar="N", help="the first N utterances")
    which.add_argument("--last", type=int, metavar="N", help="the last N utterances")
    which.add_argument("--utt_list", "--utt-list", metavar="FILE", help="utterances listed in FILE")
    parser.add_argument("src", metavar="src-dir")
    parser.add_argument("dest", metavar="dest-dir")
    return parser


def read_utt_list(path, known):
    """Return the first field of each non-blank line of ``path``; every one must be in ``known``.

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
    """
    with open(path, encoding="utf-8") as f:
        utts = [line.split()[0] for line in f if line.strip()]
    unknown = [utt for utt in utts if utt not in known]
    if unknown:
        raise ValueError(f"{path}: {len(unknown)} id(s) are not utterances of the source, "
                         f"e.g. {', '.join(unknown[:5])}")
    return utts


def main(argv=None):
    args = get_parser().parse_args(argv)
    if os.path.abspath(args.src) == os.path.abspath(args.dest):
        raise ValueError(f"the destination must differ from the source {args.src}")
    data = load_valid(args.src)
    utts = data.utts
    count = args.first if args.first is not None else args.last
    if count is not None and not 1 <= count <= len(utts):
        raise ValueError(f"{args.src} has {len(utts)} utterances; N must be 1..{len(utts)}, got {count}")
    if args.utt_list is not None:
        keep = read_utt_list(args.utt_list, set(utts))
    else:
        keep = utts[:count] if args.first is not None else utts[len(utts) - count:]
    data.select(keep).write(args.dest)
    print(f"{args.dest}: {len(set(keep))} of the {len(utts)} utterances of {args.src}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
