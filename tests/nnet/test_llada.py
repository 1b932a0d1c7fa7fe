"""Tests for diffa.nnet.llada: parity with LLaDA's block formulas, official on-disk layout, errors."""

import json
import math
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from diffa import files
from diffa.nnet import llada
from diffa.nnet.llada import LLaDAConfig, LLaDAModel

TINY = dict(d_model=32, n_layers=2, n_heads=4, mlp_hidden_size=48, vocab_size=120, max_sequence_length=64)

# Fields of LLaDA-8B-Instruct's config.json that the model does not use itself.
OFFICIAL_EXTRA = {
    "activation_type": "silu",
    "alibi": False,
    "alibi_bias_max": 8.0,
    "architectures": ["LLaDAModelLM"],
    "attention_dropout": 0.0,
    "attention_layer_norm": False,
    "attention_layer_norm_with_affine": True,
    "auto_map": {
        "AutoConfig": "configuration_llada.LLaDAConfig",
        "AutoModelForCausalLM": "modeling_llada.LLaDAModelLM",
        "AutoModel": "modeling_llada.LLaDAModelLM",
    },
    "bias_for_layer_norm": False,
    "block_group_size": 1,
    "block_type": "llama",
    "embedding_dropout": 0.0,
    "flash_attention": False,
    "include_bias": False,
    "include_qkv_bias": False,
    "init_cutoff_factor": None,
    "init_device": "meta",
    "init_fn": "mitchell",
    "init_std": 0.02,
    "input_emb_norm": False,
    "layer_norm_type": "rms",
    "layer_norm_with_affine": True,
    "model_type": "llada",
    "multi_query_attention": None,
    "precision": "amp_bf16",
    "residual_dropout": 0.0,
    "rope": True,
    "rope_full_precision": True,
    "scale_logits": False,
    "transformers_version": "4.46.3",
    "use_cache": False,
    "weight_tying": False,
}


def make_model(seed=0, **overrides):
    """A tiny random model with non-trivial norm weights (so RMSNorm's scale is exercised)."""
    torch.manual_seed(seed)
    model = LLaDAModel(LLaDAConfig(**{**TINY, **overrides}))
    model.init_weights(std=0.2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or "ln_f" in name:
                p.uniform_(0.5, 1.5)
    return model.eval()


def reference_logits(model, ids, keep=None):
    """LLaDA's released model written out with explicit matmuls, softmax, RMSNorm and RoPE, in float32."""
    cfg = model.config
    w = {k: v.float() for k, v in model.state_dict().items()}
    pre = "model.transformer."
    heads, kv_heads, hd = cfg.n_heads, cfg.num_kv_heads, cfg.d_model // cfg.n_heads
    batch, length = ids.shape

    def rms(x, weight):
        return weight * (x / torch.sqrt((x * x).mean(-1, keepdim=True) + cfg.rms_norm_eps))

    def rope(x):  # (B, L, H, hd): dimension i pairs with i + hd/2, angle p * theta^(-2i/hd)
        half = hd // 2
        angle = torch.arange(length, dtype=torch.float32)[:, None] * cfg.rope_theta ** (
            -2.0 * torch.arange(half, dtype=torch.float32) / hd
        )
        c, s = angle.cos()[None, :, None, :], angle.sin()[None, :, None, :]
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)

    x = w[pre + "wte.weight"][ids]
    for i in range(cfg.n_layers):
        b = f"{pre}blocks.{i}."
        a = rms(x, w[b + "attn_norm.weight"])
        q = rope((a @ w[b + "q_proj.weight"].T).view(batch, length, heads, hd))
        k = rope((a @ w[b + "k_proj.weight"].T).view(batch, length, kv_heads, hd))
        v = (a @ w[b + "v_proj.weight"].T).view(batch, length, kv_heads, hd)
        head_of_kv = torch.arange(heads) // (heads // kv_heads)
        k, v = k[:, :, head_of_kv], v[:, :, head_of_kv]
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(hd)
        if keep is not None:
            scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
        e = torch.exp(scores - scores.max(-1, keepdim=True).values)
        att = torch.einsum("bhqk,bkhd->bqhd", e / e.sum(-1, keepdim=True), v).reshape(batch, length, -1)
        h = x + att @ w[b + "attn_out.weight"].T
        n = rms(h, w[b + "ff_norm.weight"])
        gate = n @ w[b + "ff_proj.weight"].T
        x = h + ((gate * torch.sigmoid(gate)) * (n @ w[b + "up_proj.weight"].T)) @ w[b + "ff_out.weight"].T
    head = w[pre + ("wte.weight" if cfg.weight_tying else "ff_out.weight")]
    return rms(x, w[pre + "ln_f.weight"]) @ head.T


def state_equal(a, b):
    return list(a) == list(b) and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)


def write_official(directory, model, shards):
    """Write ``model`` by hand the way the official release is laid out: extra config fields and an index
    whose shards hold keys in no particular order. ``shards`` maps a key substring to a shard number."""
    config = {**OFFICIAL_EXTRA, **{k: v for k, v in model.config.to_dict().items() if k in TINY}}
    config.update(n_kv_heads=model.config.n_heads, embedding_size=model.config.vocab_size, mlp_ratio=4,
                  rms_norm_eps=1e-05, rope_theta=500000.0, mask_token_id=126336, eos_token_id=126081,
                  pad_token_id=126081)
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    n = 1 + max(shards.values())
    files = {i: {} for i in range(n)}
    for key, t in model.state_dict().items():
        shard = next((s for sub, s in shards.items() if sub in key), 0)
        files[shard][key] = t.to(torch.bfloat16)
    names = {i: f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in files}
    for i, tensors in files.items():
        save_file(tensors, str(directory / names[i]), metadata={"format": "pt"})
    index = {"metadata": {"total_size": sum(t.numel() * 2 for t in model.state_dict().values())},
             "weight_map": {k: names[i] for i, tensors in files.items() for k in sorted(tensors)}}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    return config


def write_single(directory, model, **replace):
    """A one-file checkpoint of ``model`` with some tensors added or replaced."""
    save_file({**model.state_dict(), **replace}, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(model.config.to_dict()))


# ----------------------------------------------------------------------------- forward parity

@pytest.mark.parametrize(
    "overrides",
    [{}, {"n_kv_heads": 2}, {"n_kv_heads": 1, "weight_tying": True, "embedding_size": 128}],
    ids=["mha", "gqa", "mqa-tied-padded-vocab"],
)
def test_logits_match_reference(overrides):
    model = make_model(**overrides)
    ids = torch.randint(0, TINY["vocab_size"], (2, 9))
    with torch.no_grad():
        logits = model(ids)
    assert logits.shape == (2, 9, model.config.num_embeddings)
    assert (logits - reference_logits(model, ids)).abs().max().item() <= 1e-5


def test_padding_mask_matches_reference_and_hides_pad_tokens():
    model = make_model(seed=1)
    ids = torch.randint(0, TINY["vocab_size"], (3, 8))
    keep = torch.ones(3, 8, dtype=torch.bool)
    keep[1, :3] = False  # left padding (prompts)
    keep[2, 5:] = False  # right padding
    with torch.no_grad():
        logits = model(ids, attention_mask=keep)
        ref = reference_logits(model, ids, keep)
        assert (logits[keep] - ref[keep]).abs().max().item() <= 1e-5
        assert torch.isfinite(logits).all()
        other = ids.clone()
        other[~keep] = (ids[~keep] + 7) % TINY["vocab_size"]
        assert torch.equal(model(other, attention_mask=keep)[keep], logits[keep])
        # 0/1 integer masks behave as booleans; without a mask the pad tokens are visible.
        assert torch.equal(model(ids, attention_mask=keep.long()), logits)
        assert not torch.allclose(model(other)[keep], model(ids)[keep])


def test_all_padding_row_sees_every_key_and_leaves_other_rows_alone():
    model = make_model(seed=2)
    ids = torch.randint(0, TINY["vocab_size"], (2, 5))
    keep = torch.tensor([[True] * 5, [False] * 5])
    with torch.no_grad():
        logits = model(ids, attention_mask=keep)
        assert torch.isfinite(logits).all()
        assert torch.allclose(logits[0], model(ids[:1])[0], atol=1e-6)
        assert torch.allclose(logits[1], model(ids[1:])[0], atol=1e-6)


def test_inputs_embeds_hidden_and_head_paths_agree():
    model = make_model(seed=3)
    ids = torch.randint(0, TINY["vocab_size"], (2, 6))
    keep = torch.tensor([[1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=keep)
        embeds = model.get_input_embeddings()(ids)
        assert isinstance(model.get_input_embeddings(), torch.nn.Embedding)
        assert torch.equal(model(inputs_embeds=embeds, attention_mask=keep), logits)
        hidden = model.forward_hidden(ids, attention_mask=keep)
        assert hidden.shape == (2, 6, TINY["d_model"])
        assert torch.equal(model.lm_head(hidden[:, 2:4]), logits[:, 2:4])


def test_forward_argument_errors():
    model = make_model()
    ids = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="exactly one of input_ids and inputs_embeds"):
        model()
    with pytest.raises(ValueError, match="exactly one of input_ids and inputs_embeds"):
        model(ids, inputs_embeds=torch.zeros(2, 4, TINY["d_model"]))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 3\)"):
        model(ids, attention_mask=torch.ones(2, 3))


def test_state_dict_keys_are_official_and_gradients_flow():
    model = make_model()
    names = ("attn_norm", "q_proj", "k_proj", "v_proj", "attn_out", "ff_norm", "ff_proj", "up_proj", "ff_out")
    blocks = [f"model.transformer.blocks.{i}.{n}.weight" for i in range(2) for n in names]
    expected = ["model.transformer.wte.weight", *blocks, "model.transformer.ln_f.weight",
                "model.transformer.ff_out.weight"]
    assert list(model.state_dict()) == expected
    assert "model.transformer.ff_out.weight" not in make_model(weight_tying=True).state_dict()
    model.train()
    model(torch.randint(0, 120, (1, 5))).logsumexp(-1).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


# ----------------------------------------------------------------------------- config

def test_config_roundtrip_preserves_official_fields():
    config = {**OFFICIAL_EXTRA, **TINY, "n_kv_heads": 4, "vocab_size": 120, "embedding_size": 128}
    cfg = LLaDAConfig.from_dict(config)
    assert (cfg.d_model, cfg.num_kv_heads, cfg.num_embeddings, cfg.ffn_size) == (32, 4, 128, 48)
    assert cfg.extra["auto_map"] == OFFICIAL_EXTRA["auto_map"] and "model_type" not in cfg.extra
    assert cfg.to_dict() == dict(sorted({**config, "mask_token_id": 126336, "eos_token_id": 126081,
                                         "pad_token_id": 126081, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
                                         "mlp_ratio": 4}.items()))
    assert LLaDAConfig.from_dict(cfg.to_dict()) == cfg
    assert LLaDAConfig(mlp_hidden_size=None, d_model=64, n_heads=4).ffn_size == 256
    assert LLaDAConfig(n_heads=4, d_model=32, multi_query_attention=True).num_kv_heads == 1


@pytest.mark.parametrize("field,value,message", [
    ("model_type", "llama", "'model_type' = 'llama', expected 'llada'"),
    ("alibi", True, "'alibi' = True is not supported"),
    ("include_bias", True, "'include_bias' = True is not supported"),
    ("block_type", "sequential", "'block_type' = 'sequential' is not supported"),
    ("residual_dropout", 0.1, "'residual_dropout' = 0.1 is not supported"),
    ("n_kv_heads", 3, "'n_kv_heads' = 3 must divide n_heads=4"),
    ("n_heads", 5, "d_model=32 must split into n_heads=5"),
    ("embedding_size", 100, "'embedding_size' = 100 is smaller than vocab_size=120"),
    ("d_model", "32", "'d_model' = '32' must be a positive integer"),
])
def test_config_rejects_what_it_cannot_run(field, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LLaDAConfig.from_dict({**LLaDAConfig(**TINY).to_dict(), field: value})


def test_config_accepts_integer_zero_dropout():
    cfg = LLaDAConfig.from_dict({**LLaDAConfig(**TINY).to_dict(), "embedding_dropout": 0})
    assert cfg.extra["embedding_dropout"] == 0


# ----------------------------------------------------------------------------- save / load

@pytest.mark.parametrize("max_shard_size,expected_files", [
    ("5GB", ["config.json", "model.safetensors"]),
    (40_000, ["config.json", "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
              "model-00003-of-00003.safetensors", "model.safetensors.index.json"]),
], ids=["single", "sharded"])
def test_save_load_roundtrip_is_bit_exact(tmp_path, max_shard_size, expected_files):
    model = make_model(n_kv_heads=2)
    model.save_pretrained(tmp_path, max_shard_size=max_shard_size)
    assert sorted(p.name for p in tmp_path.iterdir()) == expected_files
    again = LLaDAModel.from_pretrained(tmp_path)
    assert state_equal(again.state_dict(), model.state_dict())
    assert again.config == model.config and not again.training
    if len(expected_files) > 2:
        index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
        assert sorted(index["weight_map"]) == sorted(model.state_dict())
        assert index["metadata"]["total_size"] == sum(t.numel() * 4 for t in model.state_dict().values())


def test_resave_in_another_layout_removes_stale_weight_files(tmp_path):
    model = make_model()
    model.save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    model.save_pretrained(tmp_path, max_shard_size="40KB")
    assert "model.safetensors" not in [p.name for p in tmp_path.iterdir()]
    assert state_equal(LLaDAModel.from_pretrained(tmp_path).state_dict(), model.state_dict())


def test_save_writes_atomically(tmp_path, monkeypatch):
    model = make_model()

    def broken(tensors, path, metadata=None):
        open(path, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(llada, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_loads_hand_written_official_directory(tmp_path):
    source = make_model(seed=4)
    config = write_official(tmp_path, source, {"attn_out": 0, "ff_out": 1, "up_proj": 2, "wte": 2})
    model = LLaDAModel.from_pretrained(tmp_path)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())  # the checkpoint's dtype
    assert state_equal(model.state_dict(), {k: v.to(torch.bfloat16) for k, v in source.state_dict().items()})
    out = tmp_path / "resaved"
    model.save_pretrained(out)
    written = json.loads((out / "config.json").read_text())
    assert written == config  # every official field written back unchanged


def test_dtype_and_device_arguments(tmp_path):
    make_model().save_pretrained(tmp_path)
    for dtype in (torch.bfloat16, "bfloat16"):
        model = LLaDAModel.from_pretrained(tmp_path, dtype=dtype, device="cpu")
        assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
        assert model.dtype == torch.bfloat16 and model.device == torch.device("cpu")
        assert model(torch.randint(0, 120, (1, 4))).dtype == torch.bfloat16
        # float32 embeddings (e.g. from adapters) are cast to the model's dtype
        assert model(inputs_embeds=torch.randn(1, 4, 32)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype 'bf17'"):
        LLaDAModel.from_pretrained(tmp_path, dtype="bf17")


def test_loading_builds_on_meta_and_keeps_the_read_tensors(tmp_path, monkeypatch):
    make_model().save_pretrained(tmp_path, max_shard_size="40KB")
    init_devices, read_pointers = [], set()
    real_init, real_open = LLaDAModel.init_weights, files.safe_open

    def spy_init(self, *args, **kwargs):
        init_devices.append(self.transformer.wte.weight.device.type)
        real_init(self, *args, **kwargs)

    class SpyOpen:
        def __init__(self, *args, **kwargs):
            self.inner = real_open(*args, **kwargs)

        def __enter__(self):
            self.f = self.inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

        def keys(self):
            return self.f.keys()

        def get_slice(self, key):
            return self.f.get_slice(key)

        def get_tensor(self, key):
            t = self.f.get_tensor(key)
            read_pointers.add(t.data_ptr())
            return t

    monkeypatch.setattr(LLaDAModel, "init_weights", spy_init)
    monkeypatch.setattr(files, "safe_open", SpyOpen)
    model = LLaDAModel.from_pretrained(tmp_path)
    assert init_devices == ["meta"]  # never a materialised random model
    assert {p.data_ptr() for p in model.parameters()} == read_pointers  # no second copy


# ----------------------------------------------------------------------------- load errors

def test_error_missing_config_and_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}/config.json does not exist"):
        LLaDAModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(LLaDAConfig(**TINY).to_dict()))
    with pytest.raises(FileNotFoundError, match="neither model.safetensors nor model.safetensors.index.json"):
        LLaDAModel.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text('{\n  "model_type": "llada",\n}')
    with pytest.raises(ValueError, match=f"{tmp_path}/config.json: line 3: not valid JSON"):
        LLaDAModel.from_pretrained(tmp_path)


def test_error_wrong_model_type_names_config_file(tmp_path):
    make_model().save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "model_type": "llama"}))
    with pytest.raises(ValueError, match=f"{tmp_path}/config.json: .*'model_type' = 'llama'"):
        LLaDAModel.from_pretrained(tmp_path)


def test_error_missing_shard_names_shard_and_index(tmp_path):
    make_model().save_pretrained(tmp_path, max_shard_size="40KB")
    (tmp_path / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"index.json lists model-00002-of-00003.safetensors, but .* does not exist"):
        LLaDAModel.from_pretrained(tmp_path)


def test_error_unexpected_key_names_key_and_file(tmp_path):
    write_single(tmp_path, make_model(), **{"model.transformer.blocks.2.q_proj.weight": torch.zeros(32, 32)})
    with pytest.raises(ValueError, match=r"model.safetensors: unexpected tensor 'model.transformer.blocks.2.q_proj"):
        LLaDAModel.from_pretrained(tmp_path)


def test_error_wrong_shape_names_key_file_and_shapes(tmp_path):
    write_single(tmp_path, make_model(), **{"model.transformer.blocks.1.up_proj.weight": torch.zeros(40, 32)})
    with pytest.raises(ValueError, match=r"model.safetensors: tensor 'model.transformer.blocks.1.up_proj.weight' "
                                         r"has shape \(40, 32\), expected \(48, 32\)"):
        LLaDAModel.from_pretrained(tmp_path)


def test_error_missing_key_names_key_and_directory(tmp_path):
    model = make_model()
    write_official(tmp_path, model, {"attn_out": 1})
    index_path = tmp_path / "model.safetensors.index.json"
    shard = tmp_path / "model-00002-of-00002.safetensors"
    kept = load_file(str(shard))
    del kept["model.transformer.blocks.0.attn_out.weight"]
    save_file(kept, str(shard))
    with pytest.raises(ValueError, match=rf"{tmp_path}: 1 LLaDA weight\(s\) missing .*blocks.0.attn_out.weight"
                                         rf".*{index_path.name} maps the first one to model-00002-of-00002"):
        LLaDAModel.from_pretrained(tmp_path)



def test_error_index_that_omits_keys_names_the_key(tmp_path):
    make_model().save_pretrained(tmp_path, max_shard_size="40KB")
    index_path = tmp_path / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if not v.startswith("model-00002")}
    index_path.write_text(json.dumps(index))
    first = min(set(make_model().state_dict()) - set(index["weight_map"]))
    with pytest.raises(ValueError, match=rf"{index_path} does not list {first!r}"):
        LLaDAModel.from_pretrained(tmp_path)


def test_error_index_value_that_is_not_a_file_name(tmp_path):
    make_model().save_pretrained(tmp_path, max_shard_size="40KB")
    (tmp_path / "model.safetensors.index.json").write_text('{"weight_map": {"model.transformer.wte.weight": 5}}')
    with pytest.raises(ValueError, match=r"index.json: 'weight_map' maps 'model.transformer.wte.weight' to 5, "
                                         r"not to a file name"):
        LLaDAModel.from_pretrained(tmp_path)


@pytest.mark.parametrize("shard_size,name,keep", [
    ("5GB", "model.safetensors", 0.5), ("5GB", "model.safetensors", 0),
    ("40KB", "model-00002-of-00003.safetensors", 0.9),
], ids=["truncated", "empty", "truncated-shard"])
def test_error_unreadable_weight_file_names_it(tmp_path, shard_size, name, keep):
    make_model().save_pretrained(tmp_path, max_shard_size=shard_size)
    path = tmp_path / name
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])
    with pytest.raises(ValueError, match=rf"{path}: not a readable safetensors file .*download the checkpoint again"):
        LLaDAModel.from_pretrained(tmp_path)


@pytest.mark.parametrize("max_shard_size", ["5GB", "40KB"], ids=["single", "sharded"])
def test_saved_files_follow_the_umask(tmp_path, max_shard_size):
    old = os.umask(0o027)
    try:
        make_model().save_pretrained(tmp_path / "m", max_shard_size=max_shard_size)
    finally:
        os.umask(old)
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in (tmp_path / "m").iterdir()} == {
        p.name: oct(0o640) for p in (tmp_path / "m").iterdir()}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_load_matches_reference(tmp_path):
    model = make_model(n_kv_heads=2)
    model.save_pretrained(tmp_path, max_shard_size="40KB")
    ids = torch.randint(0, TINY["vocab_size"], (3, 9))
    keep = torch.ones(3, 9, dtype=torch.bool)
    keep[1, :4] = False
    keep[2] = False  # a row of padding only
    ref = reference_logits(model, ids, keep)
    for dtype in (torch.float32, torch.bfloat16):
        gpu = LLaDAModel.from_pretrained(tmp_path, dtype=dtype, device="cuda")
        assert {p.device.type for p in gpu.parameters()} == {"cuda"}
        with torch.no_grad():
            out = gpu(ids.cuda(), attention_mask=keep.cuda()).float().cpu()
        assert torch.isfinite(out).all()  # whichever SDPA kernel CUDA picks for the masked batch
        if dtype == torch.float32:
            assert (out[keep] - ref[keep]).abs().max().item() <= 1e-5


def test_sequence_longer_than_the_maximum_is_a_value_error():
    cfg = LLaDAConfig(d_model=16, n_layers=1, n_heads=2, n_kv_heads=2, mlp_hidden_size=32, vocab_size=20,
                      embedding_size=20, max_sequence_length=8, mask_token_id=19, eos_token_id=18, pad_token_id=18)
    model = LLaDAModel(cfg)
    assert model(torch.zeros(1, 8, dtype=torch.long)).shape == (1, 8, 20)
    with pytest.raises(ValueError, match="9 positions is longer than the model's max_sequence_length 8"):
        model(torch.zeros(1, 9, dtype=torch.long))
