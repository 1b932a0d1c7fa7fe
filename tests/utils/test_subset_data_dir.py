"""utils/subset_data_dir.py: --first, --last and --utt_list copies, with their tasks."""
import json

import pytest


@pytest.mark.parametrize(
    "selector, expected",
    [
        (["--first", "2"], ["spkA-1", "spkA-2"]),
        (["--last", "3"], ["spkB-2", "spkC-1", "spkC-2"]),
        (["--utt_list", "LIST"], ["spkA-2", "spkC-1"]),
    ],
)
def test_subset(run_util, read_ids, data_dir, tmp_path, selector, expected):
    (tmp_path / "list").write_text("spkC-1\nspkA-2 ignored fields\n")
    selector = [str(tmp_path / "list") if arg == "LIST" else arg for arg in selector]
    dest = tmp_path / "subset"
    result = run_util("subset_data_dir.py", *selector, data_dir, dest)
    assert result.returncode == 0, result.stderr
    for name in ("wav.scp", "text", "utt2spk", "utt2dur"):
        assert read_ids(dest / name) == expected
    assert [json.loads(line)["utt"] for line in (dest / "tasks.jsonl").read_text().splitlines()] == expected
    assert run_util("validate_data_dir.py", dest).returncode == 0


def test_unknown_listed_utterance(run_util, data_dir, tmp_path):
    (tmp_path / "list").write_text("spkA-1\nnobody-1\n")
    result = run_util("subset_data_dir.py", "--utt_list", tmp_path / "list", data_dir, tmp_path / "s")
    assert result.returncode == 1
    assert "1 id(s) are not utterances of the source, e.g. nobody-1" in result.stderr


@pytest.mark.parametrize("count", [0, 7])
def test_count_out_of_range(run_util, data_dir, tmp_path, count):
    result = run_util("subset_data_dir.py", "--first", count, data_dir, tmp_path / "s")
    assert result.returncode == 1
    assert "N must be 1..6" in result.stderr


def test_selectors_are_exclusive_and_dest_differs(run_util, data_dir, tmp_path):
    both = run_util("subset_data_dir.py", "--first", 1, "--last", 1, data_dir, tmp_path / "s")
    assert both.returncode == 2 and "not allowed with" in both.stderr
    same = run_util("subset_data_dir.py", "--first", 1, data_dir, data_dir)
    assert same.returncode == 1 and "must differ from the source" in same.stderr


def test_tasks_selects_task_rows_and_their_utterances(run_util, read_ids, data_dir, tmp_path):
    rows = [json.loads(line) for line in (data_dir / "tasks.jsonl").read_text().splitlines()]
    qa = {"id": "spkB-1-qa", "utt": "spkB-1", "task": "open_qa", "instruction": "Who?", "answer": "b"}
    rows = sorted(rows + [qa], key=lambda r: r["id"])
    (data_dir / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    dest = tmp_path / "qa"
    result = run_util("subset_data_dir.py", "--tasks", "open_qa", data_dir, dest)
    assert result.returncode == 0, result.stderr
    assert read_ids(dest / "text") == ["spkB-1"]
    assert [json.loads(line)["id"] for line in (dest / "tasks.jsonl").read_text().splitlines()] == ["spkB-1-qa"]
    assert run_util("validate_data_dir.py", dest).returncode == 0
    first = run_util("subset_data_dir.py", "--first", 2, "--tasks", "open_qa", data_dir, tmp_path / "none")
    assert first.returncode == 1 and "none of the selected utterances has a task of type open_qa" in first.stderr


def test_unknown_task_type_and_no_selection(run_util, data_dir, tmp_path):
    result = run_util("subset_data_dir.py", "--tasks", "nope", data_dir, tmp_path / "s")
    assert result.returncode == 1 and "has no task of type nope (it has: asr" in result.stderr
    none = run_util("subset_data_dir.py", data_dir, tmp_path / "s")
    assert none.returncode == 1 and "say what to keep" in none.stderr


def test_utt_list_that_is_not_utf8_names_file_and_line(run_util, data_dir, tmp_path):
    (tmp_path / "list").write_bytes(b"spkA-1\nspkC-1 caf\xe9\n")
    result = run_util("subset_data_dir.py", "--utt_list", tmp_path / "list", data_dir, tmp_path / "s")
    assert result.returncode == 1
    assert f"{tmp_path}/list:2: not valid UTF-8" in result.stderr, result.stderr
    assert not (tmp_path / "s").exists()
