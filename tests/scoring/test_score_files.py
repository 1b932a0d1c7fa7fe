"""Tests of diffa.scoring.score_files: scores.json, scores.md, icefall WER files, judgements, and
scoring a results file end to end."""
import json
import os

import pytest

from diffa.scoring.score_files import score_results_file, write_scores
from diffa.scoring.scores import score_results


def test_write_scores_files(tmp_path):
    rows = [{"id": "u1", "task": "asr", "hypothesis": "the cat", "reference": "THE HAT"},
            {"id": "q1", "task": "mcq", "hypothesis": "B", "choices": ["x", "y"], "gold": 1}]
    scores = score_results(rows, "dev", metric="auto", styles=("wenet", "whisper_english"))
    scores.data["skipped_lines"] = [{"line": 9, "reason": "truncated"}]  # as score_results_file adds them
    written = write_scores(str(tmp_path), scores)
    names = sorted(os.path.basename(p) for p in written)
    assert names == ["errs-dev-wenet-char.txt", "errs-dev-wenet.txt", "errs-dev-whisper_english-char.txt",
                     "errs-dev-whisper_english.txt", "judgements-dev.jsonl", "recogs-dev.txt", "scores.json",
                     "scores.md", "wer-summary-dev.txt"]
    data = json.loads((tmp_path / "scores.json").read_text())
    assert data["metrics"]["asr_wer_whisper_english"] == 50.0 and data["skipped_lines"][0]["line"] == 9
    assert set(data["environment"]) == {"git", "versions"} and "torch" in data["environment"]["versions"]
    md = (tmp_path / "scores.md").read_text()
    assert "| wenet | 50.00 | 16.67 | 2 | 1 | 0 | 0 |" in md
    assert "- line 9 skipped: truncated" in md
    judgement = json.loads((tmp_path / "judgements-dev.jsonl").read_text())
    assert judgement == {"id": "q1", "task": "mcq", "hypothesis": "B", "gold": "y", "correct": False,
                         "parsed": True, "letter_mapped": None, "failed": False}
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_score_results_file_with_data_dir(tmp_path):
    data_dir = tmp_path / "data" / "mini"
    data_dir.mkdir(parents=True)
    (data_dir / "tasks.jsonl").write_text(
        '{"id": "a", "utt": "u", "task": "open_qa", "instruction": "?", "answer": "red"}\n'
        '{"id": "b", "utt": "u", "task": "open_qa", "instruction": "?", "answer": "blue"}\n', encoding="utf-8")
    results = tmp_path / "results.jsonl"
    results.write_text('{"id": "a", "hypothesis": "Red."}\n', encoding="utf-8")
    scores = score_results_file(str(results), "mini", str(tmp_path / "score"), str(data_dir))
    assert scores.data["missing_ids"] == ["b"] and scores.data["counts"]["failed"] == 1
    assert scores.data["metrics"]["open_qa_accuracy"] == 50.0
    with pytest.raises(ValueError, match="tasks.jsonl does not exist; run data preparation"):
        score_results_file(str(results), "mini", str(tmp_path / "score"), str(tmp_path))
