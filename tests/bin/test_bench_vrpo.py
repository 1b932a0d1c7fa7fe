"""diffa.bin.bench_vrpo: peak memory of a VRPO step vs an SFT step (CPU path, tiny model)."""

import json

import pytest
import torch

from diffa.bin import bench_vrpo


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/bin/conftest.py: tiny models run fastest on one thread


def test_tiny_model_on_cpu(tmp_path, capsys):
    out = tmp_path / "mem.json"
    bench_vrpo.main(["--rows", "8", "--n_draws", "2", "--prompt_len", "8", "--answer_len", "6", "--frames", "40",
                     "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["vrpo_pairs"] == 2 and result["rows_per_forward"] == 8
    model = bench_vrpo.build_policy("tiny", torch.device("cpu"), torch.float32)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    # weights + AdamW state (2 x trainable) are resident in both steps; activations come on top
    assert result["sft_peak_bytes"] > weights and result["vrpo_peak_bytes"] > weights
    assert result["ratio"] == pytest.approx(result["vrpo_peak_bytes"] / result["sft_peak_bytes"])
    assert result["ratio"] <= 1.15
    printed = capsys.readouterr().out
    assert "ratio VRPO/SFT" in printed and "SFT batch 8; VRPO 2 pairs x 2 answers x 2 draws" in printed


def test_resident_bytes_counts_shared_storage_once():
    net = torch.nn.Linear(4, 4, bias=False)
    twin = torch.nn.Linear(4, 4, bias=False)
    twin.weight = net.weight
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    assert bench_vrpo.resident_bytes([net, twin], optimizer) == 16 * 4


def test_configs_and_errors(capsys):
    cfg = bench_vrpo.model_config("llada8b")  # bench_model's shapes
    assert cfg.llm["n_layers"] == 32 and cfg.llm["vocab_size"] == 126464 and cfg.encoder["d_model"] == 1280
    assert len(cfg.taps) == 8 and cfg.n_queries == 64
    with pytest.raises(ValueError, match="unknown --shape 'huge'"):
        bench_vrpo.model_config("huge")
    with pytest.raises(SystemExit):
        bench_vrpo.main(["--rows", "6"])
    assert "--rows must be a multiple of 2 * n_draws = 8" in capsys.readouterr().err
