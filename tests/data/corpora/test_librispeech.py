"""Tests for diffa.data.corpora.librispeech on a fake corpus in the official layout."""
import tarfile
import zlib

import pytest
import soundfile

from diffa.data.corpora.download import DownloadError, md5sum
from diffa.data.corpora.librispeech import (
    ASR_INSTRUCTIONS, LIBRISPEECH_MD5, asr_instruction, download_librispeech, prepare_librispeech,
)
from diffa.data.corpora.records import CorpusError
from diffa.data.kaldi import read_map
from diffa.data.tasks import read_tasks

TRAIN_UTTS = ["103-1240-0000", "14-208-0000", "19-198-0000", "19-198-0001"]


def test_train_parts_merge_into_one_asr_set(librispeech, tmp_path):
    out = tmp_path / "data" / "train_asr"
    summary = prepare_librispeech(librispeech, ["train-clean-100", "train-clean-360"], out)
    assert (summary.n_utts, summary.n_rows, summary.dropped) == (4, 4, [])
    wavs = read_map(out / "wav.scp")
    assert list(wavs) == TRAIN_UTTS
    assert wavs["19-198-0001"] == str(librispeech / "train-clean-100" / "19" / "198" / "19-198-0001.flac")
    assert read_map(out / "text") == {
        "103-1240-0000": "SHE OPENED THE DOOR", "14-208-0000": "HE WALKED HOME",
        "19-198-0000": "THE BIRDS SANG", "19-198-0001": "IT WAS A FINE DAY",
    }
    assert read_map(out / "spk2utt") == {"103": "103-1240-0000", "14": "14-208-0000", "19": "19-198-0000 19-198-0001"}
    durations = read_map(out / "utt2dur", float)
    for utt, path in wavs.items():
        info = soundfile.info(path)
        assert durations[utt] == pytest.approx(info.frames / info.samplerate, abs=1e-4)
    rows = read_tasks(str(out / "tasks.jsonl"), utts=wavs)
    text = read_map(out / "text")
    for row in rows:
        assert row["task"] == "asr" and row["source"] == "LibriSpeech"
        assert row["answer"] == text[row["utt"]]
        assert row["instruction"] == asr_instruction(row["utt"])
    assert rows[0]["labels"] == {"subset": "train-clean-100", "gender": "female"}
    assert rows[1]["labels"] == {"subset": "train-clean-360", "gender": "female"}


def test_gender_label_needs_speakers_txt(librispeech, tmp_path):
    (librispeech / "SPEAKERS.TXT").unlink()
    prepare_librispeech(librispeech, ["test-clean"], tmp_path / "test_clean")
    row, = read_tasks(str(tmp_path / "test_clean" / "tasks.jsonl"))
    assert row["labels"] == {"subset": "test-clean"}


def test_test_parts_get_the_authors_evaluation_instruction(librispeech, tmp_path):
    # DIFFA-2's run_asr_inference.sh / inference_stage1_asr.py prompt every test utterance so
    prepare_librispeech(librispeech, ["test-clean"], tmp_path / "test_clean")
    row, = read_tasks(str(tmp_path / "test_clean" / "tasks.jsonl"))
    assert row["instruction"] == "Please transcribe the audio to text."


def test_25_distinct_instructions_picked_deterministically():
    assert len(ASR_INSTRUCTIONS) == len(set(ASR_INSTRUCTIONS)) == 25
    assert all(s[0].isupper() and s[-1] in ".?" for s in ASR_INSTRUCTIONS)
    utts = [f"{s}-{c}-{n:04d}" for s in (19, 103, 6930) for c in (198, 75918) for n in range(40)]
    picks = [asr_instruction(u) for u in utts]
    # the documented rule (CRC-32 of the id), the same in every process, unlike hash()
    assert picks == [ASR_INSTRUCTIONS[zlib.crc32(u.encode("utf-8")) % 25] for u in utts]
    assert len(set(picks)) == 25


def test_missing_flac_is_dropped_by_id(librispeech, tmp_path):
    (librispeech / "train-clean-100" / "19" / "198" / "19-198-0001.flac").unlink()
    summary = prepare_librispeech(librispeech, ["train-clean-100"], tmp_path / "train")
    assert summary.dropped == ["19-198-0001"]
    assert list(read_map(tmp_path / "train" / "wav.scp")) == ["103-1240-0000", "19-198-0000"]


def test_malformed_transcript_line_is_named(librispeech, tmp_path):
    trans = librispeech / "dev-clean" / "84" / "121123" / "84-121123.trans.txt"
    trans.write_text(trans.read_text() + "84-999-0001 WRONG CHAPTER\n")
    with pytest.raises(CorpusError, match=rf"{trans}:2: expected '84-121123-<n> TRANSCRIPT'"):
        prepare_librispeech(librispeech, ["dev-clean"], tmp_path / "dev")
    trans.write_text("84-121123-0000\n")
    with pytest.raises(CorpusError, match=rf"{trans}:1: expected"):
        prepare_librispeech(librispeech, ["dev-clean"], tmp_path / "dev")


def test_missing_part_or_transcript(librispeech, tmp_path):
    with pytest.raises(FileNotFoundError,
                       match=r"LibriSpeech part 'dev-other' not found; download it .*dev-other\.tar\.gz"):
        prepare_librispeech(librispeech, ["dev-other"], tmp_path / "dev")
    (librispeech / "dev-clean" / "84" / "121123" / "84-121123.trans.txt").unlink()
    with pytest.raises(CorpusError, match=r"121123: no 84-121123\.trans\.txt"):
        prepare_librispeech(librispeech, ["dev-clean"], tmp_path / "dev")


def test_official_checksums_cover_every_part():
    assert sorted(LIBRISPEECH_MD5) == sorted(
        ["dev-clean", "dev-other", "test-clean", "test-other", "train-clean-100", "train-clean-360", "train-other-500"])
    assert LIBRISPEECH_MD5["train-clean-100"] == "2a93770f6d5c6c964bc36631d331a522"


def test_download_then_prepare(librispeech, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with tarfile.open(mirror / "test-clean.tar.gz", "w:gz") as tar:
        tar.add(librispeech / "test-clean", arcname="LibriSpeech/test-clean")
    sums = {"test-clean": md5sum(mirror / "test-clean.tar.gz")}
    root = download_librispeech(["test-clean"], tmp_path / "new", mirror.as_uri(), sums)
    assert root == tmp_path / "new" / "LibriSpeech"
    assert (tmp_path / "new" / "test-clean.tar.gz").is_file()
    summary = prepare_librispeech(root, ["test-clean"], tmp_path / "data" / "test_clean")
    assert summary.n_utts == 1
    with pytest.raises(DownloadError, match="MD5"):
        download_librispeech(["test-clean"], tmp_path / "other", mirror.as_uri(), {"test-clean": "0" * 32})
    with pytest.raises(ValueError, match="unknown LibriSpeech part 'test-dirty'"):
        download_librispeech(["test-dirty"], tmp_path / "other", mirror.as_uri(), sums)
