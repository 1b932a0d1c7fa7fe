"""Tests of diffa.bin.bench_train: both steps train, same loss, and ours is faster."""

import re

import torch

from diffa.bin.bench_model import authors_behaviour, build_model, model_config
from diffa.bin.bench_train import authors_loss, get_parser, main, ours_loss, training_batch
from diffa.train.stages import prepare_stage


def test_both_ways_compute_the_same_loss_without_padding():
    torch.manual_seed(0)
    model = build_model(model_config("tiny"), torch.device("cpu"), torch.float32)
    prepare_stage(model, "sft")
    args = get_parser().parse_args(["--batch_size", "1", "--min_seconds", "30", "--max_seconds", "30"])
    batch = training_batch(model.eval(), args, torch.Generator().manual_seed(1))
    with torch.no_grad(), authors_behaviour(model, True):  # one 30-s clip: nothing to pad, nothing to mask
        assert torch.allclose(ours_loss(model, batch), authors_loss(model, batch), rtol=1e-4)


def test_benchmark_prints_the_ratio(capsys):
    torch.set_num_threads(1)
    assert main(["--batch_size", "2", "--max_seconds", "3", "--repeats", "1", "--max_text", "50"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^ours +[\d.]+ +[\d.]+", out, re.M) and re.search(r"^authors +[\d.]+ +[\d.]+", out, re.M)
    ratio = float(re.search(r"examples/s ours / authors: ([\d.]+)x", out).group(1))
    assert ratio > 1.5  # 3-s clips against 30-s Whisper input


def test_bad_arguments_exit_with_a_message(capsys):
    assert main(["--min_answer", "0"]) == 1
    assert "min_answer" in capsys.readouterr().err
