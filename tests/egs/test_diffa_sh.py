"""egs/TEMPLATE/diffa.sh, the stage engine, on a throw-away recipe directory.

The recipe has a local/data.sh that writes three tiny sets with sox-made wavs. Most tests put a
fake ``diffa`` package first on PYTHONPATH whose entry points record their arguments and write
what the engine expects, so that every stage's wiring is tested without models; others run the
real feature extractor (stages 1-2) and, on two fake Slurm nodes (the ``fake_slurm`` fixture of
tests/conftest.py), the real trainer.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA_SH = r"""#!/usr/bin/env bash
# Fake corpus: sets train (4 utts), dev and test (2 each); BREAK_DATA=1 writes an unsorted text,
# DATA_WORD other transcripts, WAV_DIR the audio elsewhere.
set -euo pipefail
datadir=data
while [ $# -gt 0 ]; do
  case "$1" in
    --datadir) datadir=$2; shift 2 ;;
    --nj) shift 2 ;;
    *) echo "local/data.sh: unknown option $1" >&2; exit 1 ;;
  esac
done
echo "local/data.sh --datadir $datadir" >>calls.log
echo "${PYTHON:-}" >>python.log
for set in train dev test; do
  d=$datadir/$set
  wavs=${WAV_DIR:-wav}
  mkdir -p "$d" "$wavs"
  rm -rf "$d"/*
  n=$([ $set = train ] && echo 2 || echo 1)
  for spk in s1 s2; do
    for i in $(seq $n); do
      utt=$spk-$set-$i
      sox -n -r 16000 -c 1 -b 16 $wavs/$utt.wav synth 0.$((i + 1)) sine 300 2>/dev/null
      echo "$utt $wavs/$utt.wav" >>"$d/wav.scp"
      echo "$utt ${DATA_WORD:-hello} $i" >>"$d/text"
      echo "$utt $spk" >>"$d/utt2spk"
      printf '{"id": "%s-asr", "utt": "%s", "task": "asr", "instruction": "Transcribe.", "answer": "hello %s"}\n' \
        "$utt" "$utt" "$i" >>"$d/tasks.jsonl"
    done
    echo "$spk $(grep "^$spk-" "$d/utt2spk" | cut -d' ' -f1 | xargs)" >>"$d/spk2utt"
  done
  if [ "${BREAK_DATA:-0}" = 1 ]; then sort -r -o "$d/text" "$d/text"; fi
done
"""
FAKE_ENTRY_POINT = r'''"""Fake diffa.bin.{name}: records its arguments, writes the files the engine reads."""
import json
import os
import sys

args = sys.argv[1:]
opt = lambda key: args[args.index(key) + 1]  # noqa: E731
with open(os.environ["DIFFA_FAKE_CALLS"], "a") as f:
    f.write(json.dumps(["{name}"] + args) + "\n")
with open(os.environ["DIFFA_FAKE_CALLS"] + ".gpus", "a") as f:  # the GPUs the entry point may use
    f.write(repr(os.environ.get("CUDA_VISIBLE_DEVICES")) + "\n")
with open(os.environ["DIFFA_FAKE_CALLS"] + ".ranks", "a") as f:  # where torchrun (under srun) put it
    f.write(" ".join(["{name}"] + [os.environ.get(k, "-") for k in ("SLURM_NODEID", "RANK", "LOCAL_RANK", "WORLD_SIZE")]) + "\n")
fail = os.environ.get("DIFFA_FAKE_FAIL", "")
if fail == "{name}" or (fail and "--job" in args and fail == "{name}." + opt("--job")):
    sys.exit(3)
if "{name}" == "extract_feats":
    out, job = opt("--out_dir") + "/data", opt("--job")
    utts = [line.split()[0] for line in open(opt("--data_dir") + "/wav.scp")]
    for name, lines in [
        (f"feats.{{job}}.scp", [f"{{u}} {{out}}/feats.{{job}}.ark:{{i}}" for i, u in enumerate(utts)]),
        (f"utt2num_frames.{{job}}", [f"{{u}} 20" for u in utts]),
        (f"bad_utts.{{job}}", []),
        (f".done.{{job}}", []),
    ]:
        with open(os.path.join(out, name), "w") as f:
            f.writelines(line + "\n" for line in lines)
if "{name}" == "decode":
    with open(opt("--data_dir") + "/tasks.jsonl") as f, open(opt("--out"), "w") as out:
        for line in f:
            out.write(json.dumps({{"id": json.loads(line)["id"], "hyp": "hello"}}) + "\n")
'''
ENTRY_POINTS = ("extract_feats", "train", "make_pairs", "decode", "score", "export")
CONFIGS = ("semantic", "acoustic", "sft", "vrpo")
TRAIN_UTTS = ["s1-train-1", "s1-train-2", "s2-train-1", "s2-train-2"]


def make_fake_package(root, entry_points):
    """A ``diffa`` package with only ``diffa.bin.<name>`` for each name in ``entry_points``."""
    (root / "diffa" / "bin").mkdir(parents=True)
    (root / "diffa" / "__init__.py").write_text('"""Fake diffa for the engine tests."""\n')
    (root / "diffa" / "bin" / "__init__.py").write_text('"""Fake entry points."""\n')
    for name in entry_points:
        (root / "diffa" / "bin" / f"{name}.py").write_text(FAKE_ENTRY_POINT.format(name=name))


@pytest.fixture
def recipe(tmp_path):
    """Callable (entry_points=ENTRY_POINTS or None for the real package) -> a recipe directory."""

    def make(entry_points=ENTRY_POINTS):
        rec = tmp_path / "recipe"
        (rec / "local").mkdir(parents=True)
        (rec / "conf").mkdir()
        os.symlink(REPO / "egs" / "TEMPLATE" / "diffa.sh", rec / "diffa.sh")
        os.symlink(REPO / "utils", rec / "utils")
        path_sh = f". {REPO}/tools/activate.sh\nexport DIFFA_FAKE_CALLS=$PWD/fake_calls.jsonl\n"
        if entry_points is not None:
            make_fake_package(tmp_path / "fake", entry_points)
            path_sh += f"export PYTHONPATH={tmp_path / 'fake'}\n"
        (rec / "path.sh").write_text(path_sh)
        (rec / "cmd.sh").write_text(
            "".join(f'{cmd}="utils/run_jobs.sh --backend local"\n'
                    for cmd in ("train_cmd", "decode_cmd", "feats_cmd"))
        )
        (rec / "local" / "data.sh").write_text(DATA_SH)
        (rec / "local" / "data.sh").chmod(0o755)
        for name in CONFIGS + ("decode",):
            (rec / "conf" / f"{name}.yaml").write_text("{}\n")
        return rec

    return make


def engine(rec, *args, env=None):
    """Run ./diffa.sh in ``rec`` with the mini-like sets and 2 jobs, then ``args``."""
    command = ["./diffa.sh", "--nj", "2", "--train_sets", "train", "--dev_set", "dev",
               "--test_sets", "test", *args]
    return subprocess.run(command, cwd=rec, capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})), timeout=300)


def calls(rec):
    """The fake entry point calls so far, as argument lists."""
    path = rec / "fake_calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def configs(*names):
    return [arg for name in names for arg in (f"--{name}_config", f"conf/{name}.yaml")]


def test_unknown_option_lists_valid_ones():
    result = subprocess.run(["./run.sh", "--bogus", "1"], cwd=REPO / "egs" / "mini",
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "diffa.sh: unknown option --bogus; valid options: " in result.stderr
    for option in ("--stage", "--stop_stage", "--nj", "--ngpu", "--train_sets", "--sft_config"):
        assert f" {option} " in result.stderr


@pytest.mark.parametrize("recipe_name", ["mini", "diffa", "diffa2"])
@pytest.mark.parametrize("script", ["run.sh", "decode.sh"])
def test_recipe_scripts_run_elsewhere_say_where_to_run_them(recipe_name, script, tmp_path):
    path = REPO / "egs" / recipe_name / script
    cwd = tmp_path / "somewhere"  # with no ../TEMPLATE: other tests make one beside their tmp_path
    cwd.mkdir()
    result = subprocess.run([str(path), "--help"], cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr == f"{path}: run it from its recipe directory: cd {path.parent} && ./{script}\n"


def test_help_lists_stages_and_options():
    result = subprocess.run(["./run.sh", "--help"], cwd=REPO / "egs" / "diffa2",
                            capture_output=True, text=True)
    assert result.returncode == 0
    assert "7 preference optimisation" in result.stdout
    assert re.search(r"--n_mels +\(128\)", result.stdout)  # the recipe's value


def test_sampled_pairs_come_from_the_model_vrpo_starts_from(recipe):
    rec = recipe()
    assert engine(rec, "--stop_stage", "2").returncode == 0
    args = ["--stage", "6", "--stop_stage", "6", "--pairs_modes", "swap,sampled", *configs("sft", "vrpo")]
    result = engine(rec, *args)
    assert result.returncode == 1 and calls(rec)[-1][0] == "extract_feats"
    assert "missing exp/stage3_sft/.done: run stage 5 (SFT) first" in result.stderr
    (rec / "exp" / "stage3_sft").mkdir(parents=True)
    (rec / "exp" / "stage3_sft" / ".done").touch()
    result = engine(rec, *args, "--pairs_opts", "--max_pairs 3")
    assert result.returncode == 0, result.stderr
    assert "Stage 6: preference pairs: dump/train + exp/stage3_sft -> exp/pairs" in result.stdout
    assert calls(rec)[-1] == ["make_pairs", "--train_data", "dump/train", "--out_dir", "exp/pairs",
                              "--modes", "swap,sampled", "--model_dir", "exp/stage3_sft", "--max_pairs", "3"]


def test_decoding_a_set_without_features_says_how_to_extract_them(recipe):
    rec = recipe()
    (rec / "model").mkdir()
    result = engine(rec, "--stage", "8", "--stop_stage", "8", "--test_sets", "extra", "--model_dir", "model",
                    *configs("decode"))
    assert result.returncode == 1
    assert ("missing dump/extra/.done: run stage 2 (feature extraction) for it: ./run.sh --stage 2 "
            "--stop_stage 2 --test_sets extra (sets already extracted are skipped)") in result.stderr
    assert not (rec / "exp").exists()  # nothing left behind: no lock file, no empty decoding folders


def test_stage2_without_stage1_names_stage1(recipe):
    rec = recipe()
    result = engine(rec, "--stage", "2", "--stop_stage", "2")
    assert result.returncode == 1
    assert "missing data/train/wav.scp: run stage 1 (data preparation) first" in result.stderr
    assert calls(rec) == []


def test_stage1_validates_and_is_idempotent(recipe):
    rec = recipe()
    first = engine(rec, "--stop_stage", "1")
    assert first.returncode == 0, first.stderr
    assert "Stage 1: data preparation: local/data.sh -> data/{train,dev,test}" in first.stdout
    assert "data/train: OK (4 utterances, 2 speakers, 4 tasks)" in first.stdout
    assert all((rec / "data" / s / ".validated").exists() for s in ("train", "dev", "test"))
    again = engine(rec, "--stop_stage", "1")
    assert again.returncode == 0
    markers = "data/train/.validated data/dev/.validated data/test/.validated"
    assert f"already done (delete {markers} or pass --force true to redo)" in again.stdout
    assert (rec / "calls.log").read_text().count("local/data.sh") == 1
    forced = engine(rec, "--stop_stage", "1", "--force", "true")
    assert forced.returncode == 0
    assert (rec / "calls.log").read_text().count("local/data.sh") == 2
    # --nj is parallelism only: another one is the same data; any other option is not
    for opts in ("--nj 8", "--nj=3"):
        assert "already done" in engine(rec, "--stop_stage", "1", "--local_data_opts", opts).stdout
    other = engine(rec, "--stop_stage", "1", "--local_data_opts", "--nj 8 --datadir data")
    assert other.returncode == 1 and "then: opts=\n  now:  opts=--datadir data\n" in other.stderr


def test_stage1_rejects_invalid_data(recipe):
    rec = recipe()
    result = engine(rec, "--stop_stage", "1", env={"BREAK_DATA": "1"})
    assert result.returncode == 1
    assert "data/train/text:2: s2-train-1: comes after s2-train-2 (not sorted)" in result.stderr
    assert "data/train is not valid" in result.stderr
    assert not (rec / "data" / "train" / ".validated").exists()


def test_missing_entry_point_fails_before_the_first_stage(recipe):
    rec = recipe(entry_points=("extract_feats",))
    result = engine(rec, "--stop_stage", "3", *configs("semantic"))
    assert result.returncode == 1
    assert ("stage 3 (semantic alignment) needs diffa.bin.train, which is not available yet; "
            "run the stages before it with --stop_stage 2") in result.stderr
    assert not (rec / "calls.log").exists()


def test_all_stages_with_fake_entry_points(recipe):
    rec = recipe()
    result = engine(rec, *configs(*CONFIGS, "decode"))
    assert result.returncode == 0, result.stderr
    for line in [
        "2: feature extraction: data/test -> dump/test/{feats.scp,utt2num_frames,bad_utts}",
        "4: acoustic alignment: dump/train + dump/dev + exp/stage1_semantic -> exp/stage2_acoustic",
        "7: preference optimisation (VRPO): dump/train + dump/dev + exp/stage3_sft + exp/pairs"
        " -> exp/stage4_vrpo",
        "8: decoding: exp/stage4_vrpo + dump/test"
        " -> exp/stage4_vrpo/decode_decode/test/results.jsonl",
        "10: export: exp/stage4_vrpo -> exp/export/stage4_vrpo",
    ]:
        assert f"Stage {line}" in result.stdout
    made = calls(rec)
    assert [c[0] for c in made] == (["extract_feats"] * 6 + ["train"] * 3 + ["make_pairs", "train"]
                                    + ["decode"] * 2 + ["score", "export"])
    # the jobs of one set run in parallel: either may record its call first
    assert ["extract_feats", "--data_dir", "data/train/split2/1", "--out_dir", "dump/train",
            "--job", "1", "--n_mels", "80", "--feats_dtype", "float32", "--skip_bad", "false"] in made[:2]
    train = [c for c in made if c[0] == "train"]
    assert train[0] == ["train", "conf/semantic.yaml", "--output_folder", "exp/stage1_semantic",
                        "--train_data", "dump/train", "--valid_data", "dump/dev"]
    assert train[1][-2:] == ["--init_from", "exp/stage1_semantic"]
    assert train[3][-6:] == ["--init_from", "exp/stage3_sft", "--ref_model", "exp/stage3_sft",
                             "--pairs", "exp/pairs"]
    assert made[9] == ["make_pairs", "--train_data", "dump/train", "--out_dir", "exp/pairs", "--modes", "swap,external"]
    assert made[11][:4] == ["decode", "conf/decode.yaml", "--model_dir", "exp/stage4_vrpo"]
    assert made[13] == ["score", "--results", "exp/stage4_vrpo/decode_decode/test/results.jsonl",
                        "--data_dir", "data/test", "--out_dir", "exp/stage4_vrpo/decode_decode/test/score"]
    # Per-job outputs are merged in job order.
    feats = (rec / "dump" / "train" / "feats.scp").read_text().split("\n")
    assert [line.split()[0] for line in feats if line] == TRAIN_UTTS
    tasks = rec / "data" / "train" / "tasks.jsonl"
    assert (rec / "dump" / "train" / "tasks.jsonl").read_text() == tasks.read_text()
    results = (rec / "exp/stage4_vrpo/decode_decode/test/results.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in results] == ["s1-test-1-asr", "s2-test-1-asr"]
    # Everything is done: a rerun runs nothing.
    again = engine(rec, *configs(*CONFIGS, "decode"))
    assert again.returncode == 0, again.stderr
    assert len(calls(rec)) == len(made)
    assert again.stdout.count("already done") == 12


def test_v1_curriculum_skips_sft_and_vrpo(recipe):
    rec = recipe()
    result = engine(rec, *configs("semantic", "acoustic", "decode"), "--stop_stage", "8")
    assert result.returncode == 0, result.stderr
    assert "Stage 5: SFT: dump/train + dump/dev + exp/stage2_acoustic -> exp/stage3_sft" in result.stdout
    assert result.stdout.count("skipped: no config for this stage") == 2
    assert "skipped: no --vrpo_config" in result.stdout
    assert [c[0] for c in calls(rec)].count("train") == 2
    assert (rec / "exp/stage2_acoustic/decode_decode/test/.done").exists()


def test_missing_previous_stage_is_named(recipe):
    rec = recipe()
    assert engine(rec, "--stop_stage", "2").returncode == 0
    result = engine(rec, "--stage", "4", "--stop_stage", "4", *configs("semantic", "acoustic"))
    assert result.returncode == 1
    assert "missing exp/stage1_semantic/.done: run stage 3 (semantic alignment) first" in result.stderr
    result = engine(rec, "--stage", "9", "--stop_stage", "9", *configs("semantic", "decode"))
    assert result.returncode == 1
    assert "missing exp/stage1_semantic/decode_decode/test/.done: run stage 8 (decoding) first" in result.stderr


def test_failed_feature_job_is_named_and_resumed(recipe):
    rec = recipe()
    assert engine(rec, "--stop_stage", "1").returncode == 0
    failed = engine(rec, "--stage", "2", "--stop_stage", "2", env={"DIFFA_FAKE_FAIL": "extract_feats.2"})
    assert failed.returncode == 1
    assert "failed jobs: 2 (see dump/train/log/feats.2.log)" in failed.stderr
    assert "feature extraction of data/train failed" in failed.stderr
    assert not (rec / "dump" / "train" / ".done").exists()
    resumed = engine(rec, "--stage", "2", "--stop_stage", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert "skipping job(s) 1" in resumed.stderr
    shards = [c[c.index("--data_dir") + 1] for c in calls(rec)]
    expected = ["data/train/split2/1"] + ["data/train/split2/2"] * 2 + [
        f"data/{s}/split2/{j}" for s in ("dev", "test") for j in (1, 2)]
    assert sorted(shards) == sorted(expected)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--stage", "11"], "--stage must be a stage number 1-10, got '11'"),
        (["--nj", "0"], "--nj must be a positive integer, got '0'"),
        (["--stage", "3", "--stop_stage", "2"], "--stage 3 is after --stop_stage 2"),
        (["--stage", "8", "--stop_stage", "8"], "stage 8 needs --decode_config"),
        (["--stage", "3", "--stop_stage", "3", "--semantic_config", "conf/nope.yaml"],
         "stage 3 (semantic alignment): config conf/nope.yaml not found"),
        (["--stop_stage", "1", "extra"], "unexpected argument(s) 'extra'"),
        (["--test_sets", "data/test"], "'data/test': a set is named by its folder in --datadir (data/<set>), not by a path"),
    ],
)
def test_bad_options(recipe, args, message):
    result = engine(recipe(), *args)
    assert result.returncode == 1
    assert message in result.stderr


def test_stages_1_2_with_the_real_feature_extractor(recipe, monkeypatch):
    pytest.importorskip("diffa.bin.extract_feats")
    kaldiio = pytest.importorskip("kaldiio")
    rec = recipe(entry_points=None)
    result = subprocess.run(["./diffa.sh", "--nj", "2", "--train_sets", "train", "--stop_stage", "2"],
                            cwd=rec, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    monkeypatch.chdir(rec)  # feats.scp paths are relative to the recipe directory
    feats = kaldiio.load_scp(str(rec / "dump" / "train" / "feats.scp"))
    shapes = {utt: feats[utt].shape for utt in feats}
    # sox made 0.2 s and 0.3 s at 16 kHz: T = ceil(samples / 160).
    assert shapes == dict(zip(TRAIN_UTTS, [(20, 80), (30, 80)] * 2))
    frames = (rec / "dump" / "train" / "utt2num_frames").read_text().split()
    assert frames == ["s1-train-1", "20", "s1-train-2", "30", "s2-train-1", "20", "s2-train-2", "30"]
    assert (rec / "dump" / "train" / "bad_utts").read_text() == ""


def rerun_stage2_after_its_jobs(rec, *args):
    """Stages 1-2, then stage 2 again with ``args`` as if the first run had stopped after its jobs."""
    assert engine(rec, "--stop_stage", "2").returncode == 0
    (rec / "dump" / "train" / ".done").unlink()
    result = engine(rec, "--stage", "2", "--stop_stage", "2", "--dev_set", "", "--test_sets", "", *args)
    assert result.returncode == 0, result.stderr
    return result


def test_a_linked_set_shares_the_features_of_its_target(recipe):
    """data/<set> -> <other> (one index serving two stages): dump/<set> -> <other>, extracted once;
    once data/<set> is a directory of its own, it gets features of its own."""
    rec = recipe()
    assert engine(rec, "--stop_stage", "1").returncode == 0
    os.symlink("train", rec / "data" / "train_b")
    result = engine(rec, "--stage", "2", "--stop_stage", "2", "--train_sets", "train train_b")
    assert result.returncode == 0, result.stderr
    assert "Stage 2: feature extraction: dump/train_b -> train (data/train_b links to train)" in result.stdout
    assert os.readlink(rec / "dump" / "train_b") == "train"
    extracted = [c[c.index("--data_dir") + 1].split("/")[1] for c in calls(rec) if c[0] == "extract_feats"]
    assert sorted(extracted) == ["dev", "dev", "test", "test", "train", "train"]  # 2 jobs a set
    (rec / "data" / "train_b").unlink()
    shutil.copytree(rec / "data" / "train", rec / "data" / "train_b", ignore=shutil.ignore_patterns("split*"))
    result = engine(rec, "--stage", "2", "--stop_stage", "2", "--train_sets", "train train_b")
    assert result.returncode == 0, result.stderr
    assert (rec / "dump" / "train_b").is_dir() and not (rec / "dump" / "train_b").is_symlink()
    assert (rec / "dump" / "train_b" / "feats.scp").read_text().count("train_b/") == 4
    assert (rec / "dump" / "train" / ".done").exists()


def test_changed_nj_starts_the_jobs_over(recipe):
    rec = recipe()
    rerun_stage2_after_its_jobs(rec, "--nj", "1")
    assert calls(rec)[-1][:3] == ["extract_feats", "--data_dir", "data/train/split1/1"]
    assert sorted(p.name for p in (rec / "dump" / "train" / "data").glob("feats.*")) == ["feats.1.scp"]
    assert len((rec / "dump" / "train" / "feats.scp").read_text().splitlines()) == 4


def test_changed_feature_settings_start_the_jobs_over(recipe):
    """A rerun with other --n_mels must not keep the shards an interrupted run made with the old."""
    rec = recipe()
    result = rerun_stage2_after_its_jobs(rec, "--n_mels", "128")
    redone = [c for c in calls(rec) if c[0] == "extract_feats" and "128" in c]
    assert len(redone) == 2 and "skipping" not in result.stderr


def test_ngpu_0_hides_the_gpus(recipe):
    rec = recipe()
    assert engine(rec, "--stop_stage", "2", env={"CUDA_VISIBLE_DEVICES": "0"}).returncode == 0
    assert set((rec / "fake_calls.jsonl.gpus").read_text().split()) == {"''"}  # --ngpu 0: CPU only
    assert engine(rec, "--stage", "2", "--stop_stage", "2", "--force", "true", "--ngpu", "1",
                  env={"CUDA_VISIBLE_DEVICES": "0"}).returncode == 0
    assert (rec / "fake_calls.jsonl.gpus").read_text().split()[-1] == "'0'"


def test_many_nodes_need_a_slurm_train_cmd(recipe):
    rec = recipe()
    result = engine(rec, "--stop_stage", "1", "--num_nodes", "2")
    assert result.returncode == 1
    assert ('--num_nodes 2 needs train_cmd="utils/run_jobs.sh --backend slurm ..." in cmd.sh, '
            'got train_cmd="utils/run_jobs.sh --backend local"') in result.stderr
    assert not (rec / "calls.log").exists()
    result = engine(rec, "--stop_stage", "1", "--num_nodes", "2", "--master_port", "x")
    assert result.returncode == 1 and "--master_port must be a positive integer, got 'x'" in result.stderr


def recording_python(bin_dir):
    """An interpreter at ``bin_dir/python3`` that runs this one and records each torchrun command
    line in ``bin_dir/torchrun.calls`` as "<SLURM_NODEID> <torchrun's arguments>"."""
    python = bin_dir / "python3"
    python.write_text('#!/usr/bin/env bash\n[ "$1 $2" != "-m torch.distributed.run" ] || '
                      f'echo "${{SLURM_NODEID:--}} ${{*:3}}" >>{bin_dir}/torchrun.calls\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    return python


def test_one_node_many_processes_run_torchrun_standalone(recipe, tmp_path):
    rec = recipe()
    python = recording_python(tmp_path)
    assert engine(rec, "--stop_stage", "2", "--python", str(python)).returncode == 0
    assert (rec / "python.log").read_text() == f"{python}\n"  # the recipe's hooks get it as PYTHON
    result = engine(rec, "--stage", "3", "--stop_stage", "3", *configs("semantic"), "--nproc_per_node", "2",
                    "--python", str(python), env={"OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    log = (rec / "exp" / "stage1_semantic" / "log" / "train.log").read_text()
    assert log.startswith(f"# '{python}' '-m' 'torch.distributed.run' '--standalone' '--nproc_per_node' '2' "
                          "'-m' 'diffa.bin.train' ")
    assert (tmp_path / "torchrun.calls").read_text().startswith("- --standalone --nproc_per_node 2 -m diffa.bin.train ")
    ranks = sorted(line for line in (rec / "fake_calls.jsonl.ranks").read_text().splitlines() if "train" in line)
    assert ranks == ["train - 0 0 2", "train - 1 1 2"]


def free_port():
    """A TCP port free on this machine now (for the rendezvous of a fake multi-node job)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_recipe(rec, fake_slurm):
    """``rec`` with train_cmd on (fake) Slurm, its nodes all this machine, and torchrun recorded.

    Returns the env to run ./diffa.sh with; each node's torchrun command line goes to
    ``fake_slurm.calls("torchrun")`` as "<SLURM_NODEID> <arguments>".
    """
    cmd_sh = rec / "cmd.sh"
    cmd_sh.write_text(cmd_sh.read_text().replace('train_cmd="utils/run_jobs.sh --backend local"',
                                                 'train_cmd="utils/run_jobs.sh --backend slurm"'))
    recording_python(fake_slurm.bin_dir)  # path.sh puts it ahead of the venv's own python3
    with open(rec / "path.sh", "a") as f:
        f.write(f"export PATH={fake_slurm.bin_dir}:$PATH\n")
    return {**fake_slurm.env, "FAKE_SLURM_NODELIST": "localhost", "OMP_NUM_THREADS": "1"}


def test_multi_node_training_runs_one_torchrun_per_node(recipe, fake_slurm):
    """2 nodes x 2 processes: one Slurm job, srun starts torchrun on each node, and the 4 processes
    meet at the first node; each knows its global rank and its rank on its node."""
    rec = recipe()
    env = slurm_recipe(rec, fake_slurm)
    assert engine(rec, "--stop_stage", "2", env=env).returncode == 0
    port = free_port()
    result = engine(rec, "--stage", "3", "--stop_stage", "3", *configs("semantic"), "--num_nodes", "2",
                    "--nproc_per_node", "2", "--master_port", str(port), "--torchrun_opts", "--max_restarts 0",
                    env=env)
    assert result.returncode == 0, result.stderr
    assert fake_slurm.calls("sbatch") == [
        "--wait --job-name train --nodes 2 --ntasks-per-node 1 --output exp/stage1_semantic/log/q/train.1.out "
        "exp/stage1_semantic/log/q/train.sh 1"
    ]
    assert len(fake_slurm.calls("srun")) == 1 and fake_slurm.calls("scontrol") == ["show hostnames localhost"] * 2
    nodes = sorted(fake_slurm.calls("torchrun"))
    assert nodes == [
        f"{node} --nnodes 2 --nproc_per_node 2 --rdzv_backend c10d --rdzv_endpoint localhost:{port} --rdzv_id 4321 "
        "--max_restarts 0 -m diffa.bin.train conf/semantic.yaml --output_folder exp/stage1_semantic "
        "--train_data dump/train --valid_data dump/dev"
        for node in (0, 1)
    ]
    ranks = sorted(line for line in (rec / "fake_calls.jsonl.ranks").read_text().splitlines() if "train" in line)
    # node, global rank, rank on the node, world size
    assert ranks == ["train 0 0 0 4", "train 0 1 1 4", "train 1 2 0 4", "train 1 3 1 4"]
    assert (rec / "exp" / "stage1_semantic" / ".done").exists()


@pytest.mark.slow  # about 25 s on 2 cores, most of it importing the trainer in each process
def test_two_nodes_train_a_toy_model(recipe, fake_slurm, tmp_path):
    """The real trainer on 2 (fake) nodes x 1 CPU process: one gloo group across the nodes, and
    only global rank 0 writes the log, the checkpoints and the model."""
    toy_setup = pytest.importorskip("diffa.train.toy")
    rec = recipe(entry_points=None)
    env = slurm_recipe(rec, fake_slurm)
    toy = toy_setup.make_toy_setup(tmp_path / "toy", n_examples=16, answer_words=(1, 1),
                                   instructions=("What is said?",))
    shutil.copytree(toy["dump"], rec / "dump" / "train")
    (rec / "dump" / "train" / ".done").touch()
    config = {"stage": "sft", "seed": 7, "tokenizer_dir": toy["tokenizer_dir"], "model": toy["model"],
              "init": {"whisper_dir": toy["whisper_dir"], "llada_dir": toy["llada_dir"]},
              "batching": {"max_batch_size": 4, "num_buckets": 1}, "number_of_epochs": 1, "log_interval": 1}
    (rec / "conf" / "toy.yaml").write_text(json.dumps(config))
    result = subprocess.run(["./diffa.sh", "--stage", "3", "--stop_stage", "3", "--train_sets", "train",
                             "--semantic_config", "conf/toy.yaml", "--num_nodes", "2", "--master_port",
                             str(free_port()), "--torchrun_opts", "--max_restarts 0"],
                            cwd=rec, capture_output=True, text=True, env={**os.environ, **env}, timeout=300)
    out = rec / "exp" / "stage1_semantic"
    log = (out / "log" / "train.log").read_text() if (out / "log" / "train.log").exists() else result.stderr
    assert result.returncode == 0, log[-3000:]
    assert "process 1 of 2 (gloo backend)" in log and "[rank 1]" in log
    # 16 examples in batches of 4: 2 per rank, 2 optimizer steps, each logged once.
    steps = re.findall(r"^train epoch=1 step=(\d+) ", (out / "train_log.txt").read_text(), flags=re.M)
    assert steps == ["1", "2"]
    assert len(list((out / "save").glob("CKPT+*"))) == 1 and (out / "final").is_dir() and (out / ".done").exists()


def test_forced_training_stage_starts_from_scratch(recipe):
    rec = recipe()
    assert engine(rec, "--stop_stage", "3", *configs("semantic")).returncode == 0
    stale = rec / "exp" / "stage1_semantic" / "save" / "CKPT+old"
    stale.mkdir(parents=True)  # a checkpoint the redo would otherwise resume from
    forced = engine(rec, "--stage", "3", "--stop_stage", "3", "--force", "true", *configs("semantic"))
    assert forced.returncode == 0, forced.stderr
    assert "--force true: moving exp/stage1_semantic aside to exp/stage1_semantic.replaced" in forced.stdout
    assert not stale.exists() and (rec / "exp" / "stage1_semantic" / ".done").exists()
    assert not (rec / "exp" / "stage1_semantic.replaced").exists()  # removed once the new model is trained
    assert [c[0] for c in calls(rec)].count("train") == 2


def test_a_failed_forced_redo_keeps_the_model_it_would_replace(recipe):
    rec = recipe()
    assert engine(rec, "--stop_stage", "3", *configs("semantic")).returncode == 0
    model = rec / "exp" / "stage1_semantic"
    (model / "final").mkdir()  # the trained model
    for attempt in (1, 2):  # e.g. a typo in --train_opts, twice
        failed = engine(rec, "--stage", "3", "--stop_stage", "3", "--force", "true", *configs("semantic"),
                        env={"DIFFA_FAKE_FAIL": "train"})
        assert failed.returncode == 1
        assert "(the model trained before is in exp/stage1_semantic.replaced)" in failed.stderr
        kept = rec / "exp" / "stage1_semantic.replaced"
        assert (kept / "final").is_dir() and (kept / ".done").exists() and not (model / ".done").exists()
    assert engine(rec, "--stage", "3", "--stop_stage", "3", "--force", "true", *configs("semantic")).returncode == 0
    assert (model / ".done").exists() and not (rec / "exp" / "stage1_semantic.replaced").exists()


def test_outputs_made_with_other_settings_are_not_taken_as_done(recipe):
    rec = recipe()
    decode = ["--stage", "8", "--stop_stage", "8", "--model_dir", "model", *configs("decode")]
    (rec / "model").mkdir()
    assert engine(rec, "--stop_stage", "2").returncode == 0
    assert engine(rec, *decode).returncode == 0
    assert "already done" in engine(rec, *decode).stdout  # the same settings: skipped
    other = engine(rec, *decode, "--decode_opts", "--steps 8")
    assert other.returncode == 1
    assert ("exp/model/decode_decode/test was made with other settings or inputs than this run's, so it is not "
            "this run's output:\n  then: model=model config=conf/decode.yaml (cksum ") in other.stderr
    assert "opts= inputs: dump/test/.done (cksum " in other.stderr
    assert "  now:  model=model config=conf/decode.yaml" in other.stderr and "opts=--steps 8 inputs: " in other.stderr
    assert ("Delete exp/model/decode_decode/test/.done to redo it (--force true redoes every stage and set in "
            "range), or --tag <name> to decode into decode_<name>.") in other.stderr
    assert "Changed since" not in other.stderr  # an option, not a file
    tagged = engine(rec, *decode, "--decode_opts", "--steps 8", "--tag", "steps8")
    assert tagged.returncode == 0 and (rec / "exp" / "model" / "decode_steps8" / "test" / ".done").exists()
    (rec / "conf" / "decode.yaml").write_text("steps: 4\n")  # an edited config counts too
    assert "was made with other settings" in engine(rec, *decode).stderr
    trained = engine(rec, "--stage", "3", "--stop_stage", "3", *configs("semantic"))
    assert trained.returncode == 0
    retrain = engine(rec, "--stage", "3", "--stop_stage", "3", *configs("semantic"), "--train_opts", "--lr 1")
    assert retrain.returncode == 1
    assert ("Redo it with --stage 3 --stop_stage 3 --force true (from scratch; the later stages then stop as stale), "
            "or another --expdir.") in retrain.stderr  # deleting .done would resume from the old checkpoints


@pytest.mark.parametrize("model, name", [("exp/export/m", "export_m"), ("exp/m/final", "m"), ("elsewhere/m/", "m"),
                                         ("./exp/export/m/", "export_m")])
def test_decoding_directory_is_named_by_the_model_path(recipe, model, name):
    rec = recipe()
    (rec / model / "final").mkdir(parents=True)
    assert engine(rec, "--stop_stage", "2").returncode == 0
    result = engine(rec, "--stage", "8", "--stop_stage", "8", "--model_dir", model, "--expdir", "exp/", *configs("decode"))
    assert result.returncode == 0, result.stderr
    assert (rec / "exp" / name / "decode_decode" / "test" / ".done").exists()
    # the same model spelled otherwise is the same model: already done
    for same in (f"{rec}/{model}", f"{model.rstrip('/')}/final" if not model.rstrip("/").endswith("final") else model):
        again = engine(rec, "--stage", "8", "--stop_stage", "8", "--model_dir", same, *configs("decode"))
        assert again.returncode == 0 and "already done" in again.stdout, again.stderr


def test_the_summary_hook_runs_only_when_a_stage_ran(recipe):
    rec = recipe()
    (rec / "model").mkdir()
    hook = rec / "local" / "score.sh"
    hook.write_text("#!/usr/bin/env bash\necho \"$@\" >> hook_calls\n")
    hook.chmod(0o755)
    decode = ["--stop_stage", "9", "--model_dir", "model", *configs("decode")]
    assert engine(rec, *decode).returncode == 0
    again = engine(rec, *decode)  # nothing to do: the summary of the first run stays
    assert "every stage was done already: local/score.sh is not run again" in again.stdout
    assert len((rec / "hook_calls").read_text().splitlines()) == 1
    hook.write_text("#!/usr/bin/env bash\necho \"$@\" >> hook_calls\nexit 1\n")
    assert engine(rec, *decode, "--stage", "9", "--force", "true").returncode == 1  # the hook fails
    hook.write_text("#!/usr/bin/env bash\necho \"$@\" >> hook_calls\n")
    assert engine(rec, *decode).returncode == 0  # every stage done, but the last summary failed: again
    assert len((rec / "hook_calls").read_text().splitlines()) == 3


def test_a_directory_another_run_writes_is_refused(recipe):
    import fcntl

    rec = recipe()
    assert engine(rec, "--stop_stage", "2").returncode == 0
    lock = rec / "exp" / ".stage1_semantic.lock"
    lock.parent.mkdir()
    with open(lock, "a") as other:  # another run, writing exp/stage1_semantic
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write_text("pid 4242 on node7 since 2026-12-07T10:00:00: ./run.sh")
        refused = engine(rec, "--stage", "3", "--stop_stage", "3", *configs("semantic"))
    assert refused.returncode == 1 and calls(rec)[-1][0] == "extract_feats"
    assert ("exp/stage1_semantic is being written by another run (pid 4242 on node7 since 2026-12-07T10:00:00: "
            "./run.sh): let it end, or stop it, first") in refused.stderr
    result = engine(rec, "--stage", "3", "--stop_stage", "3", *configs("semantic"))  # once it has ended
    assert result.returncode == 0, result.stderr
    assert calls(rec)[-1][0] == "train"
    assert lock.read_text().startswith("pid ") and "--stage 3 --stop_stage 3" in lock.read_text()


def test_outputs_made_from_inputs_made_again_are_not_taken_as_done(recipe):
    """Each stage's marker names the markers of what it read: an input made again (other data
    options; a model retrained, even with the same settings) makes the outputs made from it stale."""
    rec = recipe()
    assert engine(rec, "--stop_stage", "2").returncode == 0
    other_data = engine(rec, "--stop_stage", "2", "--local_data_opts", "--datadir data")
    assert other_data.returncode == 1
    assert "data/train was made with other settings or inputs" in other_data.stderr
    assert "then: opts=\n  now:  opts=--datadir data\n" in other_data.stderr
    remade = engine(rec, "--stage", "1", "--stop_stage", "1", "--force", "true")
    assert remade.returncode == 0, remade.stderr
    assert "already done" in engine(rec, "--stage", "2", "--stop_stage", "2").stdout  # the same data again
    # new transcripts: the features stay; stage 2 copies the new files beside them, and a stage
    # that reads them before it has is told to run it
    remade = engine(rec, "--stage", "1", "--stop_stage", "1", "--force", "true", env={"DATA_WORD": "bye"})
    assert remade.returncode == 0, remade.stderr
    early = engine(rec, "--stage", "3", "--stop_stage", "3", *configs("semantic"))
    assert early.returncode == 1
    assert ("data/train changed since stage 2 extracted its features (text). Run stage 2 again (./run.sh --stage 2 "
            "--stop_stage 2 --test_sets train; when the audio changed, delete dump/train/.done first)") in early.stderr
    copied = engine(rec, "--stage", "2", "--stop_stage", "2")
    assert copied.returncode == 0 and copied.stdout.count("already done") == 3
    assert (rec / "dump/train/text").read_text() == (rec / "data/train/text").read_text()
    # new audio: new features
    remade = engine(rec, "--stage", "1", "--stop_stage", "1", "--force", "true", env={"WAV_DIR": "wav2"})
    assert remade.returncode == 0, remade.stderr
    stale = engine(rec, "--stage", "2", "--stop_stage", "2")
    assert stale.returncode == 1 and "dump/train was made with other settings or inputs" in stale.stderr
    assert "inputs: data/train/wav.scp (cksum " in stale.stderr and "\nChanged since: data/train/wav.scp\n" in stale.stderr
    early = engine(rec, "--stage", "3", "--stop_stage", "3", *configs("semantic"))
    assert "data/train changed since stage 2 extracted its features (the audio (wav.scp, segments); text)." in early.stderr
    assert engine(rec, "--stage", "2", "--stop_stage", "2", "--force", "true").returncode == 0

    train = ["--stop_stage", "5", *configs("semantic", "acoustic", "sft")]
    assert engine(rec, "--stage", "3", *train).returncode == 0
    assert "already done" in engine(rec, "--stage", "3", *train).stdout  # nothing made again: skipped
    retrained = engine(rec, "--stage", "3", "--stop_stage", "3", "--force", "true", *configs("semantic"))
    assert retrained.returncode == 0, retrained.stderr
    stale = engine(rec, "--stage", "4", *train)
    assert stale.returncode == 1 and "exp/stage2_acoustic was made with other settings or inputs" in stale.stderr
    assert "inputs: dump/train/.done (cksum " in stale.stderr and " exp/stage1_semantic/.done (cksum " in stale.stderr
    assert "\nChanged since: exp/stage1_semantic/.done\n" in stale.stderr
    assert engine(rec, "--stage", "4", "--force", "true", *train).returncode == 0

    decode = ["--stage", "8", "--stop_stage", "9", *configs("sft", "decode")]
    assert engine(rec, *decode).returncode == 0
    assert engine(rec, "--stage", "8", "--stop_stage", "8", "--force", "true", *configs("sft", "decode")).returncode == 0
    rescore = engine(rec, "--stage", "9", "--stop_stage", "9", *configs("sft", "decode"))
    assert rescore.returncode == 1
    assert "exp/stage3_sft/decode_decode/test/score was made with other settings or inputs" in rescore.stderr
    assert "Changed since: exp/stage3_sft/decode_decode/test/.done" in rescore.stderr
    assert engine(rec, "--stage", "9", "--stop_stage", "9", "--force", "true", *configs("sft", "decode")).returncode == 0
    # decoding reads the data directory too (its prompts and splits): new data, stale results
    assert engine(rec, "--stop_stage", "1", "--force", "true", env={"DATA_WORD": "hi"}).returncode == 0
    redecode = engine(rec, "--stage", "8", "--stop_stage", "8", *configs("sft", "decode"))
    assert redecode.returncode == 1 and "Changed since: data/test/text" in redecode.stderr


def test_markers_from_before_inputs_were_stamped_are_taken(recipe):
    """A finished experiment from before is not made stale by the change of stamps."""
    rec = recipe()
    assert engine(rec, "--stop_stage", "3", *configs("semantic")).returncode == 0
    (rec / "data" / "train" / ".validated").write_text("")  # from before stamps
    for marker in ("dump/train/.done", "exp/stage1_semantic/.done"):  # one line, without inputs
        (rec / marker).write_text((rec / marker).read_text().split(" inputs:")[0] + "\n")
    again = engine(rec, "--stop_stage", "3", *configs("semantic"))
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already done") == 5  # stage 1, the three feature sets, stage 3


def test_directories_spelled_otherwise_are_the_same_inputs(recipe):
    rec = recipe()
    assert engine(rec, "--stop_stage", "2").returncode == 0
    again = engine(rec, "--stage", "2", "--stop_stage", "2", "--datadir", "./data", "--dumpdir", f"{rec}/dump/")
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already done") == 3


def test_scores_and_copies_follow_the_data_directory(recipe):
    rec = recipe()
    run = ["--stop_stage", "9", *configs("sft", "decode")]
    (rec / "data").mkdir()
    assert engine(rec, *run).returncode == 0
    # a corrected reference: stage 2 copies it (no new features); the scores are stale
    tasks = rec / "data" / "test" / "tasks.jsonl"
    tasks.write_text(tasks.read_text().replace('"answer": "hello 1"', '"answer": "hullo 1"'))
    copied = engine(rec, "--stage", "2", "--stop_stage", "2")
    assert copied.returncode == 0 and copied.stdout.count("already done") == 3
    rescore = engine(rec, "--stage", "9", "--stop_stage", "9", *configs("sft", "decode"))
    assert rescore.returncode == 1 and "Changed since: data/test/tasks.jsonl\n" in rescore.stderr
    # a file the set no longer has leaves its features' folder too
    utt2dur = rec / "data" / "test" / "utt2dur"
    utt2dur.write_text("".join(f"{line.split()[0]} 0.2\n" for line in (rec / "data/test/wav.scp").read_text().splitlines()))
    assert engine(rec, "--stage", "2", "--stop_stage", "2").returncode == 0
    assert (rec / "dump" / "test" / "utt2dur").exists()
    utt2dur.unlink()
    assert engine(rec, "--stage", "2", "--stop_stage", "2").returncode == 0
    assert not (rec / "dump" / "test" / "utt2dur").exists()
    redecode = engine(rec, "--stage", "8", "--stop_stage", "8", "--force", "true", *configs("sft", "decode"))
    assert redecode.returncode == 0, redecode.stderr


def test_training_and_pairs_follow_the_data_and_the_sets_their_options_name(recipe):
    """A finished training stage is checked against the data as it is now, and a set named in a
    stage's extra options (make_pairs' --valid_data dump/dev) is among its inputs."""
    rec = recipe()
    pairs = ["--pairs_opts", "--valid_data dump/dev --max_pairs 3"]
    assert engine(rec, "--stop_stage", "6", *configs("semantic", "vrpo"), *pairs).returncode == 0
    text = rec / "data" / "dev" / "text"
    text.write_text(text.read_text().replace("hello", "hullo"))
    train = engine(rec, "--stage", "3", "--stop_stage", "3", *configs("semantic"))
    assert train.returncode == 1
    assert "data/dev changed since stage 2 extracted its features (text)." in train.stderr
    assert engine(rec, "--stage", "2", "--stop_stage", "2").returncode == 0
    stale = engine(rec, "--stage", "6", "--stop_stage", "6", *configs("semantic", "vrpo"), *pairs)
    assert stale.returncode == 1 and "exp/pairs was made with other settings or inputs" in stale.stderr
    assert "\nChanged since: dump/dev/text\n" in stale.stderr
    assert engine(rec, "--stage", "6", "--stop_stage", "6", "--force", "true", *configs("semantic", "vrpo"),
                  *pairs).returncode == 0
    assert " dump/dev/.done (cksum " in (rec / "exp" / "pairs" / ".done").read_text()
