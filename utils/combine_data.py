#!/usr/bin/env python3
"""Merge data directories into one; an utterance or task id may come from one source only.

Usage:
    utils/combine_data.py <dest-dir> <src-dir> <src-dir> [<src-dir>...]

Every source must pass utils/validate_data_dir.py (audio aside). wav.scp, utt2spk and spk2utt are
merged; text and utt2dur only when every source has one (else they are left out, with a note);
tasks.jsonl merges the manifests of the sources that have one. A speaker may appear in several
sources. The destination must not be one of the sources.
"""

import argparse
import os
import sys

from datadir import DataDir, load_valid, run_cli


def get_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dest", metavar="dest-dir")
    parser.add_argument("srcs", nargs="+", metavar="src-dir")
    return parser


def merge(named, what):
    """Merge ``{source: {id: value}}`` maps; an id in two sources is an error naming both.

    Arguments
    ---------
    named : dict
        source name -> {id: value}.
    what : str
        What the ids are, for the message.

    Returns
    -------
    dict

    Example
    -------
    >>> merge({"data/a": {"u1": "x"}, "data/b": {"u2": "y"}}, "utterance")
    {'u1': 'x', 'u2': 'y'}
    >>> merge({"data/a": {"u1": "x"}, "data/b": {"u1": "y"}}, "utterance")
    Traceback (most recent call last):
    ...
    ValueError: utterance u1 is in both data/a and data/b; ids must be unique across sources
    """
    merged, origin = {}, {}
    for source, table in named.items():
        for key, value in table.items():
            if key in merged:
                raise ValueError(f"{what} {key} is in both {origin[key]} and {source}; "
                                 "ids must be unique across sources")
            merged[key], origin[key] = value, source
    return merged


def main(argv=None):
    args = get_parser().parse_args(argv)
    dest = os.path.abspath(args.dest)
    if any(os.path.abspath(src) == dest for src in args.srcs):
        raise ValueError(f"the destination {args.dest} is also a source")
    sources = {src: load_valid(src) for src in args.srcs}
    names = set.intersection(*(set(data.tables) for data in sources.values()))
    for name in sorted(set.union(*(set(data.tables) for data in sources.values())) - names):
        lacking = [src for src, data in sources.items() if name not in data.tables]
        print(f"combine_data.py: {name} left out: {', '.join(lacking)} has none", file=sys.stderr)
    tables = {
        name: merge({src: data.tables[name] for src, data in sources.items()}, "utterance")
        for name in names
    }
    with_tasks = {src: data.tasks for src, data in sources.items() if data.tasks is not None}
    tasks = None
    if with_tasks:
        by_id = merge(
            {src: {row["id"]: row for row in rows} for src, rows in with_tasks.items()}, "task"
        )
        tasks = list(by_id.values())
    DataDir(tables, tasks).write(args.dest)
    print(f"{args.dest}: {len(tables['wav.scp'])} utterances from {len(sources)} directories")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
