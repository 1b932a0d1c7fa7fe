"""Build the preference pairs of curriculum stage 4 (VRPO) from dumped training sets.

Usage:
  python -m diffa.bin.make_pairs --train_data dump/train[,dump/other] --out_dir exp/pairs \\
      [--modes swap,external] [--valid_data dump/dev | --valid_fraction 0.05] [--max_pairs 3000] [--max_valid_pairs 0] [--seed 0]

  # answers sampled from the stage-3 model and ranked against the reference
  python -m diffa.bin.make_pairs --train_data dump/train --out_dir exp/pairs --modes swap,sampled \\
      --model_dir exp/stage3_sft --n_samples 4 --temperature 1.0 --gen_length 32 [--device cuda --dtype bfloat16]

Each ``--train_data`` directory is a dump directory (``tasks.jsonl`` + ``feats.scp``, written by
the feature stage). Every task row whose utterance has features gives at most one pair per mode
(``diffa.train.pairs``): ``swap`` (one audio fact of the answer swapped for another value seen in
the set; ASR: one word swapped), ``external`` (the row's ``labels["rejected"]``, e.g. the
authors' preference index) and ``sampled`` (the worst wrong answer of ``--n_samples`` sampled
from ``--model_dir``).

Sampling (a reverse process per row and sample) is the slow part: under ``--max_pairs`` mode
``sampled`` visits the rows in a random order and stops once it has made that many pairs (the
held-out side likewise under ``--max_valid_pairs``; with ``--valid_fraction`` both caps are needed,
as one sampling feeds both sides); rows never sampled are counted in ``unvisited:sampled``.

Held-out pairs come from ``--valid_data`` (dump directories, built the same way), else from a
random ``--valid_fraction`` of the training utterances (no utterance on both sides). Task ids must
be unique across the dumps of each side (pair ids are ``<task id>-<mode>``).

Everything is built and written into a staging directory beside --out_dir first, then moved in:
a run that fails leaves an earlier run's output as it was. Writes, under --out_dir (the layout
VRPO training reads with --pairs):
  pairs.jsonl         training pairs (format: diffa.data.pairs)
  feats.scp           the features of their utterances (lines of the dumps' feats.scp)
  utt2num_frames      their frame counts (when the dumps have them)
  valid/              the same three files for the held-out pairs (absent when there are none;
                      utterance ids may repeat across sets, hence a directory of its own)
  stats.json          pairs made per source and rows skipped per mode
  sampling/           only while mode 'sampled' runs: the samples so far, batch by batch, which a
                      re-run with the same model and settings reuses (an interrupted run resumes)
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import random
import shutil
import sys
import tempfile
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from diffa.bin._cli import entry_point_parser, error_status, options_given
from diffa.data.kaldi import load_feats, read_map, write_map
from diffa.files import atomic_write
from diffa.data.pairs import FEATS_FILE, PAIRS_FILE, VALID_DIR, write_pairs
from diffa.data.tasks import read_tasks
from diffa.decode.loading import add_model_arguments, find_tokenizer, load_for_decoding
from diffa.model.diffa import resolve_model_dir
from diffa.train.pair_sampler import ModelSampler
from diffa.train.pairs import MODES, build_pairs, split_by_utterance

SAMPLING_DIR = "sampling"
SAMPLED_GROUP = "mode 'sampled'"

logger = logging.getLogger("diffa.bin.make_pairs")

FRAMES_FILE, STATS_FILE = "utt2num_frames", "stats.json"


def get_parser() -> argparse.ArgumentParser:
    """Build the command-line parser.

    Example
    -------
    >>> args = get_parser().parse_args(["--train_data", "dump/train", "--out_dir", "exp/pairs"])
    >>> args.modes, args.valid_fraction, args.n_samples
    ('swap,external', 0.05, 4)
    """
    parser = entry_point_parser("diffa.bin.make_pairs", __doc__)
    parser.add_argument("--train_data", required=True, help="comma-separated dump directories (tasks.jsonl + feats.scp)")
    parser.add_argument("--out_dir", required=True, help="output directory, e.g. exp/pairs")
    parser.add_argument("--modes", default="swap,external", help=f"comma-separated subset of {','.join(MODES)}")
    parser.add_argument("--valid_data", help="comma-separated dump directories for the held-out pairs")
    parser.add_argument("--valid_fraction", type=float, default=0.05,
                        help="without --valid_data: fraction of training utterances held out (0: none)")
    parser.add_argument("--max_pairs", type=int, default=0,
                        help="keep a random subset of this many training pairs (0: all; DIFFA-2 used about 3,000); "
                             "mode 'sampled' then samples random rows only until it has made this many pairs")
    parser.add_argument("--max_valid_pairs", type=int, default=0,
                        help="keep a random subset of this many held-out pairs (0: all); bounds their sampling likewise")
    parser.add_argument("--seed", type=int, default=0, help="seed of the swaps, the held-out split and the sampling")
    sampled = parser.add_argument_group(SAMPLED_GROUP)
    sampled.add_argument("--model_dir", "--model", dest="model_dir",
                         help="DIFFA model to sample from (the stage-3 model directory or its exp dir)")
    sampled.add_argument("--n_samples", type=int, default=4, help="answers sampled per row")
    sampled.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    sampled.add_argument("--gen_length", type=int, default=32, help="answer canvas length (block length = steps = this)")
    sampled.add_argument("--batch_size", type=int, default=8, help="rows per model call")
    sampled.add_argument("--system_prompt", help="system prompt of the template (default: the template's)")
    add_model_arguments(sampled)
    return parser


def read_dumps(dirs: Sequence[str]) -> Tuple[List[dict], Dict[str, str], Dict[str, int]]:
    """Task rows with features, and the ``feats.scp`` / ``utt2num_frames`` entries of several dumps.

    Rows whose utterance has no features are left out (logged). An utterance in two dumps must
    have the same ``feats.scp`` entry; a task id may be in one dump only.

    Example
    -------
    >>> read_dumps(["/nonexistent"])
    Traceback (most recent call last):
     ...
    ValueError: /nonexistent/tasks.jsonl is missing: run stage 2 (feature extraction) for this set first
    >>> read_dumps(["dump/dev", "dump/dev/"])
    Traceback (most recent call last):
     ...
    ValueError: dump/dev is listed twice; list each dump directory once
    """
    rows: List[dict] = []
    feats: Dict[str, str] = {}
    frames: Dict[str, int] = {}
    task_dump: Dict[str, str] = {}  # task id -> the dump it is in
    twice = sorted({d for d in dirs if sum(os.path.realpath(e) == os.path.realpath(d) for e in dirs) > 1})
    if twice:
        raise ValueError(f"{twice[0]} is listed twice; list each dump directory once")
    for d in dirs:
        for name in ("tasks.jsonl", "feats.scp"):
            if not os.path.isfile(os.path.join(d, name)):
                raise ValueError(f"{os.path.join(d, name)} is missing: run stage 2 (feature extraction) for this set first")
        scp = read_map(os.path.join(d, "feats.scp"))
        for utt, entry in scp.items():
            if feats.setdefault(utt, entry) != entry:
                raise ValueError(f"{d}/feats.scp: utterance {utt!r} has other features in an earlier --train_data directory")
        if os.path.isfile(os.path.join(d, "utt2num_frames")):
            frames.update(read_map(os.path.join(d, "utt2num_frames"), value_type=int))
        tasks = read_tasks(os.path.join(d, "tasks.jsonl"))
        kept = [r for r in tasks if r["utt"] in scp]
        if len(kept) < len(tasks):
            logger.warning("%s: %d of %d rows have no features and are left out", d, len(tasks) - len(kept), len(tasks))
        for row in kept:
            if task_dump.setdefault(row["id"], d) != d:
                raise ValueError(f"{d}/tasks.jsonl: task id {row['id']!r} is also in {task_dump[row['id']]}/tasks.jsonl; "
                                 "pair ids must be unique (they are <task id>-<mode>): give one set's ids a prefix of its own")
        rows.extend(kept)
    return rows, feats, frames


def _samplers(args, train_scps: Sequence[str], valid_scps: Sequence[str]) -> Tuple[Optional[ModelSampler], Optional[ModelSampler]]:
    """Samplers of mode 'sampled' for the training and the held-out sets (None when the mode is off).

    The two share the model; each reads its own sets' features (utterance ids may repeat across
    sets).
    """
    if "sampled" not in args.modes.split(","):
        given = options_given(get_parser(), args, SAMPLED_GROUP)
        if given:
            logger.warning("%s ignored: only mode 'sampled' uses them, and --modes is %s", ", ".join(given), args.modes)
        return None, None
    if not args.model_dir:
        raise ValueError("--modes sampled needs --model_dir (the stage-3 model)")
    model, tokenizer = load_for_decoding(args.model_dir, args.tokenizer_dir, args.device, args.dtype, args.audio_dtype)
    model_dir = resolve_model_dir(args.model_dir)  # what load_for_decoding checked and read
    cache = _sampling_cache(args, model_dir, find_tokenizer(model_dir, args.tokenizer_dir))
    opts = dict(n_samples=args.n_samples, temperature=args.temperature, gen_length=args.gen_length,
                batch_size=args.batch_size, system=args.system_prompt, seed=args.seed)
    return tuple(
        ModelSampler(model, tokenizer, collections.ChainMap(*(load_feats(scp) for scp in scps)),
                     cache=os.path.join(cache, f"{side}.jsonl"), **opts) if scps else None
        for side, scps in (("train", train_scps), ("valid", valid_scps))
    )


def _sampling_cache(args, model_dir, tokenizer_dir) -> str:
    """``<out_dir>/sampling``, where the samplers keep what they sampled so far; emptied first
    when an earlier run wrote it with another model (files changed since) or other settings.

    Example
    -------
    >>> import tempfile
    >>> d = tempfile.mkdtemp(); os.makedirs(os.path.join(d, "m"))
    >>> args = get_parser().parse_args(["--train_data", "t", "--out_dir", d])
    >>> folder = _sampling_cache(args, os.path.join(d, "m"), "tok")
    >>> _ = open(os.path.join(folder, "train.jsonl.partial"), "w").write('{"id": "a", "samples": []}\\n')
    >>> sorted(os.listdir(_sampling_cache(args, os.path.join(d, "m"), "tok")))  # same settings: kept
    ['settings.json', 'train.jsonl.partial']
    >>> args.temperature = 0.5; sorted(os.listdir(_sampling_cache(args, os.path.join(d, "m"), "tok")))
    ['settings.json']
    """
    folder = os.path.join(args.out_dir, SAMPLING_DIR)
    files = {name: [os.path.getsize(os.path.join(model_dir, name)), os.path.getmtime(os.path.join(model_dir, name))]
             for name in sorted(os.listdir(model_dir)) if os.path.isfile(os.path.join(model_dir, name))}
    settings = {"model": os.path.realpath(model_dir), "model_files": files,
                "tokenizer": os.path.realpath(tokenizer_dir), "train_data": args.train_data,
                "valid_data": args.valid_data, "dtype": args.dtype, "audio_dtype": args.audio_dtype, "seed": args.seed,
                **{k: getattr(args, k) for k in ("n_samples", "temperature", "gen_length", "system_prompt")}}
    path = os.path.join(folder, "settings.json")
    try:
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
    except (OSError, ValueError):
        old = None
    if old != settings and os.path.isdir(folder):
        if isinstance(old, dict):
            changed = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            logger.warning("%s: samples of an earlier run with other settings (%s) are discarded", folder, ", ".join(changed))
        shutil.rmtree(folder)
    os.makedirs(folder, exist_ok=True)
    with atomic_write(path) as f:
        json.dump(settings, f, indent=2)
    return folder


def write_pair_dir(out_dir: str, pairs: Sequence[dict], feats: Dict[str, str], frames: Dict[str, int]) -> None:
    """``pairs.jsonl``, ``feats.scp`` and (when every length is known) ``utt2num_frames`` in ``out_dir``,
    for the utterances of ``pairs`` only.

    Example
    -------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> pair = {"id": "u1-0-swap", "utt": "u1", "prompt": "Who?", "chosen": "a man", "rejected": "a woman",
    ...         "source": "swap:gender"}
    >>> write_pair_dir(d, [pair], {"u1": "a.ark:9", "u2": "a.ark:99"}, {"u1": 300})
    >>> sorted(os.listdir(d)), open(os.path.join(d, FEATS_FILE)).read()
    (['feats.scp', 'pairs.jsonl', 'utt2num_frames'], 'u1 a.ark:9\\n')
    """
    write_pairs(os.path.join(out_dir, PAIRS_FILE), pairs)
    used = {p["utt"] for p in pairs}
    write_map(os.path.join(out_dir, FEATS_FILE), {u: feats[u] for u in used})
    if used <= set(frames):
        write_map(os.path.join(out_dir, FRAMES_FILE), {u: frames[u] for u in used})


def write_outputs(out_dir: str, stage: Callable[[str], None]) -> None:
    """Write the outputs of one run into ``out_dir`` as a whole.

    ``stage(folder)`` writes every output into a fresh staging directory beside ``out_dir``; only
    when it has succeeded are they moved into ``out_dir`` (renames), replacing an earlier run's
    outputs and removing those this run does not write (``valid/``, ``utt2num_frames``). When
    ``stage`` fails, ``out_dir`` is left as it was. Other files in ``out_dir`` are not touched.

    Example
    -------
    >>> import tempfile
    >>> out = os.path.join(tempfile.mkdtemp(), "pairs")
    >>> write_outputs(out, lambda folder: open(os.path.join(folder, STATS_FILE), "w").write("{}"))
    >>> def fails(folder):
    ...     open(os.path.join(folder, PAIRS_FILE), "w").close()
    ...     raise ValueError("bad pair")
    >>> write_outputs(out, fails)
    Traceback (most recent call last):
     ...
    ValueError: bad pair
    >>> sorted(os.listdir(os.path.dirname(out))), os.listdir(out)
    (['pairs'], ['stats.json'])
    """
    parent = os.path.dirname(os.path.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(out_dir))}.", dir=parent)
    try:
        stage(staging)
        os.makedirs(out_dir, exist_ok=True)
        valid = os.path.join(out_dir, VALID_DIR)
        if os.path.isdir(valid):
            os.replace(valid, os.path.join(staging, "previous_valid"))  # removed with the staging directory
        if os.path.isdir(os.path.join(staging, VALID_DIR)):
            os.replace(os.path.join(staging, VALID_DIR), valid)
        for name in (PAIRS_FILE, FEATS_FILE, FRAMES_FILE, STATS_FILE):  # stats.json last: the run is complete
            if os.path.exists(os.path.join(staging, name)):
                os.replace(os.path.join(staging, name), os.path.join(out_dir, name))
            elif os.path.exists(os.path.join(out_dir, name)):
                os.remove(os.path.join(out_dir, name))  # stale (utt2num_frames: lengths are measured instead)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _subsample(pairs: list, limit: int, rng: random.Random, stats: dict, key: str) -> list:
    """A random ``limit`` of ``pairs`` (all when ``limit`` is 0 or not smaller), counted in ``stats``."""
    if 0 < limit < len(pairs):
        stats[key] = len(pairs) - limit
        return rng.sample(pairs, limit)
    return pairs


def _sampling_budget(args) -> Optional[int]:
    """How many 'sampled' training pairs are worth sampling for (None: sample every row).

    A side never keeps more pairs than its cap, so sampling beyond it would only make pairs that
    the final random draw drops; with --valid_fraction the held-out pairs come out of the same
    sampling, so both caps must be set for a bound.

    Example
    -------
    >>> args = get_parser().parse_args(["--train_data", "d", "--out_dir", "o", "--max_pairs", "300"])
    >>> _sampling_budget(args), _sampling_budget(get_parser().parse_args(["--train_data", "d", "--out_dir", "o"]))
    (None, None)
    >>> args.max_valid_pairs = 30; _sampling_budget(args)
    330
    >>> args.valid_data = "dev"; _sampling_budget(args)
    300
    """
    if args.valid_data or args.valid_fraction == 0:
        return args.max_pairs or None
    return args.max_pairs + args.max_valid_pairs if args.max_pairs and args.max_valid_pairs else None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Build and write the pairs (see the module docstring); returns the exit status (1 after an
    error in the data or the files, printed as one ``ERROR:`` line).

    Example
    -------
    A dump directory without its task manifest (a run that writes pairs: :func:`make_pairs`);
    nothing is written:

    >>> import contextlib
    >>> out = os.path.join(tempfile.mkdtemp(), "pairs")
    >>> with contextlib.redirect_stderr(sys.stdout):
    ...     main(["--train_data", "dump/none", "--out_dir", out])
    ERROR: dump/none/tasks.jsonl is missing: run stage 2 (feature extraction) for this set first
    1
    >>> os.path.exists(out)
    False
    """
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return error_status(lambda: make_pairs(args))


def make_pairs(args: argparse.Namespace) -> None:
    """The work of :func:`main`: read the dumps, build, subsample and write the pairs.

    Example
    -------
    A dump of two ASR rows (mode ``swap``: one word swapped) and a QA row carrying its own
    rejected answer (mode ``external``); only ``feats.scp``'s lines are read, not the features:

    >>> from diffa.data.pairs import read_pairs
    >>> from diffa.data.tasks import write_tasks
    >>> with tempfile.TemporaryDirectory() as d:
    ...     dump, out = os.path.join(d, "dump"), os.path.join(d, "pairs")
    ...     os.makedirs(dump)
    ...     asr = {"task": "asr", "instruction": "What is said?"}
    ...     write_tasks(os.path.join(dump, "tasks.jsonl"), [
    ...         dict(asr, id="u1-asr", utt="u1", answer="red cat"), dict(asr, id="u2-asr", utt="u2", answer="blue dog"),
    ...         {"id": "u3-qa", "utt": "u3", "task": "open_qa", "instruction": "Is it loud?", "answer": "yes",
    ...          "labels": {"rejected": "no"}}])
    ...     _ = open(os.path.join(dump, FEATS_FILE), "w").write("u1 f.ark:9\\nu2 f.ark:99\\nu3 f.ark:999\\n")
    ...     make_pairs(get_parser().parse_args(["--train_data", dump, "--out_dir", out, "--valid_fraction", "0"]))
    ...     written, pairs = sorted(os.listdir(out)), read_pairs(os.path.join(out, PAIRS_FILE))
    3 training pairs, 0 held-out pairs -> .../pairs (skipped:external: 2, skipped:swap: 1, swap:transcript: 2)
    >>> written
    ['feats.scp', 'pairs.jsonl', 'stats.json']
    >>> [(p["id"], p["source"]) for p in pairs], pairs[-1]["rejected"]
    ([('u1-asr-swap', 'swap:transcript'), ('u2-asr-swap', 'swap:transcript'), ('u3-qa-external', 'external')], 'no')
    """
    modes = [m for m in args.modes.split(",") if m]
    split = lambda value: [d for d in (value or "").split(",") if d]  # noqa: E731
    scps = lambda dirs: [os.path.join(d, FEATS_FILE) for d in dirs]  # noqa: E731
    rows, feats, frames = read_dumps(split(args.train_data))
    valid_rows, valid_feats, valid_frames = read_dumps(split(args.valid_data)) if args.valid_data else ([], {}, {})
    train_sampler, valid_sampler = _samplers(args, scps(split(args.train_data)), scps(split(args.valid_data)))
    rng = random.Random(args.seed)
    pairs, stats = build_pairs(rows, modes, rng, train_sampler, _sampling_budget(args))
    if args.valid_data:
        held_out, valid_stats = build_pairs(valid_rows, modes, rng, valid_sampler, args.max_valid_pairs or None)
        stats.update({f"valid:{k}": v for k, v in valid_stats.items()})
    else:
        pairs, held_out = split_by_utterance(pairs, args.valid_fraction, rng)
        valid_feats, valid_frames = feats, frames
    pairs = _subsample(pairs, args.max_pairs, rng, stats, "dropped:max_pairs")
    held_out = _subsample(held_out, args.max_valid_pairs, rng, stats, "dropped:max_valid_pairs")
    if not pairs:
        raise ValueError(f"no training pair could be made with modes {modes} from {args.train_data}; "
                         "check the labels of tasks.jsonl or choose other --modes")
    stats.update(train_pairs=len(pairs), valid_pairs=len(held_out))

    def stage(folder: str) -> None:
        write_pair_dir(folder, pairs, feats, frames)
        if held_out:
            write_pair_dir(os.path.join(folder, VALID_DIR), held_out, valid_feats, valid_frames)
        with atomic_write(os.path.join(folder, STATS_FILE)) as f:
            json.dump(dict(sorted(stats.items())), f, indent=2)
            f.write("\n")

    write_outputs(args.out_dir, stage)
    shutil.rmtree(os.path.join(args.out_dir, SAMPLING_DIR), ignore_errors=True)  # complete: samples no longer needed
    print(f"{len(pairs)} training pairs, {len(held_out)} held-out pairs -> {args.out_dir} "
          f"({', '.join(f'{k}: {v}' for k, v in sorted(stats.items()) if ':' in k)})")


if __name__ == "__main__":
    sys.exit(main())
