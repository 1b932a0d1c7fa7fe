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


def test_an_empty_answer_says_how_to_decode_with_the_recipes_settings(toy, stereo_wav, monkeypatch, caplog):
    import diffa.bin.infer as infer

    monkeypatch.setattr(infer, "answer", lambda *args, **kwargs: Answer("", 128, 0.1))
    assert main(["--model_dir", str(toy.model_dir), "--audio", stereo_wav, "--question", "Who?", "--device", "cpu"]) == 0
    assert "the answer is empty with the built-in decoding settings: decode with the recipe's settings" in caplog.text


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
