"""Extract Whisper log-mel features for one shard of a Kaldi data directory.

Usage:
  python -m diffa.bin.extract_feats \\
      --data_dir data/train/split4/1 --out_dir dump/train --job 1 \\
      --n_mels 80 --feats_dtype float32 --skip_bad false --max_seconds 30 --long_audio truncate

Reads ``<data_dir>/wav.scp`` (any format, rate and channel count libsndfile reads; converted to
16 kHz mono, see ``diffa.data.audio``) and computes ``diffa.data.features.WhisperLogMel`` for each
utterance: a (T, n_mels) matrix with T = ceil(samples / 160). Writes, under ``<out_dir>/data/``:

  feats.<job>.ark        the matrices, in wav.scp order. float32: Kaldi binary matrices ("FM");
                         float16: kaldiio's NPY records (kaldiio.load_scp / load_mat read both,
                         Kaldi's C++ tools only the former)
  feats.<job>.scp        <utt> <out_dir>/data/feats.<job>.ark:<byte offset>
  utt2num_frames.<job>   <utt> <T>
  bad_utts.<job>         <utt> <reason> <details>, one line per skipped utterance (empty if none)
  .done.<job>            written last (holds the counts); when it exists the job does nothing,
                         so a rerun of all jobs redoes only the unfinished shards

The ark path in the scp is ``--out_dir`` joined with ``data/feats.<job>.ark`` exactly as given, so a
relative ``--out_dir`` gives paths relative to the directory the command runs in (the recipe
directory, as in ESPnet), and the shards' scp files can be concatenated into ``feats.scp``.

Every file is written to ``<name>.tmp`` and renamed when complete: a killed job leaves only
``.tmp`` files and no marker, and its rerun overwrites them. The output is deterministic (one
thread, no randomness), so a rerun gives byte-identical arks.

``wav.scp`` itself must be UTF-8, sorted (``LC_ALL=C sort``) and free of duplicate ids; otherwise
the job stops, naming the file and line. Bad utterances: a missing or unreadable file, zero-length audio, audio shorter than one frame (160
samples at 16 kHz), audio over ``--max_seconds`` with ``--long_audio reject``, and features that
are not finite (NaN/inf). With ``--skip_bad false`` the job stops at the first one, naming the
utterance; with ``--skip_bad true`` it lists it in ``bad_utts.<job>`` and carries on. Resampled,
downmixed, truncated and skipped utterances are counted in the summary line printed at the end.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import Counter
from typing import Optional, Sequence

import kaldiio
import numpy as np
import torch
from tqdm import tqdm

from diffa.bin._cli import entry_point_parser
from diffa.data.audio import LONG_AUDIO_POLICIES, AudioError, load_audio
from diffa.data.features import HOP_LENGTH, SAMPLE_RATE, WhisperLogMel
from diffa.data.kaldi import read_map, write_map
from diffa.files import atomic_write

logger = logging.getLogger(__name__)


def str2bool(value: str) -> bool:
    """Parse ``true/false`` (also ``yes/no``, ``1/0``) command-line values.

    Arguments
    ---------
    value : str
        The option value.

    Returns
    -------
    bool

    Example
    -------
    >>> str2bool("true"), str2bool("False"), str2bool("0")
    (True, False, False)
    """
    lowered = value.lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def get_parser() -> argparse.ArgumentParser:
    """Build the command-line parser.

    Example
    -------
    >>> args = get_parser().parse_args(["--data_dir", "d", "--out_dir", "o", "--job", "2"])
    >>> args.job, args.n_mels, args.feats_dtype, args.skip_bad, args.max_seconds, args.long_audio
    (2, 80, 'float32', False, 30.0, 'truncate')
    """
    parser = entry_point_parser("diffa.bin.extract_feats", __doc__)
    parser.add_argument("--data_dir", required=True, help="shard data dir holding wav.scp")
    parser.add_argument("--out_dir", required=True, help="dump dir; files go to <out_dir>/data")
    parser.add_argument("--job", type=int, required=True, help="shard number (names the outputs)")
    parser.add_argument("--n_mels", type=int, default=80, help="80 (Whisper v1/v2) or 128 (v3)")
    parser.add_argument("--feats_dtype", "--dtype", dest="feats_dtype", choices=("float32", "float16"), default="float32",
                        help="dtype the features are stored in (default: %(default)s)")
    parser.add_argument(
        "--skip_bad", type=str2bool, default=False,
        help="true: list bad utterances in bad_utts.<job> and go on; false: stop at the first",
    )
    parser.add_argument(
        "--max_seconds", type=float, default=30.0, help="longest audio kept (Whisper: 30 s)"
    )
    parser.add_argument(
        "--long_audio", choices=LONG_AUDIO_POLICIES, default="truncate",
        help="audio over --max_seconds: keep its start (truncate) or treat it as bad (reject)",
    )
    return parser


class BadUtterance(Exception):
    """An utterance that gets no features: ``reason`` is a short code, the message the details.

    Arguments
    ---------
    reason : str
        ``missing``, ``unreadable``, ``empty``, ``too_long``, ``too_short`` or ``not_finite``.
    message : str
        What is wrong.

    Example
    -------
    >>> BadUtterance("too_short", "80 samples").reason
    'too_short'
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def utterance_feats(
    fbank: WhisperLogMel,
    path: str,
    dtype: str,
    max_seconds: float,
    long_audio: str,
    counts: Counter,
) -> np.ndarray:
    """Load one file and compute its (T, n_mels) features; count what the loader changed.

    Arguments
    ---------
    fbank : WhisperLogMel
        The feature module.
    path : str
        The audio file.
    dtype : str
        ``float32`` or ``float16``.
    max_seconds : float
        Longest audio kept (see ``diffa.data.audio.load_audio``).
    long_audio : str
        ``truncate`` or ``reject`` audio over ``max_seconds``.
    counts : Counter
        Incremented at ``resampled``, ``downmixed``, ``truncated``.

    Returns
    -------
    np.ndarray (T, n_mels) of ``dtype``; raises BadUtterance when there is none to give.

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile as sf
    >>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
    >>> sf.write(path, np.full(100, 0.1, np.float32), 16000)
    >>> utterance_feats(WhisperLogMel(80), path, "float32", 30.0, "truncate", Counter())
    Traceback (most recent call last):
    ...
    diffa.bin.extract_feats.BadUtterance: /...a.wav: 100 samples at 16 kHz give no 10 ms frame
    (160 samples needed)
    """
    try:
        wav, info = load_audio(path, SAMPLE_RATE, max_seconds, long_audio)
    except AudioError as err:
        raise BadUtterance(err.reason, str(err)) from None
    counts.update(
        key for key in ("resampled", "downmixed", "truncated") if getattr(info, key)
    )
    if len(wav) < HOP_LENGTH:
        raise BadUtterance(
            "too_short",
            f"{path}: {len(wav)} samples at 16 kHz give no 10 ms frame ({HOP_LENGTH} samples needed)",
        )
    with torch.no_grad():
        feats, _ = fbank(torch.from_numpy(wav)[None])
    matrix = feats[0].numpy().astype(dtype)
    if not np.isfinite(matrix).all():
        raise BadUtterance("not_finite", f"{path}: the features contain NaN or inf")
    return matrix


def extract_shard(
    data_dir: str,
    out_dir: str,
    job: int,
    n_mels: int = 80,
    dtype: str = "float32",
    skip_bad: bool = False,
    max_seconds: float = 30.0,
    long_audio: str = "truncate",
) -> Optional[Counter]:
    """Write the features of ``<data_dir>/wav.scp`` as shard ``job`` under ``<out_dir>/data``.

    Arguments
    ---------
    data_dir : str
        The shard's data directory; its ``wav.scp`` is read.
    out_dir : str
        The dump directory; the outputs go to ``<out_dir>/data`` (see the module docstring).
    job : int
        The shard number, used in the output names.
    n_mels : int
        Mel bins (80 or 128).
    dtype : str
        Stored precision: ``float32`` or ``float16``.
    skip_bad : bool
        List bad utterances in ``bad_utts.<job>`` and go on, instead of raising.
    max_seconds : float
        Longest audio kept.
    long_audio : str
        ``truncate`` or ``reject`` audio over ``max_seconds``.

    Returns
    -------
    Counter of ``utts``, ``written``, ``skipped``, ``resampled``, ``downmixed``, ``truncated``;
    None when the shard was already done. A bad utterance with ``skip_bad=False`` raises
    ValueError naming it.

    Example
    -------
    >>> import os, tempfile, numpy as np, soundfile as sf
    >>> d = tempfile.mkdtemp()
    >>> sf.write(os.path.join(d, "a.wav"), np.zeros(8000, np.float32), 8000)
    >>> _ = open(os.path.join(d, "wav.scp"), "w").write(f"a {d}/a.wav\\nb {d}/gone.wav\\n")
    >>> counts = extract_shard(d, os.path.join(d, "dump"), 1, skip_bad=True)
    >>> counts["written"], counts["skipped"], counts["resampled"]
    (1, 1, 1)
    >>> open(os.path.join(d, "dump", "data", "utt2num_frames.1")).read()
    'a 100\\n'
    >>> extract_shard(d, os.path.join(d, "dump"), 1) is None  # done already
    True
    """
    if n_mels < 1:
        raise ValueError(f"--n_mels must be positive, got {n_mels}")
    if dtype not in ("float32", "float16"):
        raise ValueError(f"--dtype must be float32 or float16, got {dtype!r}")
    if max_seconds <= 0:
        raise ValueError(f"--max_seconds must be positive, got {max_seconds}")
    data = os.path.join(out_dir, "data")
    marker = os.path.join(data, f".done.{job}")
    if os.path.exists(marker):
        logger.info("%s exists: shard %d is done, nothing to do", marker, job)
        return None
    wav_scp_path = os.path.join(data_dir, "wav.scp")
    if not os.path.isfile(wav_scp_path):
        raise FileNotFoundError(
            f"{wav_scp_path} not found; make the data directory and split it into shards first"
        )
    wav_scp = read_map(wav_scp_path)
    ark = os.path.join(data, f"feats.{job}.ark")
    bad_path = os.path.join(data, f"bad_utts.{job}")
    fbank = WhisperLogMel(n_mels)
    write_function = "numpy" if dtype == "float16" else None
    scp, num_frames, bad = {}, {}, {}
    counts = Counter(utts=len(wav_scp))
    with atomic_write(ark, "wb") as f:
        for utt, path in tqdm(wav_scp.items(), desc=f"feats.{job}", unit="utt"):
            try:
                matrix = utterance_feats(fbank, path, dtype, max_seconds, long_audio, counts)
            except BadUtterance as err:
                details = " ".join(str(err).split())
                if not skip_bad:
                    raise ValueError(
                        f"utterance '{utt}' ({wav_scp_path}): {err.reason}: {details}. Fix or "
                        f"remove it, or rerun with --skip_bad true to list it in {bad_path}"
                    ) from None
                logger.warning("skipping '%s': %s: %s", utt, err.reason, details)
                bad[utt] = f"{err.reason} {details}"
                continue
            scp[utt] = f"{ark}:{f.tell() + len(utt.encode('utf-8')) + 1}"
            kaldiio.save_ark(f, {utt: matrix}, write_function=write_function)
            num_frames[utt] = matrix.shape[0]
    write_map(os.path.join(data, f"feats.{job}.scp"), scp)
    write_map(os.path.join(data, f"utt2num_frames.{job}"), num_frames)
    write_map(bad_path, bad)
    counts.update(written=len(scp), skipped=len(bad))
    with atomic_write(marker) as f:
        f.write(" ".join(f"{key}={counts[key]}" for key in sorted(counts)) + "\n")
    return counts


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Run one shard (see the module docstring); exit with a message on bad input.

    Arguments
    ---------
    argv : sequence of str, optional
        Command-line arguments (default: ``sys.argv[1:]``).

    Example
    -------
    >>> import tempfile, soundfile as sf
    >>> d = tempfile.mkdtemp(); threads = torch.get_num_threads()   # main uses one thread
    >>> sf.write(os.path.join(d, "a.wav"), np.zeros((4000, 2), np.float32), 8000)   # 0.5 s of stereo at 8 kHz
    >>> _ = open(os.path.join(d, "wav.scp"), "w").write(f"a {d}/a.wav\\n")
    >>> main(["--data_dir", d, "--out_dir", os.path.join(d, "dump"), "--job", "1"])
    extract_feats: job 1: 1 utts, 1 written, 0 skipped, 1 resampled, 1 downmixed, 0 truncated
    >>> open(os.path.join(d, "dump", "data", "feats.1.scp")).read()
    'a /.../dump/data/feats.1.ark:2\\n'
    >>> main(["--data_dir", d, "--out_dir", os.path.join(d, "dump"), "--job", "1"])   # done already
    extract_feats: job 1: already done
    >>> main(["--data_dir", os.path.join(d, "nodata"), "--out_dir", os.path.join(d, "dump"), "--job", "2"])
    Traceback (most recent call last):
     ...
    SystemExit: extract_feats: error: /.../nodata/wav.scp not found; make the data directory and split it into shards first
    >>> torch.set_num_threads(threads)
    """
    args = get_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    torch.set_num_threads(1)  # parallelism comes from the nj shards
    try:
        counts = extract_shard(
            args.data_dir, args.out_dir, args.job, args.n_mels, args.feats_dtype,
            args.skip_bad, args.max_seconds, args.long_audio,
        )
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"extract_feats: error: {err}")
    if counts is None:
        print(f"extract_feats: job {args.job}: already done")
        return
    print(
        f"extract_feats: job {args.job}: {counts['utts']} utts, {counts['written']} written, "
        f"{counts['skipped']} skipped, {counts['resampled']} resampled, "
        f"{counts['downmixed']} downmixed, {counts['truncated']} truncated"
    )


if __name__ == "__main__":
    main()
