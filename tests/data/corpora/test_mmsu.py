"""Tests for diffa.data.corpora.mmsu on a fake MMSU folder (question/mmsu.jsonl + espeak audio)."""
import json

import pytest

from diffa.data.corpora.datadir import NOSPEECH
from diffa.data.corpora.mmsu import prepare_mmsu
from diffa.data.corpora.records import CorpusError
from diffa.data.kaldi import read_map
from diffa.data.tasks import read_tasks

EXPECTED_PROMPT = (
    "Choose the most suitable answer from options A, B, C, and D to respond the question in next line, "
    "**you should only choose A or B or C or D.** Do not provide any additional explanations or content.\n\n"
    "Question: How many syllables does the word have?\n\n"
    "A. one\nB. two\nC. three\nD. four"
)


def jsonl(mmsu):
    return mmsu / "question" / "mmsu.jsonl"


def test_mmsu_rows(mmsu, tmp_path):
    out = tmp_path / "data" / "mmsu"
    summary = prepare_mmsu(mmsu, out)
    assert (summary.n_utts, summary.n_rows, summary.dropped) == (2, 2, [])
    wavs = read_map(out / "wav.scp")
    assert wavs == {"sarcasm_detection_0002": str(mmsu / "audio" / "sar_0002.wav"),
                    "syllable_counting_0001": str(mmsu / "audio" / "syl_0001.wav")}
    assert set(read_map(out / "text").values()) == {NOSPEECH}
    sarcasm, syllables = read_tasks(str(out / "tasks.jsonl"), utts=wavs)
    assert syllables == {
        "id": "syllable_counting_0001", "utt": "syllable_counting_0001", "task": "mcq",
        "instruction": EXPECTED_PROMPT, "answer": "three", "choices": ["one", "two", "three", "four"], "gold": 2,
        "labels": {"task_name": "syllable_counting", "category": "Perception", "sub-category": "Phonology",
                   "sub-sub-category": "Phonetics", "linguistics_sub_discipline": "phonetics"},
        "source": "MMSU",
    }
    assert (sarcasm["choices"], sarcasm["gold"]) == (["yes", "no"], 1)
    assert sarcasm["instruction"].endswith("Question: Is the speaker being sarcastic?\n\nA. yes\nB. no")


def test_answer_not_among_choices_is_kept_by_name(mmsu, tmp_path, caplog):
    lines = jsonl(mmsu).read_text().splitlines()
    item = json.loads(lines[1])
    item["answer_gt"] = "maybe"
    jsonl(mmsu).write_text(lines[0] + "\n" + json.dumps(item) + "\n")
    summary = prepare_mmsu(mmsu, tmp_path / "mmsu")
    assert (summary.n_rows, summary.unmatched) == (2, ["sarcasm_detection_0002"])
    assert "mmsu.jsonl:2: item 'sarcasm_detection_0002': answer 'maybe' is none of the choices" in caplog.text


def test_malformed_line_is_named(mmsu, tmp_path):
    with jsonl(mmsu).open("a") as f:
        f.write('{"id": "broken", "question": \n')
    with pytest.raises(CorpusError, match=r"mmsu\.jsonl:3: invalid JSON"):
        prepare_mmsu(mmsu, tmp_path / "mmsu")


def test_missing_audio_is_dropped_by_id(mmsu, tmp_path):
    (mmsu / "audio" / "syl_0001.wav").unlink()
    summary = prepare_mmsu(mmsu, tmp_path / "mmsu")
    assert (summary.dropped, summary.n_rows) == (["syllable_counting_0001"], 1)


def test_single_choice_item_is_rejected(mmsu, tmp_path):
    item = json.loads(jsonl(mmsu).read_text().splitlines()[1])
    item["choice_b"] = None
    jsonl(mmsu).write_text(json.dumps(item) + "\n")
    with pytest.raises(CorpusError, match=r"mmsu\.jsonl:1: item 'sarcasm_detection_0002': needs string choice_a"):
        prepare_mmsu(mmsu, tmp_path / "mmsu")


def test_a_gap_in_the_choices_is_rejected(mmsu, tmp_path):
    """choice_c null but choice_d set: the prompt would show choice_d as C, so a model answering the
    item's letter D would be judged against nothing."""
    item = json.loads(jsonl(mmsu).read_text().splitlines()[0])
    item["choice_c"], item["choice_d"] = None, "four"
    jsonl(mmsu).write_text(json.dumps(item) + "\n")
    with pytest.raises(CorpusError, match=r"mmsu\.jsonl:1: item .*choice_c/choice_d optional, in order"):
        prepare_mmsu(mmsu, tmp_path / "mmsu")


def test_absolute_audio_paths_and_another_index(mmsu, tmp_path):
    item = json.loads(jsonl(mmsu).read_text().splitlines()[0])
    item["audio_path"] = str(mmsu / item["audio_path"])
    index = tmp_path / "subset.jsonl"
    index.write_text(json.dumps(item) + "\n")
    prepare_mmsu(tmp_path / "unused", tmp_path / "mmsu", jsonl=index)
    assert read_map(tmp_path / "mmsu" / "wav.scp") == {"syllable_counting_0001": item["audio_path"]}
