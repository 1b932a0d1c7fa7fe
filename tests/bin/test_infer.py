"""diffa.bin.infer: one question about one file of any rate and channel count."""

import numpy as np
import pytest
import soundfile as sf
import torch

from diffa.bin.infer import main
from diffa.decode.config import DecodeConfig
from diffa.decode.infer import Answer, answer
from diffa.decode.loading import load_for_decoding

pytestmark = pytest.mark.usefixtures("one_thread")
FLAGS = ["--gen_length", "8", "--block_length", "8", "--steps", "8", "--device", "cpu"]


@pytest.fixture
def stereo_wav(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "clip_48k_stereo.wav"
    sf.write(path, (0.1 * rng.standard_normal((24000, 2))).astype(np.float32), 48000)
    return str(path)


def test_prints_the_answer_of_the_python_function(toy, stereo_wav, capsys):
    assert main(["--model_dir", str(toy.model_dir), "--audio", stereo_wav, "--question", "What do you hear?",
                 "--verbose", "true", *FLAGS]) == 0
    captured = capsys.readouterr()
    model, tok = load_for_decoding(toy.model_dir, device="cpu")
    expected = answer(model, tok, stereo_wav, "What do you hear?", config=DecodeConfig(gen_length=8, block_length=8, steps=8))
    assert captured.out == expected.text + "\n"
    assert f"# nfe {expected.nfe}," in captured.err


def test_an_empty_answer_says_how_to_decode_with_the_recipes_settings(toy, stereo_wav, tmp_path, monkeypatch, caplog):
    import diffa.bin.infer as infer

    monkeypatch.setattr(infer, "answer", lambda *args, **kwargs: Answer("", 128, 0.1))
    assert main(["--model_dir", str(toy.model_dir), "--audio", stereo_wav, "--question", "Who?", "--device", "cpu"]) == 0
    assert "the answer is empty with the built-in decoding settings: decode with the recipe's settings" in caplog.text
    config = tmp_path / "decode.yaml"
    config.write_text("gen_length: 4\nblock_length: 4\nsteps: 4\ntask_overrides: {asr: {gen_length: 8}}\n")
    common = ["--model_dir", str(toy.model_dir), "--audio", stereo_wav, "--question", "Who?", "--config", str(config)]
    caplog.clear()
    assert main(common) == 0
    assert ("the answer is empty: give the question's task type (--task) so that the config's settings for it "
            "apply") in caplog.text
    caplog.clear()  # the recipe's settings and the task: nothing to advise
    assert main([*common, "--task", "mcq"]) == 0
    assert "the answer is empty: the model's answer ends before its first word" in caplog.text
    assert "recipe's settings" not in caplog.text and "task type" not in caplog.text


def test_config_file_and_task_overrides(toy, stereo_wav, tmp_path, capsys, caplog, monkeypatch):
    config = tmp_path / "decode.yaml"
    config.write_text("gen_length: 4\nblock_length: 4\nsteps: 4\ntask_overrides: {asr: {gen_length: 8, block_length: 8, steps: 8}}\n")
    common = ["--model_dir", str(toy.model_dir), "--audio", stereo_wav, "--question", "Transcribe.", "--config", str(config),
              "--device", "cpu", "--verbose", "true", "--stop_at_eos", "false"]
    assert main(common) == 0
    assert "# nfe 4," in capsys.readouterr().err
    assert ("the answer fills its 4 positions and may be cut short: the config's settings for task types asr "
            "(e.g. ASR's longer answers) apply with --task") in caplog.text
    caplog.clear()
    assert main(common + ["--task", "asr"]) == 0
    assert "# nfe 8," in capsys.readouterr().err and "apply with --task" not in caplog.text
    caplog.clear()
    import diffa.bin.infer as infer  # an answer shorter than its positions: no word about the task settings
    monkeypatch.setattr(infer, "answer", lambda *args, **kwargs: Answer("a", 4, 0.1))
    assert main(common) == 0 and "apply with --task" not in caplog.text


def test_config_as_first_argument_and_no_batching_flags(toy, stereo_wav, tmp_path, capsys):
    config = tmp_path / "decode.yaml"
    config.write_text("gen_length: 4\nblock_length: 4\nsteps: 4\n")
    common = ["--model_dir", str(toy.model_dir), "--audio", stereo_wav, "--question", "Who?", "--device", "cpu",
              "--verbose", "true", "--stop_at_eos", "false"]
    assert main([str(config), *common]) == 0
    assert "# nfe 4," in capsys.readouterr().err
    assert main([str(config), *common, "--config", str(config)]) == 1
    assert "two decoding configs" in capsys.readouterr().err
    for flag in ("--batch_size", "--max_tokens"):  # one example: a batch setting would do nothing
        with pytest.raises(SystemExit):
            main([*common, flag, "2"])
        assert f"unrecognized arguments: {flag}" in capsys.readouterr().err


@pytest.mark.parametrize("what, message", [("audio", "does not exist"), ("model", "no such model directory")])
def test_errors_name_the_file(toy, stereo_wav, tmp_path, capsys, what, message):
    paths = {"audio": stereo_wav, "model": str(toy.model_dir)}
    paths[what] = str(tmp_path / "nope")
    assert main(["--model_dir", paths["model"], "--audio", paths["audio"], "--question", "Who?", *FLAGS]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ERROR: ") and "nope" in err and message in err


@pytest.mark.parametrize("damage", ["tokenizer/spm.model", "adapters.safetensors"])
def test_corrupt_model_files_are_one_line_errors(toy, stereo_wav, tmp_path, capsys, damage):
    import shutil

    model_dir = tmp_path / "m"
    shutil.copytree(toy.model_dir, model_dir)
    (model_dir / damage).write_bytes(b"garbage")
    assert main(["--model_dir", str(model_dir), "--audio", stereo_wav, "--question", "Who?", *FLAGS]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ERROR: ") and err.count("\n") == 1 and f"{model_dir / damage}:" in err


def test_the_same_answer_as_decode_on_the_same_example(toy, stereo_wav, tmp_path):
    """A wav through infer and through the recipe path (extract_feats -> decode) gives one answer."""
    import json

    from diffa.bin import decode, extract_feats
    from diffa.data.tasks import write_tasks

    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text(f"clip {stereo_wav}\n")
    write_tasks(str(data / "tasks.jsonl"), [{"id": "clip-q", "utt": "clip", "task": "open_qa",
                                            "instruction": "What do you hear?", "answer": "noise"}])
    extract_feats.main(["--data_dir", str(data), "--out_dir", str(tmp_path / "dump"), "--job", "1",
                        "--n_mels", "16"])
    dump = tmp_path / "dump"
    (dump / "feats.scp").write_text((dump / "data" / "feats.1.scp").read_text())
    (dump / "utt2num_frames").write_text((dump / "data" / "utt2num_frames.1").read_text())
    out = tmp_path / "results.jsonl"
    assert decode.main(["--model_dir", str(toy.model_dir), "--data_dir", str(data), "--feats_dir", str(dump),
                        "--out", str(out), "--progress", "false", *FLAGS]) == 0
    model, tok = load_for_decoding(toy.model_dir, device="cpu")
    got = answer(model, tok, stereo_wav, "What do you hear?", config=DecodeConfig(gen_length=8, block_length=8, steps=8),
                 task="open_qa")
    row = json.loads(out.read_text())
    assert (row["hypothesis"], row["nfe"]) == (got.text, got.nfe) and got.text


@pytest.mark.parametrize("flags, audio", [([], torch.float32), (["--audio_dtype", "same"], torch.bfloat16)])
def test_audio_dtype(toy, stereo_wav, monkeypatch, capsys, flags, audio):
    """The LLM in --dtype, the encoder and the adapters in --audio_dtype (float32 by default)."""
    import diffa.bin.infer as infer

    loaded = []

    def load(*arguments):
        loaded.append(load_for_decoding(*arguments))
        return loaded[-1]

    monkeypatch.setattr(infer, "load_for_decoding", load)
    assert main(["--model_dir", str(toy.model_dir), "--audio", stereo_wav, "--question", "Who?", "--dtype", "bfloat16",
                 *flags, *FLAGS]) == 0
    model, _ = loaded[0]
    assert model.llm.dtype == torch.bfloat16 and {p.dtype for p in model.acoustic.parameters()} == {audio}


def test_a_questions_file_is_answered_with_one_load_of_the_model(toy, stereo_wav, tmp_path, capsys, caplog, monkeypatch):
    import json

    import diffa.bin.infer as infer

    loads = []
    monkeypatch.setattr(infer, "load_for_decoding", lambda *args: loads.append(args) or load_for_decoding(*args))
    questions = tmp_path / "questions.jsonl"
    missing = str(tmp_path / "gone.wav")
    questions.write_text(
        json.dumps({"audio": stereo_wav, "question": "What do you hear?"}) + "\n"
        + json.dumps({"id": "asr-1", "audio": stereo_wav, "question": "Transcribe.", "task": "asr"}) + "\n"
        + json.dumps({"audio": missing, "question": "Who?"}) + "\n")
    config = tmp_path / "decode.yaml"
    config.write_text("gen_length: 8\nblock_length: 8\nsteps: 8\ntask_overrides: {asr: {gen_length: 4, block_length: 4, steps: 4}}\n")
    assert main(["--model_dir", str(toy.model_dir), "--questions", str(questions), "--config", str(config),
                 "--device", "cpu", "--verbose", "true"]) == 1
    assert len(loads) == 1
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    model, tok = load_for_decoding(toy.model_dir, device="cpu")
    expected = [answer(model, tok, stereo_wav, "What do you hear?", config=DecodeConfig(gen_length=8, block_length=8, steps=8)),
                answer(model, tok, stereo_wav, "Transcribe.", task="asr", config=DecodeConfig(
                    gen_length=8, block_length=8, steps=8, task_overrides={"asr": {"gen_length": 4, "block_length": 4,
                                                                                   "steps": 4}}))]
    assert [(row["id"], row["answer"], row["nfe"]) for row in rows[:2]] == [
        ("1", expected[0].text, expected[0].nfe), ("asr-1", expected[1].text, expected[1].nfe)]
    assert rows[1]["task"] == "asr" and rows[1]["nfe"] <= 4 and "task" not in rows[0]
    assert rows[2]["id"] == "3" and "answer" not in rows[2] and missing in rows[2]["error"]
    assert "1 of 3 questions could not be answered: 3" in caplog.text
    assert main(["--model_dir", str(toy.model_dir), "--questions", str(questions), "--config", str(config),
                 "--device", "cpu"]) == 1
    assert [sorted(json.loads(line)) for line in capsys.readouterr().out.splitlines()[:2]] == [
        ["answer", "audio", "id", "question"], ["answer", "audio", "id", "question", "task"]]


@pytest.mark.parametrize("line, message", [
    ('{"audio": "a.wav"}', "questions.jsonl:2: missing required key(s) ['question']"),
    ('{"audio": "a.wav", "question": "Who?", "task": "caption"}', "questions.jsonl:2: 'task' must be one of"),
    ('{"id": "1", "audio": "a.wav", "question": "Who?"}', "questions.jsonl:2: id '1' is on line 1 too"),
    ('{"audio": "a.wav", "question": "Who?"', "questions.jsonl:2: malformed JSON"),
])
def test_a_bad_questions_file_is_named_before_the_model_loads(toy, tmp_path, capsys, monkeypatch, line, message):
    import diffa.bin.infer as infer

    monkeypatch.setattr(infer, "load_for_decoding", lambda *args: pytest.fail("loaded the model"))
    questions = tmp_path / "questions.jsonl"
    questions.write_text('{"audio": "b.wav", "question": "What?"}\n' + line + "\n")
    assert main(["--model_dir", str(toy.model_dir), "--questions", str(questions)]) == 1
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["--questions", "q.jsonl", "--audio", "a.wav"], "--questions replaces --audio and --question"),
    (["--audio", "a.wav"], "give --audio and --question (one question), or --questions JSONL"),
])
def test_one_question_or_a_file_of_them(capsys, args, message):
    with pytest.raises(SystemExit):
        main(["--model_dir", "m", *args])
    assert message in capsys.readouterr().err
