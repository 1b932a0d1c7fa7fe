"""diffa.bin.make_pairs: dumps -> exp/pairs/{pairs.jsonl,feats.scp,utt2num_frames,valid/,stats.json}."""

import json
import os

import kaldiio
import numpy as np
import pytest

from diffa.bin import make_pairs
from diffa.data.kaldi import read_map
from diffa.data.pairs import read_pairs
from diffa.data.tasks import write_tasks

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/bin/conftest.py: tiny models run fastest on one thread


def _rows(utts, genders):
    rows = []
    for utt, gender in zip(utts, genders):
        labels = {"gender": gender, "sentence": f"the {gender} cat sat"}
        rows += [
            {"id": f"{utt}-asr-0", "utt": utt, "task": "asr", "instruction": "Transcribe.", "answer": labels["sentence"],
             "labels": labels},
            {"id": f"{utt}-open_qa-0", "utt": utt, "task": "open_qa", "instruction": "Male or female?",
             "answer": gender, "labels": dict(labels, asks="gender")},
        ]
    return rows


def _dump(path, utts, genders, seed=0, frames=True, rows=None):
    path.mkdir(parents=True)
    feats = {u: np.random.default_rng(seed + i).normal(size=(20 + i, 8)).astype(np.float32) for i, u in enumerate(utts)}
    kaldiio.save_ark(str(path / "feats.ark"), feats, scp=str(path / "feats.scp"))
    if frames:
        (path / "utt2num_frames").write_text("".join(f"{u} {m.shape[0]}\n" for u, m in sorted(feats.items())))
    write_tasks(str(path / "tasks.jsonl"), rows if rows is not None else _rows(utts, genders))
    return str(path)


@pytest.fixture
def dumps(tmp_path):
    utts = [f"u{i}" for i in range(8)]
    train = _dump(tmp_path / "dump" / "train", utts, ["male", "female"] * 4)
    dev = _dump(tmp_path / "dump" / "dev", ["u0", "u1"], ["female", "male"], seed=100)  # ids reused, other audio
    return train, dev


def test_held_out_fraction(tmp_path, dumps, capsys):
    out = tmp_path / "pairs"
    make_pairs.main(["--train_data", dumps[0], "--out_dir", str(out), "--valid_fraction", "0.25", "--seed", "1"])
    train, held = read_pairs(str(out / "pairs.jsonl")), read_pairs(str(out / "valid" / "pairs.jsonl"))
    assert len(train) + len(held) == 16 and len({p["utt"] for p in held}) == 2
    assert not {p["utt"] for p in train} & {p["utt"] for p in held}
    assert {p["source"] for p in train} == {"swap:transcript", "swap:gender"}
    for folder, pairs in ((out, train), (out / "valid", held)):
        scp = read_map(str(folder / "feats.scp"))
        assert set(scp) == {p["utt"] for p in pairs}
        assert scp == {u: v for u, v in read_map(f"{dumps[0]}/feats.scp").items() if u in scp}
        assert set(read_map(str(folder / "utt2num_frames"), value_type=int)) == set(scp)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["train_pairs"] == len(train) and stats["valid_pairs"] == len(held) and stats["swap:gender"] == 8
    assert "training pairs" in capsys.readouterr().out
    # rerunning without held-out pairs removes the stale valid/ directory
    make_pairs.main(["--train_data", dumps[0], "--out_dir", str(out), "--valid_fraction", "0"])
    assert not (out / "valid").exists() and len(read_pairs(str(out / "pairs.jsonl"))) == 16


def test_options_of_mode_sampled_without_it_are_named(tmp_path, dumps, caplog):
    make_pairs.main(["--train_data", dumps[0], "--out_dir", str(tmp_path / "pairs"), "--model_dir", "exp/m",
                     "--temperature", "0.5", "--n_samples", "4"])
    assert ("--model_dir, --temperature ignored: only mode 'sampled' uses them, and --modes is swap,external"
            in caplog.text)


def test_valid_data_keeps_its_own_features(tmp_path, dumps):
    out = tmp_path / "pairs"
    make_pairs.main(["--train_data", dumps[0], "--out_dir", str(out), "--valid_data", dumps[1], "--modes", "swap"])
    assert len(read_pairs(str(out / "pairs.jsonl"))) == 16
    held = read_pairs(str(out / "valid" / "pairs.jsonl"))
    assert {p["utt"] for p in held} == {"u0", "u1"}
    # u0 and u1 exist in both sets with different audio: each side points at its own arks
    assert read_map(str(out / "valid" / "feats.scp")) == read_map(f"{dumps[1]}/feats.scp")
    assert read_map(str(out / "feats.scp"))["u0"] == read_map(f"{dumps[0]}/feats.scp")["u0"]
    assert json.loads((out / "stats.json").read_text())["valid:swap:gender"] == 2


def test_several_train_sets_and_max_pairs(tmp_path, dumps):
    extra = _dump(tmp_path / "dump" / "extra", ["w1", "w2"], ["male", "female"], frames=False)
    out = tmp_path / "pairs"
    make_pairs.main(["--train_data", f"{dumps[0]},{extra}", "--out_dir", str(out), "--valid_fraction", "0",
                     "--max_pairs", "5"])
    pairs = read_pairs(str(out / "pairs.jsonl"))
    assert len(pairs) == 5
    assert json.loads((out / "stats.json").read_text())["dropped:max_pairs"] == 15
    if {p["utt"] for p in pairs} & {"w1", "w2"}:  # frame counts unknown for the extra set
        assert not (out / "utt2num_frames").exists()


def test_external_pairs(tmp_path):
    rows = [{"id": "a-0", "utt": "a", "task": "open_qa", "instruction": "Describe.", "answer": "A woman speaks.",
             "labels": {"rejected": "A man speaks."}, "source": "vctk"}]
    dump = _dump(tmp_path / "dump" / "pref", ["a"], [], rows=rows)
    make_pairs.main(["--train_data", dump, "--out_dir", str(tmp_path / "pairs"), "--modes", "external"])
    assert read_pairs(str(tmp_path / "pairs" / "pairs.jsonl"))[0]["rejected"] == "A man speaks."


def test_errors(tmp_path, dumps, capsys):
    def fails(argv, message):
        assert make_pairs.main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("ERROR: ") and message in err and "usage:" not in err

    out = str(tmp_path / "pairs")
    fails(["--train_data", str(tmp_path / "nope"), "--out_dir", out], "nope/tasks.jsonl is missing: run stage 2")
    fails(["--train_data", dumps[0], "--out_dir", out, "--modes", "sampled"], "--modes sampled needs --model")
    fails(["--train_data", dumps[0], "--out_dir", out, "--modes", "swapp"], "modes must be a non-empty subset")
    fails(["--train_data", dumps[0], "--out_dir", out, "--modes", "external"], "no training pair could be made")
    with open(f"{dumps[0]}/tasks.jsonl", "a") as f:
        f.write('{"id": "zz", "utt": "u1"}\n')
    fails(["--train_data", dumps[0], "--out_dir", out], "tasks.jsonl:17: missing required key(s)")
    assert not (tmp_path / "pairs").exists()


def test_task_ids_shared_by_two_dumps(tmp_path, dumps, capsys):
    # another set whose task ids are the training set's (u0-asr-0, ...) for other utterances
    rows = [dict(r, utt=r["utt"].replace("u", "w")) for r in _rows(["u0", "u1"], ["male", "female"])]
    other = _dump(tmp_path / "dump" / "other", ["w0", "w1"], [], rows=rows)
    assert make_pairs.main(["--train_data", f"{dumps[0]},{other}", "--out_dir", str(tmp_path / "pairs")]) == 1
    message = capsys.readouterr().err
    assert (f"{other}/tasks.jsonl: task id 'u0-asr-0' is also in {dumps[0]}/tasks.jsonl" in message
            and "pair ids must be unique" in message)
    assert not (tmp_path / "pairs").exists()


def _snapshot(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_failed_rerun_leaves_the_earlier_output_as_it_was(tmp_path, dumps, monkeypatch, capsys):
    out = tmp_path / "pairs"
    make_pairs.main(["--train_data", dumps[0], "--out_dir", str(out), "--valid_fraction", "0.25"])
    before = _snapshot(out)
    assert {"pairs.jsonl", "feats.scp", "valid/pairs.jsonl", "stats.json"} <= set(before)
    # a held-out set given twice: refused before anything is written
    assert make_pairs.main(["--train_data", dumps[0], "--out_dir", str(out), "--valid_data", f"{dumps[1]},{dumps[1]}",
                            "--max_pairs", "3"]) == 1
    assert f"ERROR: {dumps[1]} is listed twice" in capsys.readouterr().err
    assert _snapshot(out) == before
    # writing fails midway (the held-out features): nothing of the new run reaches --out_dir
    real = make_pairs.write_map

    def failing(path, mapping):
        if f"valid{os.sep}" in path:
            raise OSError(f"{path}: no space left on device")
        real(path, mapping)

    monkeypatch.setattr(make_pairs, "write_map", failing)
    assert make_pairs.main(["--train_data", dumps[0], "--out_dir", str(out), "--valid_fraction", "0.25",
                            "--max_pairs", "3"]) == 1
    assert "no space left on device" in capsys.readouterr().err
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dump", "pairs"]  # no staging directory left behind
    monkeypatch.undo()
    make_pairs.main(["--train_data", dumps[0], "--out_dir", str(out), "--valid_fraction", "0.25", "--max_pairs", "3"])
    assert len(read_pairs(str(out / "pairs.jsonl"))) == 3 and sorted(p.name for p in tmp_path.iterdir()) == ["dump", "pairs"]


def sample_pairs(tmp_path, n_examples, *options):
    """Run mode 'sampled' with a saved toy stage-3 model on a toy dump of ``n_examples`` rows
    (both made once per ``tmp_path``)."""
    from diffa.train.model_init import init_model
    from diffa.train.toy import make_toy_setup

    setup = make_toy_setup(tmp_path / "toy", n_examples=n_examples)
    if not (tmp_path / "stage3").exists():
        config = {"stage": "sft", "init": {"whisper_dir": setup["whisper_dir"], "llada_dir": setup["llada_dir"]},
                  "model": setup["model"], "lora": {"r": 2, "alpha": 4, "dropout": 0.0, "targets": ["q_proj"]},
                  "frozen_dtype": "float32"}
        model, _ = init_model(config)
        model.save_pretrained(tmp_path / "stage3")
    out = tmp_path / "pairs"
    make_pairs.main(["--train_data", setup["dump"], "--out_dir", str(out), "--modes", "sampled", "--model_dir",
                     str(tmp_path / "stage3"), "--tokenizer_dir", setup["tokenizer_dir"], "--n_samples", "2",
                     "--gen_length", "4", "--valid_fraction", "0", *options])
    return out


def test_sampled_mode_with_a_saved_model(tmp_path):
    out = sample_pairs(tmp_path, 3)
    stats = json.loads((out / "stats.json").read_text())
    assert stats.get("sampled", 0) + stats.get("skipped:sampled", 0) == 3
    assert all(p["source"] == "sampled" for p in read_pairs(str(out / "pairs.jsonl")))


def test_sampled_mode_samples_only_up_to_max_pairs(tmp_path):
    out = sample_pairs(tmp_path, 8, "--max_pairs", "1")
    stats = json.loads((out / "stats.json").read_text())
    assert len(read_pairs(str(out / "pairs.jsonl"))) == 1 and stats["unvisited:sampled"] > 0
    assert stats["sampled"] + stats.get("skipped:sampled", 0) + stats["unvisited:sampled"] == 8


def test_sampled_mode_resumes_an_interrupted_run(tmp_path, monkeypatch):
    from diffa.train.pair_sampler import ModelSampler

    real, sampled = ModelSampler._examples, []

    def dies_at_the_third_batch(self, rows):
        if len(sampled) == 2:
            raise KeyboardInterrupt
        sampled.extend(r["id"] for r in rows)
        return real(self, rows)

    monkeypatch.setattr(ModelSampler, "_examples", dies_at_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        sample_pairs(tmp_path, 6, "--batch_size", "1")
    cache = tmp_path / "pairs" / "sampling" / "train.jsonl.partial"
    assert [json.loads(line)["id"] for line in cache.read_text().splitlines()] == sampled
    first = list(sampled)
    sampled.clear()
    monkeypatch.setattr(ModelSampler, "_examples", lambda self, rows: sampled.extend(r["id"] for r in rows) or real(self, rows))
    out = sample_pairs(tmp_path, 6, "--batch_size", "1")
    assert len(sampled) == 4 and not set(sampled) & set(first)  # only the rows the first run had not sampled
    assert not (out / "sampling").exists()  # the run is complete: its samples are removed
    stats = json.loads((out / "stats.json").read_text())
    assert stats.get("sampled", 0) + stats.get("skipped:sampled", 0) == 6


def test_help(capsys):
    with pytest.raises(SystemExit) as err:
        make_pairs.main(["--help"])
    assert err.value.code == 0 and "Usage:" in capsys.readouterr().out


def test_max_valid_pairs_subsamples_the_held_out_pairs():
    """--max_valid_pairs keeps that many held-out pairs and counts the rest."""
    import random

    from diffa.bin.make_pairs import _subsample

    stats = {}
    kept = _subsample(list(range(10)), 4, random.Random(0), stats, "dropped:max_valid_pairs")
    assert len(kept) == 4 and len(set(kept)) == 4 and stats == {"dropped:max_valid_pairs": 6}
    assert _subsample([1, 2], 0, random.Random(0), stats, "x") == [1, 2] and "x" not in stats
