"""diffa.bin.bench_decode runs on a tiny model and compares the decoding rules."""

import re

from diffa.bin.bench_decode import main


def test_tiny_run(capsys):
    assert main(["--n_items", "4", "--single_items", "2", "--batch_size", "4", "--gen_length", "8",
                 "--block_length", "8", "--steps", "8", "--max_seconds", "2", "--threads", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "on cpu float32 (encoder and adapters float32);" in out
    rows = re.findall(r"^(quota low-confidence|quota random|factor 1|threshold 0.9)\s+\S+\s+\S+\s+\S+x\s+(\S+)\s+(\d+)/(\d+)$",
                      out, re.M)
    assert [r[0] for r in rows] == ["quota low-confidence", "quota random", "factor 1", "threshold 0.9"]
    nfe = {r[0]: float(r[1]) for r in rows}
    assert nfe["quota low-confidence"] == 8.0 and nfe["factor 1"] < 8.0  # the quota rule takes every step
    for rule, _, same, total in rows:
        if rule != "quota random":
            assert same == total  # batching does not change greedy hypotheses


def test_a_tokenizer_without_a_model_is_refused(capsys):
    assert main(["--tokenizer_dir", "tok"]) == 1
    assert "--tokenizer_dir goes with --model_dir (the random model makes its own tokenizer)" in capsys.readouterr().err
