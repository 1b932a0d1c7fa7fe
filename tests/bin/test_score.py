"""Tests of diffa.bin.score: scoring one set (as recipe stage 9 calls it), errors, RESULTS.md."""
import json
import subprocess
import sys

import pytest

from diffa.bin.score import main
from diffa.data.tasks import write_tasks

TASKS = [
    {"id": "c1-asr-0", "utt": "c1", "task": "asr", "instruction": "Transcribe.", "answer": "THE SUN IS BRIGHT",
     "labels": {"gender": "female"}, "source": "mini"},
    {"id": "c1-mcq-0", "utt": "c1", "task": "mcq", "instruction": "Melody? (A) rising (B) falling",
     "answer": "falling", "choices": ["rising", "falling"], "gold": 1, "labels": {"asks": "melody"}, "source": "mini"},
    {"id": "c1-open_qa-0", "utt": "c1", "task": "open_qa", "instruction": "What noise?", "answer": "pink",
     "labels": {"asks": "noise"}, "source": "mini"},
    {"id": "c2-mcq-0", "utt": "c2", "task": "mcq", "instruction": "Loud? (A) loud (B) soft", "answer": "loud",
     "choices": ["loud", "soft"], "gold": 0, "labels": {"asks": "loudness"}, "source": "mini"},
]


def decoder_row(task_id, hypothesis, **extra):
    return json.dumps({"id": task_id, "prompt": "...", "hypothesis": hypothesis, "nfe": 8, "seconds": 0.1, **extra})


def make_set(tmp_path, lines, end="\n"):
    data_dir = tmp_path / "data" / "mini_test"
    data_dir.mkdir(parents=True)
    write_tasks(str(data_dir / "tasks.jsonl"), TASKS)
    decode = tmp_path / "exp" / "stage3_sft" / "decode_steps8" / "mini_test"
    decode.mkdir(parents=True)
    (decode / "results.jsonl").write_text("\n".join(lines) + end)
    return data_dir, decode


def test_stage9_call_on_a_mixed_set(tmp_path, capsys):
    data_dir, decode = make_set(tmp_path, [
        decoder_row("c1-asr-0", "The sun is bright."),
        decoder_row("c1-mcq-0", "falling"),
        decoder_row("c1-open_qa-0", None, failed=True, error="RuntimeError: boom"),
        '{"id": "c2-mcq-0", "hypo',
    ], end="")
    out = decode / "score"
    status = main(["--results", str(decode / "results.jsonl"), "--data_dir", str(data_dir), "--out_dir", str(out),
                   "--group_by", "asks", "--style", "whisper_english"])
    assert status == 0
    printed = capsys.readouterr().out
    assert printed.startswith("mini_test (mixed): asr_wer 0.00, asr_cer 0.00")
    assert "mcq_accuracy 50.00, open_qa_accuracy 0.00" in printed
    assert "rows 4, failed 2, invalid hypotheses 0, skipped lines 1" in printed
    data = json.loads((out / "scores.json").read_text())
    assert data["missing_ids"] == ["c2-mcq-0"] and data["failed_ids"] == ["c1-open_qa-0", "c2-mcq-0"]
    assert data["mcq"]["tables"]["asks"] == {
        "loudness": {"n": 1, "correct": 0, "accuracy": 0.0}, "melody": {"n": 1, "correct": 1, "accuracy": 100.0}}
    assert sorted(p.name for p in out.iterdir()) == [
        "errs-mini_test-whisper_english-char.txt", "errs-mini_test-whisper_english.txt", "judgements-mini_test.jsonl",
        "recogs-mini_test.txt", "scores.json", "scores.md", "wer-summary-mini_test.txt"]


def test_explicit_metric_and_bad_input_exit_nonzero(tmp_path, capsys):
    data_dir, decode = make_set(tmp_path, [decoder_row("c1-asr-0", "x"), "{broken", decoder_row("c2-mcq-0", "loud")])
    results = str(decode / "results.jsonl")
    assert main(["--results", results, "--data_dir", str(data_dir)]) == 1
    assert "results.jsonl:2: malformed JSON" in capsys.readouterr().err
    (decode / "results.jsonl").write_text(decoder_row("c1-asr-0", "x") + "\n")
    assert main(["--results", results, "--data_dir", str(data_dir), "--metric", "mmsu"]) == 1
    assert "--metric mmsu scores mcq rows, but the results hold 1 asr rows" in capsys.readouterr().err


def test_write_results_md(tmp_path, capsys):
    data_dir, decode = make_set(tmp_path, [decoder_row(t["id"], t["answer"]) for t in TASKS])
    (decode.parent / "settings.json").write_text(json.dumps({"model_dir": "exp/stage3_sft", "steps": 8}))
    assert main(["--results", str(decode / "results.jsonl"), "--data_dir", str(data_dir),
                 "--out_dir", str(decode / "score"), "--style", "wenet"]) == 0
    results_md = tmp_path / "RESULTS.md"
    assert main(["--write_results_md", str(results_md), "--decode_dirs", str(decode.parent), "--title", "mini"]) == 0
    assert "1 scored sets from 1 decode directories" in capsys.readouterr().out
    text = results_md.read_text()
    assert "## mini_test" in text
    # headline metrics first (asr_wer, mcq_accuracy, open_qa_accuracy), then the rest
    assert "| model | decode settings | asr_wer | mcq_accuracy | open_qa_accuracy | asr_cer |" in text
    assert "| exp/stage3_sft | steps=8 | 0.00 | 100.00 | 100.00 | 0.00 | 0.00 | 0.00 | 100.00 | 4 | 0 | 0 | 0 |" in text
    assert main(["--write_results_md", str(results_md), "--decode_dirs", str(tmp_path / "nowhere")]) == 1
    assert "no scores.json" in capsys.readouterr().err
    # a directory never scored among scored ones is left out, not the end of the table
    assert main(["--write_results_md", str(results_md), "--decode_dirs", str(tmp_path / "nowhere"),
                 str(decode.parent)]) == 0
    assert "1 scored sets from 2 decode directories" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--write_results_md", "R.md", "--decode_dirs", "d", "--results", "r.jsonl", "--metric", "wer"],
     "--results, --metric: options of scoring one set, not of --write_results_md"),
    (["--results", "r.jsonl", "--title", "DIFFA-2"], "--title: options of --write_results_md, not of scoring one set"),
    (["--write_results_md", "R.md"], "--write_results_md takes --decode_dirs"),
])
def test_options_of_the_other_mode_are_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_help_runs_as_module():
    proc = subprocess.run([sys.executable, "-m", "diffa.bin.score", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0
    assert "Usage:" in proc.stdout and "--write_results_md" in proc.stdout


def test_mmsu_headline_leaves_unparseable_out(tmp_path, capsys):
    # MMSU's mcq_accuracy leaves unparseable responses out of the denominator, as its official scorer does;
    # failed rows stay in
    def row(n, hypothesis, **extra):
        return json.dumps({"id": f"q{n}", "task": "mcq", "hypothesis": hypothesis, "choices": ["x", "y", "z"],
                           "gold": 1, "source": "MMSU", "labels": {"category": "Phonology"}, **extra})
    decode = tmp_path / "exp" / "m" / "decode_steps8" / "mmsu"
    decode.mkdir(parents=True)
    (decode / "results.jsonl").write_text("\n".join([
        row(1, "B"), row(2, "The answer is B."), row(3, "C"), row(4, "no idea"),
        row(5, None, failed=True, error="OOM")]) + "\n")
    assert main(["--results", str(decode / "results.jsonl"), "--out_dir", str(decode / "score")]) == 0
    printed = capsys.readouterr().out
    assert "mmsu (mmsu): mcq_accuracy 50.00, mcq_accuracy_all 40.00 | rows 5, failed 1" in printed
    md = (decode / "score" / "scores.md").read_text()
    assert "| n | correct | accuracy | unparseable | failed | accuracy (all items) |" in md
    assert "| Phonology | 5 | 2 | 50.00 | 1 | 1 | 40.00 |" in md
    assert "unparseable responses out of the denominator" in md
    results_md = tmp_path / "RESULTS.md"
    assert main(["--write_results_md", str(results_md), "--decode_dirs", str(decode.parent)]) == 0
    text = results_md.read_text()
    assert "| model | decode settings | mcq_accuracy | mcq_accuracy_all | rows |" in text
    assert "| m | decode_steps8 | 50.00 | 40.00 | 5 | 1 | 0 | 0 |" in text
    assert "mcq_accuracy_parsed" not in text


def test_missing_results_file_names_the_remedy(tmp_path, capsys):
    # was "[Errno 2] No such file or directory: '...'" with no hint what to do
    missing = str(tmp_path / "decode" / "test_clean" / "results.jsonl")
    assert main(["--results", missing]) == 1
    assert (f"{missing} does not exist; run decoding (stage 8) for set 'test_clean' first or fix --results"
            in capsys.readouterr().err)
