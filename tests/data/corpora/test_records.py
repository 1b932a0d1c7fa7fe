"""Tests for diffa.data.corpora.records: JSON list / JSON lines reading with file:line."""
import json
import re
import time

import pytest

from diffa.data.corpora.records import CorpusError, Record, read_records


def write(path, text):
    path.write_text(text)
    return path


def test_jsonl_records_carry_their_line(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text('{"id": "a"}\n\n  \n{"id": "b", "x": 1}\n')
    records = read_records(path)
    assert [r.fields["id"] for r in records] == ["a", "b"]
    assert [r.where for r in records] == [f"{path}:1", f"{path}:4"]


def test_json_array_records_carry_the_line_they_start_on(tmp_path):
    path = tmp_path / "meta.json"
    path.write_text('[\n  {\n    "id": "a",\n    "choices": ["x", "y"]\n  },\n  {"id": "b"}\n]\n')
    records = read_records(path)
    assert [(r.fields["id"], r.where) for r in records] == [("a", f"{path}:2"), ("b", f"{path}:6")]
    assert read_records(write(tmp_path / "empty.json", "  [ ]\n")) == []


@pytest.mark.parametrize("name, text, line, what", [
    ("bad.jsonl", '{"id": "a"}\n{"id": "b",\n{"id": "c"}\n', 2, "invalid JSON"),
    ("bad.jsonl", '{"id": "a"}\n["not", "an", "object"]\n', 2, "expected a JSON object"),
    ("bad.json", '[\n {"id": "a"},\n {"id": }\n]', 3, "invalid JSON"),
    ("bad.json", '[\n {"id": "a"}\n {"id": "b"}\n]', 3, "expected ',' or ']'"),
    ("bad.json", '[\n {"id": "a"},\n 7\n]', 3, "expected a JSON object"),
    ("bad.json", '[\n {"id": "a"}\n]\ntrailing', 4, "unexpected text after the JSON array"),
    ("bad.json", '[\n {"id": "a"},\n', 3, "invalid JSON"),
])
def test_bad_line_is_named(tmp_path, name, text, line, what):
    path = write(tmp_path / name, text)
    with pytest.raises(CorpusError, match=rf"{re.escape(name)}:{line}: {what}"):
        read_records(path)


def test_get_str_checks_presence_and_type():
    record = Record({"id": "q7", "question": 3, "note": None}, "m.json:5")
    assert record.get_str("note", required=False) == ""
    with pytest.raises(CorpusError, match=r"m\.json:5: missing field 'answer' \(record id 'q7'\)"):
        record.get_str("answer")
    with pytest.raises(CorpusError, match=r"m\.json:5: field 'question' must be a string, got int"):
        record.get_str("question", required=False)


@pytest.mark.parametrize("text", ['[\n {"id": "x"},\n {"id": "y"}\n]\n', '{"id": "x"}\n{"id": "y"}\n'])
def test_a_byte_order_mark_is_ignored(tmp_path, text):
    """Windows editors save JSON with a UTF-8 byte-order mark; the array was then misread as JSON lines."""
    path = tmp_path / "meta.json"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert [r.fields["id"] for r in read_records(path)] == ["x", "y"]


def test_a_large_json_array_reads_in_linear_time(tmp_path):
    # The authors' indices are JSON arrays of 10^5 (DIFFA stage 2) to millions (DIFFA-2 stage 1)
    # items; counting each record's line from the top of the file took 23 s for these 40,000.
    items = [{"audio_id": f"u{i}", "input": "Q?", "target": "A."} for i in range(40000)]
    path = write(tmp_path / "big.json", json.dumps(items, indent=2))
    start = time.perf_counter()
    records = read_records(path)
    assert time.perf_counter() - start < 5.0
    assert (len(records), records[0].where, records[-1].where) == (40000, f"{path}:2", f"{path}:{2 + 5 * 39999}")
