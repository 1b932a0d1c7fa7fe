"""diffa.bin.decode: a killed run resumes to the uninterrupted result; failures are rows; settings."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diffa.bin.decode import main

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[2]
SETTINGS = ["--gen_length", "32", "--block_length", "16", "--steps", "32", "--batch_size", "2",
            "--task_overrides", "{mcq: {gen_length: 16, block_length: 16, steps: 16, factor: 1.0}}"]


def args(toy, out, *extra):
    return ["--model_dir", str(toy.model_dir), "--data_dir", str(toy.data_dir), "--feats_dir", str(toy.feats_dir),
            "--out", str(out), "--device", "cpu", "--progress", "false", *SETTINGS, *extra]


def rows_of(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def without_time(rows):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


@pytest.fixture(scope="module")
def reference(toy, tmp_path_factory):
    """An uninterrupted run: (results path, printed summary)."""
    out = tmp_path_factory.mktemp("reference") / "results.jsonl"
    from contextlib import redirect_stdout
    from io import StringIO

    printed = StringIO()
    with redirect_stdout(printed):
        assert main(args(toy, out)) == 0
    return out, printed.getvalue()


def test_uninterrupted_run(toy, reference):
    out, printed = reference
    rows = rows_of(out)
    assert [r["id"] for r in rows] == sorted(t["id"] for t in toy.tasks)
    assert f"{len(toy.tasks)} examples, 1 failed" in printed and "items/s" in printed
    assert not os.path.exists(f"{out}.partial")
    ok = [r for r in rows if not r.get("failed")]
    assert all(isinstance(r["hypothesis"], str) and r["nfe"] > 0 and r["seconds"] > 0 for r in ok)
    assert {r["task"] for r in ok} == {"asr", "mcq", "open_qa"}
    assert max(r["nfe"] for r in ok if r["task"] == "mcq") <= 16 < max(r["nfe"] for r in ok if r["task"] == "asr")
    mcq = next(r for r in ok if r["task"] == "mcq")
    task = next(t for t in toy.tasks if t["id"] == mcq["id"])
    assert (mcq["prompt"], mcq["reference"], mcq["choices"], mcq["gold"]) == (
        task["instruction"], task["answer"], task["choices"], task["gold"])


def test_missing_audio_is_a_failed_row(toy, reference):
    failed = [r for r in rows_of(reference[0]) if r.get("failed")]
    assert [r["id"] for r in failed] == [toy.missing_id]
    assert failed[0]["error"].startswith("no features: missing data/wav/") and failed[0]["hypothesis"] is None


def test_settings_json(toy, reference):
    settings = json.loads((reference[0].parent / "settings.json").read_text())
    assert settings["model"] == os.path.normpath(str(toy.model_dir))
    assert (settings["gen_length"], settings["block_length"], settings["steps"], settings["dtype"]) == (32, 16, 32, "float32")
    assert settings["audio_dtype"] == "float32"
    assert settings["task_overrides"] == {"mcq": {"gen_length": 16, "block_length": 16, "steps": 16, "factor": 1.0}}
    assert "batch_size" not in settings and {"git", "versions"} <= set(settings)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_run_resumes_to_the_same_results(toy, reference, tmp_path, sig):
    out = tmp_path / "results.jsonl"
    partial = Path(f"{out}.partial")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    # SIGINT at its default in the child: under a background shell (CI's `... &`) it arrives ignored,
    # and Python then installs no KeyboardInterrupt handler
    proc = subprocess.Popen([sys.executable, "-m", "diffa.bin.decode", *args(toy, out)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    # the missing-audio row is written before decoding starts; wait for a decoded batch too
    while proc.poll() is None and time.time() < deadline:
        if partial.exists() and partial.read_text().count("\n") >= 3:
            break
        time.sleep(0.005)
    proc.send_signal(sig)
    stderr = proc.communicate()[1].decode()
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL, f"decode ended before it could be killed: {stderr[-2000:]}"
    else:  # Ctrl-C: one line, no traceback
        assert proc.returncode == 130 and "Traceback" not in stderr, stderr[-2000:]
        assert stderr.endswith("interrupted: " + str(out) + " keeps the batches decoded so far; the same command "
                               "resumes\n")
    assert not out.exists()
    written = partial.read_text().count("\n")
    assert 3 <= written < len(toy.tasks)
    with open(partial, "a") as f:  # as if the kill had come in the middle of a write
        f.write('{"id": "u0')
    assert main(args(toy, out)) == 0
    rows = rows_of(out)
    assert len({r["id"] for r in rows}) == len(rows) == len(toy.tasks)
    assert without_time(rows) == without_time(rows_of(reference[0]))
    assert not partial.exists()


def test_rerun_of_a_finished_set_decodes_nothing(toy, reference, tmp_path, capsys):
    out = tmp_path / "results.jsonl"
    out.write_text(reference[0].read_text())
    (tmp_path / "settings.json").write_text((reference[0].parent / "settings.json").read_text())
    assert main(args(toy, out, "--model_dir", str(tmp_path / "no_model_needed"))) == 1  # other settings
    assert "decoded with other settings (model:" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["results.jsonl", "settings.json"]  # a refusal writes nothing
    assert main(args(toy, out)) == 0
    printed = capsys.readouterr().out
    assert "this run decoded" not in printed and rows_of(out) == rows_of(reference[0])


def test_failed_rows_are_decoded_again(toy, reference, tmp_path, capsys):
    """Once the missing features are supplied, a re-run decodes the failed row and keeps the others."""
    import kaldiio
    import numpy as np

    out = tmp_path / "results.jsonl"
    out.write_text(reference[0].read_text())
    (tmp_path / "settings.json").write_text((reference[0].parent / "settings.json").read_text())
    feats_dir = tmp_path / "dump"
    feats_dir.mkdir()
    missing_utt = next(t["utt"] for t in toy.tasks if t["id"] == toy.missing_id)
    with kaldiio.WriteHelper(f"ark,scp:{feats_dir}/extra.ark,{feats_dir}/extra.scp") as writer:
        writer(missing_utt, np.random.default_rng(1).standard_normal((50, 16)).astype(np.float32))
    (feats_dir / "feats.scp").write_text((toy.feats_dir / "feats.scp").read_text() + (feats_dir / "extra.scp").read_text())
    assert main(args(toy, out, "--feats_dir", str(feats_dir))) == 0
    assert f"{len(toy.tasks)} examples, 0 failed; this run decoded 1 " in capsys.readouterr().out
    before, after = rows_of(reference[0]), rows_of(out)
    assert [r["id"] for r in after] == [r["id"] for r in before]
    retried = next(r for r in after if r["id"] == toy.missing_id)
    assert "failed" not in retried and isinstance(retried["hypothesis"], str) and retried["nfe"] > 0
    assert [r for r in after if r["id"] != toy.missing_id] == [r for r in before if r["id"] != toy.missing_id]


def few_tasks(toy, folder, with_features=True):
    """A data directory ``folder/data``: the example without features, after one with them."""
    from diffa.data.tasks import write_tasks

    write_tasks(str(folder / "data" / "tasks.jsonl"), [toy.tasks[0], toy.tasks[-1]][not with_features:])
    return folder / "data"


@pytest.mark.parametrize("with_features", [True, False])
def test_a_bad_model_directory_writes_nothing(toy, tmp_path, with_features):
    """The model is checked before any row or settings.json is written (also when no example can be
    decoded): the corrected run is not refused."""
    data = few_tasks(toy, tmp_path, with_features)
    out = tmp_path / "out" / "results.jsonl"
    assert main(args(toy, out, "--data_dir", str(data), "--model_dir", str(tmp_path / "modle"))) == 1
    assert not out.parent.exists()
    assert main(args(toy, out, "--data_dir", str(data))) == (0 if with_features else 1)  # 1: nothing decoded
    assert [r.get("failed", False) for r in rows_of(out)] == [False, True][not with_features:]


def test_nothing_decoded_is_an_error(toy, tmp_path, capsys):
    data = few_tasks(toy, tmp_path, with_features=False)
    assert main(args(toy, tmp_path / "out" / "results.jsonl", "--data_dir", str(data))) == 1
    err = capsys.readouterr().err
    assert f"every one of its 1 examples failed (first: {toy.missing_id}: no features:" in err
    (data / "tasks.jsonl").write_text("")
    assert main(args(toy, tmp_path / "out2" / "results.jsonl", "--data_dir", str(data))) == 1
    assert "tasks.jsonl: no examples; nothing was decoded" in capsys.readouterr().err


def test_shard_jobs_with_other_settings_are_refused(toy, tmp_path, capsys):
    """A job refuses to decode beside results of another job decoded with other settings; a
    forced re-decode of stage 8 (which removes the job files first) may change them."""
    data = few_tasks(toy, tmp_path)
    out = tmp_path / "out"
    assert main(args(toy, out / "results.1.jsonl", "--data_dir", str(data))) == 0
    settings = (out / "settings.json").read_text()
    assert main(args(toy, out / "results.2.jsonl", "--data_dir", str(data), "--steps", "16")) == 1
    err = capsys.readouterr().err
    assert err.startswith("ERROR: ") and "(results.1.jsonl) were decoded with other settings (steps: 32 -> 16)" in err
    assert sorted(os.listdir(out)) == ["results.1.jsonl", "settings.json"]
    assert (out / "settings.json").read_text() == settings
    # stage 8 with --force true: results.*.jsonl removed, the old concatenation stays until remade
    (out / "results.jsonl").write_text((out / "results.1.jsonl").read_text())
    (out / "results.1.jsonl").unlink()
    assert main(args(toy, out / "results.1.jsonl", "--data_dir", str(data), "--steps", "16")) == 0
    assert json.loads((out / "settings.json").read_text())["steps"] == 16


def test_audio_dtype_is_a_setting(toy, tmp_path, capsys):
    """settings.json records the encoder's and adapters' dtype (``same``: the LLM's); results made
    with one are not mixed with another's."""
    data = few_tasks(toy, tmp_path)
    out = tmp_path / "out"
    assert main(args(toy, out / "results.1.jsonl", "--data_dir", str(data), "--dtype", "bfloat16",
                     "--audio_dtype", "same")) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert (settings["dtype"], settings["audio_dtype"]) == ("bfloat16", "bfloat16")
    assert main(args(toy, out / "results.2.jsonl", "--data_dir", str(data), "--dtype", "bfloat16")) == 1
    assert "were decoded with other settings (audio_dtype: bfloat16 -> float32)" in capsys.readouterr().err


def test_sharded_jobs_cover_the_set(toy, reference, tmp_path):
    """Two jobs on halves of the manifest, as stage 8 runs them: concatenated, the same rows."""
    from diffa.data.tasks import write_tasks

    halves = [toy.tasks[:12], toy.tasks[12:]]
    for job, part in enumerate(halves, 1):
        write_tasks(str(tmp_path / "split2" / str(job) / "tasks.jsonl"), part)
        extra = ["--data_dir", str(tmp_path / "split2" / str(job)), "--out", str(tmp_path / f"results.{job}.jsonl")]
        assert main(args(toy, tmp_path / "unused", *extra)) == 0
    rows = rows_of(tmp_path / "results.1.jsonl") + rows_of(tmp_path / "results.2.jsonl")
    assert without_time(rows) == without_time(rows_of(reference[0]))


def test_scorer_reads_the_results(toy, reference, tmp_path, capsys):
    from diffa.bin.score import main as score

    assert score(["--results", str(reference[0]), "--data_dir", str(toy.data_dir), "--out_dir", str(tmp_path)]) == 0
    empty = sum(1 for r in rows_of(reference[0]) if not r.get("failed") and not r["hypothesis"].strip())
    assert f"rows {len(toy.tasks)}, failed 1, invalid hypotheses {empty}" in capsys.readouterr().out


@pytest.mark.parametrize("target, cut, named", [
    ("adapters.safetensors", False, "is not a complete DIFFA model directory: missing adapters.safetensors"),
    ("tokenizer", False, "is not a complete DIFFA model directory: missing a tokenizer ("),
    ("tokenizer/spm.model", True, "tokenizer/spm.model: not a readable tokenizer"),
    ("adapters.safetensors", True, "adapters.safetensors: not a readable safetensors file"),
])
def test_model_directory_missing_or_corrupt_files(toy, tmp_path, capsys, target, cut, named):
    """One ERROR line naming the file (no traceback), and nothing written."""
    import shutil

    model_dir = tmp_path / "m"
    shutil.copytree(toy.model_dir, model_dir)
    path = model_dir / target
    if cut:
        path.write_bytes(path.read_bytes()[:100])
    else:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    assert main(args(toy, tmp_path / "out" / "results.jsonl", "--model_dir", str(model_dir))) == 1
    err = capsys.readouterr().err
    assert err.startswith("ERROR: ") and err.count("\n") == 1 and named in err
    assert not (tmp_path / "out").exists()


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    printed = capsys.readouterr().out
    assert exit_.value.code == 0 and "Usage:" in printed and "--task_overrides" in printed
    assert "--factor FACTOR       Fast-dLLM factor f > 0" in printed  # each setting says what it is
    assert "nothing masked before it (true/false) (default: true)" in " ".join(printed.split())
    assert "--audio_dtype {bfloat16,float16,float32,float64,same}" in printed
    assert "(721M parameters) it takes 2.9 GB, 1.4 GB more than bfloat16" in " ".join(printed.split())
