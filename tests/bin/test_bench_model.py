"""diffa.bin.bench_model runs on a tiny shape, and its numbers say what they should."""

import re

import torch

from diffa.bin.bench_model import build_model, main, model_config
from diffa.model.diffa import DIFFA


def test_tiny_run_reports_every_way(capsys):
    assert main(["--shape", "tiny", "--batch_size", "3", "--max_seconds", "3", "--min_text", "8",
                 "--max_text", "20", "--repeats", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    rows = {m.group(1).strip(): float(m.group(2)) for m in
            re.finditer(r"^(ours|loop splice|authors|one at a time)\s+.*\s(\S+)$", out, re.M)}
    assert set(rows) == {"ours", "loop splice", "authors", "one at a time"}
    assert rows["ours"] < 1e-4 < rows["loop splice"]  # the padding mask keeps rows independent
    assert out.count("tokens/s ours / ") == 3


def test_8b_shape_matches_diffa2():
    with torch.device("meta"):
        model = DIFFA(model_config("llada8b"))
    assert 8.0e9 < sum(p.numel() for p in model.llm.parameters()) < 8.1e9  # LLaDA-8B (released: about 8.02B)
    assert sum(p.numel() for p in model.semantic.parameters()) == 36_392_448  # DIFFA-2's released adapter
    assert sum(p.numel() for p in model.acoustic.parameters()) == 47_892_992


def test_random_weights_are_materialised_on_the_device():
    model = build_model(model_config("tiny"), torch.device("cpu"), torch.bfloat16)
    weights = [p for p in model.parameters() if p.dim() >= 2]
    assert all(p.device.type == "cpu" and p.dtype == torch.bfloat16 for p in model.parameters())
    assert all(0.01 < float(p.float().std()) < 0.03 for p in weights if p.numel() > 1000)
