"""Tests of the training entry point: CLI, stage chaining, averaging, bad input, exact resume after SIGKILL."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from diffa.bin.train import get_parser, main
from diffa.train.checkpoint import latest_checkpoints
from diffa.train.hparams import load_config
from diffa.train.model_init import init_model
from diffa.train.plot import read_log
from diffa.train.toy import make_toy_setup

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_toy_setup(tmp_path_factory.mktemp("toy"), n_examples=16, answer_words=(1, 2))


def _config(tmp_path, toy, name="c.yaml", **keys):
    config = {
        "stage": "sft",
        "seed": 11,
        "init": {"whisper_dir": toy["whisper_dir"], "llada_dir": toy["llada_dir"]},
        "tokenizer_dir": toy["tokenizer_dir"],
        "model": {**toy["model"], "qformer_dropout": 0.1},  # dropout on: resume must replay it too
        "batching": {"max_batch_size": 4, "num_buckets": 2},
        "number_of_epochs": 1,
        "lr": 3.0e-3,
        "log_interval": 1,
        **keys,
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(config))
    return str(path)


def _weights(model_dir):
    model_dir = Path(model_dir)
    return {**load_file(str(model_dir / "adapters.safetensors")), **load_file(str(model_dir / "lora.safetensors"))}


def test_help_shows_usage_and_options(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert "Usage:" in out and "--output_folder" in out and "--init_from" in out and "torchrun" in out
    assert get_parser().parse_known_args(["c.yaml", "--lr", "1"])[1] == ["--lr", "1"]


@pytest.mark.parametrize(
    "override, message",
    [
        (["--batching.max_token", "9"], "unknown config key 'batching.max_token' (command line); valid keys under 'batching': max_tokens"),
        (["--batching", "{max_token: 9}"], "unknown config key 'batching.max_token' (command line); valid keys under 'batching': max_tokens"),
        (["--model", "{tapz: [1]}"], "unknown config key 'model.tapz' (command line); valid keys under 'model': taps"),
        (["--lr", "abc"], "lr must be a number, got 'abc'"),
        (["--batching", "5"], "batching must be a mapping, got 5"),
    ],
)
def test_an_unknown_override_key_or_a_value_of_the_wrong_type_is_an_error(tmp_path, toy, capsys, override, message):
    with pytest.raises(SystemExit) as stop:
        main([_config(tmp_path, toy), "--output_folder", str(tmp_path / "x"), *override])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "x").exists()


def test_stages_chain_through_final_and_average_checkpoints(tmp_path, toy):
    s1 = tmp_path / "stage1_semantic"
    main([_config(tmp_path, toy, stage="semantic"), "--output_folder", str(s1), "--train_data", toy["dump"]])
    s2 = tmp_path / "stage2_acoustic"
    config = _config(tmp_path, toy, name="s2.yaml", stage="acoustic", model=None, number_of_epochs=2,
                     ckpt_interval_steps=1, keep_checkpoints=3, avg=3)
    main([config, "--output_folder", str(s2), "--train_data", toy["dump"], "--init_from", str(s1)])
    final = load_file(str(s2 / "final" / "adapters.safetensors"))
    from diffa.train.checkpoint import AtomicCheckpointer

    newest = latest_checkpoints(AtomicCheckpointer(s2 / "save"), 3)
    states = [load_file(str(c.paramfiles["model"])) for c in newest]
    for name in states[0]:  # final = mean of the three newest checkpoints' trainable weights
        assert torch.allclose(final[name], sum(s[name] for s in states) / 3, atol=1e-6), name
    stage1 = load_file(str(s1 / "final" / "adapters.safetensors"))
    assert not torch.equal(stage1["semantic.linear2.weight"], final["semantic.linear2.weight"])
    assert torch.equal(stage1["prompts.weight"], final["prompts.weight"])  # frozen in stage 2
    assert yaml.safe_load((s2 / "final" / "config.json").read_text())["layout"] == "dual"
    # each stage's model carries the tokenizer it was trained with (so an export of it can decode)
    for stage in (s1, s2):
        assert (stage / "final" / "tokenizer" / "spm.model").read_bytes() == (Path(toy["tokenizer_dir"]) / "spm.model").read_bytes()
    assert (s2 / "loss.png").is_file() and [r["step"] for r in read_log(str(s2 / "train_log.txt"))["train"]] == list(range(1, 9))


def test_a_checkpoint_of_another_configuration_is_refused_naming_the_fields(tmp_path, toy, capsys):
    args = ["--output_folder", str(tmp_path / "exp"), "--train_data", toy["dump"]]
    main([_config(tmp_path, toy), *args])
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main([_config(tmp_path, toy), *args, "--lora.r", "4", "--batching.max_batch_size", "2"])
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "was written with a different configuration" in err
    assert "model.lora.r: 8 in the checkpoint, 4 now" in err and "data.batching.max_batch_size: 4 in the checkpoint, 2 now" in err


def test_init_from_must_match_the_model_section(tmp_path, toy, capsys):
    s1 = tmp_path / "s1"
    main([_config(tmp_path, toy, stage="semantic"), "--output_folder", str(s1), "--train_data", toy["dump"]])
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([_config(tmp_path, toy), "--output_folder", str(tmp_path / "s2"), "--train_data", toy["dump"],
              "--init_from", str(s1), "--model.n_queries", "8"])
    assert "does not match the config: model.n_queries: 8 in the config, 4 in" in capsys.readouterr().err


def test_init_from_must_match_the_lora_the_model_carries(tmp_path, toy, capsys):
    base = tmp_path / "base"  # a stage-3 model: the toy's, with the default LoRA
    model, _ = init_model(load_config(_config(tmp_path, toy, name="base.yaml")))
    model.save_pretrained(base / "final")
    with pytest.raises(SystemExit) as stop:
        main([_config(tmp_path, toy, model=None), "--output_folder", str(tmp_path / "E"), "--train_data", toy["dump"],
              "--init_from", str(base), "--lora.r", "4", "--lora.alpha", "2"])
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert f"lora.r: 4 in the config, 8 in {base / 'final'}; lora.alpha: 2 in the config, 16 in {base / 'final'}" in err
    assert not (tmp_path / "E").exists()


@pytest.mark.parametrize(
    "data, message",
    [("missing", "does not exist: run stage 2 (feature extraction) for it first"), ("empty", "tasks.jsonl has no examples")],
)
def test_an_empty_or_missing_split_is_an_error(tmp_path, toy, capsys, data, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "tasks.jsonl").write_text("")
    with pytest.raises(SystemExit) as stop:
        main([_config(tmp_path, toy), "--output_folder", str(tmp_path / "exp"), "--train_data", str(tmp_path / data)])
    assert stop.value.code == 1 and message in capsys.readouterr().err


def _command(config, out, toy):
    return [sys.executable, "-m", "diffa.bin.train", config, "--output_folder", str(out), "--train_data", toy["dump"]]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _intra_epoch_checkpoint(save: Path):
    """The first complete intra-epoch checkpoint under ``save``, if any."""
    for meta in sorted(save.glob("CKPT+*/CKPT.yaml")):
        info = yaml.safe_load(meta.read_text())
        if not info["end-of-epoch"]:
            return info
    return None


def test_sigkill_then_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path, toy):
    config = _config(tmp_path, toy, number_of_epochs=4, ckpt_interval_steps=3, keep_checkpoints=20)
    straight = tmp_path / "straight"
    done = subprocess.run(_command(config, straight, toy), env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_command(config, killed, toy), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while _intra_epoch_checkpoint(killed / "save") is None and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (killed / "final").exists()
    newest = max((yaml.safe_load(m.read_text()) for m in (killed / "save").glob("CKPT+*/CKPT.yaml")), key=lambda m: m["unixtime"])
    logged = len(read_log(str(killed / "train_log.txt")).get("train", [])) if (killed / "train_log.txt").exists() else 0

    resumed = subprocess.run(_command(config, killed, toy), env=_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Loading a checkpoint from" in resumed.stderr
    with open(killed / "train_log.txt") as f:
        lines = [line for line in f if line.startswith("train ")]
    assert int(lines[logged].split("step=")[1].split()[0]) == newest["optimizer_step"] + 1  # continued, not restarted

    a, b = _weights(straight / "final"), _weights(killed / "final")
    assert set(a) == set(b)
    for name in a:
        assert torch.equal(a[name], b[name]), name
