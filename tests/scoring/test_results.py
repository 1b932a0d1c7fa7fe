"""Tests of diffa.scoring.results: reading results.jsonl (truncated, damaged, repeated lines) and
merging the set's tasks.jsonl."""
import pytest

from diffa.scoring.results import merge_tasks, read_results
from diffa.scoring.scores import score_results


def write_lines(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_read_results_truncated_last_line_is_skipped_and_reported(tmp_path):
    path = write_lines(tmp_path / "results.jsonl",
                       '{"id": "a", "hypothesis": "x"}\n\n{"id": "b", "hypothesis": "y"}\n{"id": "c", "hyp')
    res = read_results(path)
    assert res.ids == ["a", "b"]
    assert res.skipped == [{"line": 4, "reason": "truncated last line (no line end, not valid JSON)"}]


def test_read_results_rejects_damage_elsewhere(tmp_path):
    middle = write_lines(tmp_path / "m.jsonl", '{"id": "a"}\n{"id": \n{"id": "c"}\n')
    with pytest.raises(ValueError, match=r"m.jsonl:2: malformed JSON .*re-run decoding"):
        read_results(middle)
    last_complete = write_lines(tmp_path / "l.jsonl", '{"id": "a"}\n{"id"\n')
    with pytest.raises(ValueError, match=r"l.jsonl:2: malformed JSON"):
        read_results(last_complete)
    no_id = write_lines(tmp_path / "n.jsonl", '{"hypothesis": "x"}\n')
    with pytest.raises(ValueError, match=r"n.jsonl:1: a results row must be a JSON object with a string 'id'"):
        read_results(no_id)


def test_read_results_names_a_row_with_a_lone_surrogate(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"id": "a", "hypothesis": "x"}\n{"id": "b", "hypothesis": "\\ud800x"}\n')
    with pytest.raises(ValueError, match=r"results\.jsonl:2: row 'b' holds an escaped lone UTF-16 surrogate"):
        read_results(str(path))


def test_read_results_keeps_last_of_repeated_ids(tmp_path):
    path = write_lines(tmp_path / "r.jsonl",
                       '{"id": "a", "failed": true}\n{"id": "b"}\n{"id": "a", "hypothesis": "ok"}\n')
    res = read_results(path)
    assert res.ids == ["b", "a"] and res.rows[1]["hypothesis"] == "ok" and res.duplicates == ["a"]


def test_merge_tasks_fills_rows_and_adds_missing_ids(tmp_path):
    path = write_lines(tmp_path / "r.jsonl", '{"id": "q1", "hypothesis": "soft"}\n')
    res = read_results(path)
    tasks = [{"id": "q1", "utt": "u1", "task": "mcq", "instruction": "?", "answer": "soft",
              "choices": ["loud", "soft"], "gold": 1, "labels": {"asks": "loudness"}},
             {"id": "q2", "utt": "u2", "task": "open_qa", "instruction": "?", "answer": "pink"}]
    assert merge_tasks(res, tasks) == ["q2"]
    assert res.rows[0]["choices"] == ["loud", "soft"] and res.rows[0]["labels"] == {"asks": "loudness"}
    assert res.rows[1] == {"id": "q2", "task": "open_qa", "reference": "pink", "failed": True,
                           "error": "missing from results"}
    data = score_results(res.rows, "mini").data
    assert data["metrics"]["mcq_accuracy"] == 100.0 and data["metrics"]["open_qa_accuracy"] == 0.0
    with pytest.raises(ValueError, match=r"1 ids are not in the set's tasks.jsonl, e.g. \['q1'\]"):
        merge_tasks(read_results(path), tasks[1:])
