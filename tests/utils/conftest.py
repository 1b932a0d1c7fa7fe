"""Fixtures for the utils/ tests: tiny data directories and a way to run the scripts."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

UTILS = Path(__file__).resolve().parents[2] / "utils"
SPEAKERS = ("spkA", "spkB", "spkC")


def write_data_dir(path, utts, wav_dir):
    """Write a valid data dir for ``utts`` (ids "<speaker>-<n>", sorted) with 0.05 s wavs."""
    path.mkdir(parents=True, exist_ok=True)
    wav_dir.mkdir(parents=True, exist_ok=True)
    rows = {"wav.scp": [], "text": [], "utt2spk": [], "utt2dur": [], "tasks.jsonl": []}
    for utt in utts:
        wav = wav_dir / f"{utt}.wav"
        sf.write(wav, np.zeros(800, dtype=np.float32), 16000)
        rows["wav.scp"].append(f"{utt} {wav}")
        rows["text"].append(f"{utt} words of {utt}")
        rows["utt2spk"].append(f"{utt} {utt.split('-')[0]}")
        rows["utt2dur"].append(f"{utt} 0.05")
        task = {"id": f"{utt}-asr", "utt": utt, "task": "asr",
                "instruction": "Transcribe the audio.", "answer": f"words of {utt}"}
        rows["tasks.jsonl"].append(json.dumps(task))
    speakers = sorted({utt.split("-")[0] for utt in utts})
    rows["spk2utt"] = [f"{s} {' '.join(u for u in utts if u.startswith(s + '-'))}" for s in speakers]
    for name, lines in rows.items():
        (path / name).write_text("".join(line + "\n" for line in lines))
    return path


@pytest.fixture
def make_dir(tmp_path):
    """Callable (name, utts=6 default utts) -> a valid data dir under tmp_path/data."""

    def make(name="train", utts=None):
        utts = utts or [f"{s}-{i}" for s in SPEAKERS for i in (1, 2)]
        return write_data_dir(tmp_path / "data" / name, sorted(utts), tmp_path / "wav")

    return make


@pytest.fixture
def data_dir(make_dir):
    """A valid data dir with 6 utterances of 3 speakers, wavs, utt2dur and tasks.jsonl."""
    return make_dir()


@pytest.fixture
def run_util():
    """Callable (script, *args, cwd=None) -> CompletedProcess of utils/<script> run by this Python."""

    def run(script, *args, cwd=None):
        command = [sys.executable, str(UTILS / script), *map(str, args)]
        return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=60)

    return run


@pytest.fixture
def read_ids():
    """Callable (path) -> the first field of every line of the file."""
    return lambda path: [line.split()[0] for line in Path(path).read_text().splitlines()]
