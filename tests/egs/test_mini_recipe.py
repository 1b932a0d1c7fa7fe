"""The whole egs/mini recipe, once (``-m slow``): ``./run.sh`` on a copy of the recipe, its scores
checked against the goals of README's results table, then a 2-process gloo run of stage 5.

The copy is a mirror of the repository under a temporary directory (egs/mini copied; the engine,
utils/, tools/ and .venv linked), so a developer's own egs/mini/exp is never touched.
About 8 minutes on 2 cores; ``tools/test.sh -m "not slow"`` skips it.
"""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
QUESTION_TYPES = ("beeps", "gender", "kind", "loudness", "melody", "noise", "pitch", "rate", "tone")
pytestmark = pytest.mark.slow


def run(cwd, *command, timeout):
    """Run ``command`` in ``cwd``; fail with the tail of its output if it fails."""
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    """egs/mini after ``./run.sh`` (stages 1-10) in a mirror of the repository."""
    root = tmp_path_factory.mktemp("repo")
    for name in ("utils", "tools", ".venv"):
        (root / name).symlink_to(REPO / name)
    (root / "egs").mkdir()
    (root / "egs" / "TEMPLATE").symlink_to(REPO / "egs" / "TEMPLATE")
    recipe = root / "egs" / "mini"
    shutil.copytree(REPO / "egs" / "mini", recipe, symlinks=True,
                    ignore=shutil.ignore_patterns("data", "dump", "exp", "RESULTS.md"))
    done = run(recipe, "./run.sh", timeout=1500)
    return recipe, done.stdout


def results_table(text):
    """{metric: value} of RESULTS.md's first table (its "metric | value | goal" rows)."""
    rows = re.findall(r"^\| ([^|]+?) \| ([0-9.]+) \|", text, flags=re.M)
    return {name: float(value) for name, value in rows}


def test_mini_recipe_meets_its_goals(mini):
    recipe, stdout = mini
    assert "Successfully finished stages 1-10" in stdout
    table = results_table((recipe / "RESULTS.md").read_text())
    data = json.loads((recipe / "exp" / "results.json").read_text())
    assert table["ASR WER (%)"] == pytest.approx(data["asr_wer"], abs=0.01)
    assert table["MCQ accuracy (%)"] == pytest.approx(data["mcq_accuracy"], abs=0.01)
    assert set(data["mcq_by_question"]) == set(QUESTION_TYPES)
    for question in QUESTION_TYPES:
        assert question in table  # the per-question table
    assert table["MCQ accuracy (%)"] >= 60.0  # chance: 25
    assert table["held-out preference accuracy after VRPO (%)"] > table["held-out preference accuracy after SFT (%)"]
    assert data["wall_seconds"] > 0
    # SFT (stage 5) lowers the dev loss of the questions it trains on (the ASR rows are a 5% replay)
    losses = data["sft_dev_loss"]
    assert {"loss", "loss_asr", "loss_mcq", "loss_open_qa"} <= set(losses)
    for task in ("loss", "loss_mcq", "loss_open_qa"):
        start, end = losses[task]
        assert end < start, (task, start, end)


def test_score_pairs_reproduces_the_held_out_preference_accuracies(mini):
    """diffa.bin.score_pairs with stage 7's seed and batching scores what the training log did."""
    recipe, _ = mini
    done = run(recipe, sys.executable, "-m", "diffa.bin.score_pairs", "--pairs", "exp/pairs/valid", "--model_dir",
               "exp/stage3_sft", "exp/stage4_vrpo", "--seed", "1234", "--seeds", "1", "--out", "exp/score_pairs.json",
               timeout=600)
    assert "exp/pairs/valid: 300 pairs, 8 draws per answer (by strata, coupled), seeds 1234-1234" in done.stdout
    models = json.loads((recipe / "exp" / "score_pairs.json").read_text())["models"]
    data = json.loads((recipe / "exp" / "results.json").read_text())
    assert models["exp/stage3_sft"]["mean"] == pytest.approx(data["pref_accuracy_sft"], abs=0.01)
    assert models["exp/stage4_vrpo"]["mean"] == pytest.approx(data["pref_accuracy_vrpo"], abs=0.01)


@pytest.mark.xfail(strict=True, reason="not yet: the tiny diffusion LM does not learn to transcribe within "
                   "the 10-minute budget (test WER about 95%; README, 'egs/mini'); remove this mark when it does")
def test_mini_recipe_meets_its_asr_goal(mini):
    recipe, _ = mini
    assert results_table((recipe / "RESULTS.md").read_text())["ASR WER (%)"] <= 40.0


def test_two_gloo_processes_train_stage5(mini):
    """Stage 5 under torchrun with 2 CPU processes, from the run's stage-4 model, a few steps."""
    recipe, _ = mini
    (recipe / "exp_ddp").mkdir()
    (recipe / "exp_ddp" / "stage2_acoustic").symlink_to(recipe / "exp" / "stage2_acoustic")
    done = run(recipe, "./run.sh", "--stage", "5", "--stop_stage", "5", "--expdir", "exp_ddp",
               "--nproc_per_node", "2", "--train_opts", "--optimizer_step_limit 4 --log_interval 2",
               timeout=600)
    assert "Stage 5: SFT" in done.stdout
    log = (recipe / "exp_ddp" / "stage3_sft" / "log" / "train.log").read_text()
    assert "process 1 of 2 (gloo backend)" in log
    train_log = (recipe / "exp_ddp" / "stage3_sft" / "train_log.txt").read_text()
    assert re.findall(r"^train epoch=1 step=(\d+) loss=[0-9.]+ ", train_log, flags=re.M) == ["2", "4"]
    assert (recipe / "exp_ddp" / "stage3_sft" / "final" / "lora.safetensors").exists()
