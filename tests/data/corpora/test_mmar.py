"""Tests for diffa.data.corpora.mmar on a fake MMAR folder (MMAR-meta.json + audio/)."""
import json
import re

import pytest

from diffa.data.corpora.mcq import choice_list_instruction
from diffa.data.corpora.mmar import prepare_mmar
from diffa.data.kaldi import read_map
from diffa.data.tasks import read_tasks

IDS = ["BV1NtQuYTELJ_00-00-00_00-00-26", "demo_0001"]


def check_rows(mmar, out):
    wavs = read_map(out / "wav.scp")
    assert wavs == {i: str(mmar / "audio" / f"{i}.wav") for i in IDS}
    accent, robot = read_tasks(str(out / "tasks.jsonl"), utts=wavs)
    assert accent["instruction"] == choice_list_instruction(
        "Which accent does the speaker imitate?", ["British", "American", "Australian"])
    assert (accent["gold"], robot["gold"], robot["answer"]) == (0, 1, "Robot")
    assert robot["labels"] == {"modality": "sound-speech", "category": "Semantic Layer",
                               "sub-category": "Source Analysis", "language": "en"}
    assert robot["source"] == "MMAR"


def test_mmar_json_list(mmar, tmp_path):
    assert prepare_mmar(mmar, tmp_path / "mmar").n_rows == 2
    check_rows(mmar, tmp_path / "mmar")


def test_mmar_jsonl_meta(mmar, tmp_path):
    meta = mmar / "MMAR-meta.json"
    items = json.loads(meta.read_text())
    meta.unlink()
    (mmar / "MMAR-meta.jsonl").write_text("".join(json.dumps(i) + "\n" for i in items))
    prepare_mmar(mmar, tmp_path / "mmar")
    check_rows(mmar, tmp_path / "mmar")


def test_answer_in_no_choice_is_kept_and_judged_by_its_text(mmar, tmp_path, caplog):
    # The released MMAR-meta.json has such items (a two-choice answer 'American\nColombian', an
    # answer that paraphrases its choice); the official scorer keeps them and judges the answer text.
    meta = mmar / "MMAR-meta.json"
    items = json.loads(meta.read_text())
    items[0]["answer"] = "American\nAustralian"
    meta.write_text(json.dumps(items))
    summary = prepare_mmar(mmar, tmp_path / "mmar")
    assert (summary.n_rows, summary.unmatched) == (2, [IDS[0]])
    accent = read_tasks(str(tmp_path / "mmar" / "tasks.jsonl"))[0]
    assert (accent["id"], accent["gold"], accent["answer"]) == (IDS[0], None, "American\nAustralian")
    assert re.search(rf"MMAR-meta\.json:1: item '{IDS[0]}': answer 'American\\nAustralian' is none of the "
                     r"choices .*kept, judged by its answer text", caplog.text)
    meta.unlink()
    with pytest.raises(FileNotFoundError, match=r"no MMAR-meta\.json or MMAR-meta\.jsonl"):
        prepare_mmar(mmar, tmp_path / "mmar")


def test_missing_audio_is_dropped_by_id(mmar, tmp_path):
    (mmar / "audio" / "demo_0001.wav").unlink()
    assert prepare_mmar(mmar, tmp_path / "mmar").dropped == ["demo_0001"]
