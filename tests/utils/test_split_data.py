"""utils/split_data.py: balanced contiguous parts that are complete data dirs, remade when stale."""
import json
import os


def test_split_into_balanced_contiguous_parts(run_util, read_ids, data_dir):
    result = run_util("split_data.py", data_dir, 4)
    assert result.returncode == 0, result.stderr
    parts = [data_dir / "split4" / str(i) for i in range(1, 5)]
    ids = [read_ids(part / "wav.scp") for part in parts]
    assert [len(part) for part in ids] == [2, 2, 1, 1]
    assert sum(ids, []) == read_ids(data_dir / "wav.scp")
    for part, utts in zip(parts, ids):
        for name in ("text", "utt2spk", "utt2dur"):
            assert read_ids(part / name) == utts
        tasks = [json.loads(line)["utt"] for line in (part / "tasks.jsonl").read_text().splitlines()]
        assert tasks == utts
        assert run_util("validate_data_dir.py", part).returncode == 0
    assert sorted(os.listdir(data_dir / "split4")) == [".done", "1", "2", "3", "4"]


def test_split_is_kept_until_the_source_changes(run_util, read_ids, data_dir):
    assert run_util("split_data.py", data_dir, 2).returncode == 0
    again = run_util("split_data.py", data_dir, 2)
    assert again.returncode == 0 and "already split" in again.stdout
    # Drop an utterance: the split is remade from the newer source.
    assert run_util("subset_data_dir.py", "--first", 5, data_dir, data_dir.parent / "five").returncode == 0
    for name in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur", "tasks.jsonl"):
        os.replace(data_dir.parent / "five" / name, data_dir / name)
    redo = run_util("split_data.py", data_dir, 2)
    assert redo.returncode == 0 and "already split" not in redo.stdout
    assert [len(read_ids(data_dir / "split2" / p / "wav.scp")) for p in "12"] == [3, 2]
    # A source file replaced by one with an older time (mv, cp -p, tar) is a change too.
    text = data_dir / "text"
    old = os.stat(text).st_mtime - 3600
    text.write_text(text.read_text().replace(" ", " X ", 1))
    os.utime(text, (old, old))
    moved = run_util("split_data.py", data_dir, 2)
    assert moved.returncode == 0 and "already split" not in moved.stdout
    assert " X " in (data_dir / "split2" / "1" / "text").read_text()


def test_more_parts_than_utterances(run_util, data_dir):
    result = run_util("split_data.py", data_dir, 7)
    assert result.returncode == 1
    assert "cannot split 6 utterances into 7 parts" in result.stderr
    assert not (data_dir / "split7").exists()


def test_invalid_source_is_refused(run_util, data_dir):
    (data_dir / "text").write_text("spkA-1 hi\n")
    result = run_util("split_data.py", data_dir, 2)
    assert result.returncode == 1
    assert "is not a valid data directory" in result.stderr
    assert "text: spkA-2: missing (it is in wav.scp)" in result.stderr
