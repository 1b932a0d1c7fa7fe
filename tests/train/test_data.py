"""Tests of diffa.train.data: dump-directory checks, empty answers, replay layout, collation."""

import json
import shutil

import pytest

from diffa.text.tokenizer import load_tokenizer
from diffa.train.data import Collate, TrainingSet, open_split


@pytest.fixture
def dump(tmp_path, toy):
    """A writable copy of the toy dump directory."""
    out = tmp_path / "train"
    shutil.copytree(toy["dump"], out)
    return out


@pytest.fixture(scope="module")
def tok(toy):
    return load_tokenizer(toy["tokenizer_dir"])


def test_examples_with_an_empty_answer_are_left_out_and_counted(dump, tok, tmp_path):
    lines = (dump / "tasks.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    # json.dumps writes "\u2003" and the tab, newline and carriage return as escapes
    blank = {0: "", 3: "  ", 7: "\u2003", 8: "\t", 9: "\n", 10: " \r\n", 11: None}
    for i, answer in blank.items():
        rows[i]["answer"] = answer
    del rows[5]["answer"]
    (dump / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    split = open_split(str(dump), tok, work_dir=str(tmp_path / "work"))
    left_out = {*blank, 5}
    assert split.empty_answers == len(left_out) and len(split) == len(rows) - len(left_out)
    assert {r["id"] for r in split.rows} == {r["id"] for i, r in enumerate(rows) if i not in left_out}
    assert (tmp_path / "work" / "train" / "tasks.jsonl").is_file()


def test_a_clean_split_is_read_in_place(dump, tok, tmp_path):
    split = open_split(str(dump), tok, work_dir=str(tmp_path / "work"))
    assert split.empty_answers == 0 and split.name == "train" and not (tmp_path / "work").exists()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: shutil.rmtree(d), "does not exist: run stage 2 \\(feature extraction\\)"),
        (lambda d: (d / "tasks.jsonl").unlink(), "tasks.jsonl is missing"),
        (lambda d: (d / "tasks.jsonl").write_text("\n"), "tasks.jsonl has no examples"),
        (lambda d: (d / "tasks.jsonl").write_bytes(b"\xff\xfe{"), "cannot read .*tasks.jsonl"),
        (lambda d: (d / "feats.scp").write_text(""), "feats.scp is empty"),
        (lambda d: (d / "tasks.jsonl").write_text('{"id": "x", "answer": ""}\n'), "every example has an empty answer"),
        (lambda d: (d / "tasks.jsonl").write_text('{"id": "x", "answer": "a"}\n'), "tasks.jsonl:1: missing required key"),
    ],
)
def test_bad_splits_are_explained(dump, tok, tmp_path, damage, message):
    damage(dump)
    with pytest.raises(ValueError, match=message):
        open_split(str(dump), tok, work_dir=str(tmp_path / "work"))


def test_training_set_puts_replay_last_and_collates_keys(toy, tok, tmp_path):
    main = open_split(toy["dump"], tok, str(tmp_path))
    replay = open_split(toy["dump"], tok, str(tmp_path))
    train = TrainingSet([main], [replay])
    assert len(train) == 32 and train.replay_from == 16
    assert train.num_tokens()[:16] == train.num_tokens()[16:] == main.num_tokens()
    assert len(train.num_frames()) == 32
    batch = Collate(tok.pad_id)([train[17], train[2]])
    assert batch["keys"].tolist() == [17, 2] and batch["ids"] == [main.rows[1]["id"], main.rows[2]["id"]]
    with pytest.raises(ValueError, match="no main training set"):
        TrainingSet([], [replay])
