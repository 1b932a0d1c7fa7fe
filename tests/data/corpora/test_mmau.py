"""Tests for diffa.data.corpora.mmau on a fake MMAU folder (mmau-test-mini.json + test-mini-audios/)."""
import json
import re

import pytest

from diffa.data.corpora.mmau import prepare_mmau
from diffa.data.corpora.records import CorpusError
from diffa.data.kaldi import read_map
from diffa.data.tasks import read_tasks

EXPECTED_PROMPT = (
    "You are given the audio and a multiple-choice question. Choose the best answer based only on the "
    "speech content and style.\n\nQuestion: What is the speaker counting?\n\nChoices:\n"
    "A. Numbers\nB. Letters\nC. Colors\nAnswer:"
)
IDS = ["0c0a8d2b-5e7f-4f1b-9d8e-2f6a1b3c4d5e", "3fe64f3d-282c-4bc8-a753-68f8f6c35652"]


def test_mmau_test_mini_rows(mmau, tmp_path):
    out = tmp_path / "mmau_test_mini"
    assert prepare_mmau(mmau, out).n_rows == 2
    wavs = read_map(out / "wav.scp")
    assert wavs == {i: str(mmau / "test-mini-audios" / f"{i}.wav") for i in IDS}
    counting, source = read_tasks(str(out / "tasks.jsonl"), utts=wavs)
    assert counting["instruction"] == EXPECTED_PROMPT
    assert (counting["answer"], counting["gold"], counting["source"]) == ("Numbers", 0, "MMAU")
    assert source["labels"] == {"task": "sound", "difficulty": "medium", "category": "Reasoning",
                                "sub-category": "Acoustic Source Inference", "dataset": "AudioSet",
                                "split": "test-mini"}


def test_answer_not_among_choices_is_kept_by_name(mmau, tmp_path, caplog):
    index = mmau / "mmau-test-mini.json"
    items = json.loads(index.read_text())
    items[1]["answer"] = "Animals"
    index.write_text(json.dumps(items, indent=2))
    assert prepare_mmau(mmau, tmp_path / "mmau").unmatched == [IDS[0]]
    assert re.search(rf"mmau-test-mini\.json:\d+: item '{IDS[0]}': answer 'Animals' is none", caplog.text)


def test_withheld_answers_are_an_error(mmau, tmp_path):
    # mmau-test.json (9,000 items) ships with "answer": "" (Sakshi113/MMAU issue #27).
    items = [dict(item, answer="", split="test") for item in json.loads((mmau / "mmau-test-mini.json").read_text())]
    (mmau / "mmau-test.json").write_text(json.dumps(items, indent=2))
    with pytest.raises(CorpusError, match=r"mmau-test\.json:\d+: item .*: blank answer \(this split withholds"):
        prepare_mmau(mmau, tmp_path / "mmau_test", "test")


def test_a_blank_choice_names_the_item_in_the_index(mmau, tmp_path):
    # it used to pass here and fail later, naming the temporary tasks.jsonl being written
    index = mmau / "mmau-test-mini.json"
    items = json.loads(index.read_text())
    items[1]["choices"][-1] = " "
    index.write_text(json.dumps(items, indent=2))
    with pytest.raises(CorpusError, match=rf"mmau-test-mini\.json:\d+: item '{IDS[0]}': blank choice in"):
        prepare_mmau(mmau, tmp_path / "mmau")


def test_bad_choices_and_missing_fields(mmau, tmp_path):
    index = mmau / "mmau-test-mini.json"
    items = json.loads(index.read_text())
    index.write_text(json.dumps([dict(items[0], choices="Man, Woman")], indent=2))
    with pytest.raises(CorpusError,
                       match=r"mmau-test-mini\.json:2: .*'choices' must be a list of at least two strings"):
        prepare_mmau(mmau, tmp_path / "mmau")
    del items[0]["question"]
    index.write_text(json.dumps(items, indent=2))
    with pytest.raises(CorpusError, match=r"mmau-test-mini\.json:2: missing field 'question'"):
        prepare_mmau(mmau, tmp_path / "mmau")


def test_missing_audio_is_dropped_by_id(mmau, tmp_path):
    (mmau / "test-mini-audios" / f"{IDS[1]}.wav").unlink()
    assert prepare_mmau(mmau, tmp_path / "mmau").dropped == [IDS[1]]


def test_splits(mmau, tmp_path):
    with pytest.raises(FileNotFoundError, match="mmau-test.json"):
        prepare_mmau(mmau, tmp_path / "mmau_test", "test")
    with pytest.raises(ValueError, match="unknown MMAU split 'dev'"):
        prepare_mmau(mmau, tmp_path / "mmau_dev", "dev")


def test_repeated_choices_are_kept_as_released(mmau, tmp_path, caplog):
    # The released test-mini repeats choices (Sakshi113/MMAU issues #7, #27: 'two, three, three, one',
    # five choices with the answer twice); DIFFA was prompted with them as they are.
    index = mmau / "mmau-test-mini.json"
    items = json.loads(index.read_text())
    items[0]["choices"] = ["Woman", "Man", "Child", "Man", "Robot"]
    index.write_text(json.dumps(items, indent=2))
    out = tmp_path / "mmau"
    assert prepare_mmau(mmau, out).n_rows == 2
    row = {r["id"]: r for r in read_tasks(str(out / "tasks.jsonl"))}[IDS[1]]
    assert (row["choices"], row["gold"], row["answer"]) == (items[0]["choices"], 1, "Man")
    assert "A. Woman\nB. Man\nC. Child\nD. Man\nE. Robot\nAnswer:" in row["instruction"]
    assert re.search(rf"mmau-test-mini\.json:2: item '{IDS[1]}': repeated choice\(s\) \['Man'\]", caplog.text)


def test_items_without_id_are_named_by_their_audio(mmau, tmp_path):
    # Early copies of mmau-test-mini.json have no "id"; the audio file is named by it.
    index = mmau / "mmau-test-mini.json"
    items = [{k: v for k, v in item.items() if k != "id"} for item in json.loads(index.read_text())]
    index.write_text(json.dumps(items, indent=2))
    out = tmp_path / "mmau"
    assert prepare_mmau(mmau, out).n_rows == 2
    assert sorted(read_map(out / "wav.scp")) == IDS
