"""Tests for diffa.data.corpora.recipe and the recipes' local/data.sh on fake corpora."""
import importlib.util
import json
import os
import re
import shutil
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


def recipe_index_sets(recipe_name):
    """The authors' indices a recipe's local/data.py declares."""
    path = REPO / "egs" / recipe_name / "local" / "data.py"
    spec = importlib.util.spec_from_file_location(f"{recipe_name}_data", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.INDEX_SETS


def run_sh_sets(recipe_name):
    """The data sets a recipe's run.sh passes to diffa.sh (--*_train_sets, --dev_set, --test_sets)."""
    lines = [line for line in (REPO / "egs" / recipe_name / "run.sh").read_text().splitlines()
             if not line.lstrip().startswith("#")]
    return {s for m in re.finditer(r'--\w+_sets? "?([^"\\\n]+)', "\n".join(lines)) for s in m.group(1).split()}


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
    assert sets == ["dev_clean", "mmar", "mmau_test_mini", "mmsu", "test_clean", "train_asr", "train_pref", "train_qa",
                    "train_qa_stage2", "train_qa_stage3"]
    assert run_sh_sets("diffa2") <= set(sets)
    tasks = {s: {r["task"] for r in assert_valid(tmp_path / "data" / s)} for s in sets}
    assert tasks == {"dev_clean": {"asr"}, "test_clean": {"asr"}, "train_asr": {"asr"}, "train_qa": {"open_qa"},
                     "train_qa_stage2": {"open_qa"}, "train_qa_stage3": {"open_qa"},
                     "train_pref": {"open_qa"}, "mmsu": {"mcq"}, "mmau_test_mini": {"mcq"}, "mmar": {"mcq"}}
    # One QA index (train_qa.json) serves stages 2 and 3, as one data dir.
    assert [os.readlink(tmp_path / "data" / s) for s in ("train_qa_stage2", "train_qa_stage3")] == ["train_qa"] * 2
    assert len(read_map(tmp_path / "data" / "train_asr" / "wav.scp")) == 4
    assert all("rejected" in r["labels"] for r in read_tasks(str(tmp_path / "data" / "train_pref" / "tasks.jsonl")))
    assert "Stage 4: benchmarks" in done.stderr


def test_diffa_v1_data_sh(all_corpora, tmp_path):
    done = data_sh("diffa", "--corpora_root", str(all_corpora), "--librispeech_parts", "train-clean-100,dev-clean",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    sets = sorted(p.name for p in (tmp_path / "data").iterdir())
    assert sets == ["dev_clean", "mmar", "mmau_test_mini", "mmsu", "train_asr", "train_qa"]
    assert run_sh_sets("diffa") <= set(sets)


def test_diffa2_data_sh_with_the_authors_file_of_each_stage(librispeech, authors_stage_files, tmp_path):
    files = authors_stage_files
    done = data_sh("diffa2", "--corpora_root", str(librispeech.parent), "--stop_stage", "3",
                   "--librispeech_parts", "train-other-500 dev-clean",
                   "--train_asr_json", str(files / "stage1" / "data.json"),
                   "--train_qa_stage2_json", str(files / "sft" / "merged_data.json"),
                   "--train_qa_stage3_json", str(files / "stage3" / "merged_data.json"),
                   "--train_pref_json", str(files / "vrpo" / "data.json"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = tmp_path / "data"
    # No train_qa.json anywhere, and none needed: each QA stage has its own index.
    assert sorted(p.name for p in data.iterdir()) == [
        "dev_clean", "train_asr", "train_pref", "train_qa_stage2", "train_qa_stage3"]
    assert not any(p.is_symlink() for p in data.iterdir())
    rows = {p.name: assert_valid(p) for p in data.iterdir()}
    # The authors' ASR index is data/train_asr: LibriSpeech's train-* parts are not read (train-other-500
    # is not even there); dev-clean still comes from LibriSpeech.
    asr = json.loads((files / "stage1" / "data.json").read_text())
    assert [(r["utt"], r["task"], r["instruction"], r["answer"]) for r in rows["train_asr"]] == [
        (i["audio_id"], "asr", i["input"], i["transcription"]) for i in asr]
    assert "train-other-500" in done.stderr and "not read" in done.stderr
    assert [r["utt"] for r in rows["dev_clean"]] == ["84-121123-0000"]
    for name, index in (("train_qa_stage2", "sft/merged_data.json"), ("train_qa_stage3", "stage3/merged_data.json")):
        items = json.loads((files / index).read_text())
        assert [(r["instruction"], r["answer"]) for r in rows[name]] == [(i["input"], i["target"]) for i in items]


@pytest.mark.parametrize("option", ["train_asr_json", "train_qa_stage2_json", "train_qa_stage3_json"])
def test_a_given_index_that_is_missing_names_the_option_and_the_file(all_corpora, tmp_path, option):
    gone = tmp_path / "gone.json"
    done = data_sh("diffa2", "--corpora_root", str(all_corpora), "--stage", "2", "--stop_stage", "3",
                   "--librispeech_parts", "dev-clean", f"--{option}", str(gone), cwd=tmp_path)
    assert done.returncode == 1
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("local/data.sh: error: ") and f"{gone} not found; set --{option}" in error


def test_stage_indices_found_in_the_authors_folder_replace_the_links(all_corpora, tmp_path):
    index_sets = recipe_index_sets("diffa2")
    data = tmp_path / "data"
    argv = ["--corpora_root", str(all_corpora), "--stage", "3", "--stop_stage", "3", "--datadir", str(data)]
    stage3 = all_corpora / "authors_json" / "train_qa_stage3.json"
    run(argv, index_sets, [])
    assert (data / "train_qa_stage3").is_symlink()
    shutil.copy(all_corpora / "authors_json" / "train_pref.json", stage3)  # two QA items with audio
    names = [s.out_dir.name for s in run(argv, index_sets, [])]
    assert names == ["train_qa", "train_qa_stage3", "train_pref"]
    assert os.readlink(data / "train_qa_stage2") == "train_qa" and not (data / "train_qa_stage3").is_symlink()
    assert [len(read_tasks(str(data / s / "tasks.jsonl"))) for s in ("train_qa", "train_qa_stage3")] == [3, 2]
    stage3.unlink()
    run(argv, index_sets, [])
    assert os.readlink(data / "train_qa_stage3") == "train_qa"
    assert sorted(p.name for p in data.iterdir()) == ["train_pref", "train_qa", "train_qa_stage2", "train_qa_stage3"]


def test_a_stage_without_its_own_index_needs_train_qa(all_corpora, tmp_path):
    index_sets = recipe_index_sets("diffa2")
    (all_corpora / "authors_json" / "train_qa.json").unlink()
    stage2 = all_corpora / "authors_json" / "train_pref.json"  # two QA items with audio
    argv = ["--corpora_root", str(all_corpora), "--stage", "3", "--stop_stage", "3",
            "--datadir", str(tmp_path / "data"), "--train_qa_stage2_json", str(stage2)]
    with pytest.raises(recipe.CorpusNotFound, match=r"stages 2 and 3 .*train_qa\.json not found; set --train_qa_json"):
        run(argv, index_sets, [])
    # '--train_qa_json none' skips it: no stage-3 set then.
    summaries = run(argv + ["--train_qa_json", "none"], index_sets, [])
    assert [s.out_dir.name for s in summaries] == ["train_qa_stage2", "train_pref"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["train_pref", "train_qa_stage2"]


def test_diffa_v1_takes_the_authors_stage1_index(all_corpora, authors_stage_files, tmp_path):
    summaries = run(["--corpora_root", str(all_corpora), "--stop_stage", "3", "--datadir", str(tmp_path / "data"),
                     "--librispeech_parts", "train-clean-100 dev-clean",
                     "--train_asr_json", str(authors_stage_files / "stage1" / "data.json")], recipe_index_sets("diffa"))
    assert [(s.out_dir.name, s.n_utts) for s in summaries] == [("dev_clean", 1), ("train_asr", 1), ("train_qa", 2)]
    assert {r["task"] for r in read_tasks(str(tmp_path / "data" / "train_asr" / "tasks.jsonl"))} == {"asr"}


def test_data_sh_help_and_errors(tmp_path):
    done = data_sh("diffa2", "--help", cwd=tmp_path)
    assert done.returncode == 0
    for option in ("--corpora_root", "--librispeech_parts", "--authors_json_dir", "--mmsu_dir", "--mmau_dir",
                   "--mmar_dir", "--train_pref_json", "--download_librispeech", "--train_asr_json",
                   "--train_qa_stage2_json", "--train_qa_stage3_json"):
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
    # Every index file is checked before the first one is read.
    assert not (tmp_path / "data" / "train_qa").exists()


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
