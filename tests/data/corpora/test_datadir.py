"""Tests for diffa.data.corpora.datadir: writing a prepared set as a Kaldi data dir."""
import os

import numpy as np
import pytest
import soundfile

from diffa.data.corpora.datadir import (NOSPEECH, Entry, audio_duration, link_data_dir, resolve_audio,
                                        write_data_dir)
from diffa.data.corpora.records import CorpusError
from diffa.data.kaldi import read_map
from diffa.data.tasks import read_tasks


def wav(path, seconds):
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.zeros(int(16000 * seconds), dtype="float32"), 16000)
    return str(path)


def entry(utt, path, rid=None, text="", spk=None, where="idx.json:1"):
    row = {"id": rid or utt, "utt": utt, "task": "open_qa", "instruction": "Q?", "answer": "A."}
    return Entry(utt=utt, path=path, text=text, row=row, where=where, spk=spk)


def test_files_are_sorted_in_c_order_and_consistent(tmp_path):
    a, b = wav(tmp_path / "a.wav", 0.5), wav(tmp_path / "b.flac", 1.25)
    entries = [entry("b-2", b, text="two\nlines", spk="b"), entry("B-1", a, spk="B"),
               entry("b-1", a, text="one", spk="b"), entry("_x", b)]
    out = tmp_path / "data" / "set"
    summary = write_data_dir(out, entries)
    assert (summary.n_utts, summary.n_rows, summary.dropped) == (4, 4, [])
    assert summary.hours == pytest.approx((0.5 + 1.25 + 0.5 + 1.25) / 3600)
    order = ["B-1", "_x", "b-1", "b-2"]  # C locale: upper case < '_' < lower case
    assert list(read_map(out / "wav.scp")) == order
    assert read_map(out / "text") == {"B-1": NOSPEECH, "_x": NOSPEECH, "b-1": "one", "b-2": "two lines"}
    assert read_map(out / "utt2spk") == {"B-1": "B", "_x": "_x", "b-1": "b", "b-2": "b"}
    assert read_map(out / "spk2utt") == {"B": "B-1", "_x": "_x", "b": "b-1 b-2"}
    assert read_map(out / "utt2dur", float) == {"B-1": 0.5, "_x": 1.25, "b-1": 0.5, "b-2": 1.25}
    assert [r["id"] for r in read_tasks(str(out / "tasks.jsonl"), utts=order)] == order
    assert sorted(p.name for p in out.parent.iterdir()) == ["set"]


def test_examples_share_an_utterance(tmp_path):
    a = wav(tmp_path / "a.wav", 0.25)
    out = tmp_path / "set"
    write_data_dir(out, [entry("u", a, rid="u-1"), entry("u", a, rid="u-0")])
    assert list(read_map(out / "wav.scp")) == ["u"]
    assert [(r["id"], r["utt"]) for r in read_tasks(str(out / "tasks.jsonl"))] == [("u-0", "u"), ("u-1", "u")]


def test_missing_or_unreadable_audio_is_dropped_and_counted(tmp_path, caplog):
    good = wav(tmp_path / "good.wav", 0.25)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio at all")
    entries = [entry("u1", good), entry("u2", str(tmp_path / "gone.wav"), rid="u2-0"),
               entry("u2", str(tmp_path / "gone.wav"), rid="u2-1"), entry("u3", str(broken))]
    summary = write_data_dir(tmp_path / "set", entries)
    assert summary.dropped == ["u2-0", "u2-1", "u3"]
    assert (summary.n_utts, summary.n_rows) == (1, 1)
    assert "3 example(s) dropped" in caplog.text and "u2-0, u2-1, u3" in caplog.text


def test_nothing_readable_is_an_error(tmp_path):
    with pytest.raises(CorpusError, match="none of the 1 examples has readable audio"):
        write_data_dir(tmp_path / "set", [entry("u1", str(tmp_path / "gone.wav"))])


def test_duplicate_ids_name_both_places(tmp_path):
    a = wav(tmp_path / "a.wav", 0.1)
    with pytest.raises(CorpusError, match=r"i\.json:9: example id 'u' already used at i\.json:2"):
        write_data_dir(tmp_path / "set", [entry("u", a, where="i.json:2"), entry("u", a, where="i.json:9")])


def test_one_utterance_one_file(tmp_path):
    a, b = wav(tmp_path / "a.wav", 0.1), wav(tmp_path / "b.wav", 0.1)
    with pytest.raises(CorpusError, match=r"i\.json:4: utterance 'u' names .*b\.wav but i\.json:1 named"):
        write_data_dir(tmp_path / "set", [entry("u", a, rid="u-0", where="i.json:1"),
                                          entry("u", b, rid="u-1", where="i.json:4")])


def test_speaker_must_prefix_the_utterance(tmp_path):
    a = wav(tmp_path / "a.wav", 0.1)
    with pytest.raises(CorpusError, match="speaker '12' is not a '-'-terminated prefix of utterance '123-4'"):
        write_data_dir(tmp_path / "set", [entry("123-4", a, spk="12")])


def test_rewriting_replaces_the_whole_dir(tmp_path):
    a = wav(tmp_path / "a.wav", 0.1)
    out = tmp_path / "set"
    write_data_dir(out, [entry("u1", a), entry("u2", a)])
    (out / "feats.scp").write_text("stale\n")
    write_data_dir(out, [entry("u3", a)])
    assert sorted(p.name for p in out.iterdir()) == ["spk2utt", "tasks.jsonl", "text", "utt2dur", "utt2spk", "wav.scp"]
    assert list(read_map(out / "wav.scp")) == ["u3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "set"]


def test_a_set_becomes_a_link_to_another_and_back(tmp_path):
    a = wav(tmp_path / "a.wav", 0.1)
    data = tmp_path / "data"
    write_data_dir(data / "shared", [entry("u1", a)])
    write_data_dir(data / "own", [entry("u2", a)])
    link_data_dir(data / "own", "shared")
    assert os.readlink(data / "own") == "shared"
    assert list(read_map(data / "own" / "wav.scp")) == ["u1"]
    # Writing the set again replaces the link, never the set it points to.
    write_data_dir(data / "own", [entry("u3", a)])
    assert not (data / "own").is_symlink()
    assert [list(read_map(data / s / "wav.scp")) for s in ("own", "shared")] == [["u3"], ["u1"]]
    link_data_dir(data / "own", "shared")
    link_data_dir(data / "own", "shared")
    assert sorted(p.name for p in data.iterdir()) == ["own", "shared"]
    assert list(read_map(data / "own" / "wav.scp")) == ["u1"]


def test_invalid_rows_are_rejected_by_the_task_schema(tmp_path):
    a = wav(tmp_path / "a.wav", 0.1)
    bad = entry("u1", a)
    bad.row["task"] = "summarise"
    with pytest.raises(ValueError, match="'task' must be one of"):
        write_data_dir(tmp_path / "set", [bad])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]


def test_helpers(tmp_path):
    assert resolve_audio("x/../y.wav", tmp_path) == str(tmp_path / "y.wav")
    assert audio_duration(wav(tmp_path / "d.flac", 0.75)) == pytest.approx(0.75)
    assert audio_duration(str(tmp_path)) is None
    assert audio_duration(wav(tmp_path / "empty.wav", 0)) is None
