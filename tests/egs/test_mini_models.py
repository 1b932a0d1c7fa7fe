"""egs/mini/local/prepare_models.sh and the pre-training scripts it calls, on a tiny corpus.

A small corpus (a few dozen clips) is built once with local/data.sh and its features extracted;
the models are pre-trained for a few steps only, so the tests check files, formats, loading,
determinism and error messages, not how much the models learn (the recipe's log reports that).
"""
import doctest
import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffa.data.kaldi import read_map
from diffa.nnet.llada import LLaDAModel
from diffa.nnet.whisper import WhisperEncoder
from diffa.text.tokenizer import load_tokenizer

ROOT = Path(__file__).resolve().parents[2]
MINI = ROOT / "egs" / "mini"
LOCAL = MINI / "local"
SMALL = ["--n_train", "24", "--n_dev", "4", "--n_test", "2",
         "--n_sound_train", "12", "--n_sound_dev", "4", "--n_sound_test", "2"]
TINY = ["--whisper_opts", "--d_model 16 --layers 1 --heads 2 --ffn 32 --epochs 1 --max_frames 3000",
        "--llada_opts", "--d_model 16 --layers 1 --heads 2 --mlp 32 --epochs 0.5 --batch_size 16 --n_dev 8",
        "--vocab_size", "400"]

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="espeak-ng and sox are needed to build the corpus (tools/install.sh installs them)")


def run(cwd, *argv, timeout=300):
    """Run a command in ``cwd`` with this interpreter as the recipe's python."""
    env = dict(os.environ, PYTHON=sys.executable, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """A recipe-like directory (local/, utils/ links) with data/ and dump/ for train and dev."""
    cwd = tmp_path_factory.mktemp("mini_models")
    (cwd / "local").symlink_to(LOCAL)
    (cwd / "utils").symlink_to(ROOT / "utils")
    proc = run(cwd, "bash", "local/data.sh", "--datadir", "data", *SMALL)
    assert proc.returncode == 0, proc.stderr
    for name in ("train", "dev"):
        proc = run(cwd, sys.executable, "-m", "diffa.bin.extract_feats", "--data_dir", f"data/{name}",
                   "--out_dir", f"dump/{name}", "--job", "1", "--n_mels", "80")
        assert proc.returncode == 0, proc.stderr
        shutil.copy(cwd / "dump" / name / "data" / "feats.1.scp", cwd / "dump" / name / "feats.scp")
        (cwd / "dump" / name / ".done").write_text("the stage 2 marker\n")
    return cwd


@pytest.fixture(scope="module")
def prepared(recipe):
    """exp/pretrained made by prepare_models.sh with tiny settings, and the command's output."""
    proc = run(recipe, "bash", "local/prepare_models.sh", "--nj", "2", *TINY)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return recipe / "exp" / "pretrained", proc.stdout


def test_outputs_load_as_official_checkpoints(prepared):
    out, stdout = prepared
    tok = load_tokenizer(out / "tokenizer")
    encoder = WhisperEncoder.from_pretrained(out / "whisper", taps=(0, 1), pad_to_30s=False)
    llada = LLaDAModel.from_pretrained(out / "llada")
    assert (encoder.n_layers, encoder.output_dim, encoder.n_mels) == (1, 16, 80)
    assert llada.config.vocab_size == tok.vocab_size <= 400
    assert (llada.config.mask_token_id, llada.config.eos_token_id, llada.config.pad_token_id) == (
        tok.mask_id, tok.eos_id, tok.pad_id)
    out_enc = encoder(torch.randn(2, 30, 80), torch.tensor([30, 20]))
    assert out_enc.last_hidden.shape == (2, 15, 16) and out_enc.lens.tolist() == [15, 10]
    assert llada(torch.tensor([tok.encode("the dog runs")])).shape[-1] == tok.vocab_size
    for part in ("whisper", "llada"):
        assert "train_seconds" in (out / part / "pretrain_log.txt").read_text()
    assert "dev wer" in stdout and "dev_acc_described" in stdout
    assert (out / ".done").read_text().startswith("datadir=data ")
    assert re.search(r" inputs:( [0-9]+){6}$", (out / ".done").read_text())  # dump/<set>/.done, data/<set> texts
    assert not list(out.glob(".*.*"))  # no temporary directory left behind


def test_rerun_is_a_no_op(prepared, recipe):
    out, _ = prepared
    before = (out / "whisper" / "model.safetensors").stat().st_mtime_ns
    proc = run(recipe, "bash", "local/prepare_models.sh", "--nj", "2", *TINY)
    assert proc.returncode == 0 and "already prepared" in proc.stdout
    assert (out / "whisper" / "model.safetensors").stat().st_mtime_ns == before


def test_deterministic_and_sequential(prepared, recipe):
    """--nj 1 (one job after the other) gives the same weights as the parallel run."""
    out, _ = prepared
    proc = run(recipe, "bash", "local/prepare_models.sh", "--nj", "1", "--outdir", "exp/again", *TINY)
    assert proc.returncode == 0, proc.stderr
    for part in ("tokenizer/spm.model", "whisper/model.safetensors", "llada/model.safetensors"):
        assert (out / part).read_bytes() == (recipe / "exp" / "again" / part).read_bytes(), part


def test_missing_features_name_the_stage(recipe, tmp_path):
    (tmp_path / "local").symlink_to(LOCAL)
    (tmp_path / "utils").symlink_to(ROOT / "utils")
    (tmp_path / "data").symlink_to(recipe / "data")
    proc = run(tmp_path, "bash", "local/prepare_models.sh")
    assert proc.returncode != 0 and "dump/train/.done: run stage 2 (feature extraction) first" in proc.stderr


def test_help_lists_the_options(recipe):
    proc = run(recipe, "bash", "local/prepare_models.sh", "--help")
    assert proc.returncode == 0 and "--whisper_opts" in proc.stdout and "--nj" in proc.stdout
    assert proc.stdout.startswith('Make the "pretrained" models egs/mini starts from')  # what it does, not a pointer
    for script in ("train_tokenizer.py", "pretrain_whisper.py", "pretrain_llada.py"):
        proc = run(recipe, sys.executable, f"local/{script}", "--help")
        assert proc.returncode == 0 and "Usage:" in proc.stdout, script


def test_flat_start_and_units(recipe, monkeypatch):
    """The flat-start labels follow the transcript's pieces; dev clips keep the training units."""
    monkeypatch.syspath_prepend(str(LOCAL))
    monkeypatch.chdir(recipe)  # feats.scp names its arks relative to the recipe directory
    pretrain_whisper = importlib.import_module("pretrain_whisper")
    tok_dir = recipe / "tok"
    proc = run(recipe, sys.executable, "local/train_tokenizer.py", "--tasks", "data/train/tasks.jsonl",
               "--out", str(tok_dir / "spm.model"), "--vocab_size", "400")
    assert proc.returncode == 0, proc.stderr
    tok = load_tokenizer(tok_dir)
    train = pretrain_whisper.Clips("data/train", "dump/train", tok)
    text = read_map("data/train/text")
    speech = next(i for i, u in enumerate(train.utts) if text[u] != "<nospeech>")
    sound = next(i for i, u in enumerate(train.utts) if text[u] == "<nospeech>")
    frames, targets = train.frames[speech], train.targets[speech]
    assert frames.shape[0] == (train.feats[speech].shape[0] - 1) // 2 + 1
    merged = frames[torch.cat([torch.tensor([True]), frames[1:] != frames[:-1]])]
    assert merged.tolist() == targets.tolist()  # every piece gets frames, in order
    assert tok.decode([train.units[u] for u in targets.tolist()]) == text[train.utts[speech]]
    assert set(train.frames[sound].tolist()) == {len(train.units)} and len(train.targets[sound]) == 0
    dev = pretrain_whisper.Clips("data/dev", "dump/dev", tok,
                                 values=train.values, units=train.units)
    assert dev.units == train.units and dev.labels.shape == (len(dev.utts), len(train.values))


@pytest.mark.parametrize("module", ["pretrain_utils", "pretrain_whisper", "pretrain_llada", "train_tokenizer"])
def test_doctests(module, monkeypatch):
    monkeypatch.syspath_prepend(str(LOCAL))
    result = doctest.testmod(importlib.import_module(module),
                             optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
