"""Tests of diffa.scoring.report: collecting scored decode directories into RESULTS.md."""
import json

import pytest

from diffa.scoring.report import collect_entries, write_results_md
from diffa.scoring.score_files import write_scores
from diffa.scoring.scores import score_results


def make_decode_dir(root, model, tag, sets, settings=None):
    decode_dir = root / "exp" / model / tag
    for set_name, rows in sets.items():
        out = decode_dir / set_name / "score"
        write_scores(str(out), score_results(rows, set_name, styles=("wenet",)))
    if settings is not None:
        (decode_dir / "settings.json").write_text(json.dumps(settings))
    return str(decode_dir)


def test_results_md(tmp_path):
    asr = [{"id": "u1", "task": "asr", "hypothesis": "a b", "reference": "A C"},
           {"id": "u2", "task": "asr", "failed": True, "error": "oom", "reference": "D"}]
    mcq = [{"id": "q", "task": "mcq", "hypothesis": "A", "choices": ["x", "y"], "gold": 0}]
    first = make_decode_dir(tmp_path, "stage3_sft", "decode_a", {"test_clean": asr, "mmsu": mcq},
                            {"model": "exp/stage3_sft", "gen_length": 16, "steps": 16, "factor": 1.0,
                             "git": "abc1234", "versions": {"torch": "2.13.0"}})
    second = make_decode_dir(tmp_path, "stage4_vrpo", "decode_b", {"mmsu": mcq})
    entries = collect_entries([first, second])
    assert [(e.set_name, e.model) for e in entries] == [("mmsu", "exp/stage3_sft"), ("test_clean", "exp/stage3_sft"),
                                                          ("mmsu", "stage4_vrpo")]
    path = tmp_path / "RESULTS.md"
    write_results_md(str(path), entries, title="DIFFA-2")
    text = path.read_text()
    assert text.startswith("# DIFFA-2\n")
    mmsu, test_clean = text.split("## mmsu\n")[1].split("## test_clean\n")
    assert ("| exp/stage3_sft | gen_length=16 steps=16 factor=1.0 | 100.00 | 100.00 | 1 | 0 | 0 | 0 | abc1234 "
            "| torch 2.13.0 | [scores.md](exp/stage3_sft/decode_a/mmsu/score/scores.md) |") in mmsu
    assert "| stage4_vrpo | decode_b | 100.00 | 100.00 | 1 | 0 | 0 | 0 |" in mmsu
    header = test_clean.splitlines()[1]
    assert header.startswith("| model | decode settings | asr_wer | asr_cer | asr_wer_wenet | asr_cer_wenet | rows "
                             "| failed |")
    # a C vs A C plus a failed utterance (D deleted): 2 errors over 3 words
    assert "| 66.67 |" in test_clean and "| 2 | 1 | 0 | 0 |" in test_clean
    with pytest.raises(ValueError, match="no scores.json"):
        collect_entries([str(tmp_path)])
