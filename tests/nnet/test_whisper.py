"""The frozen Whisper encoder wrapper: official checkpoint loading, both input modes, taps, errors."""

import json
import os

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperModel
from transformers.models.whisper.modeling_whisper import WhisperEncoder as HFWhisperEncoder

from diffa.nnet.whisper import EncoderOutput, WhisperEncoder

N_LAYERS = 3
ALL_TAPS = tuple(range(N_LAYERS + 1))


def tiny_config(**overrides):
    fields = dict(
        d_model=32, encoder_layers=N_LAYERS, encoder_attention_heads=4, encoder_ffn_dim=64,
        decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=64, num_mel_bins=80,
        vocab_size=100, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=3,
        max_source_positions=1500, max_target_positions=32,
    )
    fields.update(overrides)
    return WhisperConfig(**fields)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A random full Whisper model saved in the official layout, and its (reference) HF encoder."""
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(tiny_config()).eval()
    path = tmp_path_factory.mktemp("whisper")
    model.save_pretrained(path)
    return path, model.model.encoder


def tensors_of(path):
    with safe_open(str(path / "model.safetensors"), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def test_loads_only_the_official_encoder_weights(checkpoint):
    path, ref = checkpoint
    enc = WhisperEncoder.from_pretrained(path, taps=(1,))
    own = enc.state_dict()
    assert sorted(own) == sorted("encoder." + k for k in ref.state_dict())
    for k, v in ref.state_dict().items():
        assert torch.equal(own["encoder." + k], v), k
    assert all(t.device.type == "cpu" for t in own.values())
    assert not any(p.requires_grad for p in enc.parameters())
    assert (enc.output_dim, enc.n_heads, enc.n_mels, enc.n_layers) == (32, 4, 80, N_LAYERS)
    assert enc.config.d_model == 32 and enc.pad_to_30s and enc.taps == (1,)


def test_stays_frozen_inside_a_training_parent(checkpoint):
    enc = WhisperEncoder.from_pretrained(checkpoint[0], pad_to_30s=False)
    parent = torch.nn.ModuleDict({"enc": enc, "head": torch.nn.Linear(32, 2)})
    parent.train()
    assert parent["head"].training and not enc.training and not enc.encoder.layers[0].training
    feats = torch.randn(1, 20, 80, requires_grad=True)
    assert not enc(feats, torch.tensor([20])).last_hidden.requires_grad


def padded_like_whisper(feats, feat_lens):
    """Reference 30-s padding, one utterance at a time: silence = max of the real frames - 2, at
    least -1.5."""
    out = torch.empty(feats.shape[0], 3000, feats.shape[2])
    for b, n in enumerate(feat_lens.tolist()):
        out[b] = max(feats[b, :n].max().item() - 2.0, -1.5)
        out[b, :n] = feats[b, :n]
    return out


def test_30s_mode_equals_hf_forward(checkpoint):
    path, ref = checkpoint
    enc = WhisperEncoder.from_pretrained(path, taps=ALL_TAPS, pad_to_30s=True)
    feats, feat_lens = torch.randn(2, 501, 80), torch.tensor([501, 320])
    feats[1, 320:] = 50.0  # batch padding must be replaced, not kept or counted in the max
    out = enc(feats, feat_lens)
    with torch.no_grad():
        hf = ref(padded_like_whisper(feats, feat_lens).transpose(1, 2), output_hidden_states=True)
    assert isinstance(out, EncoderOutput)
    assert out.last_hidden.shape == (2, 1500, 32)
    assert torch.equal(out.last_hidden, hf.last_hidden_state)
    assert len(hf.hidden_states) == len(out.taps) == N_LAYERS + 1
    for tap, hf_state in zip(out.taps, hf.hidden_states):
        assert torch.equal(tap, hf_state)
    assert out.lens.tolist() == [251, 160]


@pytest.mark.parametrize("amplitude", [0.3, 1e-3])  # loud: max - 2; quiet: Whisper's -1.5 floor
def test_silence_padding_is_whisper_feature_extractors(amplitude):
    from transformers import WhisperFeatureExtractor

    from diffa.data.features import WhisperLogMel
    from diffa.nnet.whisper import pad_with_silence

    wav = (amplitude * torch.randn(8000, generator=torch.Generator().manual_seed(0))).numpy()
    hf = WhisperFeatureExtractor(feature_size=80)(wav, sampling_rate=16000, return_tensors="pt")
    hf = hf["input_features"][0].T  # (3000, 80), zero samples appended up to 30 s
    feats, lens = WhisperLogMel(80)(torch.from_numpy(wav)[None])
    padded = pad_with_silence(feats, torch.arange(feats.shape[1])[None] < lens[:, None], 3000)[0]
    n = int(lens)  # Whisper's frames n and n + 1 still overlap the clip's last samples
    torch.testing.assert_close(padded[n + 2:], hf[n + 2:], atol=1e-4, rtol=0)


def test_30s_mode_cuts_longer_input(checkpoint):
    enc = WhisperEncoder.from_pretrained(checkpoint[0], pad_to_30s=True)
    feats = torch.randn(1, 3007, 80)
    long = enc(feats, torch.tensor([3007]))
    cut = enc(feats[:, :3000], torch.tensor([3000]))
    assert torch.equal(long.last_hidden, cut.last_hidden) and long.lens.tolist() == [1500]


def test_variable_length_is_independent_of_batch_padding(checkpoint):
    enc = WhisperEncoder.from_pretrained(checkpoint[0], taps=(0, 2), pad_to_30s=False)
    torch.manual_seed(1)
    lens = [37, 24, 9]
    feats = torch.randn(3, 37, 80)
    for b, n in enumerate(lens):
        feats[b, n:] = 1e3  # garbage padding
    out = enc(feats, torch.tensor(lens))
    assert out.last_hidden.shape == (3, 19, 32)
    assert out.lens.tolist() == [19, 12, 5]
    for b, n in enumerate(lens):
        alone = enc(feats[b : b + 1, :n], torch.tensor([n]))
        m = alone.last_hidden.shape[1]
        assert m == out.lens[b]
        torch.testing.assert_close(out.last_hidden[b, :m], alone.last_hidden[0], atol=1e-5, rtol=0)
        for tap, tap_alone in zip(out.taps, alone.taps):
            torch.testing.assert_close(tap[b, :m], tap_alone[0], atol=1e-5, rtol=0)


def test_variable_length_matches_hf_encoder_with_a_shorter_position_table(checkpoint):
    """An unpadded utterance of 2k frames is what HF's own forward computes with k positions."""
    path, ref = checkpoint
    enc = WhisperEncoder.from_pretrained(path, taps=ALL_TAPS, pad_to_30s=False)
    k = 60
    short = HFWhisperEncoder(tiny_config(max_source_positions=k)).eval()
    state = dict(ref.state_dict())
    state["embed_positions.weight"] = state["embed_positions.weight"][:k]
    short.load_state_dict(state)
    feats = torch.randn(1, 2 * k, 80)
    out = enc(feats, torch.tensor([2 * k]))
    with torch.no_grad():
        hf = short(feats.transpose(1, 2), output_hidden_states=True)
    torch.testing.assert_close(out.last_hidden, hf.last_hidden_state, atol=1e-6, rtol=0)
    for tap, hf_state in zip(out.taps, hf.hidden_states):
        torch.testing.assert_close(tap, hf_state, atol=1e-6, rtol=0)
    assert out.lens.tolist() == [k]


def test_taps_follow_hf_numbering_and_order(checkpoint):
    enc_all = WhisperEncoder.from_pretrained(checkpoint[0], taps=ALL_TAPS, pad_to_30s=False)
    enc_two = WhisperEncoder.from_pretrained(checkpoint[0], taps=(3, 1), pad_to_30s=False)
    feats, lens = torch.randn(2, 16, 80), torch.tensor([16, 11])
    every, two = enc_all(feats, lens), enc_two(feats, lens)
    assert torch.equal(two.taps[0], every.taps[3]) and torch.equal(two.taps[1], every.taps[1])
    assert torch.equal(every.taps[N_LAYERS], every.last_hidden)  # last index = final normed output
    assert not torch.equal(every.taps[0], every.taps[1])


def test_loads_sharded_and_bare_whisper_model_layouts(checkpoint, tmp_path):
    path, ref = checkpoint
    tensors = tensors_of(path)
    names = sorted(tensors)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    (sharded / "config.json").write_text((path / "config.json").read_text())
    for file, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(sharded / file))
    weight_map = {k: file for file, keys in shards.items() for k in keys}
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    a = WhisperEncoder.from_pretrained(sharded, dtype=torch.float64)
    assert a.encoder.conv1.weight.dtype == torch.float64
    torch.testing.assert_close(a.encoder.layers[2].fc1.weight, ref.layers[2].fc1.weight.double())
    (sharded / "model-00002-of-00002.safetensors").rename(sharded / "elsewhere")
    with pytest.raises(FileNotFoundError, match=r"sharded/model.safetensors.index.json lists model-00002-of-00002.safetensors, "
                                                r"but .*sharded/model-00002-of-00002.safetensors does not exist; download"):
        WhisperEncoder.from_pretrained(sharded)

    bare = tmp_path / "bare"
    WhisperModel(tiny_config()).save_pretrained(bare)  # keys "encoder.*", no "model." prefix
    b = WhisperEncoder.from_pretrained(bare)
    assert torch.equal(b.encoder.conv2.weight, tensors_of(bare)["encoder.conv2.weight"])
    out = b(torch.randn(1, 10, 80), torch.tensor([10]))
    assert out.last_hidden.dtype == torch.float32


def test_keeps_the_stored_dtype_unless_told_otherwise(checkpoint, tmp_path):
    """whisper-large-v3 is stored in float16; it loaded as float32 when no dtype was given."""
    path, ref = checkpoint
    WhisperForConditionalGeneration.from_pretrained(path).half().save_pretrained(tmp_path)
    enc = WhisperEncoder.from_pretrained(tmp_path)
    assert {p.dtype for p in enc.parameters()} == {torch.float16}
    assert torch.equal(enc.encoder.layers[0].fc1.weight, ref.layers[0].fc1.weight.half())
    assert {p.dtype for p in WhisperEncoder.from_pretrained(tmp_path, dtype=torch.float32).parameters()} == {torch.float32}


def copy_checkpoint(src, dst, drop=(), config_overrides=None):
    dst.mkdir()
    config = json.loads((src / "config.json").read_text())
    config.update(config_overrides or {})
    (dst / "config.json").write_text(json.dumps(config))
    save_file({k: v for k, v in tensors_of(src).items() if k not in drop}, str(dst / "model.safetensors"))
    return dst


def test_missing_key_and_wrong_shape_errors_name_file_and_key(checkpoint, tmp_path):
    path = checkpoint[0]
    gone = copy_checkpoint(path, tmp_path / "gone", drop=("model.encoder.layers.1.fc1.weight",))
    missing = r"model\.safetensors: encoder tensor 'model\.encoder\.layers\.1\.fc1\.weight' is missing"
    with pytest.raises(ValueError, match=missing):
        WhisperEncoder.from_pretrained(gone)
    wide = copy_checkpoint(path, tmp_path / "wide", config_overrides={"encoder_ffn_dim": 48})
    shape = r"model\.safetensors: tensor 'model\.encoder\.layers\.0\.fc1\.weight' has shape \(64, 32\) but "
    with pytest.raises(ValueError, match=shape + r".*config\.json implies \(48, 32\)"):
        WhisperEncoder.from_pretrained(wide)
    shallow = copy_checkpoint(path, tmp_path / "shallow", config_overrides={"encoder_layers": 2})
    with pytest.raises(ValueError, match=r"unexpected encoder tensor 'model\.encoder\.layers\.2\."):
        WhisperEncoder.from_pretrained(shallow)
    with pytest.raises(FileNotFoundError, match="config.json"):
        WhisperEncoder.from_pretrained(tmp_path / "nowhere")
    empty = tmp_path / "no_weights"
    empty.mkdir()
    (empty / "config.json").write_text((path / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        WhisperEncoder.from_pretrained(empty)



def test_unreadable_files_are_named(checkpoint, tmp_path):
    cut = copy_checkpoint(checkpoint[0], tmp_path / "cut")
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-50])
    with pytest.raises(ValueError, match=rf"{weights}: not a readable safetensors file .*download"):
        WhisperEncoder.from_pretrained(cut)
    bad = copy_checkpoint(checkpoint[0], tmp_path / "bad")
    (bad / "config.json").write_text("nope")
    with pytest.raises(ValueError, match=rf"{bad}/config.json: line 1: not valid JSON"):
        WhisperEncoder.from_pretrained(bad)
    sharded = copy_checkpoint(checkpoint[0], tmp_path / "sharded")
    (sharded / "model.safetensors").unlink()
    (sharded / "model.safetensors.index.json").write_text('{"weight_map": {"model.encoder.conv1.weight": 5}}')
    with pytest.raises(ValueError, match=r"index.json: 'weight_map' maps 'model.encoder.conv1.weight' to 5"):
        WhisperEncoder.from_pretrained(sharded)


def test_saved_files_follow_the_umask(checkpoint, tmp_path):
    enc = WhisperEncoder.from_pretrained(checkpoint[0])
    old = os.umask(0o022)
    try:
        enc.save_pretrained(tmp_path / "enc")
    finally:
        os.umask(old)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in (tmp_path / "enc").iterdir()} == {
        "config.json": oct(0o644), "model.safetensors": oct(0o644)}


def test_bad_arguments_are_value_errors(checkpoint):
    with pytest.raises(ValueError, match=r"taps \[4\] out of range"):
        WhisperEncoder(tiny_config(), taps=(0, 4))
    enc = WhisperEncoder.from_pretrained(checkpoint[0], pad_to_30s=False)
    with pytest.raises(ValueError, match=r"feats must be \(batch, time, 80\), .* extract the features with --n_mels 80"):
        enc(torch.randn(1, 10, 40), torch.tensor([10]))
    with pytest.raises(ValueError, match="at least one frame"):
        enc(torch.randn(2, 10, 80), torch.tensor([10, 0]))
    with pytest.raises(ValueError, match=r"feat_lens must be \(2,\)"):
        enc(torch.randn(2, 10, 80), torch.tensor([10]))
