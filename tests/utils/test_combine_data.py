"""utils/combine_data.py: merging splits gives back the source; duplicate ids are errors."""
FILES = ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur", "tasks.jsonl")


def test_split_then_combine_round_trip(run_util, data_dir, tmp_path):
    assert run_util("split_data.py", data_dir, 3).returncode == 0
    parts = [data_dir / "split3" / str(i) for i in (3, 1, 2)]
    dest = tmp_path / "combined"
    result = run_util("combine_data.py", dest, *parts)
    assert result.returncode == 0, result.stderr
    assert "6 utterances from 3 directories" in result.stdout
    for name in FILES:
        assert (dest / name).read_text() == (data_dir / name).read_text(), name


def test_duplicate_utterance_names_both_sources(run_util, make_dir, tmp_path):
    a = make_dir("a", ["spkA-1", "spkA-2"])
    b = make_dir("b", ["spkA-2", "spkB-1"])
    result = run_util("combine_data.py", tmp_path / "ab", a, b)
    assert result.returncode == 1
    assert f"utterance spkA-2 is in both {a} and {b}" in result.stderr
    assert not (tmp_path / "ab").exists()


def test_optional_files_some_sources_lack(run_util, read_ids, make_dir, tmp_path):
    a = make_dir("a", ["spkA-1", "spkA-2"])
    b = make_dir("b", ["spkB-1"])
    (b / "utt2dur").unlink()
    (b / "tasks.jsonl").unlink()
    (b / "text").unlink()
    result = run_util("combine_data.py", tmp_path / "ab", a, b)
    assert result.returncode == 0, result.stderr
    assert f"utt2dur left out: {b} has none" in result.stderr
    assert f"text left out: {b} has none" in result.stderr
    assert not (tmp_path / "ab" / "utt2dur").exists() and not (tmp_path / "ab" / "text").exists()
    assert read_ids(tmp_path / "ab" / "wav.scp") == ["spkA-1", "spkA-2", "spkB-1"]
    assert len((tmp_path / "ab" / "tasks.jsonl").read_text().splitlines()) == 2
    assert run_util("validate_data_dir.py", tmp_path / "ab").returncode == 0


def test_destination_is_a_source(run_util, data_dir, make_dir):
    other = make_dir("other", ["spkZ-1"])
    result = run_util("combine_data.py", data_dir, data_dir, other)
    assert result.returncode == 1 and "is also a source" in result.stderr
