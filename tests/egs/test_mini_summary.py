"""egs/mini/local/summarize.py: RESULTS.md + results.json from scores.json and the VRPO log."""

import doctest
import json
import subprocess
import sys
from pathlib import Path

MINI = Path(__file__).resolve().parents[2] / "egs" / "mini"


def stage_logs(root, sft_seed=1234):
    """The train logs (and configs) of a stage-4 and a stage-5 run that starts from it."""
    logs = []
    for stage, init, seed, lines in (
        ("stage2_acoustic", "exp/stage1_semantic", 1234,
         "valid epoch=1 step=300 loss=0.6 loss_asr=2 loss_mcq=0.25\nvalid epoch=2 step=600 loss=0.5 loss_asr=1.9 loss_mcq=0.2\n"),
        ("stage3_sft", str(root / "stage2_acoustic"), sft_seed,
         "train epoch=1 step=10 loss=0.3\nvalid epoch=1 step=400 loss=0.45 loss_asr=1.8 loss_mcq=0.1\n"),
    ):
        (root / stage).mkdir()
        (root / stage / "config.yaml").write_text(f"init_from: {init}\nseed: {seed}\nvalid_data: dump/dev\n")
        (root / stage / "train_log.txt").write_text(lines)
        logs.append(root / stage / "train_log.txt")
    return logs


def test_summary_files(tmp_path):
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({
        "metrics": {"asr_wer": 31.5, "mcq_accuracy": 71.0, "open_qa_accuracy": 60.0},
        "mcq": {"tables": {"asks": {"gender": {"accuracy": 90.0}, "beeps": {"accuracy": 55.0}}}},
    }))
    log = tmp_path / "train_log.txt"
    log.write_text("vrpo_valid epoch=1 step=10 pairs=300 reward_margin=0.1 reward_accuracy=0.6 "
                   "policy_accuracy=0.55 reference_accuracy=0.5\n"
                   "vrpo_valid epoch=2 step=20 pairs=300 reward_margin=0.3 reward_accuracy=0.7 "
                   "policy_accuracy=0.71 reference_accuracy=0.5\n")
    start, end = stage_logs(tmp_path)
    out = subprocess.run([sys.executable, str(MINI / "local" / "summarize.py"), "--scores", str(scores),
                          "--vrpo_log", str(log), "--wall_seconds", "512.3", "--sft_logs", str(start), str(end),
                          "--results_md", str(tmp_path / "R.md"), "--results_json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, check=True)
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["pref_accuracy_sft"] == 50.0 and data["pref_accuracy_vrpo"] == 71.0  # the last validation
    assert data["asr_wer"] == 31.5 and data["mcq_by_question"] == {"beeps": 55.0, "gender": 90.0}
    assert data["wall_seconds"] == 512.3
    assert data["sft_dev_loss"] == {"loss": [0.5, 0.45], "loss_asr": [1.9, 1.8], "loss_mcq": [0.2, 0.1]}  # last lines
    assert "| loss_mcq | 0.2000 | 0.1000 | 0.50 |" in (tmp_path / "R.md").read_text()
    assert "| MCQ accuracy (%) | 71.00 |" in (tmp_path / "R.md").read_text() and "71.00" in out.stdout


def test_no_dev_loss_over_sft_when_its_start_was_scored_otherwise(tmp_path):
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"metrics": {"asr_wer": 31.5}}))
    start, end = stage_logs(tmp_path, sft_seed=7)
    out = subprocess.run([sys.executable, str(MINI / "local" / "summarize.py"), "--scores", str(scores),
                          "--vrpo_log", str(tmp_path / "none.txt"), "--wall_seconds", "1", "--sft_logs", str(start), str(end),
                          "--results_md", str(tmp_path / "R.md"), "--results_json", str(tmp_path / "r.json")],
                         capture_output=True, text=True, check=True)
    assert json.loads((tmp_path / "r.json").read_text())["sft_dev_loss"] == {}
    assert f"no dev loss over SFT: {start}'s last validation is not where SFT starts (seed 1234 != 7)" in out.stderr
    assert "Dev loss over SFT" not in (tmp_path / "R.md").read_text()


def test_missing_scores_names_the_stage(tmp_path):
    out = subprocess.run([sys.executable, str(MINI / "local" / "summarize.py"), "--scores", str(tmp_path / "no.json"),
                          "--vrpo_log", str(tmp_path / "no.txt"), "--wall_seconds", "1"], capture_output=True, text=True)
    assert out.returncode != 0 and "run stages 8-9 first" in out.stderr


def test_doctests():
    sys.path.insert(0, str(MINI / "local"))
    try:
        import summarize
    finally:
        sys.path.pop(0)
    assert doctest.testmod(summarize).failed == 0
