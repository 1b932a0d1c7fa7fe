"""Importing the authors' DIFFA-2 checkpoints: every tensor lands where their code used it."""

import collections
import json

import pytest
import torch
from transformers import BertConfig, WhisperConfig, WhisperForConditionalGeneration
from transformers.models.bert.modeling_bert import BertEncoder

from diffa.model.diffa import DIFFA
from diffa.model.official import import_official
from diffa.nnet.llada import LLaDAConfig, LLaDAModel

D, D_LLM, TAPS, Q, R = 384, 32, 4, 8, 2


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """Whisper-tiny-shaped encoder + tiny LLaDA in official layouts, and an authors' checkpoint."""
    root = tmp_path_factory.mktemp("authors")
    wcfg = WhisperConfig(
        num_mel_bins=16, d_model=D, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=64,
        decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=16, vocab_size=100, max_source_positions=1500,
        max_target_positions=16, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=3,
    )
    torch.manual_seed(0)
    WhisperForConditionalGeneration(wcfg).save_pretrained(root / "whisper")
    lcfg = LLaDAConfig(d_model=D_LLM, n_layers=2, n_heads=2, n_kv_heads=2, mlp_hidden_size=64, vocab_size=100,
                       embedding_size=100, mask_token_id=99, eos_token_id=98, pad_token_id=98)
    llm = LLaDAModel(lcfg)
    llm.init_weights(generator=torch.Generator().manual_seed(1))
    llm.save_pretrained(root / "llada")

    g = torch.Generator().manual_seed(2)
    rnd = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    state = collections.OrderedDict()
    # the authors' checkpoints may hold frozen copies of the official weights
    state["whisper_model.conv1.weight"] = WhisperForConditionalGeneration.from_pretrained(root / "whisper").model.encoder.conv1.weight.detach()
    state["trainable_prompts.weight"] = rnd(20, D_LLM)
    for k, shape in {"conv.0.weight": (D, D, 3), "conv.0.bias": (D,), "conv.2.weight": (4 * D, D, 3),
                     "conv.2.bias": (4 * D,), "linear_connector.0.weight": (D, 4 * D), "linear_connector.0.bias": (D,),
                     "linear_connector.2.weight": (D_LLM, D), "linear_connector.2.bias": (D_LLM,),
                     "layernorm.weight": (D_LLM,), "layernorm.bias": (D_LLM,)}.items():
        state[f"semantic_connector.{k}"] = rnd(*shape)
    bert = BertEncoder(BertConfig(hidden_size=D, num_attention_heads=6, num_hidden_layers=2, intermediate_size=64,
                                  add_cross_attention=True, is_decoder=True))
    for k, v in bert.state_dict().items():
        state[f"acoustic_connector.qformer.{k}"] = rnd(*v.shape)
    for i in range(TAPS):
        state[f"acoustic_connector.layer_prompts.{i}"] = rnd(1, Q, D)
    state["acoustic_connector.layer_weights"] = rnd(Q, TAPS)
    state["acoustic_connector.proj.0.weight"], state["acoustic_connector.proj.0.bias"] = rnd(D), rnd(D)
    state["acoustic_connector.proj.1.weight"], state["acoustic_connector.proj.1.bias"] = rnd(D_LLM, D), rnd(D_LLM)
    for block in range(2):
        for module, out in (("q_proj", D_LLM), ("k_proj", D_LLM), ("v_proj", D_LLM), ("ff_proj", 64), ("up_proj", 64)):
            prefix = f"llm_model.base_model.model.model.transformer.blocks.{block}.{module}"
            state[f"{prefix}.lora_A.default.weight"] = rnd(R, D_LLM)
            state[f"{prefix}.lora_B.default.weight"] = rnd(out, R)
    ckpt = root / "ckpt"
    ckpt.mkdir()
    torch.save(state, ckpt / "pytorch_model.bin")
    (ckpt / "config.json").write_text(json.dumps({"whisper_config": wcfg.to_dict(), "llm_config": lcfg.to_dict()}))
    return root, state


def test_every_tensor_lands_in_place(dirs, tmp_path):
    root, state = dirs
    model = import_official(root / "ckpt", root / "whisper", root / "llada", out=tmp_path / "imported")
    cfg = model.config
    assert (cfg.layout, cfg.taps, cfg.n_queries, cfg.qformer_ffn) == ("dual", [0, 1, 2, 3], Q, 64)
    assert cfg.pad_to_30s and not cfg.llm_padding_mask and not cfg.qformer_padding_mask  # the authors' behaviour
    assert torch.equal(model.prompts.weight, state["trainable_prompts.weight"])
    assert torch.equal(model.semantic.conv2.weight, state["semantic_connector.conv.2.weight"])
    queries = torch.cat([state[f"acoustic_connector.layer_prompts.{i}"] for i in range(TAPS)])
    assert torch.equal(model.acoustic.queries, queries)
    assert torch.equal(model.acoustic.tap_weights, state["acoustic_connector.layer_weights"])
    # LoRA: q_proj computes (W + alpha/r B A) x with alpha 16, r read from the checkpoint
    base = LLaDAModel.from_pretrained(root / "llada")
    w = base.transformer["blocks"][1].q_proj.weight
    prefix = "llm_model.base_model.model.model.transformer.blocks.1.q_proj"
    delta = 16 / R * state[f"{prefix}.lora_B.default.weight"] @ state[f"{prefix}.lora_A.default.weight"]
    x = torch.randn(3, D_LLM)
    with torch.no_grad():
        got = model.llm.transformer["blocks"][1].q_proj(x)
    torch.testing.assert_close(got, x @ (w + delta).T, atol=1e-4, rtol=1e-4)
    # the written directory loads without the importer and computes the same thing
    again = DIFFA.from_pretrained(tmp_path / "imported").eval()
    feats, lens = torch.randn(1, 50, 16), torch.tensor([50])
    ids, pos = torch.randint(0, 90, (1, 6)), torch.tensor([2])
    with torch.no_grad():
        assert torch.equal(again(feats, lens, ids, pos), model.eval()(feats, lens, ids, pos))


def test_unknown_key_names_file_and_key(dirs, tmp_path):
    root, state = dirs
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    torch.save({**state, "mystery.weight": torch.zeros(1)}, ckpt / "pytorch_model.bin")
    (ckpt / "config.json").write_text((root / "ckpt" / "config.json").read_text())
    with pytest.raises(ValueError, match=r"ckpt: unknown key 'mystery.weight'"):
        import_official(ckpt, root / "whisper", root / "llada")



def test_unreadable_checkpoint_files_are_named(dirs, tmp_path):
    root, _ = dirs
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{")
    with pytest.raises(ValueError, match=r"ckpt/config.json: line 1: not valid JSON"):
        import_official(ckpt, root / "whisper", root / "llada")
    (ckpt / "config.json").write_text((root / "ckpt" / "config.json").read_text())
    (ckpt / "model.safetensors").write_bytes(b"\x10\x00")
    with pytest.raises(ValueError, match=r"ckpt/model.safetensors: not a readable safetensors file"):
        import_official(ckpt, root / "whisper", root / "llada")


class NotATensor:
    pass


def test_pickled_code_is_refused(dirs, tmp_path):
    root, _ = dirs
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    torch.save({"trainable_prompts.weight": NotATensor()}, ckpt / "pytorch_model.bin")
    (ckpt / "config.json").write_text((root / "ckpt" / "config.json").read_text())
    with pytest.raises(ValueError, match="weights_only=True"):
        import_official(ckpt, root / "whisper", root / "llada")


def test_command_line(dirs, tmp_path, capsys):
    from diffa.bin.import_official import main

    root, _ = dirs
    main(["--src", str(root / "ckpt"), "--whisper", str(root / "whisper"), "--llada", str(root / "llada"),
          "--out", str(tmp_path / "m")])
    assert "layout dual, LoRA yes" in capsys.readouterr().out
    assert DIFFA.from_pretrained(tmp_path / "m").config.lora["r"] == R


def _checkpoint(root, tmp_path, state):
    """An authors' checkpoint directory holding ``state`` next to the fixture's config.json."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir(parents=True)
    torch.save(state, ckpt / "pytorch_model.bin")
    (ckpt / "config.json").write_text((root / "ckpt" / "config.json").read_text())
    return ckpt


SHARDED = {"bin": ("pytorch_model-{:05d}-of-00002.bin", "pytorch_model.bin.index.json"),
           "safetensors": ("model-{:05d}-of-00002.safetensors", "model.safetensors.index.json")}


def _sharded_checkpoint(root, tmp_path, state, kind):
    """An authors' checkpoint holding ``state`` in two shards and HF's index (``weight_map``) of them."""
    from safetensors.torch import save_file

    shard_name, index_name = SHARDED[kind]
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text((root / "ckpt" / "config.json").read_text())
    keys = list(state)
    weight_map = {}
    for i, part in enumerate((keys[: len(keys) // 2], keys[len(keys) // 2:]), start=1):
        shard = {k: state[k].contiguous() for k in part}
        torch.save(shard, ckpt / shard_name.format(i)) if kind == "bin" else save_file(shard, ckpt / shard_name.format(i))
        weight_map.update(dict.fromkeys(part, shard_name.format(i)))
    (ckpt / index_name).write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    return ckpt


@pytest.mark.parametrize("kind", SHARDED)
def test_a_sharded_checkpoint_imports_like_one_file_reading_each_shard_once(dirs, tmp_path, kind, monkeypatch):
    import diffa.model.official as official

    root, state = dirs
    ckpt = _sharded_checkpoint(root, tmp_path, state, kind)
    read = []
    for module, name in ((torch, "load"), (official, "load_safetensors")):
        monkeypatch.setattr(module, name, lambda path, *a, _read=getattr(module, name), **kw: read.append(path.name) or _read(path, *a, **kw))
    model = import_official(ckpt, root / "whisper", root / "llada")
    assert sorted(read) == [SHARDED[kind][0].format(i) for i in (1, 2)]
    monkeypatch.undo()
    _assert_same_weights(model, import_official(root / "ckpt", root / "whisper", root / "llada"))


@pytest.mark.parametrize("kind", SHARDED)
def test_a_sharded_checkpoint_that_disagrees_with_its_index_is_an_error_naming_the_file(dirs, tmp_path, kind):
    root, state = dirs
    shard_name, index_name = SHARDED[kind]
    ckpt = _sharded_checkpoint(root, tmp_path / "gone", state, kind)
    (ckpt / shard_name.format(2)).unlink()
    with pytest.raises(FileNotFoundError, match=rf"ckpt/{index_name} lists {shard_name.format(2)}, but .*ckpt/{shard_name.format(2)} does not exist"):
        import_official(ckpt, root / "whisper", root / "llada")
    ckpt = _sharded_checkpoint(root, tmp_path / "lacking", state, kind)
    index = json.loads((ckpt / index_name).read_text())
    index["weight_map"]["acoustic_connector.extra"] = shard_name.format(1)
    (ckpt / index_name).write_text(json.dumps(index))
    with pytest.raises(ValueError, match=rf"ckpt/{shard_name.format(1)}: lacks 'acoustic_connector.extra', which .*ckpt/{index_name} maps to it"):
        import_official(ckpt, root / "whisper", root / "llada")
    ckpt = _sharded_checkpoint(root, tmp_path / "unlisted", state, kind)
    del index["weight_map"]["acoustic_connector.extra"], index["weight_map"]["trainable_prompts.weight"]
    (ckpt / index_name).write_text(json.dumps(index))
    with pytest.raises(ValueError, match=rf"ckpt/{shard_name.format(1)}: holds 'trainable_prompts.weight', which .*ckpt/{index_name} does not map to it"):
        import_official(ckpt, root / "whisper", root / "llada")
    torch.save(state, ckpt / "pytorch_model.bin")
    with pytest.raises(ValueError, match=rf"ckpt: both pytorch_model.bin and {index_name}"):
        import_official(ckpt, root / "whisper", root / "llada")


@pytest.mark.parametrize("dropped, named", [
    ("semantic_connector.layernorm.bias", "semantic.norm.bias"),
    ("acoustic_connector.proj.1.weight", "acoustic.proj.weight"),
    ("acoustic_connector.qformer.layer.1.output.dense.bias", "acoustic.layers.1.ffn_out.bias"),
])
def test_a_missing_adapter_tensor_is_an_error_naming_it(dirs, tmp_path, dropped, named):
    root, state = dirs
    ckpt = _checkpoint(root, tmp_path, {k: v for k, v in state.items() if k != dropped})
    with pytest.raises(ValueError, match=rf"ckpt: layout dual needs .*'{named}'"):
        import_official(ckpt, root / "whisper", root / "llada")


def test_the_layout_needs_its_prefix_weights(dirs, tmp_path):
    root, state = dirs
    ckpt = _checkpoint(root, tmp_path, {k: v for k, v in state.items() if k != "trainable_prompts.weight"})
    assert import_official(ckpt, root / "whisper", root / "llada").config.layout == "dual"  # prompts unused
    with pytest.raises(ValueError, match=r"ckpt: layout stage1 needs \['prompts.weight'\]"):
        import_official(ckpt, root / "whisper", root / "llada", layout="stage1")



@pytest.mark.parametrize("key", [
    "llm_model.base_model.model.model.transformer.ff_out.lora_A.default.weight",  # LoRA on the LM head
    "llm_model.base_model.model.model.transformer.blocks.0.q_proj.lora_A.reference.weight",  # another adapter
    "llm_model.base_model.model.model.transformer.wte.lora_embedding_A.default",
])
def test_lora_tensors_the_importer_cannot_place_are_errors(dirs, tmp_path, key):
    root, state = dirs
    ckpt = _checkpoint(root, tmp_path, {**state, key: torch.zeros(R, D_LLM)})
    with pytest.raises(ValueError, match=f"ckpt: unknown key '{key}'"):
        import_official(ckpt, root / "whisper", root / "llada")


@pytest.mark.parametrize("key, message", [
    ("acoustic_connector.qformer.layer.0.attention.self.distance_embedding.weight",
     r"ckpt: acoustic_connector: unknown key 'qformer.layer.0.attention.self.distance_embedding.weight'"),
    ("acoustic_connector.layer_prompts.7", r"ckpt: acoustic_connector: layer_prompts indices \[0, 1, 2, 3, 7\]"),
    ("semantic_connector.conv.1.weight", r"ckpt: semantic_connector: unknown key 'conv.1.weight'"),
])
def test_adapter_conversion_errors_name_the_checkpoint(dirs, tmp_path, key, message):
    root, state = dirs
    ckpt = _checkpoint(root, tmp_path, {**state, key: torch.zeros(1)})
    with pytest.raises(ValueError, match=message):
        import_official(ckpt, root / "whisper", root / "llada")


@pytest.mark.parametrize("content", [{"model": {"trainable_prompts.weight": torch.zeros(2)}}, [torch.zeros(2)]])
def test_a_checkpoint_that_is_not_a_flat_state_dict_is_named(dirs, tmp_path, content):
    root, _ = dirs
    ckpt = _checkpoint(root, tmp_path, content)
    with pytest.raises(ValueError, match=r"ckpt/pytorch_model.bin: not a flat state dict of tensors"):
        import_official(ckpt, root / "whisper", root / "llada")


def test_import_save_load_is_bit_identical_and_keeps_dtypes(dirs, tmp_path):
    """bf16 authors' tensors: the imported, saved and reloaded model holds exactly the same weights."""
    root, state = dirs
    ckpt = _checkpoint(root, tmp_path, {k: v.to(torch.bfloat16) for k, v in state.items()})
    model = import_official(ckpt, root / "whisper", root / "llada", out=tmp_path / "imported")
    assert torch.equal(model.semantic.conv1.weight, state["semantic_connector.conv.0.weight"].to(torch.bfloat16).float())
    _assert_same_weights(model, DIFFA.from_pretrained(tmp_path / "imported"))


def _assert_same_weights(model, again):
    """``model`` and ``again`` hold the same tensors, bit for bit and dtype for dtype."""
    mine, theirs = model.state_dict(), again.state_dict()
    assert sorted(mine) == sorted(theirs)
    for key, value in mine.items():
        assert value.dtype == theirs[key].dtype and torch.equal(value, theirs[key]), key


@pytest.mark.parametrize("own_whisper", [False, True])
def test_a_float16_whisper_stays_float16_through_import_save_and_load(dirs, tmp_path, own_whisper):
    """whisper-large-v3 is stored in float16: the imported encoder is that, linked or (with the
    checkpoint's own Whisper tensors) written, and the saved model loads back bit for bit."""
    import os

    root, state = dirs
    whisper = tmp_path / "whisper16"
    official = WhisperForConditionalGeneration.from_pretrained(root / "whisper").half()
    official.save_pretrained(whisper)
    ckpt_state = {k: v for k, v in state.items() if not k.startswith("whisper_model.")}
    if own_whisper:
        ckpt_state["whisper_model.layers.0.fc1.weight"] = torch.randn(64, D)
    model = import_official(_checkpoint(root, tmp_path, ckpt_state), whisper, root / "llada", out=tmp_path / "imported")
    assert {p.dtype for p in model.encoder.parameters()} == {torch.float16}
    assert torch.equal(model.encoder.encoder.conv2.weight, official.model.encoder.conv2.weight)
    assert os.path.islink(tmp_path / "imported" / "encoder") != own_whisper
    again = DIFFA.from_pretrained(tmp_path / "imported")
    _assert_same_weights(model, again)
    feats, lens = torch.randn(1, 50, 16), torch.tensor([50])
    ids, pos = torch.randint(0, 90, (1, 6)), torch.tensor([2])
    with torch.no_grad():
        assert torch.equal(again(feats, lens, ids, pos), model(feats, lens, ids, pos))


@pytest.mark.parametrize("part, field", [("whisper", "num_mel_bins"), ("llada", "vocab_size")])
def test_a_whisper_or_llada_directory_other_than_the_checkpoint_s_is_named(dirs, tmp_path, part, field):
    """Same adapter shapes, other model (e.g. whisper-large-v2's 80 mels for DIFFA-2's large-v3)."""
    root, _ = dirs
    other = tmp_path / part
    if part == "whisper":
        config = WhisperForConditionalGeneration.from_pretrained(root / "whisper").config
        WhisperForConditionalGeneration(WhisperConfig(**{**config.to_dict(), "num_mel_bins": 80})).save_pretrained(other)
    else:
        cfg = LLaDAModel.from_pretrained(root / "llada").config.to_dict()
        LLaDAModel(LLaDAConfig.from_dict({**cfg, "vocab_size": 120, "embedding_size": 120})).save_pretrained(other)
    given = {"whisper": root / "whisper", "llada": root / "llada", part: other}
    with pytest.raises(ValueError, match=rf"{other}/config.json: {field} .*, but .*ckpt/config.json was trained with .* --{part}"):
        import_official(root / "ckpt", given["whisper"], given["llada"])


@pytest.mark.parametrize("part, prefix, name, same, changed", [
    ("llm", "llm_model.", "LLaDA", "model.transformer.blocks.0.q_proj.weight", "model.transformer.blocks.1.up_proj.weight"),
    ("encoder", "whisper_model.", "Whisper", "conv1.weight", "layers.1.fc1.weight"),
])
def test_frozen_weights_in_the_checkpoint_that_differ_from_the_official_ones_are_loaded(dirs, tmp_path, caplog, part, prefix,
                                                                                         name, same, changed):
    """A checkpoint carrying its own (e.g. LoRA-merged) LLaDA or Whisper weights: they are not dropped."""
    import os

    root, state = dirs
    plain = {k: v for k, v in state.items() if ".lora_" not in k and not k.startswith("whisper_model.")}
    own = "encoder." if part == "encoder" else ""  # the key of a checkpoint's tensor in the DIFFA part
    official = getattr(import_official(_checkpoint(root, tmp_path / "plain", plain), root / "whisper", root / "llada"), part).state_dict()
    same_ckpt = _checkpoint(root, tmp_path / "same", {**plain, prefix + same: official[own + same]})
    import_official(same_ckpt, root / "whisper", root / "llada", out=tmp_path / "a")
    assert os.path.islink(tmp_path / "a" / part)  # equal copies of the official weights change nothing
    merged = official[own + changed] + 1
    ckpt = _checkpoint(root, tmp_path / "merged", {**plain, prefix + changed: merged})
    model = import_official(ckpt, root / "whisper", root / "llada", out=tmp_path / "b")
    assert torch.equal(getattr(model, part).state_dict()[own + changed], merged)
    assert f"ckpt: 1 {name} tensors differ from the official ones (e.g. {own + changed})" in caplog.text
    assert not os.path.islink(tmp_path / "b" / part)
    assert torch.equal(getattr(DIFFA.from_pretrained(tmp_path / "b"), part).state_dict()[own + changed], merged)
    for bad, key, value in (("name", prefix + "mystery.weight", merged), ("shape", prefix + same, torch.zeros(1))):
        with pytest.raises(ValueError, match=rf"ckpt: unknown key '{key}' \(no {name} weight {own}"):
            import_official(_checkpoint(root, tmp_path / bad, {**plain, key: value}), root / "whisper", root / "llada")


@pytest.mark.parametrize("weights", ["adapter_model.safetensors", "adapter_model.bin"])
def test_a_peft_adapter_beside_the_checkpoint_is_imported_with_its_alpha(dirs, tmp_path, weights):
    """LoRA saved by peft (adapter_config.json + adapter_model.safetensors, or the torch pickle
    adapter_model.bin of older peft / safe_serialization=False) next to pytorch_model.bin."""
    from safetensors.torch import save_file

    root, state = dirs
    ckpt = _checkpoint(root, tmp_path, {k: v for k, v in state.items() if ".lora_" not in k})
    lora = {k.removeprefix("llm_model.").replace(".default", ""): v for k, v in state.items() if ".lora_" in k}
    (save_file if weights.endswith(".safetensors") else torch.save)(lora, ckpt / weights)
    (ckpt / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": R, "lora_alpha": 8,
                                                         "target_modules": ["q_proj", "k_proj", "v_proj", "ff_proj", "up_proj"]}))
    model = import_official(ckpt, root / "whisper", root / "llada")
    assert (model.config.lora["r"], model.config.lora["alpha"]) == (R, 8)
    prefix = "base_model.model.model.transformer.blocks.1.q_proj"
    w = LLaDAModel.from_pretrained(root / "llada").transformer["blocks"][1].q_proj.weight
    x = torch.randn(3, D_LLM)
    with torch.no_grad():
        got = model.llm.transformer["blocks"][1].q_proj(x)
    torch.testing.assert_close(got, x @ (w + 8 / R * lora[f"{prefix}.lora_B.weight"] @ lora[f"{prefix}.lora_A.weight"]).T,
                               atol=1e-4, rtol=1e-4)
    key = f"llm_model.{prefix}.lora_A.weight"
    (ckpt / "pytorch_model.bin").unlink()
    torch.save({**state, key: lora[f"{prefix}.lora_A.weight"]}, ckpt / "pytorch_model.bin")
    with pytest.raises(ValueError, match=rf"ckpt: {key} is both in the checkpoint and in {weights}: keep one"):
        import_official(ckpt, root / "whisper", root / "llada")
    torch.save(state, ckpt / "pytorch_model.bin")
    other = "adapter_model.bin" if weights.endswith(".safetensors") else "adapter_model.safetensors"
    (ckpt / other).write_bytes(b"")
    with pytest.raises(ValueError, match=r"ckpt: both adapter_model.safetensors and adapter_model.bin"):
        import_official(ckpt, root / "whisper", root / "llada")
    (ckpt / other).unlink()
    (ckpt / "adapter_config.json").rename(ckpt / "config.peft")
    with pytest.raises(FileNotFoundError, match=rf"ckpt/{weights}: no adapter_config.json beside it"):
        import_official(ckpt, root / "whisper", root / "llada")
    (ckpt / "config.peft").rename(ckpt / "adapter_config.json")
    (ckpt / weights).unlink()
    with pytest.raises(FileNotFoundError, match=r"ckpt/adapter_config.json: no adapter_model.safetensors or adapter_model.bin beside it"):
        import_official(ckpt, root / "whisper", root / "llada")


def test_two_copies_of_a_weight_are_an_error(dirs, tmp_path):
    """pytorch_model.bin next to model.safetensors, or one LoRA tensor under two keys: not a silent pick."""
    from safetensors.torch import save_file

    root, state = dirs
    ckpt = _checkpoint(root, tmp_path / "both", state)
    save_file({"trainable_prompts.weight": torch.zeros(20, D_LLM)}, ckpt / "model.safetensors")
    with pytest.raises(ValueError, match=r"ckpt: both pytorch_model.bin and model.safetensors"):
        import_official(ckpt, root / "whisper", root / "llada")
    key = "llm_model.base_model.model.model.transformer.blocks.0.q_proj.lora_A.default.weight"
    ckpt = _checkpoint(root, tmp_path / "twice", {**state, key.replace(".default", ""): torch.zeros(R, D_LLM)})
    with pytest.raises(ValueError, match=rf"ckpt: '{key.replace('.default', '')}' and another key both hold "
                                         r"model.transformer.blocks.0.q_proj.lora_A.weight"):
        import_official(ckpt, root / "whisper", root / "llada")
    ckpt = _checkpoint(root, tmp_path / "peft", state)
    (ckpt / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": R, "lora_alpha": 16}))
    save_file({key.removeprefix("llm_model."): torch.zeros(R, D_LLM)}, ckpt / "adapter_model.safetensors")
    with pytest.raises(ValueError, match=rf"ckpt: {key} is both in the checkpoint and in adapter_model.safetensors"):
        import_official(ckpt, root / "whisper", root / "llada")


@pytest.mark.parametrize("setting", [{"use_rslora": True}, {"use_dora": True}, {"alpha_pattern": {"q_proj": 32}},
                                     {"rank_pattern": {"q_proj": 4}}])
def test_peft_settings_that_change_the_scaling_are_refused(dirs, tmp_path, setting):
    from safetensors.torch import save_file

    root, state = dirs
    ckpt = _checkpoint(root, tmp_path, {k: v for k, v in state.items() if ".lora_" not in k})
    save_file({k.removeprefix("llm_model."): v for k, v in state.items() if ".lora_" in k}, ckpt / "adapter_model.safetensors")
    (ckpt / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": R, "lora_alpha": 16, **setting}))
    with pytest.raises(ValueError, match=rf"ckpt/adapter_config.json: {next(iter(setting))} .* plain LoRA"):
        import_official(ckpt, root / "whisper", root / "llada")
