#!/usr/bin/env python3
"""Split a data directory into N parts by utterance: <data-dir>/split<N>/{1..N}.

Usage:
    utils/split_data.py <data-dir> <N>

The parts are contiguous ranges of the sorted utterance ids whose sizes differ by at most one
(the first ones get the extra utterance); each is a complete data directory, and its
tasks.jsonl holds the tasks of its utterances. The source must pass utils/validate_data_dir.py
(audio aside). split<N>/.done holds a fingerprint of the source's files, and the split is remade
when they differ from it (by content: a file moved in with an old time counts too); it is built in
split<N>.tmp and renamed, so a half split is never used.
"""

import argparse
import hashlib
import os
import shutil
import sys

from datadir import SPK2UTT, TASKS, UTT_FILES, load_valid, run_cli


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data_dir", metavar="data-dir", help="the directory to split")
    parser.add_argument("num_parts", metavar="N", type=int, help="the number of parts")
    return parser


def part_sizes(n_items, n_parts):
    """Return the sizes of ``n_parts`` balanced contiguous parts of ``n_items`` items.

    Arguments
    ---------
    n_items : int
        How many items.
    n_parts : int
        How many parts, 1 <= n_parts <= n_items.

    Returns
    -------
    list of int
        Sizes that sum to ``n_items`` and differ by at most one, larger ones first.

    Example
    -------
    >>> part_sizes(10, 4)
    [3, 3, 2, 2]
    """
    if not 1 <= n_parts <= n_items:
        raise ValueError(f"cannot split {n_items} utterances into {n_parts} parts; "
                         f"use between 1 and {n_items} parts (jobs)")
    size, extra = divmod(n_items, n_parts)
    return [size + (i < extra) for i in range(n_parts)]


def fingerprint(src):
    """One line per file of the data directory ``src``: its name and the SHA-1 of its content.

    Example
    -------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> _ = open(os.path.join(d, "wav.scp"), "w").write("u1 a.wav\\n")
    >>> print(fingerprint(d), end="")
    wav.scp c925f4809857f0b97caeb1626668330617820ca6
    """
    lines = []
    for name in UTT_FILES + (SPK2UTT, TASKS):
        path = os.path.join(src, name)
        if os.path.isfile(path):
            digest = hashlib.sha1()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):  # a large tasks.jsonl is not read whole
                    digest.update(block)
            lines.append(f"{name} {digest.hexdigest()}\n")
    return "".join(lines)


def is_up_to_date(src, done):
    """Return whether the marker ``done`` exists and holds the fingerprint of ``src`` now."""
    if not os.path.isfile(done):
        return False
    with open(done, encoding="utf-8") as f:
        return f.read() == fingerprint(src)


def main(argv=None):
    args = get_parser().parse_args(argv)
    out = os.path.join(args.data_dir, f"split{args.num_parts}")
    done = os.path.join(out, ".done")
    if is_up_to_date(args.data_dir, done):
        print(f"{out}: already split (from {args.data_dir} as it is)")
        return 0
    data = load_valid(args.data_dir)
    utts = data.utts
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    start = 0
    for part, size in enumerate(part_sizes(len(utts), args.num_parts), 1):
        data.select(utts[start:start + size]).write(os.path.join(tmp, str(part)))
        start += size
    with open(os.path.join(tmp, ".done"), "w", encoding="utf-8") as f:
        f.write(fingerprint(args.data_dir))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    print(f"{out}: {len(utts)} utterances in {args.num_parts} parts")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
