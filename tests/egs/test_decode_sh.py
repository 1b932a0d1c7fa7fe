"""The recipes' decode.sh (egs/TEMPLATE/decode.sh): stages 8-9 on a throw-away recipe, RESULTS.md.

The recipe decodes a 25-example set (one example without features; no transcripts, as a set of
audio questions has none) with the tiny random model of tests/decode/conftest.py in two jobs,
with the real diffa package.
"""

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("decode_toy_builders", REPO / "tests" / "decode" / "conftest.py")
toy_builders = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(toy_builders)

RUN_SH = """#!/usr/bin/env bash
set -euo pipefail
./diffa.sh --nj 2 --test_sets test --decode_config conf/decode.yaml "$@"
"""
DECODE_YAML = """gen_length: 8
block_length: 8
steps: 8
factor: 1.0
batch_size: 4
task_overrides: {asr: {gen_length: 16, block_length: 16, steps: 16, factor: null}}
"""


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """egs-like tree: <root>/TEMPLATE -> egs/TEMPLATE, <root>/rec with data/test, dump/test, a model."""
    root = tmp_path_factory.mktemp("egs")
    os.symlink(REPO / "egs" / "TEMPLATE", root / "TEMPLATE")
    rec = root / "rec"
    (rec / "local").mkdir(parents=True)
    (rec / "conf").mkdir()
    for name, target in (("diffa.sh", "egs/TEMPLATE/diffa.sh"), ("decode.sh", "egs/mini/decode.sh"), ("utils", "utils")):
        os.symlink(REPO / target, rec / name)
    (rec / "path.sh").write_text(f". {REPO}/tools/activate.sh\nexport OMP_NUM_THREADS=1\n")
    (rec / "cmd.sh").write_text("".join(f'{c}="utils/run_jobs.sh --backend local"\n' for c in ("train_cmd", "decode_cmd", "feats_cmd")))
    (rec / "run.sh").write_text(RUN_SH)
    (rec / "run.sh").chmod(0o755)
    (rec / "conf" / "decode.yaml").write_text(DECODE_YAML)
    tasks = toy_builders.make_tasks(24, missing=1)
    utts = sorted({t["utt"] for t in tasks})
    data = rec / "data" / "test"
    data.mkdir(parents=True)
    for name, value in (("wav.scp", "wav/{}.wav"), ("utt2spk", "{}")):  # no text: the references are in tasks.jsonl
        (data / name).write_text("".join(f"{u} {value.format(u)}\n" for u in utts))
    (data / "spk2utt").write_text("".join(f"{u} {u}\n" for u in utts))
    (data / "tasks.jsonl").write_text("".join(json.dumps(t) + "\n" for t in sorted(tasks, key=lambda t: t["id"])))
    dump = rec / "dump" / "test"
    toy_builders.write_feats(dump, utts[:-1])
    (dump / "bad_utts").write_text(f"{utts[-1]} missing wav/{utts[-1]}.wav does not exist\n")
    (dump / ".done").touch()
    for name in ("wav.scp", "utt2spk", "spk2utt", "tasks.jsonl"):  # copied by stage 2
        shutil.copy(data / name, dump / name)
    toy_builders.build_model_dir(rec / "model", toy_builders.SENTENCES * 4)
    return rec, tasks


def decode_sh(rec, *args):
    return subprocess.run(["./decode.sh", *args], cwd=rec, capture_output=True, text=True, timeout=600)


def test_decode_score_and_results_md(recipe):
    rec, tasks = recipe
    result = decode_sh(rec, "--model_dir", "model")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = rec / "exp" / "model" / "decode_decode" / "test"
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == sorted(t["id"] for t in tasks)
    assert [r["utt"] for r in rows if r.get("failed")] == ["u24"]
    assert {p.name for p in out.glob("results.*.jsonl")} == {"results.1.jsonl", "results.2.jsonl"}
    assert json.loads((out / "score" / "scores.json").read_text())["counts"]["failed"] == 1
    settings = json.loads((out / "settings.json").read_text())
    assert settings["factor"] == 1.0 and settings["task_overrides"]["asr"]["gen_length"] == 16
    results_md = (rec / "exp" / "decode_results.md").read_text()
    assert "## test" in results_md and "factor=1.0" in results_md
    # a second run finds everything done
    again = decode_sh(rec, "--model_dir", "model")
    assert again.returncode == 0 and "already done" in again.stdout


@pytest.mark.parametrize("args, message", [
    (["--test_sets", "dev", "--model_dir", "model"], "missing dump/dev/.done: run stage 2"),  # the one config
    (["--test_sets", "test", "--decode_config", "conf/nope.yaml"], "decoding config conf/nope.yaml not found"),
    (["--stage", "9", "--stop_stage", "8"], "--stage/--stop_stage must be 8 (decode) or 9 (score)"),
    (["--model_dir", "nomodel"], "--model_dir nomodel is not a directory"),
])
def test_bad_options(recipe, args, message):
    result = decode_sh(recipe[0], *args)
    assert result.returncode == 1 and message in result.stderr


def test_only_given_options_reach_run_sh(tmp_path):
    """decode.sh passes --tag/--decode_opts/--score_opts on only when given: an empty one would
    override the recipe's own (egs/mini's run.sh sets --score_opts "--group_by asks")."""
    for name, target in (("decode.sh", "egs/mini/decode.sh"), ("utils", "utils")):
        os.symlink(REPO / target, tmp_path / name)
    (tmp_path.parent / "TEMPLATE").mkdir(exist_ok=True)
    if not (tmp_path.parent / "TEMPLATE" / "decode.sh").exists():
        os.symlink(REPO / "egs" / "TEMPLATE" / "decode.sh", tmp_path.parent / "TEMPLATE" / "decode.sh")
    (tmp_path / "path.sh").write_text("")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "decode.yaml").write_text("")
    (tmp_path / "run.sh").write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" >> run_args\n')
    (tmp_path / "run.sh").chmod(0o755)
    assert decode_sh(tmp_path, "--stop_stage", "8").returncode == 0
    args = (tmp_path / "run_args").read_text().splitlines()
    assert not {"--tag", "--decode_opts", "--score_opts", "--force"} & set(args), args
    (tmp_path / "run_args").unlink()
    assert decode_sh(tmp_path, "--stop_stage", "8", "--score_opts", "--group_by task", "--tag", "t",
                     "--force", "true").returncode == 0
    args = (tmp_path / "run_args").read_text().splitlines()
    assert args[args.index("--score_opts") + 1] == "--group_by task" and args[args.index("--tag") + 1] == "t"
    assert args[args.index("--force") + 1] == "true"
    (tmp_path / "run_args").unlink()
    assert decode_sh(tmp_path, "--stop_stage", "8", "--test_sets", "mine").returncode == 0  # not in --groups
    args = (tmp_path / "run_args").read_text().splitlines()
    assert args[args.index("--test_sets") + 1] == "mine" and args[args.index("--decode_config") + 1] == "conf/decode.yaml"
    two = subprocess.run(["../TEMPLATE/decode.sh", "--groups", "conf/a.yaml=x;conf/b.yaml=y", "--test_sets", "z"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert two.returncode == 1
    assert "no decoding config for set 'z' (not in --groups \"conf/a.yaml=x;conf/b.yaml=y\"): pass --decode_config" in two.stderr
