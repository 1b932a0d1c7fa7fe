"""diffa.bin.score_pairs: preference accuracy of several models on the same draws, over seeds."""

import json
import shutil

import pytest
import torch

from diffa.bin.score_pairs import main
from diffa.data.pairs import write_pairs
from diffa.model.diffa import DIFFA

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/bin/conftest.py


@pytest.fixture(scope="module")
def pairs_dir(toy, tmp_path_factory):
    """Pairs over the toy test set: each answer against the next row's, three sources."""
    out = tmp_path_factory.mktemp("pairs")
    tasks = toy.tasks[:13]
    rows = [{"id": f"{t['id']}-swap", "utt": t["utt"], "prompt": t["instruction"], "chosen": t["answer"],
             "rejected": nxt["answer"], "source": f"swap:{t['task']}"} for t, nxt in zip(tasks, tasks[1:])]
    write_pairs(str(out / "pairs.jsonl"), rows)
    shutil.copy(toy.feats_dir / "feats.scp", out / "feats.scp")
    return out


def other_model(toy, path):
    """The toy model with other random LLM weights, beside the same tokenizer."""
    shutil.copytree(toy.model_dir, path)
    model = DIFFA.from_pretrained(path)
    model.llm.init_weights(std=0.3, generator=torch.Generator().manual_seed(7))
    model.save_pretrained(path)
    return path


def test_models_are_scored_on_the_same_draws_and_compared_per_seed(toy, pairs_dir, tmp_path, capsys):
    same = shutil.copytree(toy.model_dir, tmp_path / "same")
    other = other_model(toy, tmp_path / "other")
    out = tmp_path / "scores.json"
    assert main(["--pairs", str(pairs_dir), "--model_dir", str(toy.model_dir), str(same), str(other),
                 "--n_draws", "2", "--seeds", "3", "--seed", "5", "--batch_size", "4", "--num_buckets", "2",
                 "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{pairs_dir}: 12 pairs, 2 draws per answer (by strata, coupled), seeds 5-7" in printed
    scores = json.loads(out.read_text())
    assert scores["seeds"] == [5, 6, 7] and scores["n_pairs"] == 12
    first, copy, changed = (scores["models"][str(p)] for p in (toy.model_dir, same, other))
    assert len(first["per_seed"]) == 3 and all(0 <= a <= 100 for a in first["per_seed"])
    assert first["mean"] == pytest.approx(sum(first["per_seed"]) / 3, abs=0.01)
    # the same weights on the same masks: the same answers, seed by seed
    assert copy["per_seed"] == first["per_seed"] and copy["vs_first"]["per_seed"] == [0.0] * 3
    assert copy["vs_first"]["higher_on"] == 0 and "vs_first" not in first
    assert changed["per_seed"] != first["per_seed"]
    assert changed["vs_first"]["per_seed"] == pytest.approx([a - b for a, b in zip(changed["per_seed"], first["per_seed"])],
                                                            abs=0.011)
    assert set(first["by_source"]) == {"swap:asr", "swap:mcq", "swap:open_qa"}
    assert f"{same}" in printed and "+0.00 ± 0.00 (higher on 0 of 3 seeds)" in printed
    # other seeds, other draws
    assert main(["--pairs", str(pairs_dir), "--model_dir", str(toy.model_dir), "--n_draws", "2", "--seeds", "3",
                 "--batch_size", "4", "--device", "cpu", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["models"][str(toy.model_dir)]["per_seed"] != first["per_seed"]


def test_bad_inputs_are_named(toy, pairs_dir, tmp_path, capsys):
    assert main(["--pairs", str(tmp_path), "--model_dir", str(toy.model_dir)]) == 1
    assert f"ERROR: {tmp_path}/pairs.jsonl does not exist: --pairs names a directory of stage 6" in capsys.readouterr().err
    assert main(["--pairs", str(pairs_dir), "--model_dir", str(toy.model_dir), "--seeds", "0"]) == 1
    assert "ERROR: --seeds must be >= 1, got 0" in capsys.readouterr().err
    foreign = shutil.copytree(toy.model_dir, tmp_path / "foreign")
    from diffa.text.tokenizer import train_sentencepiece

    train_sentencepiece(["a wholly other text of other words"] * 8, str(foreign / "tokenizer" / "spm.model"),
                        vocab_size=300)
    assert main(["--pairs", str(pairs_dir), "--model_dir", str(toy.model_dir), str(foreign), "--seeds", "1",
                 "--n_draws", "1", "--device", "cpu"]) == 1
    assert f"ERROR: {foreign}: its tokenizer is not {toy.model_dir}'s" in capsys.readouterr().err
