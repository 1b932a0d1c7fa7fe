"""Tests for diffa.data.corpora.authors_json on a fake authors' index with espeak audio."""
import json

import numpy as np
import pytest
import soundfile

from diffa.data.corpora.authors_json import authors_entries, prepare_authors_json
from diffa.data.corpora.records import CorpusError
from diffa.data.kaldi import read_map
from diffa.data.tasks import read_tasks
from diffa.train.pairs import build_pairs


def items(path):
    return json.loads(path.read_text())


def test_qa_index(authors_json, tmp_path):
    out = tmp_path / "train_qa"
    summary = prepare_authors_json(authors_json / "train_qa.json", out, "qa")
    assert (summary.n_utts, summary.n_rows, summary.dropped) == (2, 3, [])
    wavs = read_map(out / "wav.scp")
    assert wavs == {"Ses01F_impro01_F000": str(authors_json / "wavs" / "Ses01F_impro01_F000.wav"),
                    "p225_001": str(authors_json / "wavs" / "p225_001.wav")}
    # transcription, else seed_transcript
    assert read_map(out / "text") == {"Ses01F_impro01_F000": "excuse me", "p225_001": "please call stella"}
    rows = {r["id"]: r for r in read_tasks(str(out / "tasks.jsonl"), utts=wavs)}
    assert sorted(rows) == ["Ses01F_impro01_F000-0", "p225_001-0", "p225_001-1"]
    src = items(authors_json / "train_qa.json")
    assert rows["p225_001-1"] == {
        "id": "p225_001-1", "utt": "p225_001", "task": "open_qa", "instruction": src[1]["input"],
        "answer": src[1]["target"], "labels": {"gender": "female"}, "source": "VCTK",
    }
    assert rows["Ses01F_impro01_F000-0"]["labels"] == {}


def test_asr_kind_answers_with_the_transcription(authors_json, tmp_path):
    index = authors_json / "asr.json"
    src = items(authors_json / "train_qa.json")
    index.write_text(json.dumps([dict(src[2], input="Transcribe the audio.")]))
    prepare_authors_json(index, tmp_path / "asr", "asr")
    row, = read_tasks(str(tmp_path / "asr" / "tasks.jsonl"))
    assert (row["task"], row["instruction"], row["answer"]) == ("asr", "Transcribe the audio.", "excuse me")
    index.write_text(json.dumps([src[0]]))
    with pytest.raises(CorpusError, match=r"asr\.json:1: item 'p225_001' has an empty 'transcription'"):
        prepare_authors_json(index, tmp_path / "asr", "asr")


def test_preference_index_keeps_rejected(authors_json, tmp_path):
    prepare_authors_json(authors_json / "train_pref.json", tmp_path / "train_pref", "pref")
    rows = read_tasks(str(tmp_path / "train_pref" / "tasks.jsonl"))
    src = {i["audio_id"]: i for i in items(authors_json / "train_pref.json")}
    assert [(r["answer"], r["labels"]["rejected"]) for r in rows] == [
        (src[r["utt"]]["target"], src[r["utt"]]["rejected"]) for r in rows]


def test_preference_item_without_rejected_is_named(authors_json, tmp_path):
    index = authors_json / "train_pref.json"
    src = items(index)
    del src[1]["rejected"]
    index.write_text(json.dumps(src, indent=2))
    line = index.read_text().splitlines().index("  {", 2) + 1
    with pytest.raises(CorpusError, match=rf"train_pref\.json:{line}: missing field 'rejected'"):
        prepare_authors_json(index, tmp_path / "pref", "pref")


def test_malformed_json_is_named_by_line(authors_json, tmp_path):
    index = authors_json / "qa.jsonl"
    good = json.dumps(items(authors_json / "train_qa.json")[0])
    index.write_text(good + "\n" + good[:-1] + "\n")
    with pytest.raises(CorpusError, match=r"qa\.jsonl:2: invalid JSON"):
        prepare_authors_json(index, tmp_path / "qa", "qa")


def test_missing_audio_is_dropped_by_id(authors_json, tmp_path, caplog):
    (authors_json / "wavs" / "p225_001.wav").unlink()
    summary = prepare_authors_json(authors_json / "train_qa.json", tmp_path / "qa", "qa")
    assert summary.dropped == ["p225_001-0", "p225_001-1"]
    assert "p225_001-0, p225_001-1" in caplog.text
    assert list(read_map(tmp_path / "qa" / "wav.scp")) == ["Ses01F_impro01_F000"]


def test_audio_root_and_absolute_paths(authors_json, tmp_path):
    src = items(authors_json / "train_qa.json")
    src[2]["audio_filepath"] = str(authors_json / src[2]["audio_filepath"])
    elsewhere = tmp_path / "elsewhere" / "idx.json"
    elsewhere.parent.mkdir()
    elsewhere.write_text(json.dumps(src))
    paths = {e.utt: e.path for e in authors_entries(elsewhere, "qa", audio_root=authors_json)}
    assert paths == {u: str(authors_json / "wavs" / f"{u}.wav") for u in ("p225_001", "Ses01F_impro01_F000")}
    default = {e.utt: e.path for e in authors_entries(elsewhere, "qa")}
    assert default["p225_001"] == str(elsewhere.parent / "wavs" / "p225_001.wav")


def test_one_audio_id_must_name_one_file(authors_json, tmp_path):
    src = items(authors_json / "train_qa.json")
    src[1]["audio_filepath"] = src[2]["audio_filepath"]
    (authors_json / "clash.json").write_text(json.dumps(src))
    with pytest.raises(CorpusError, match=r"clash\.json:\d+: utterance 'p225_001' names"):
        prepare_authors_json(authors_json / "clash.json", tmp_path / "qa", "qa")


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown kind 'sft'"):
        prepare_authors_json("x.json", "out", "sft")


def test_empty_input_is_named_by_line(authors_json, tmp_path):
    src = items(authors_json / "train_qa.json")
    src[1]["input"] = " "
    index = authors_json / "train_qa.json"
    index.write_text(json.dumps(src, indent=2))
    line = index.read_text().splitlines().index("  {", 2) + 1
    with pytest.raises(CorpusError, match=rf"train_qa\.json:{line}: item 'p225_001' has an empty 'input'"):
        prepare_authors_json(index, tmp_path / "qa", "qa")


# The preference item of DIFFA-2's README (VRPO data), audio moved under the index's folder.
README_PREF = {
    "audio_id": "VocalSound/VocalSound/audio_16k/f1899_0_sigh.wav",
    "audio_filepath": "VocalSound/VocalSound/audio_16k/f1899_0_sigh.wav",
    "transcription": "",
    "input": "After listening to the sound, can you summarize what stands out most in just one sentence?",
    "target": "The sound that stands out most is a sigh at the beginning.",
    "dataset": "VocalSound",
    "duration": 1.0,
    "seed_transcript": "[00:00-00:02] (Sigh)",
    "chosen": "The sound that stands out most is a sigh at the beginning.",
    "rejected": "The sound that stands out most is a soft whisper at the beginning.",
    "dpo_explanation": "The incorrect answer described the sound as a 'soft whisper' instead of the correct 'sigh'.",
    "dpo_source": "openqa_qwen3_32b_v1",
}


def test_readme_preference_items(tmp_path):
    """``chosen`` repeats ``target`` (the answer the authors train on); it is no fact about the audio,
    so it must not become a label that swap pairs would replace by another item's whole answer."""
    other = dict(README_PREF, audio_id="VocalSound/VocalSound/audio_16k/m0001_0_cough.wav",
                 audio_filepath="VocalSound/VocalSound/audio_16k/m0001_0_cough.wav",
                 target="A cough.", chosen="A cough.", rejected="A sneeze.")
    for item in (README_PREF, other):
        path = tmp_path / item["audio_filepath"]
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, np.zeros(16000, np.float32), 44100)
    (tmp_path / "vrpo.json").write_text(json.dumps([README_PREF, other], indent=2))
    prepare_authors_json(tmp_path / "vrpo.json", tmp_path / "train_pref", "pref")
    rows = read_tasks(str(tmp_path / "train_pref" / "tasks.jsonl"))
    row = rows[0]
    assert (row["id"], row["utt"]) == (README_PREF["audio_id"] + "-0", README_PREF["audio_id"])
    assert (row["instruction"], row["answer"], row["source"]) == (
        README_PREF["input"], README_PREF["target"], "VocalSound")
    assert row["labels"] == {"dpo_explanation": README_PREF["dpo_explanation"],
                             "dpo_source": "openqa_qwen3_32b_v1", "rejected": README_PREF["rejected"]}
    pairs, stats = build_pairs(rows, modes=("swap", "external"))
    assert [(p["chosen"], p["rejected"], p["source"]) for p in pairs] == [
        (README_PREF["target"], README_PREF["rejected"], "external"), ("A cough.", "A sneeze.", "external")]
