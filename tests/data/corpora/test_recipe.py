"""Tests for diffa.data.corpora.recipe and the recipes' local/data.sh on fake corpora."""
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from diffa.data.corpora import librispeech as librispeech_module
from diffa.data.corpora import recipe
from diffa.data.corpora.download import DownloadError, md5sum
from diffa.data.kaldi import read_map
from diffa.data.tasks import read_tasks

REPO = Path(__file__).resolve().parents[3]
INDEX_SETS = (recipe.IndexSet("train_qa", "qa", "QA index"), recipe.IndexSet("train_pref", "pref", "preference index"))
PARTS = ("train-clean-100", "train-clean-360", "dev-clean", "test-clean")


def run(argv, index_sets=INDEX_SETS, parts=PARTS):
    return recipe.run(recipe.get_parser("test", parts, index_sets).parse_args(argv), index_sets)


def data_sh(recipe_name, *args, cwd):
    env = dict(os.environ, PYTHON=sys.executable)
    return subprocess.run([str(REPO / "egs" / recipe_name / "local" / "data.sh"), *args],
                          cwd=cwd, env=env, capture_output=True, text=True)


def assert_valid(set_dir):
    """The set passes the data-dir readers' checks and every row's utterance exists."""
    wavs = read_map(set_dir / "wav.scp")
    for name in ("text", "utt2spk", "utt2dur"):
        assert list(read_map(set_dir / name)) == list(wavs)
    rows = read_tasks(str(set_dir / "tasks.jsonl"), utts=wavs)
    assert rows and all(Path(p).is_file() for p in wavs.values())
    return rows


def test_diffa2_data_sh_prepares_every_set(all_corpora, tmp_path):
    done = data_sh("diffa2", "--corpora_root", str(all_corpora), "--librispeech_parts", " ".join(PARTS),
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    sets = sorted(p.name for p in (tmp_path / "data").iterdir())
    assert sets == ["dev_clean", "mmar", "mmau_test_mini", "mmsu", "test_clean", "train_asr", "train_pref", "train_qa"]
    tasks = {s: {r["task"] for r in assert_valid(tmp_path / "data" / s)} for s in sets}
    assert tasks == {"dev_clean": {"asr"}, "test_clean": {"asr"}, "train_asr": {"asr"}, "train_qa": {"open_qa"},
                     "train_pref": {"open_qa"}, "mmsu": {"mcq"}, "mmau_test_mini": {"mcq"}, "mmar": {"mcq"}}
    assert len(read_map(tmp_path / "data" / "train_asr" / "wav.scp")) == 4
    assert all("rejected" in r["labels"] for r in read_tasks(str(tmp_path / "data" / "train_pref" / "tasks.jsonl")))
    assert "Stage 4: benchmarks" in done.stderr


def test_diffa_v1_data_sh(all_corpora, tmp_path):
    done = data_sh("diffa", "--corpora_root", str(all_corpora), "--librispeech_parts", "train-clean-100,dev-clean",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "dev_clean", "mmar", "mmau_test_mini", "mmsu", "train_asr", "train_qa"]


def test_data_sh_help_and_errors(tmp_path):
    done = data_sh("diffa2", "--help", cwd=tmp_path)
    assert done.returncode == 0
    for option in ("--corpora_root", "--librispeech_parts", "--authors_json_dir", "--mmsu_dir", "--mmau_dir",
                   "--mmar_dir", "--train_pref_json", "--download_librispeech"):
        assert option in done.stdout
    done = data_sh("diffa", "--corpora_root", str(tmp_path), "--stage", "4", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"local/data.sh: error: MMSU not found at {tmp_path / 'MMSU'} (no such folder); set --mmsu_dir")
    assert "https://huggingface.co/datasets/ddwang2000/MMSU" in done.stderr


def test_missing_corpus_names_the_option_and_the_source(all_corpora, tmp_path):
    (all_corpora / "MMAU" / "mmau-test-mini.json").unlink()
    with pytest.raises(recipe.CorpusNotFound, match=r"MMAU not found at .*MMAU \(no mmau-test-mini\.json inside\); "
                                                     r"set --mmau_dir .*'--mmau_dir none' to skip it\. "
                                                     r"Download: https://github\.com/Sakshi113/MMAU"):
        run(["--corpora_root", str(all_corpora), "--stage", "4", "--datadir", str(tmp_path / "data")])
    with pytest.raises(recipe.CorpusNotFound, match=r"MMSU: set --mmsu_dir \(or --corpora_root\)"):
        run(["--stage", "4"])
    with pytest.raises(recipe.CorpusNotFound, match=r"LibriSpeech part\(s\) \['dev-other'\] not found"):
        run(["--corpora_root", str(all_corpora), "--stage", "2", "--stop_stage", "2",
             "--librispeech_parts", "dev-clean dev-other"])
    (all_corpora / "authors_json" / "train_pref.json").unlink()
    with pytest.raises(recipe.CorpusNotFound, match=r"preference index: .*train_pref\.json not found; "
                                                     r"set --train_pref_json"):
        run(["--corpora_root", str(all_corpora), "--stage", "3", "--stop_stage", "3",
             "--datadir", str(tmp_path / "data")])
    assert (tmp_path / "data" / "train_qa" / "tasks.jsonl").is_file()


def test_none_skips_and_explicit_paths(all_corpora, tmp_path):
    summaries = run([
        "--stage", "3", "--datadir", str(tmp_path / "data"), "--train_pref_json", "none",
        "--train_qa_json", str(all_corpora / "authors_json" / "train_qa.json"),
        "--mmsu_dir", "none", "--mmau_dir", str(all_corpora / "MMAU"), "--mmar_dir", "none",
    ])
    assert [s.out_dir.name for s in summaries] == ["train_qa", "mmau_test_mini"]


def test_download_stage_fetches_from_a_mirror(librispeech, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with tarfile.open(mirror / "dev-clean.tar.gz", "w:gz") as tar:
        tar.add(librispeech / "dev-clean", arcname="LibriSpeech/dev-clean")
    new_root = tmp_path / "fresh"
    argv = ["--corpora_root", str(new_root), "--download_librispeech", "true", "--librispeech_url", mirror.as_uri(),
            "--stop_stage", "2", "--datadir", str(tmp_path / "data")]
    # The official checksum does not match the fake tarball: nothing is unpacked.
    with pytest.raises(DownloadError,
                       match=r"dev-clean\.tar\.gz\.part: MD5 .* != expected 42e2234ba48799c1f50f24a7926300a1"):
        run(argv, [], ["dev-clean"])
    assert not (new_root / "LibriSpeech").exists()
    (new_root / "dev-clean.tar.gz.part").unlink()
    monkeypatch.setitem(librispeech_module.LIBRISPEECH_MD5, "dev-clean", md5sum(mirror / "dev-clean.tar.gz"))
    assert [s.out_dir.name for s in run(argv, [], ["dev-clean"])] == ["dev_clean"]
    assert (new_root / "LibriSpeech" / "dev-clean" / "84" / "121123" / "84-121123-0000.flac").is_file()


def test_bad_options(all_corpora):
    with pytest.raises(ValueError, match="--stage 3 is after --stop_stage 2"):
        run(["--stage", "3", "--stop_stage", "2"])
    with pytest.raises(ValueError, match=r"unknown part\(s\) \['train-clean-960'\]"):
        run(["--corpora_root", str(all_corpora), "--stage", "2", "--stop_stage", "2",
             "--librispeech_parts", "train-clean-960"])
    with pytest.raises(ValueError, match="needs --corpora_root, or a --librispeech_dir whose last component is "
                                         "LibriSpeech"):
        run(["--librispeech_dir", str(all_corpora), "--download_librispeech", "true", "--stop_stage", "1"])
    with pytest.raises(ValueError, match="kind must be one of"):
        recipe.IndexSet("train_x", "sft", "x")
