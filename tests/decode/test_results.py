"""Resumable results: truncated lines repaired, done ids kept, atomic final file, settings guard."""

import json
import os

import pytest

from diffa.decode.results import ResultsFile, check_settings, result_row, write_settings

TASK = {"id": "q1", "utt": "u1", "task": "mcq", "instruction": "Who?", "answer": "a cat",
        "choices": ["a cat", "a dog"], "gold": 0, "labels": {"gender": "f"}}


def test_row_format():
    row = result_row(TASK, "a cat", nfe=4, seconds=0.25)
    assert row == {"id": "q1", "utt": "u1", "task": "mcq", "prompt": "Who?", "hypothesis": "a cat",
                   "reference": "a cat", "choices": ["a cat", "a dog"], "gold": 0, "labels": {"gender": "f"},
                   "nfe": 4, "seconds": 0.25}
    failed = result_row(TASK, error="no features: missing")
    assert failed["failed"] is True and failed["hypothesis"] is None and failed["nfe"] == 0


def test_truncated_last_line_is_dropped_then_repaired(tmp_path, caplog):
    res = ResultsFile(str(tmp_path / "results.jsonl"))
    res.append([{"id": "a", "hypothesis": "x"}, {"id": "b", "hypothesis": "y"}])
    with open(res.partial, "a") as f:
        f.write('{"id": "c", "hypoth')
    before = open(res.partial).read()
    rows = ResultsFile(res.path).read()
    assert sorted(rows) == ["a", "b"] and "dropped 1 truncated line" in caplog.text
    assert open(res.partial).read() == before  # reading writes nothing
    # a resumed run restarts the partial file from the rows it keeps: appending gives clean lines
    res.restart(rows.values())
    res.append([{"id": "c", "hypothesis": "z"}])
    lines = open(res.partial).read().splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["a", "b", "c"]


def test_reading_a_finished_file_writes_nothing(tmp_path):
    res = ResultsFile(str(tmp_path / "results.jsonl"))
    res.append([{"id": "a"}])
    res.finish(["a"])
    assert list(ResultsFile(res.path).read()) == ["a"]
    assert os.listdir(tmp_path) == ["results.jsonl"]
    assert [r["id"] for r in res.finish(["a"])] == ["a"]  # finishing again needs no partial file


def test_decoded_files_are_this_jobs_and_the_other_jobs(tmp_path):
    for name in ("results.jsonl", "results.1.jsonl", "results.2.jsonl.partial", "tasks.jsonl", "results.3.jsonl.tmp"):
        (tmp_path / name).write_text("")
    job = ResultsFile(str(tmp_path / "results.3.jsonl"))
    # the jobs' concatenation results.jsonl is remade from them (stage 8 with --force keeps the old one)
    assert [os.path.basename(p) for p in job.decoded_files()] == ["results.1.jsonl", "results.2.jsonl.partial"]
    whole = ResultsFile(str(tmp_path / "results.jsonl"))
    assert [os.path.basename(p) for p in whole.decoded_files()] == [
        "results.1.jsonl", "results.2.jsonl.partial", "results.jsonl"]


def test_malformed_middle_line_is_an_error(tmp_path):
    res = ResultsFile(str(tmp_path / "results.jsonl"))
    with open(res.partial, "w") as f:
        f.write('{"id": "a"}\nnot json\n{"id": "b"}\n')
    with pytest.raises(ValueError, match=r"results.jsonl.partial:2: malformed results line"):
        res.read()


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
    assert sorted(ResultsFile(res.path).read()) == ["a", "b"]


def test_settings_guard(tmp_path):
    path = str(tmp_path / "settings.json")
    write_settings(path, {"model": "m", "factor": 1.0, "git": "a"})
    check_settings(path, {"model": "m", "factor": 1.0, "git": "b"}, ["results.1.jsonl"])
    with pytest.raises(ValueError, match=r"\(results.1.jsonl, results.2.jsonl\) were decoded with other "
                                         r"settings \(factor: 1.0 -> None\)"):
        check_settings(path, {"model": "m", "git": "b"}, ["d/results.1.jsonl", "d/results.2.jsonl"])
    check_settings(path, {"model": "m", "git": "b"}, [])  # no results beside it: a fresh run replaces it
    write_settings(path, {"model": "m", "git": "b"})
    assert json.load(open(path)) == {"model": "m", "git": "b"}
    assert os.listdir(tmp_path) == ["settings.json"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # as readable as any file, not mkstemp's 0o600


def test_settings_from_before_audio_dtype_mean_the_whole_model_in_dtype(tmp_path):
    """A settings.json written before --audio_dtype existed decoded everything in ``dtype``: it
    resumes when the audio side is in that dtype too, and is refused otherwise."""
    path = str(tmp_path / "settings.json")
    write_settings(path, {"model": "m", "dtype": "float32", "git": "a"})
    check_settings(path, {"model": "m", "dtype": "float32", "audio_dtype": "float32", "git": "b"}, ["results.1.jsonl"])
    write_settings(path, {"model": "m", "dtype": "bfloat16", "git": "a"})
    with pytest.raises(ValueError, match=r"other settings \(audio_dtype: bfloat16 -> float32\)"):
        check_settings(path, {"model": "m", "dtype": "bfloat16", "audio_dtype": "float32", "git": "b"},
                       ["results.1.jsonl"])
