"""Loading a model directory for decoding: every missing piece is named, tokenizer fallbacks."""

import json
import os
import shutil

import pytest
import torch

from diffa.decode.loading import check_model_dir, find_tokenizer, load_for_decoding, resolve_device


def copy_model(toy, tmp_path):
    target = tmp_path / "m"
    shutil.copytree(toy.model_dir, target, symlinks=True)
    return target


def test_loads_model_and_tokenizer(toy):
    model, tok = load_for_decoding(toy.model_dir, device="cpu")
    assert not model.training and model.llm.dtype == torch.float32
    assert tok.vocab_size == toy.tokenizer.vocab_size == model.llm.config.vocab_size


def test_missing_files_are_all_named(toy, tmp_path):
    model_dir = copy_model(toy, tmp_path)
    os.remove(model_dir / "adapters.safetensors")
    shutil.rmtree(model_dir / "tokenizer")
    with pytest.raises(FileNotFoundError) as err:
        load_for_decoding(model_dir, device="cpu")
    message = str(err.value)
    assert f"{model_dir} is not a complete DIFFA model directory" in message
    assert "adapters.safetensors" in message and "a tokenizer" in message and "--tokenizer_dir" in message
    assert "config.json" not in message.split("missing")[1].split("a tokenizer")[0]


def test_declared_lora_without_weights(toy, tmp_path):
    model_dir = copy_model(toy, tmp_path)
    config = json.loads((model_dir / "config.json").read_text())
    config["lora"] = {"r": 2, "alpha": 4}
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(FileNotFoundError, match=r"lora.safetensors \(config.json declares LoRA\)"):
        load_for_decoding(model_dir, device="cpu")


@pytest.mark.parametrize("damage, message", [
    ("tokenizer/spm.model", "not a readable tokenizer"),
    ("adapters.safetensors", "not a readable safetensors file"),
    ("llm/model.safetensors", "not a readable safetensors file"),
])
def test_corrupt_files_are_named(toy, tmp_path, damage, message):
    model_dir = copy_model(toy, tmp_path)
    target = model_dir / damage
    target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    with pytest.raises(ValueError, match=f"^{model_dir / damage}: {message}"):
        load_for_decoding(model_dir, device="cpu")


def test_check_model_dir(toy, tmp_path):
    model_dir = copy_model(toy, tmp_path)
    assert check_model_dir(model_dir) == (model_dir, model_dir / "tokenizer")
    os.remove(model_dir / "config.json")
    with pytest.raises(FileNotFoundError, match="missing config.json"):
        check_model_dir(model_dir)


def test_a_moved_frozen_part_is_explained(toy, tmp_path):
    model_dir = copy_model(toy, tmp_path)
    shutil.move(model_dir / "llm", tmp_path / "llm_real")
    (model_dir / "llm").symlink_to(tmp_path / "moved_away")
    with pytest.raises(FileNotFoundError, match=r"/m/llm is a link to .*moved_away, which does not exist"):
        check_model_dir(model_dir)


def test_tokenizer_lookup_order(toy, tmp_path):
    model_dir = copy_model(toy, tmp_path)
    assert find_tokenizer(model_dir) == model_dir / "tokenizer"
    shutil.move(model_dir / "tokenizer" / "spm.model", model_dir / "llm" / "spm.model")
    assert find_tokenizer(model_dir) == model_dir / "llm"  # an official LLaDA dir carries its tokenizer
    assert find_tokenizer(model_dir, tmp_path / "elsewhere") is None
    with pytest.raises(FileNotFoundError, match="elsewhere; pass --tokenizer_dir DIR"):
        load_for_decoding(model_dir, tokenizer_dir=tmp_path / "elsewhere", device="cpu")


def test_not_a_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model directory"):
        load_for_decoding(tmp_path / "nope")


def test_device_defaults():
    assert resolve_device("cpu", "float64") == (torch.device("cpu"), torch.float64)
    if torch.cuda.is_available():
        assert resolve_device() == (torch.device("cuda"), torch.bfloat16)
        with pytest.raises(ValueError, match=r"there are \d+ CUDA devices, cuda:0 to"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")
    else:
        assert resolve_device() == (torch.device("cpu"), torch.float32)
        with pytest.raises(ValueError, match=r"--device cuda: no CUDA device is usable here .*; use --device cpu"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="--device 'gpu' is not a device; use cpu, cuda or cuda:N"):
        resolve_device("gpu")


def test_experiment_directory_with_final_and_training_tokenizer(toy, tmp_path):
    """exp/<stage>/final is found, and the tokenizer the training config names is used."""
    exp = tmp_path / "exp" / "stage3_sft"
    shutil.copytree(toy.model_dir, exp / "final", symlinks=True)
    shutil.move(exp / "final" / "tokenizer", tmp_path / "tok")
    (exp / "config.yaml").write_text(f"stage: sft\ntokenizer_dir: {tmp_path / 'tok'}\n")
    model, tok = load_for_decoding(exp, device="cpu")
    assert tok.vocab_size == toy.tokenizer.vocab_size
    (exp / "config.yaml").write_text("stage: sft\n")
    with pytest.raises(FileNotFoundError, match=r"final is not a complete DIFFA model directory: missing a tokenizer"):
        load_for_decoding(exp, device="cpu")


def parts_dtypes(model):
    """{part: set of parameter dtypes} for the LLM and the audio side."""
    return {name: {p.dtype for p in getattr(model, name).parameters()}
            for name in ("llm", "encoder", "semantic", "acoustic", "prompts")}


def captured_llm_inputs(model, monkeypatch):
    """The embeddings every forward of ``model.llm`` gets (appended as the model runs)."""
    seen, forward_hidden = [], model.llm.forward_hidden

    def spy(inputs_embeds, **kwargs):
        seen.append(inputs_embeds)
        return forward_hidden(inputs_embeds=inputs_embeds, **kwargs)

    monkeypatch.setattr(model.llm, "forward_hidden", spy)
    return seen


def test_audio_side_in_float32_by_default(toy, monkeypatch):
    """As in the authors' inference: LLaDA in bfloat16, the encoder and the adapters in float32,
    and the LLM gets exactly the float32 audio embeddings cast to bfloat16."""
    from diffa.model.splice import splice_audio

    model, _ = load_for_decoding(toy.model_dir, device="cpu", dtype="bfloat16")
    assert parts_dtypes(model) == {"llm": {torch.bfloat16}, "encoder": {torch.float32}, "semantic": {torch.float32},
                                   "acoustic": {torch.float32}, "prompts": {torch.float32}}
    feats, feat_lens, pos = torch.randn(2, 50, 16), torch.tensor([50, 23]), torch.tensor([2, 3])
    ids = torch.randint(0, 90, (2, 7))
    seen = captured_llm_inputs(model, monkeypatch)
    with torch.no_grad():
        logits = model.denoiser(feats, feat_lens, pos)(ids)
        reference, _ = load_for_decoding(toy.model_dir, device="cpu", dtype="float32")
        audio, audio_lens = reference.encode_audio(feats, feat_lens)
        expected = splice_audio(model.llm.get_input_embeddings()(ids), audio.to(torch.bfloat16), audio_lens, pos)
    assert logits.shape == (2, 7, model.llm.config.vocab_size) and bool(logits.isfinite().all())
    assert audio.dtype == torch.float32 and seen[0].dtype == torch.bfloat16
    assert torch.equal(seen[0], expected.embeds)


@pytest.mark.parametrize("audio_dtype", ["bfloat16", "same"])
def test_audio_side_in_the_llm_dtype(toy, monkeypatch, audio_dtype):
    """``--audio_dtype bfloat16`` (or ``same``): the whole model in bfloat16, as before the option."""
    model, _ = load_for_decoding(toy.model_dir, device="cpu", dtype="bfloat16", audio_dtype=audio_dtype)
    assert set.union(*parts_dtypes(model).values()) == {torch.bfloat16}
    feats, feat_lens, pos = torch.randn(1, 40, 16), torch.tensor([40]), torch.tensor([2])
    with torch.no_grad():
        audio, _ = model.encode_audio(feats, feat_lens)
        logits = model.denoiser(feats, feat_lens, pos)(torch.randint(0, 90, (1, 6)))
    assert audio.dtype == torch.bfloat16 and logits.shape == (1, 6, model.llm.config.vocab_size)


def test_float32_decoding_is_all_float32(toy):
    model, _ = load_for_decoding(toy.model_dir, device="cpu")
    assert set.union(*parts_dtypes(model).values()) == {torch.float32}
    with pytest.raises(ValueError, match="unknown audio dtype 'half'; use one of float32, .* or same"):
        load_for_decoding(toy.model_dir, device="cpu", audio_dtype="half")
