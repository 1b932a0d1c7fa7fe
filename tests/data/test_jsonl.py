"""Tests of diffa.data.jsonl: the checks and the read/write loop shared by tasks.jsonl and pairs.jsonl."""
import json
import os

import pytest

from diffa.data.jsonl import check_keys, check_labels, check_text, read_jsonl, write_jsonl

FIELDS = ("id", "name", "labels")
REQUIRED = ("id",)


def _validate(row, where):
    check_keys(row, where, FIELDS, REQUIRED)
    check_text(row, "id", where, token=True)
    check_labels(row, where)


def test_check_keys_messages():
    with pytest.raises(ValueError, match=r"^w: expected a JSON object, got str$"):
        check_keys("x", "w", FIELDS, REQUIRED)
    with pytest.raises(ValueError, match=r"^w: unknown key\(s\) \['a', 'b'\]; allowed keys: \['id', 'name', 'labels'\]$"):
        check_keys({"id": "x", "b": 1, "a": 2}, "w", FIELDS, REQUIRED)
    with pytest.raises(ValueError, match=r"^w: missing required key\(s\) \['id'\]$"):
        check_keys({"name": "x"}, "w", FIELDS, REQUIRED)


def test_check_text_and_labels():
    check_text({"name": "two words"}, "name", "w")
    with pytest.raises(ValueError, match=r"^w: 'name' must be a non-empty string, got 3$"):
        check_text({"name": 3}, "name", "w")
    with pytest.raises(ValueError, match=r"^w: 'id' must not contain whitespace, got 'a\\tb'$"):
        check_text({"id": "a\tb"}, "id", "w", token=True)
    with pytest.raises(ValueError, match=r"^w: 'labels' must be an object of string -> string, got \['x'\]$"):
        check_labels({"labels": ["x"]}, "w")


def test_round_trip_sorted_in_field_order(tmp_path):
    path = str(tmp_path / "x.jsonl")
    write_jsonl(path, [{"name": "é", "id": "b"}, {"labels": {"k": "v"}, "id": "a"}], _validate, FIELDS)
    lines = open(path, encoding="utf-8").read().splitlines()
    assert lines == ['{"id": "a", "labels": {"k": "v"}}', '{"id": "b", "name": "é"}']
    assert read_jsonl(path, _validate) == [{"id": "a", "labels": {"k": "v"}}, {"id": "b", "name": "é"}]
    assert not os.path.exists(path + ".tmp")


def test_read_names_file_and_line(tmp_path):
    path = str(tmp_path / "x.jsonl")
    rows = [{"id": "a"}, {"id": "c"}, {"id": "b"}]
    open(path, "w").write("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(ValueError, match=r"x.jsonl:3: key 'b' comes after 'c'"):
        read_jsonl(path, _validate)
    open(path, "w").write('{"id": "a"}\n{"id": "a b"}\n')
    with pytest.raises(ValueError, match=r"x.jsonl:2: 'id' must not contain whitespace"):
        read_jsonl(path, _validate)
    open(path, "w").write('{"id": "a"}\n{"id"\n')
    with pytest.raises(ValueError, match=r"x.jsonl:2: malformed JSON \(.* at column 6\); each line must be one"):
        read_jsonl(path, _validate)


def test_write_rejects_bad_rows_and_keeps_the_old_file(tmp_path):
    path = str(tmp_path / "x.jsonl")
    write_jsonl(path, [{"id": "a"}], _validate, FIELDS)
    with pytest.raises(ValueError, match=r"^row 2: duplicate id 'a' \(also row 0\)$"):
        write_jsonl(path, [{"id": "a"}, {"id": "b"}, {"id": "a"}], _validate, FIELDS)
    with pytest.raises(ValueError, match=r"^row 1 \(id 'b'\): unknown key\(s\) \['x'\]"):
        write_jsonl(path, [{"id": "a"}, {"id": "b", "x": 1}], _validate, FIELDS)
    assert open(path).read() == '{"id": "a"}\n'
