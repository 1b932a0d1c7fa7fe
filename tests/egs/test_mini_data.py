"""egs/mini/local/data.sh: the synthetic corpus, built small (a few seconds) in a temp dir."""
import collections
import doctest
import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile

from diffa.data.kaldi import read_map
from diffa.data.tasks import read_tasks

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "egs" / "mini" / "local"
DATA_SH = LOCAL / "data.sh"
SETS = ("train", "dev", "test")
SMALL = ["--n_train", "32", "--n_dev", "6", "--n_test", "8",
         "--n_sound_train", "9", "--n_sound_dev", "3", "--n_sound_test", "6"]

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="espeak-ng and sox are needed (tools/install.sh installs them)")


@pytest.fixture(autouse=True)
def local_on_path(monkeypatch):
    """egs/mini/local is a script folder, not a package: import its modules by name."""
    monkeypatch.syspath_prepend(str(LOCAL))


def run_data_sh(cwd, *args, env=None):
    """Run local/data.sh in ``cwd`` (as the recipe does from egs/mini) with the test's python."""
    env = env or dict(os.environ, PYTHON=sys.executable)
    return subprocess.run([shutil.which("bash"), str(DATA_SH), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def build(root, *args):
    root.mkdir(parents=True, exist_ok=True)
    proc = run_data_sh(root, "--datadir", "data", *args)
    assert proc.returncode == 0, proc.stderr
    return root, proc.stdout


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(cwd, stdout) of a small corpus built with two processes."""
    return build(tmp_path_factory.mktemp("mini_a"), *SMALL, "--nj", "2")


def load_set(cwd, name):
    d = cwd / "data" / name
    wavs = read_map(str(d / "wav.scp"))
    return {"wav": wavs, "text": read_map(str(d / "text")),
            "utt2spk": read_map(str(d / "utt2spk")), "spk2utt": read_map(str(d / "spk2utt")),
            "utt2dur": read_map(str(d / "utt2dur"), float),
            "tasks": read_tasks(str(d / "tasks.jsonl"), utts=wavs)}


def tree(root):
    """relative path -> bytes of every file under ``root``."""
    return {str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def speech_facts(rows):
    """utt -> labels of the speech utterances' ASR rows."""
    return {row["utt"]: row["labels"] for row in rows if row["task"] == "asr"}


def test_same_seed_gives_identical_bytes_whatever_nj(corpus, tmp_path):
    cwd, _ = corpus
    again, _ = build(tmp_path / "b", *SMALL, "--nj", "1")
    first, second = tree(cwd / "data"), tree(again / "data")
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []
    assert len([name for name in first if name.endswith(".wav")]) == 32 + 6 + 8 + 9 + 3 + 6


def test_other_seed_gives_other_corpus(corpus, tmp_path):
    other, _ = build(tmp_path / "c", *SMALL, "--seed", "1")
    assert (other / "data/train/text").read_text() != (corpus[0] / "data/train/text").read_text()


def test_rerun_with_same_options_is_skipped(corpus):
    cwd, _ = corpus
    stamp = (cwd / "data/train/wav.scp").stat().st_mtime_ns
    proc = run_data_sh(cwd, "--datadir", "data", *SMALL)
    assert proc.returncode == 0 and "already built" in proc.stdout
    assert (cwd / "data/train/wav.scp").stat().st_mtime_ns == stamp


def test_data_dirs_pass_the_validator(corpus):
    cwd, stdout = corpus
    proc = subprocess.run([sys.executable, str(ROOT / "utils/validate_data_dir.py"),
                           *(f"data/{name}" for name in SETS)], cwd=cwd, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "train: 32 speech utts (16 voices) + 9 sound clips" in stdout
    assert not (cwd / "data/local/wav.tmp").exists()


def test_kaldi_files_agree(corpus):
    cwd, _ = corpus
    for name in SETS:
        s = load_set(cwd, name)
        assert list(s["wav"]) == list(s["text"]) == list(s["utt2spk"]) == list(s["utt2dur"])
        for utt, spk in s["utt2spk"].items():
            assert utt.startswith(spk + "-")
            assert utt in s["spk2utt"][spk].split()
            assert s["wav"][utt] == f"data/local/wav/{name}/{utt}.wav"
            assert (s["text"][utt] == "<nospeech>") == (spk == "sound")


def test_no_utterance_id_is_in_two_sets(corpus):
    """Else a set's features or tasks could pass for another's (decoding test tasks on dev's feats)."""
    cwd, _ = corpus
    ids = {name: set(load_set(cwd, name)["wav"]) for name in SETS}
    assert all(ids.values())
    assert not ids["train"] & ids["dev"] and not ids["train"] & ids["test"] and not ids["dev"] & ids["test"]


def test_wavs_are_16k_mono_16bit_and_short(corpus):
    cwd, _ = corpus
    for name in SETS:
        s = load_set(cwd, name)
        for utt, path in s["wav"].items():
            info = soundfile.info(str(cwd / path))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), utt
            assert 0.3 < info.duration <= 4.0, utt
            assert info.duration == pytest.approx(s["utt2dur"][utt], abs=1e-4)


def test_dev_and_test_hold_out_voices_and_sentences(corpus):
    cwd, _ = corpus
    sentences = importlib.import_module("sentences")
    facts = {name: speech_facts(load_set(cwd, name)["tasks"]).values() for name in SETS}
    voices = {name: {f["voice"] for f in facts[name]} for name in SETS}
    said = {name: {f["sentence"] for f in facts[name]} for name in SETS}
    for name in ("dev", "test"):
        assert voices[name] and not voices[name] & voices["train"]
        assert not said[name] & said["train"]
        assert {f["gender"] for f in facts[name]} == {"female", "male"}
    assert not said["dev"] & said["test"]
    words = {w for name in SETS for s in said[name] for w in s.split()}
    assert words <= set(sentences.vocabulary())


def test_task_rows_answer_from_the_labels(corpus):
    cwd, _ = corpus
    for name in SETS:
        s = load_set(cwd, name)
        rows = s["tasks"]
        ids = [row["id"] for row in rows]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert {row["utt"] for row in rows} == set(s["wav"])
        for row in rows:
            labels = row["labels"]
            assert row["id"].startswith(f"{row['utt']}-{row['task']}-")
            if row["task"] == "asr":
                assert row["answer"] == s["text"][row["utt"]] == labels["sentence"]
                words = row["answer"].split(" ")
                assert all(word.isalpha() and word.islower() for word in words), row["id"]
                continue
            assert row["answer"] == labels[labels["asks"]]
            if row["task"] == "mcq":
                choices = row["choices"]
                assert len(set(choices)) == 4 and choices[row["gold"]] == row["answer"]
                assert row["instruction"].endswith(
                    " ".join(f"({letter}) {c}" for letter, c in zip("ABCD", choices)))
    train = load_set(cwd, "train")["tasks"]
    assert len({row["instruction"] for row in train if row["task"] == "asr"}) >= 10
    assert {row["gold"] for row in train if row["task"] == "mcq"} == {0, 1, 2, 3}


def test_train_is_split_by_task_for_the_curriculum(corpus):
    cwd, _ = corpus
    train = load_set(cwd, "train")
    for name, kinds in (("train_asr", {"asr"}), ("train_qa", {"mcq", "open_qa"})):
        subset = load_set(cwd, name)
        assert subset["tasks"] == [row for row in train["tasks"] if row["task"] in kinds]
        assert set(subset["wav"]) == {row["utt"] for row in subset["tasks"]}
        assert all(train["wav"][utt] == wav for utt, wav in subset["wav"].items())
    assert len(load_set(cwd, "train_qa")["wav"]) == len(train["wav"])  # every clip has questions


def test_labels_are_balanced(corpus):
    cwd, _ = corpus
    rows = load_set(cwd, "train")["tasks"]
    speech = speech_facts(rows).values()
    for key in ("gender", "rate", "pitch"):
        assert sorted(collections.Counter(f[key] for f in speech).values()) == [16, 16], key
    sounds = {row["utt"]: row["labels"] for row in rows if row["labels"]["kind"] != "speech"}
    assert collections.Counter(f["kind"] for f in sounds.values()) == {
        "beeps": 3, "noise": 3, "melody": 3}
    assert sorted(collections.Counter(f["loudness"] for f in sounds.values()).values()) == [4, 5]


def test_missing_program_is_named(tmp_path):
    proc = run_data_sh(tmp_path, env={"PATH": str(tmp_path)})
    assert proc.returncode == 1
    assert "apt-get install espeak-ng sox, or run tools/install.sh" in proc.stderr


def test_bad_options_are_errors(tmp_path):
    proc = run_data_sh(tmp_path, "--nj", "0")
    assert proc.returncode != 0 and "--nj must be at least 1, got 0" in proc.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize("module", ["sentences", "voices", "sounds", "questions", "make_corpus"])
def test_docstring_examples(module):
    result = doctest.testmod(importlib.import_module(module),
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
