"""Resumable results: truncated lines repaired, done ids kept, atomic final file, settings guard."""

import json
import os

import pytest

from diffa.decode.results import ResultsFile, result_row, write_settings

TASK = {"id": "q1", "utt": "u1", "task": "mcq", "instruction": "Who?", "answer": "a cat",
        "choices": ["a cat", "a dog"], "gold": 0, "labels": {"gender": "f"}}


def test_row_format():
    row = result_row(TASK, "a cat", nfe=4, seconds=0.25)
    assert row == {"id": "q1", "utt": "u1", "task": "mcq", "prompt": "Who?", "hypothesis": "a cat",
                   "reference": "a cat", "choices": ["a cat", "a dog"], "gold": 0, "labels": {"gender": "f"},
                   "nfe": 4, "seconds": 0.25}
    failed = result_row(TASK, error="no features: missing")
    assert failed["failed"] is True and failed["hypothesis"] is None and failed["nfe"] == 0


def test_truncated_last_line_is_repaired(tmp_path, caplog):
    res = ResultsFile(str(tmp_path / "results.jsonl"))
    res.append([{"id": "a", "hypothesis": "x"}, {"id": "b", "hypothesis": "y"}])
    with open(res.partial, "a") as f:
        f.write('{"id": "c", "hypoth')
    assert sorted(ResultsFile(res.path).resume()) == ["a", "b"]
    assert "dropped 1 truncated line" in caplog.text
    # the file itself was repaired: appending now gives clean lines
    res.append([{"id": "c", "hypothesis": "z"}])
    lines = open(res.partial).read().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["a", "b", "c"]


def test_malformed_middle_line_is_an_error(tmp_path):
    res = ResultsFile(str(tmp_path / "results.jsonl"))
    with open(res.partial, "w") as f:
        f.write('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(ValueError, match=r"results.jsonl.partial:2: malformed results line"):
        res.resume()


def test_finish_sorts_drops_strangers_and_needs_every_id(tmp_path):
    res = ResultsFile(str(tmp_path / "results.jsonl"))
    res.append([{"id": "b"}, {"id": "zz"}])
    with pytest.raises(ValueError, match="no result for 1 ids"):
        res.finish(["a", "b"])
    assert not os.path.exists(res.path)
    res.append([{"id": "a"}])
    assert [r["id"] for r in res.finish(["a", "b"])] == ["a", "b"]
    assert [json.loads(line)["id"] for line in open(res.path)] == ["a", "b"]
    assert not os.path.exists(res.partial)
    # a finished file is a valid resume point
    assert sorted(ResultsFile(res.path).resume()) == ["a", "b"]


def test_settings_guard(tmp_path):
    path = str(tmp_path / "settings.json")
    write_settings(path, {"model": "m", "factor": 1.0, "git": "a"}, resuming=False)
    write_settings(path, {"model": "m", "factor": 1.0, "git": "b"}, resuming=True)
    with pytest.raises(ValueError, match="factor: 1.0 -> None"):
        write_settings(path, {"model": "m", "git": "b"}, resuming=True)
    write_settings(path, {"model": "m", "git": "b"}, resuming=False)  # a fresh run replaces it
    assert json.load(open(path)) == {"model": "m", "git": "b"}
