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
