"""Tests of diffa.train.hparams: defaults, overrides, unknown keys, validation, the recipes' configs."""

from pathlib import Path

import pytest

from diffa.train.hparams import SCHEMA, load_config, parse_overrides


def _write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return str(path)


BASE = "stage: sft\ntokenizer_dir: tok\n"


def test_defaults_fill_what_the_file_leaves_out(tmp_path):
    config = load_config(_write(tmp_path, BASE))
    assert set(config) == set(SCHEMA)
    assert config["lora"]["r"] == 8 and config["batching"]["num_buckets"] == 10 and config["model"] is None


def test_overrides_reach_refs_and_keys_absent_from_the_file(tmp_path):
    path = _write(tmp_path, "stage: sft\ninit:\n  llada_dir: /m/llada\ntokenizer_dir: !ref <init[llada_dir]>\n")
    config = load_config(path, parse_overrides(["--init.llada_dir", "/other", "--model.taps", "[3, 7]", "--warmup_steps=5"]))
    assert config["tokenizer_dir"] == "/other"
    assert config["model"] == {"taps": [3, 7]} and config["warmup_steps"] == 5


@pytest.mark.parametrize(
    "args, message",
    [
        (["--lrr", "1"], "unknown config key 'lrr' \\(command line\\); valid keys at the top level: stage, output_folder"),
        (["--model.tap", "[1]"], "valid keys under 'model': taps, n_prompts"),
        (["--lr.x", "1"], "config key 'lr' has no sub-keys"),
        (["--batching", "{max_token: 9}"], "unknown config key 'batching.max_token' \\(command line\\); valid keys under 'batching'"),
        (["--model", "{tapz: [1]}"], "unknown config key 'model.tapz' \\(command line\\); valid keys under 'model': taps"),
        (["--lr", "abc"], "lr must be a number, got 'abc'$"),
        (["--batching", "5"], "batching must be a mapping, got 5$"),
        (["--model.taps", "[1, x]"], "model.taps must be a list of integers, got \\[1, 'x'\\]$"),
        (["--max_answer_tokens", "many"], "max_answer_tokens must be an integer or null, got 'many'$"),
    ],
)
def test_unknown_override_keys_and_values_of_the_wrong_type_are_errors(tmp_path, args, message):
    with pytest.raises(ValueError, match=message):
        load_config(_write(tmp_path, BASE), parse_overrides(args))


def test_a_mapping_override_updates_the_section_like_the_file_does(tmp_path):
    path = _write(tmp_path, BASE + "batching:\n  max_batch_size: 2\n")
    config = load_config(path, parse_overrides(["--batching", "{max_tokens: 9}", "--lora", "{r: 2}", "--vrpo={beta: 0.5}"]))
    assert config["batching"] == {"max_tokens": 9, "max_batch_size": 2, "num_buckets": 10, "shuffle": True}
    assert config["lora"] == {**SCHEMA["lora"], "r": 2} and config["vrpo"]["n_draws"] == 4


def test_unknown_keys_in_the_file_are_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown config key 'batching.max_tokenz' \\(.*c.yaml\\)"):
        load_config(_write(tmp_path, BASE + "batching:\n  max_tokenz: 4\n"))


@pytest.mark.parametrize(
    "extra, message",
    [
        ("model: {}\n", None),
        ("precision: fp8\n", "precision must be one of"),
        ("replay_ratio: 0.05\n", "replay_ratio > 0 needs replay_sets"),
        ("replay_sets: [train_asr]\n", "replay_sets are never used with replay_ratio 0"),
        ("avg: 5\nkeep_checkpoints: 2\n", "avg cannot exceed keep_checkpoints=2"),
        ("frozen_dtype: bfloat16\n", "frozen_dtype other than float32 needs precision"),
        ("grad_accumulation_factor: 0\n", "grad_accumulation_factor must be an integer >= 1"),
        ("batching:\n  max_batch_size: null\n", "batching needs max_tokens or max_batch_size"),
        ("lr: {x: 1}\n", "c.yaml: lr must be a number, got \\{'x': 1\\}$"),
        ("batching: 5\n", "batching must be a mapping, got 5$"),
        ("betas: 0.9\n", "betas must be a list of numbers, got 0.9$"),
        ("lora:\n  targets: q_proj\n", "lora.targets must be a list of strings, got 'q_proj'$"),
        ("model:\n  n_queries: 2.5\n", "model.n_queries must be an integer, got 2.5$"),
        ("batching:\n  shuffle: 1\n", "batching.shuffle must be true or false, got 1$"),
        ("init_from: [a]\n", "init_from must be a string or null, got \\['a'\\]$"),
    ],
)
def test_bad_values_are_explained(tmp_path, extra, message):
    if message is None:  # control: a valid file loads
        assert load_config(_write(tmp_path, BASE + extra))["model"] == {}
        return
    with pytest.raises(ValueError, match=message):
        load_config(_write(tmp_path, BASE + extra))


def test_numbers_may_be_written_as_integers_and_null_stays_allowed(tmp_path):
    args = ["--lr", "1", "--lora.alpha", "2.5", "--ckpt_interval_minutes", "0.5", "--max_answer_tokens", "null", "--model", "null"]
    config = load_config(_write(tmp_path, BASE + "model:\n  n_queries: 4\n"), parse_overrides(args))
    assert (config["lr"], config["lora"]["alpha"], config["ckpt_interval_minutes"], config["model"]) == (1, 2.5, 0.5, None)


def test_unknown_stage(tmp_path):
    with pytest.raises(ValueError, match="stage must be one of \\['semantic', 'acoustic', 'sft', 'vrpo'\\], got 'pretrain'"):
        load_config(_write(tmp_path, "stage: pretrain\ntokenizer_dir: tok\n"))


def test_required_keys_and_unreadable_file(tmp_path):
    with pytest.raises(ValueError, match="missing required key\\(s\\) \\['tokenizer_dir'\\]"):
        load_config(_write(tmp_path, "stage: sft\n"))
    with pytest.raises(ValueError, match="cannot read config .*nope.yaml"):
        load_config(str(tmp_path / "nope.yaml"))


def test_parse_overrides_values_are_yaml():
    assert parse_overrides(["--a", "true", "--b", "null", "--c", "3", "--d=x y", "--e", "1e-4"]) == {
        "a": True, "b": None, "c": 3, "d": "x y", "e": 1e-4,
    }
    with pytest.raises(ValueError, match="has no value"):
        parse_overrides(["--a"])


REPO = Path(__file__).resolve().parents[2]
RELEASED = {  # as released (papers, code): stage, epochs, lr, warmup, decay, global batch, GPUs it assumes
    "egs/diffa2/conf/stage1_semantic.yaml": ("semantic", 20, 1e-4, 1000, "cosine", 1280, 64),
    "egs/diffa2/conf/stage2_acoustic.yaml": ("acoustic", 10, 5e-5, 2000, "cosine", 192, 64),
    "egs/diffa2/conf/stage3_sft.yaml": ("sft", 10, 5e-5, 2000, "cosine", 192, 64),
    "egs/diffa/conf/stage1_semantic.yaml": ("semantic", 10, 1e-4, 1000, "cosine", 128, 8),
    "egs/diffa/conf/stage2_acoustic.yaml": ("acoustic", 10, 5e-5, 2000, "cosine", 64, 8),
}


@pytest.mark.parametrize("path", sorted(RELEASED))
def test_recipe_stage_configs_carry_the_released_hyper_parameters(path):
    config = load_config(str(REPO / path))
    stage, epochs, lr, warmup, decay, global_batch, gpus = RELEASED[path]
    assert (config["stage"], config["number_of_epochs"], config["lr"], config["warmup_steps"], config["lr_decay"]) == (
        stage, epochs, lr, warmup, decay)
    assert config["batching"]["max_batch_size"] * gpus * config["grad_accumulation_factor"] == global_batch
    assert config["batching"]["max_tokens"] is None and config["max_grad_norm"] == 1.0
    assert config["precision"] == "bf16" and config["frozen_dtype"] == "bfloat16" and config["loss_normalization"] == "batch"
    v2 = path.startswith("egs/diffa2")
    assert config["system_prompt"].startswith("You are a helpful voice assistant." + (" Imagine" if v2 else ""))
    if stage == "semantic":
        assert config["model"]["taps"] == ([3, 7, 11, 15, 19, 23, 27, 31] if v2 else [2, 5, 8, 11])
        assert config["model"]["n_prompts"] == 20 and config["model"]["n_queries"] == 64
        assert config["tokenizer_dir"] == config["init"]["llada_dir"]
    else:
        assert config["model"] is None
    if v2 and stage != "semantic":  # 5% of stage-1 ASR data replayed in stages 2-3
        assert config["replay_sets"] == ["train_asr"] and config["replay_ratio"] == 0.05
    if stage == "sft":
        assert config["lora"] == {"r": 8, "alpha": 16, "dropout": 0.05, "targets": ["q_proj", "k_proj", "v_proj", "ff_proj", "up_proj"]}
    if not v2:
        assert config["weight_decay"] == 0.05
