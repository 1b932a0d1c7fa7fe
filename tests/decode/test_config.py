"""Decode settings: YAML + overrides, per-task settings, errors that name the file and key."""

import argparse

import pytest

from diffa.decode.config import DecodeConfig, add_config_arguments, config_from_args, config_overrides


def write(tmp_path, text):
    path = tmp_path / "decode.yaml"
    path.write_text(text)
    return str(path)


def test_yaml_with_task_overrides(tmp_path):
    path = write(tmp_path, "gen_length: 16\nblock_length: 16\nsteps: 16\nfactor: 1.0\n"
                           "task_overrides:\n  asr: {gen_length: 128, block_length: 128, steps: 128, factor: null}\n")
    cfg = DecodeConfig.from_yaml(path)
    assert cfg.sampling("mcq") == dict(gen_length=16, block_length=16, steps=16, remasking="low_confidence",
                                       factor=1.0, threshold=None, temperature=0.0, cfg_scale=0.0)
    assert cfg.sampling("asr")["gen_length"] == 128 and cfg.sampling("asr")["factor"] is None
    assert cfg.sampling("open_qa") == cfg.sampling(None)


def test_command_line_flags_override_the_file(tmp_path):
    path = write(tmp_path, "gen_length: 16\nblock_length: 16\nsteps: 16\nfactor: 1.0\n")
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(["--factor", "none", "--threshold", "0.9", "--batch_size", "4",
                              "--task_overrides", "{asr: {gen_length: 32, block_length: 32}}"])
    cfg = DecodeConfig.from_yaml(path, config_overrides(args))
    assert (cfg.factor, cfg.threshold, cfg.batch_size) == (None, 0.9, 4)
    assert cfg.sampling("asr")["gen_length"] == 32
    # every config key has its flag
    assert set(DecodeConfig().to_dict()) == {a.dest for a in parser._actions if a.dest != "help"}


@pytest.mark.parametrize("text, message", [
    ("gen_length: 32\nblock_length: 8\nsteps: 10\n", r"decode.yaml: steps \(10\) must be a positive multiple"),
    ("gen_lenght: 16\n", r"decode.yaml: unknown keys \['gen_lenght'\]"),
    ("task_overrides: {speech: {steps: 8}}\n", "unknown task type 'speech'"),
    ("task_overrides: {asr: {batch_size: 8}}\n", r"task_overrides.asr: unknown keys \['batch_size'\]"),
    ("task_overrides: {asr: {gen_length: 20}}\n", r"task_overrides.asr: gen_length \(20\) must be"),
    ("remasking: random\nfactor: 1.0\n", "needs remasking: low_confidence"),
    ("batch_size: 0\n", "batch_size must be >= 1"),
    ("threshold: 1.5\n", r"threshold must be in \[0, 1\]"),
    ("temperature: hot\n", "temperature must be a number"),
])
def test_bad_configs_name_the_problem(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        DecodeConfig.from_yaml(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such decode config"):
        DecodeConfig.from_yaml(str(tmp_path / "nope.yaml"))


RELEASED = [  # recipe config -> (task, gen_length, block_length, steps, factor) as the authors released them
    ("egs/diffa2/conf/decode_mcq.yaml", "mcq", 16, 16, 16, 1.0),
    # DIFFA-2's run_asr_inference.sh decodes with --accelerate fast_dllm: factor 1.0 as the benchmarks
    ("egs/diffa2/conf/decode_asr.yaml", "asr", 128, 128, 128, 1.0),
    ("egs/diffa/conf/decode_mmsu.yaml", "mcq", 4, 4, 4, None),
    ("egs/diffa/conf/decode_mcq.yaml", "mcq", 16, 16, 16, None),
    ("egs/mini/conf/decode.yaml", "mcq", 16, 16, 16, 1.0),
]


@pytest.mark.parametrize("path, task, gen, block, steps, factor", RELEASED)
def test_recipe_configs_hold_the_released_settings(path, task, gen, block, steps, factor):
    from pathlib import Path

    cfg = DecodeConfig.from_yaml(str(Path(__file__).resolve().parents[2] / path))
    s = cfg.sampling(task)
    assert (s["gen_length"], s["block_length"], s["steps"], s["factor"]) == (gen, block, steps, factor)
    assert (s["temperature"], s["cfg_scale"], s["remasking"], s["threshold"]) == (0.0, 0.0, "low_confidence", None)
    # the authors' inference passes "You are a helpful voice assistant." (DIFFA-2's src/utils.py
    # generate_response, DIFFA's inference_stage2_*.py), DIFFA-2's longer training prompt included
    assert cfg.system_prompt is None


def test_command_line_values_and_errors_name_their_source(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(["--factor", "high"])
    assert "argument --factor: invalid number (or none) value: 'high'" in capsys.readouterr().err
    path = tmp_path / "decode.yaml"
    path.write_text("task_overrides: {asr: {gen_length: 64, block_length: 64, steps: 64}}\n")
    with pytest.raises(ValueError, match=r"decode.yaml and the command line: task_overrides.mcq: unknown keys \['step'\]"):
        config_from_args(parser.parse_args(["--task_overrides", "{mcq: {step: 8}}"]), str(path))
    merged = config_from_args(parser.parse_args(["--task_overrides", "{mcq: {steps: 8}, asr: {steps: 32}}"]), str(path))
    assert merged.task_overrides == {"asr": {"gen_length": 64, "block_length": 64, "steps": 32}, "mcq": {"steps": 8}}
    assert config_from_args(parser.parse_args(["--task_overrides", "{asr: null}"]), str(path)).task_overrides == {}
    path.write_text("task_overrides: {asr: [1]}\n")
    with pytest.raises(ValueError, match=r"task_overrides.asr must map settings to values, got \[1\]"):
        config_from_args(parser.parse_args(["--task_overrides", "{mcq: {steps: 8}}"]), str(path))
