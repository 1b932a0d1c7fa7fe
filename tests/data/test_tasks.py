"""Tests of diffa.data.tasks: the tasks.jsonl schema, reading, writing, error messages."""
import json
import os

import pytest

from diffa.data.tasks import read_tasks, validate_task, write_tasks

ASR = {"id": "u1-asr", "utt": "u1", "task": "asr", "instruction": "Transcribe the audio.",
       "answer": "HELLO WORLD", "source": "mini"}
MCQ = {"id": "u1-mcq", "utt": "u1", "task": "mcq", "instruction": "Who is speaking?",
       "answer": "a woman", "choices": ["a man", "a woman", "a child"], "gold": 1,
       "labels": {"gender": "female", "emotion": "happy"}}
QA = {"id": "u2-qa", "utt": "u2", "task": "open_qa", "instruction": "Describe the sound.",
      "answer": "Un chien aboie, très fort.", "labels": {"sound_event": "dog_bark"}}


def _write_lines(path, lines) -> str:
    path = str(path)
    with open(path, "wb") as f:
        for line in lines:
            f.write((line if isinstance(line, bytes) else line.encode("utf-8")) + b"\n")
    return path


def test_round_trip_sorted_with_canonical_key_order(tmp_path):
    path = str(tmp_path / "tasks.jsonl")
    shuffled = dict(reversed(list(MCQ.items())))
    write_tasks(path, [QA, shuffled, ASR])
    rows = read_tasks(path, utts=["u1", "u2"])
    assert [row["id"] for row in rows] == ["u1-asr", "u1-mcq", "u2-qa"]
    assert rows == [ASR, MCQ, QA]
    lines = open(path, encoding="utf-8").read().splitlines()
    assert list(json.loads(lines[1])) == ["id", "utt", "task", "instruction", "answer",
                                          "choices", "gold", "labels"]
    assert "très" in lines[2]  # UTF-8, not \u escapes
    assert not os.path.exists(path + ".tmp")


def _with(row, **changes):
    out = dict(row)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


@pytest.mark.parametrize(
    "row, message",
    [
        (["not", "an", "object"], "expected a JSON object, got list"),
        (_with(ASR, answers="x"), "unknown key(s) ['answers']"),
        (_with(ASR, instruction=None), "missing required key(s) ['instruction']"),
        (_with(ASR, task="caption"), "'task' must be one of ['asr', 'mcq', 'open_qa']"),
        (_with(ASR, answer="  "), "'answer' must be a non-empty string"),
        (_with(ASR, answer=3), "'answer' must be a non-empty string"),
        (_with(ASR, id="u1 asr"), "'id' must not contain whitespace"),
        (_with(ASR, utt=""), "'utt' must be a non-empty string"),
        (_with(ASR, gold=0), "['gold'] only belong to task 'mcq'"),
        (_with(MCQ, choices=None), "task 'mcq' needs 'choices'"),
        (_with(MCQ, gold=None), "task 'mcq' needs 'gold'"),
        (_with(MCQ, choices=["only one"], gold=0), "at least two non-empty strings"),
        (_with(MCQ, choices=["a", ""]), "at least two non-empty strings"),
        (_with(MCQ, choices=["a", "a"]), "'choices' needs at least two different options"),
        (_with(MCQ, gold=3), "'gold' must be an int index into the 3 choices (or null), got 3"),
        (_with(MCQ, gold=-1), "'gold' must be an int index"),
        (_with(MCQ, gold=True), "'gold' must be an int index"),
        (_with(MCQ, gold="1"), "'gold' must be an int index"),
        (_with(QA, labels={"gender": 1}), "'labels' must be an object of string -> string"),
        (_with(QA, labels=["male"]), "'labels' must be an object of string -> string"),
        (_with(QA, source=""), "'source' must be a non-empty string"),
    ],
)
def test_validate_task_rejects(row, message):
    with pytest.raises(ValueError) as err:
        validate_task(row, "data/x/tasks.jsonl:4")
    assert str(err.value).startswith("data/x/tasks.jsonl:4: ")
    assert message in str(err.value)


@pytest.mark.parametrize("row", [ASR, MCQ, QA, _with(QA, labels={}), _with(ASR, source=None),
                                 _with(MCQ, choices=["a man", "a woman", "a man"]),
                                 {**MCQ, "gold": None, "answer": "a man and a woman"}])
def test_validate_task_accepts(row):
    validate_task(row, "here")


@pytest.mark.parametrize(
    "second_line, message",
    [
        ('{"id": "b", "utt": "u1", "task": "asr",', "malformed JSON (Expecting"),
        ("", "malformed JSON (Expecting value at column 1)"),
        (b'{"id": "b", "utt": "u1", "task": "asr", "instruction": "x", "answer": "caf\xe9"}',
         "not valid UTF-8"),
        (json.dumps(_with(ASR, id="a")), "duplicate key 'a' (first at line 1)"),
        (json.dumps(_with(ASR, id="0")), "key '0' comes after 'a': the file is not sorted"),
        (json.dumps(_with(ASR, id="b", answer="")), "'answer' must be a non-empty string"),
        (json.dumps(_with(ASR, id="b", utt="u9")), "utt 'u9' is not in the data directory"),
    ],
)
def test_read_tasks_errors_name_file_and_line(tmp_path, second_line, message):
    path = _write_lines(tmp_path / "tasks.jsonl", [json.dumps(_with(ASR, id="a")), second_line])
    with pytest.raises(ValueError) as err:
        read_tasks(path, utts={"u1"})
    assert str(err.value).startswith(f"{path}:2: ")
    assert message in str(err.value)


def test_write_tasks_rejects_duplicates_and_invalid_rows(tmp_path):
    path = str(tmp_path / "tasks.jsonl")
    with pytest.raises(ValueError, match=r"row 2: duplicate id 'u1-asr' \(also row 0\)"):
        write_tasks(path, [ASR, QA, ASR])
    with pytest.raises(ValueError, match=r"row 1 \(id 'u1-mcq'\): 'gold'"):
        write_tasks(path, [ASR, _with(MCQ, gold=7)])
    assert not os.path.exists(path) and not os.path.exists(path + ".tmp")
