"""Tests of diffa.bin.extract_feats: outputs, bad input, skipping, resume after a kill."""
import errno
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch

from diffa.bin.extract_feats import main
from diffa.data.audio import load_audio
from diffa.data.features import WhisperLogMel
from diffa.data.kaldi import load_feats, read_map


@pytest.fixture(autouse=True)
def _restore_threads():
    """main() sets torch to one thread (one per shard); give the rest of the session its own."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _tone(seconds, sr, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wave = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 2 * t))
    wave = (wave + 0.01 * rng.standard_normal(len(t))).astype(np.float32)
    return wave if channels == 1 else np.stack([wave, 0.5 * wave], axis=1)


def _make_shard(root, entries):
    """Write wavs and a sorted wav.scp; ``entries`` maps utt -> (kind, arg)."""
    shard = root / "split2" / "1"
    wavs = root / "wavs"
    shard.mkdir(parents=True)
    wavs.mkdir(exist_ok=True)
    lines = []
    for seed, utt in enumerate(sorted(entries)):
        kind, arg = entries[utt]
        path = str(wavs / f"{utt}.wav")
        if kind == "wav":  # arg: (seconds, rate, channels)
            seconds, rate, channels = arg
            sf.write(path, _tone(seconds, rate, channels, seed), rate, subtype="FLOAT")
        elif kind == "raw":  # arg: samples written as they are
            sf.write(path, arg, 16000, subtype="FLOAT")
        elif kind == "bytes":
            with open(path, "wb") as f:
                f.write(arg)
        elif kind == "missing":
            path = str(wavs / "does_not_exist.wav")
        lines.append(f"{utt} {path}\n")
    (shard / "wav.scp").write_text("".join(lines))
    return str(shard)


GOOD = {
    "a16k": ("wav", (0.5, 16000, 1)),
    "b8k": ("wav", (0.3, 8000, 1)),
    "c_stereo": ("wav", (0.4, 16000, 2)),
    "d_long": ("wav", (30.5, 8000, 1)),
}
BAD = {
    "e_missing": ("missing", None),
    "f_garbage": ("bytes", b"\x00\x01 this is not audio \xff" * 8),
    "g_empty": ("raw", np.zeros(0, np.float32)),
    "h_short": ("raw", np.full(150, 0.1, np.float32)),
    "i_nan": ("raw", np.where(np.arange(1600) == 5, np.nan, 0.1).astype(np.float32)),
}
REASONS = {"e_missing": "missing", "f_garbage": "unreadable", "g_empty": "empty",
           "h_short": "too_short", "i_nan": "not_finite"}


def _args(shard, out, *extra):
    return ["--data_dir", shard, "--out_dir", out, "--job", "1", "--n_mels", "80", *extra]


def _outputs(out):
    data = os.path.join(out, "data")
    return sorted(name for name in os.listdir(data)) if os.path.isdir(data) else []


def test_good_shard_outputs(tmp_path, capsys):
    shard = _make_shard(tmp_path, GOOD)
    out = str(tmp_path / "dump")
    main(_args(shard, out, "--feats_dtype", "float32", "--skip_bad", "false"))
    assert _outputs(out) == [".done.1", "bad_utts.1", "feats.1.ark", "feats.1.scp",
                             "utt2num_frames.1"]
    stdout = capsys.readouterr().out
    assert ("job 1: 4 utts, 4 written, 0 skipped, 2 resampled, 1 downmixed, 1 truncated"
            in stdout)
    scp = read_map(os.path.join(out, "data", "feats.1.scp"))
    assert all(value.startswith(os.path.join(out, "data", "feats.1.ark") + ":")
               for value in scp.values())
    frames = read_map(os.path.join(out, "data", "utt2num_frames.1"), value_type=int)
    assert frames == {"a16k": 50, "b8k": 30, "c_stereo": 40, "d_long": 3000}
    feats = load_feats(os.path.join(out, "data", "feats.1.scp"))
    fbank = WhisperLogMel(80)
    for utt, path in read_map(os.path.join(shard, "wav.scp")).items():
        wav, _ = load_audio(path, max_seconds=30)
        expected, _ = fbank(torch.from_numpy(wav)[None])
        assert feats[utt].dtype == np.float32
        np.testing.assert_array_equal(feats[utt], expected[0].numpy())
    assert open(os.path.join(out, "data", "bad_utts.1")).read() == ""


def test_relative_out_dir_and_float16(tmp_path, monkeypatch):
    shard = _make_shard(tmp_path, {"a16k": GOOD["a16k"]})
    monkeypatch.chdir(tmp_path)
    main(_args(shard, "dump/x", "--dtype", "float16"))
    scp = open("dump/x/data/feats.1.scp").read()
    assert scp.startswith("a16k dump/x/data/feats.1.ark:")
    half = load_feats("dump/x/data/feats.1.scp")["a16k"]
    assert half.dtype == np.float16 and half.shape == (50, 80)
    wav, _ = load_audio(read_map(os.path.join(shard, "wav.scp"))["a16k"])
    full, _ = WhisperLogMel(80)(torch.from_numpy(wav)[None])
    np.testing.assert_allclose(half.astype(np.float32), full[0].numpy(), atol=2e-3)


@pytest.mark.parametrize("utt", sorted(BAD))
def test_bad_utterance_stops_the_job_naming_it(tmp_path, utt):
    shard = _make_shard(tmp_path, {"a16k": GOOD["a16k"], utt: BAD[utt]})
    out = str(tmp_path / "dump")
    with pytest.raises(SystemExit) as err:
        main(_args(shard, out))
    message = str(err.value.code)
    assert f"utterance '{utt}'" in message and f": {REASONS[utt]}: " in message
    assert "--skip_bad true" in message
    assert _outputs(out) == []  # nothing final, no marker, no temp file left


def test_long_audio_reject_is_a_bad_utterance(tmp_path):
    shard = _make_shard(tmp_path, GOOD)
    out = str(tmp_path / "dump")
    main(_args(shard, out, "--skip_bad", "true", "--max_seconds", "30", "--long_audio", "reject"))
    bad = read_map(os.path.join(out, "data", "bad_utts.1"))
    assert list(bad) == ["d_long"] and bad["d_long"].startswith("too_long ")
    assert list(read_map(os.path.join(out, "data", "feats.1.scp"))) == ["a16k", "b8k", "c_stereo"]


def test_skip_bad_lists_every_skipped_utterance(tmp_path, capsys):
    shard = _make_shard(tmp_path, {**GOOD, **BAD})
    out = str(tmp_path / "dump")
    main(_args(shard, out, "--skip_bad", "true"))
    bad = read_map(os.path.join(out, "data", "bad_utts.1"))
    assert {utt: reason.split()[0] for utt, reason in bad.items()} == REASONS
    assert sorted(read_map(os.path.join(out, "data", "feats.1.scp"))) == sorted(GOOD)
    assert sorted(read_map(os.path.join(out, "data", "utt2num_frames.1"))) == sorted(GOOD)
    assert "9 utts, 4 written, 5 skipped" in capsys.readouterr().out


def test_done_marker_makes_rerun_a_no_op(tmp_path, capsys):
    shard = _make_shard(tmp_path, {"a16k": GOOD["a16k"]})
    out = str(tmp_path / "dump")
    main(_args(shard, out))
    ark = open(os.path.join(out, "data", "feats.1.ark"), "rb").read()
    os.remove(read_map(os.path.join(shard, "wav.scp"))["a16k"])  # would fail if it re-ran
    main(_args(shard, out))
    assert "already done" in capsys.readouterr().out
    assert open(os.path.join(out, "data", "feats.1.ark"), "rb").read() == ark


def test_input_errors(tmp_path, capsys):
    with pytest.raises(SystemExit, match="wav.scp not found"):
        main(_args(str(tmp_path / "nope"), str(tmp_path / "dump")))
    shard = _make_shard(tmp_path, {"a16k": GOOD["a16k"], "b8k": GOOD["b8k"]})
    scp = os.path.join(shard, "wav.scp")
    lines = open(scp).read().splitlines(keepends=True)
    open(scp, "w").write("".join(reversed(lines)))
    with pytest.raises(SystemExit, match=r"wav.scp:2: key 'a16k' comes after 'b8k'"):
        main(_args(shard, str(tmp_path / "dump")))
    with pytest.raises(SystemExit) as err:
        main(_args(shard, str(tmp_path / "dump"), "--skip_bad", "maybe"))
    assert err.value.code == 2 and "expected true or false" in capsys.readouterr().err


def test_help_shows_usage(capsys):
    with pytest.raises(SystemExit) as err:
        main(["--help"])
    assert err.value.code == 0
    assert "Usage:" in capsys.readouterr().out


def _wait_until_blocked_on_fifo(fifo, proc, timeout=120.0):
    """Open the FIFO for writing once the job has opened it for reading; return the write end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"extract_feats ended early: {proc.communicate()}")
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as err:  # ENXIO: no reader yet
            assert err.errno == errno.ENXIO, err
        time.sleep(0.05)
    raise AssertionError("extract_feats never reached the FIFO")


def test_killed_run_resumes_to_byte_identical_output(tmp_path):
    """Kill a job while it reads its third utterance (a FIFO it blocks on), rerun it, and compare
    with an uninterrupted run: the same ark, scp and utt2num_frames, byte for byte."""
    entries = {f"u{i}": ("wav", (0.2 + 0.1 * i, 8000 if i % 2 else 16000, 1)) for i in range(5)}
    shard = _make_shard(tmp_path, entries)
    out = str(tmp_path / "dump")
    names = ["feats.1.ark", "feats.1.scp", "utt2num_frames.1", "bad_utts.1"]
    main(_args(shard, out))
    reference = {name: open(os.path.join(out, "data", name), "rb").read() for name in names}
    shutil.rmtree(out)

    third = read_map(os.path.join(shard, "wav.scp"))["u2"]
    os.rename(third, third + ".real")
    os.mkfifo(third)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "diffa.bin.extract_feats", *_args(shard, out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    writer = _wait_until_blocked_on_fifo(third, proc)
    proc.kill()
    proc.communicate()
    os.close(writer)
    assert _outputs(out) == ["feats.1.ark.tmp"]  # killed mid-way: a temp file, no marker

    os.remove(third)
    os.rename(third + ".real", third)
    main(_args(shard, out))
    for name in names:
        assert open(os.path.join(out, "data", name), "rb").read() == reference[name], name
    assert not any(name.endswith(".tmp") for name in _outputs(out))
