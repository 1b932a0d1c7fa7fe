"""utils/validate_data_dir.py: a valid directory passes; each kind of defect is named precisely."""
import json
import os

import pytest


def replace_line(path, index, new):
    """Replace line ``index`` (0-based) of a file with ``new`` (bytes or str, no line end)."""
    lines = path.read_bytes().splitlines(keepends=True)
    lines[index] = (new.encode() if isinstance(new, str) else new) + b"\n"
    path.write_bytes(b"".join(lines))


def test_valid_dir_passes(run_util, data_dir):
    result = run_util("validate_data_dir.py", data_dir)
    assert result.returncode == 0, result.stderr
    assert f"{data_dir}: OK (6 utterances, 3 speakers, 6 tasks)" in result.stdout


def test_a_set_without_transcripts_passes(run_util, data_dir):
    """Audio questions need no text: their references are in tasks.jsonl."""
    (data_dir / "text").unlink()
    result = run_util("validate_data_dir.py", data_dir)
    assert result.returncode == 0, result.stderr
    assert f"{data_dir}: OK (6 utterances, 3 speakers, 6 tasks)" in result.stdout


def test_a_multiple_choice_answer_other_than_its_gold_choice_is_noted(run_util, data_dir):
    utt = (data_dir / "wav.scp").read_text().split()[0]
    with open(data_dir / "tasks.jsonl", "a") as f:  # ids sort after the ASR rows'
        f.write(json.dumps({"id": "zz-mcq", "utt": utt, "task": "mcq", "instruction": "Kind? (A) beeps (B) melody",
                            "answer": "melody", "choices": ["beeps", "melody"], "gold": 0}) + "\n")
    result = run_util("validate_data_dir.py", data_dir)
    assert result.returncode == 0, result.stderr
    assert (f"{data_dir}: note: 1 multiple-choice row(s) whose answer is not their gold choice (first: zz-mcq); "
            "scoring follows gold") in result.stdout


def swap_first_lines(d):
    lines = (d / "text").read_text().splitlines()
    lines[0], lines[1] = lines[1], lines[0]
    (d / "text").write_text("\n".join(lines) + "\n")


def duplicate_line(d):
    lines = (d / "utt2spk").read_text().splitlines()
    (d / "utt2spk").write_text("\n".join(lines[:1] + lines) + "\n")


def drop_text_line(d):
    lines = (d / "text").read_text().splitlines()
    (d / "text").write_text("\n".join(lines[:-1]) + "\n")


def extra_utt2spk_line(d):
    with open(d / "utt2spk", "a") as f:
        f.write("spkD-1 spkD\n")


def remove_audio(d):
    path = (d / "wav.scp").read_text().splitlines()[2].split()[1]
    os.remove(path)


def empty_text(d):
    replace_line(d / "text", 2, "spkB-1")


def non_utf8_text(d):
    replace_line(d / "text", 1, b"spkA-2 caf\xe9")


def wrong_spk2utt(d):
    replace_line(d / "spk2utt", 0, "spkA spkA-1")


def zero_duration(d):
    replace_line(d / "utt2dur", 3, "spkB-2 0")


def bad_json(d):
    replace_line(d / "tasks.jsonl", 1, '{"id": "spkA-2-asr", "utt": ')


def unknown_task_utt(d):
    line = (d / "tasks.jsonl").read_text().splitlines()[5].replace('"utt": "spkC-2"', '"utt": "spkZ-9"')
    replace_line(d / "tasks.jsonl", 5, line)


def missing_utt2spk(d):
    (d / "utt2spk").unlink()


@pytest.mark.parametrize(
    "damage, message",
    [
        (swap_first_lines, "text:2: spkA-1: comes after spkA-2 (not sorted)"),
        (duplicate_line, "utt2spk:2: spkA-1: duplicate id (first on line 1)"),
        (drop_text_line, "text: spkC-2: missing (it is in wav.scp)"),
        (extra_utt2spk_line, "utt2spk:7: spkD-1: not in wav.scp"),
        (remove_audio, "wav.scp:3: spkB-1: audio file "),
        (empty_text, "text:3: spkB-1: empty transcript"),
        (non_utf8_text, "text:2: not valid UTF-8 (byte 10 of the line)"),
        (wrong_spk2utt, "spk2utt:1: spkA: lists 1 utterances, utt2spk gives 2"),
        (zero_duration, "utt2dur:4: spkB-2: duration must be > 0 seconds, got '0'"),
        (bad_json, "tasks.jsonl:2: not valid JSON"),
        (unknown_task_utt, "tasks.jsonl:6: spkC-2-asr: utt spkZ-9 is not in wav.scp"),
        (missing_utt2spk, "utt2spk: missing (every data directory needs it)"),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_each_defect_is_named(run_util, data_dir, damage, message):
    damage(data_dir)
    result = run_util("validate_data_dir.py", data_dir)
    assert result.returncode == 1
    assert f"{data_dir}/{message}" in result.stderr, result.stderr
    assert "OK" not in result.stdout


def test_no_audio_check(run_util, data_dir):
    remove_audio(data_dir)
    assert run_util("validate_data_dir.py", data_dir).returncode == 1
    result = run_util("validate_data_dir.py", "--no_audio_check", data_dir)
    assert result.returncode == 0, result.stderr


def test_listing_is_capped(run_util, data_dir):
    (data_dir / "text").write_text("".join(f"u{i}\n" for i in range(9)))
    result = run_util("validate_data_dir.py", "--max_errors", 3, data_dir)
    assert result.returncode == 1
    listed = [line for line in result.stderr.splitlines() if line.startswith(f"{data_dir}/")]
    assert len(listed) == 3
    assert "... and " in result.stderr


def test_several_dirs_and_a_missing_one(run_util, make_dir, tmp_path):
    good = make_dir("dev")
    result = run_util("validate_data_dir.py", good, tmp_path / "nowhere")
    assert result.returncode == 1
    assert f"{good}: OK" in result.stdout
    assert f"{tmp_path}/nowhere: not a directory" in result.stderr


def test_help(run_util):
    result = run_util("validate_data_dir.py", "--help")
    assert result.returncode == 0
    assert "--no_audio_check" in result.stdout and "Usage:" in result.stdout


def test_empty_dir_is_an_error(run_util, data_dir):
    for name in ("wav.scp", "text", "utt2spk", "spk2utt", "utt2dur", "tasks.jsonl"):
        (data_dir / name).write_text("")
    result = run_util("validate_data_dir.py", data_dir)
    assert result.returncode == 1
    assert f"{data_dir} has no utterances: " in result.stderr, result.stderr
    assert "OK" not in result.stdout


def test_byte_order_mark_is_named_once(run_util, data_dir):
    (data_dir / "text").write_bytes(b"\xef\xbb\xbf" + (data_dir / "text").read_bytes())
    result = run_util("validate_data_dir.py", data_dir)
    assert result.returncode == 1
    text = data_dir / "text"
    assert (f"{text}:1: starts with a UTF-8 byte-order mark; remove it "
            f"(e.g. sed -i '1s/^\\xEF\\xBB\\xBF//' {text})") in result.stderr, result.stderr
    assert "1 problem(s)" in result.stderr and "\ufeff" not in result.stderr


def test_pipe_in_wav_scp_is_named_as_unsupported(run_util, data_dir):
    replace_line(data_dir / "wav.scp", 0, "spkA-1 sox in.flac -t wav - |")
    result = run_util("validate_data_dir.py", data_dir)
    assert result.returncode == 1
    assert (f"{data_dir}/wav.scp:1: spkA-1: sox in.flac -t wav - |: pipe commands are not "
            "supported; write the audio to files") in result.stderr, result.stderr
    assert "does not exist" not in result.stderr
