"""utils/fix_data_dir.py: keeps the utterances every file has, sorted, and reports what went."""
import json

FILES = ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur", "tasks.jsonl")


def test_keeps_the_intersection_and_reports_drops(run_util, read_ids, data_dir):
    originals = {name: (data_dir / name).read_text() for name in FILES}
    text = (data_dir / "text").read_text().splitlines()
    # text: unsorted, spkB-1 has an empty transcript, spkC-2 is missing; utt2spk: an extra utterance.
    (data_dir / "text").write_text("\n".join([text[1], text[0], "spkB-1", *text[3:5]]) + "\n")
    with open(data_dir / "utt2spk", "a") as f:
        f.write("spkD-1 spkD\n")
    with open(data_dir / "tasks.jsonl", "a") as f:
        f.write("not json\n")

    result = run_util("fix_data_dir.py", data_dir)
    assert result.returncode == 0, result.stderr
    kept = ["spkA-1", "spkA-2", "spkB-2", "spkC-1"]
    for name in ("wav.scp", "text", "utt2spk", "utt2dur"):
        assert read_ids(data_dir / name) == kept
    assert (data_dir / "spk2utt").read_text() == "spkA spkA-1 spkA-2\nspkB spkB-2\nspkC spkC-1\n"
    tasks = [json.loads(line) for line in (data_dir / "tasks.jsonl").read_text().splitlines()]
    assert [row["utt"] for row in tasks] == kept
    assert "kept 4 utterances" in result.stdout
    assert "wav.scp: 6 -> 4 lines (2 dropped)" in result.stdout
    assert "text: 5 -> 4 lines (1 dropped)" in result.stdout
    assert "utt2spk: 7 -> 4 lines (3 dropped)" in result.stdout
    assert "tasks.jsonl: 7 -> 4 lines (3 dropped)" in result.stdout
    assert (data_dir / ".backup" / "utt2spk").read_text() == originals["utt2spk"] + "spkD-1 spkD\n"
    assert run_util("validate_data_dir.py", data_dir).returncode == 0


def test_a_valid_dir_is_unchanged(run_util, data_dir):
    before = {name: (data_dir / name).read_bytes() for name in FILES}
    result = run_util("fix_data_dir.py", data_dir)
    assert result.returncode == 0, result.stderr
    assert {name: (data_dir / name).read_bytes() for name in FILES} == before
    assert "(0 dropped)" in result.stdout and "dropped)" in result.stdout


def test_a_set_without_transcripts_is_repaired_without_one(run_util, read_ids, data_dir):
    (data_dir / "text").unlink()
    lines = (data_dir / "utt2spk").read_text().splitlines()
    (data_dir / "utt2spk").write_text("\n".join(lines[:2] + lines[3:]) + "\n")  # one utterance less
    result = run_util("fix_data_dir.py", data_dir)
    assert result.returncode == 0, result.stderr
    assert not (data_dir / "text").exists()
    assert read_ids(data_dir / "wav.scp") == read_ids(data_dir / "utt2spk") and len(read_ids(data_dir / "wav.scp")) == 5
    assert run_util("validate_data_dir.py", data_dir).returncode == 0


def test_missing_required_file_is_an_error(run_util, data_dir):
    (data_dir / "utt2spk").unlink()
    before = (data_dir / "text").read_bytes()
    result = run_util("fix_data_dir.py", data_dir)
    assert result.returncode == 1
    assert f"{data_dir} has no utt2spk" in result.stderr
    assert (data_dir / "text").read_bytes() == before


def test_no_common_utterance_writes_nothing(run_util, data_dir):
    (data_dir / "text").write_text("other-1 hello\n")
    before = (data_dir / "wav.scp").read_bytes()
    result = run_util("fix_data_dir.py", data_dir)
    assert result.returncode == 1
    assert "nothing written" in result.stderr
    assert (data_dir / "wav.scp").read_bytes() == before


def test_byte_order_mark_is_removed_and_reported(run_util, read_ids, data_dir):
    (data_dir / "text").write_bytes(b"\xef\xbb\xbf" + (data_dir / "text").read_bytes())
    result = run_util("fix_data_dir.py", data_dir)
    assert result.returncode == 0, result.stderr
    assert "kept 6 utterances" in result.stdout
    assert f"{data_dir}/text:1: starts with a UTF-8 byte-order mark" in result.stdout
    assert not (data_dir / "text").read_bytes().startswith(b"\xef\xbb\xbf")
    assert run_util("validate_data_dir.py", data_dir).returncode == 0


def test_tasks_failing_the_schema_are_dropped_and_named(run_util, data_dir):
    rows = [json.loads(line) for line in (data_dir / "tasks.jsonl").read_text().splitlines()]
    del rows[1]["answer"]
    rows[3]["instruction"] = 5
    (data_dir / "tasks.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = run_util("fix_data_dir.py", data_dir)
    assert result.returncode == 0, result.stderr
    assert "kept 6 utterances" in result.stdout
    assert "tasks.jsonl: 6 -> 4 lines (2 dropped)" in result.stdout
    assert f"{data_dir}/tasks.jsonl:2: missing required key(s) ['answer']" in result.stdout
    assert f"{data_dir}/tasks.jsonl:4: 'instruction' must be a non-empty string" in result.stdout
    assert run_util("validate_data_dir.py", data_dir).returncode == 0


def test_a_second_run_keeps_the_first_backup(run_util, data_dir):
    with open(data_dir / "utt2spk", "a") as f:
        f.write("spkD-1 spkD\n")
    original = (data_dir / "utt2spk").read_text()
    assert run_util("fix_data_dir.py", data_dir).returncode == 0
    fixed = (data_dir / "utt2spk").read_text()
    second = run_util("fix_data_dir.py", data_dir)
    assert second.returncode == 0, second.stderr
    assert f"old files in {data_dir}/.backup.1" in second.stdout
    assert (data_dir / ".backup" / "utt2spk").read_text() == original
    assert (data_dir / ".backup.1" / "utt2spk").read_text() == fixed
    assert ".backup.1" in run_util("fix_data_dir.py", "--help").stdout
