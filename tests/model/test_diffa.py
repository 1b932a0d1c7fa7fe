"""DIFFA: batching is invisible, save/load round-trips, layouts and LoRA behave."""

import os
import re

import pytest
import torch

from diffa.model.config import DIFFAConfig
from diffa.model.diffa import DIFFA, tiny_config
from diffa.nnet.lora import LoRAConfig


def build(official_dirs, **overrides):
    cfg = tiny_config()
    for key, value in overrides.items():
        setattr(cfg, key, value)
    torch.manual_seed(3)
    return DIFFA.from_components(cfg, *official_dirs).eval()


def batch(seed=0, B=3, T=48, L=9, vocab=90):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(B, T, 16, generator=g)
    feat_lens = torch.tensor([T, T - 17, T - 30][:B])
    ids = torch.randint(0, vocab, (B, L), generator=g)
    audio_pos = torch.tensor([2, 4, 3][:B])
    return feats, feat_lens, ids, audio_pos


def test_batched_forward_equals_one_by_one(official_dirs):
    """Variable-length audio + padding masks: each row's logits do not depend on its batch."""
    model = build(official_dirs)
    feats, feat_lens, ids, audio_pos = batch()
    # left-pad the text of row 2 by two tokens, as the decoder does
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[2, :2] = False
    with torch.no_grad():
        logits = model(feats, feat_lens, ids, audio_pos, mask)
        assert logits.shape == (3, 9, 100)
        for b in range(3):
            n, keep = int(feat_lens[b]), mask[b]
            single = model(feats[b : b + 1, :n], feat_lens[b : b + 1], ids[b : b + 1, keep],
                           audio_pos[b : b + 1] - int((~keep).sum()))
            torch.testing.assert_close(logits[b, keep], single[0], atol=2e-5, rtol=1e-4)


def test_authors_mode_sees_padding(official_dirs):
    """Without masks (the authors' behaviour) a padded row's output changes with its batch."""
    model = build(official_dirs, pad_to_30s=False, llm_padding_mask=False, qformer_padding_mask=False)
    feats, feat_lens, ids, audio_pos = batch(B=2)
    with torch.no_grad():
        batched = model(feats, feat_lens, ids, audio_pos)[1]
        single = model(feats[1:, : int(feat_lens[1])], feat_lens[1:], ids[1:], audio_pos[1:])[0]
    assert not torch.allclose(batched, single, atol=1e-4)


def test_stage1_layout_uses_prompts_not_acoustic(official_dirs):
    model = build(official_dirs, layout="stage1")
    feats, feat_lens, ids, audio_pos = batch(B=2)
    model(feats, feat_lens, ids, audio_pos).sum().backward()
    assert model.prompts.weight.grad is not None and model.prompts.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.acoustic.parameters())
    assert all(p.grad is None for p in model.encoder.parameters())


def test_denoiser_rows_select_examples(official_dirs):
    model = build(official_dirs)
    feats, feat_lens, ids, audio_pos = batch()
    with torch.no_grad():
        den = model.denoiser(feats, feat_lens, audio_pos)
        rows = torch.tensor([2, 0, 2])
        out = den(ids[rows], rows=rows)
        full = model(feats, feat_lens, ids, audio_pos)
    torch.testing.assert_close(out, full[rows], atol=2e-5, rtol=1e-4)


def nonzero_lora(model):
    model.add_lora(LoRAConfig(r=2, alpha=4, dropout=0.0, targets=["q_proj", "up_proj"]))
    with torch.no_grad():
        for name, p in model.llm.named_parameters():
            if "lora_B" in name:
                p.normal_()


def test_save_load_round_trip_with_lora(official_dirs, tmp_path):
    model = build(official_dirs)
    nonzero_lora(model)
    feats, feat_lens, ids, audio_pos = batch()
    with torch.no_grad():
        before = model(feats, feat_lens, ids, audio_pos)
    model.save_pretrained(tmp_path / "m")
    # frozen parts are links to their official directories, trained parts are files
    assert os.path.islink(tmp_path / "m" / "encoder") and os.path.islink(tmp_path / "m" / "llm")
    assert (tmp_path / "m" / "lora.safetensors").exists()
    again = DIFFA.from_pretrained(tmp_path / "m").eval()
    assert again.config == model.config
    with torch.no_grad():
        assert torch.equal(again(feats, feat_lens, ids, audio_pos), before)
    # export: merged LoRA, real copies, same function
    again.save_pretrained(tmp_path / "export", merge=True)
    assert not os.path.islink(tmp_path / "export" / "llm") and not (tmp_path / "export" / "lora.safetensors").exists()
    merged = DIFFA.from_pretrained(tmp_path / "export").eval()
    assert merged.config.lora is None
    with torch.no_grad():
        torch.testing.assert_close(merged(feats, feat_lens, ids, audio_pos), before, atol=1e-4, rtol=1e-4)


def test_trained_llm_is_written_not_linked(official_dirs, tmp_path):
    model = build(official_dirs)
    model.llm.requires_grad_(True)
    with torch.no_grad():
        model.llm.get_input_embeddings().weight.add_(1.0)
    model.save_pretrained(tmp_path / "m")
    assert not os.path.islink(tmp_path / "m" / "llm")
    again = DIFFA.from_pretrained(tmp_path / "m")
    assert torch.equal(again.llm.get_input_embeddings().weight, model.llm.get_input_embeddings().weight)


def test_missing_files_are_named(official_dirs, tmp_path):
    build(official_dirs).save_pretrained(tmp_path / "m")
    os.remove(tmp_path / "m" / "adapters.safetensors")
    with pytest.raises(FileNotFoundError, match=r"m is not a DIFFA model directory: missing adapters.safetensors: save or export"):
        DIFFA.from_pretrained(tmp_path / "m")
    model = build(official_dirs)
    model.add_lora(LoRAConfig(r=2, alpha=4, dropout=0.0, targets=["q_proj"]))
    model.save_pretrained(tmp_path / "lora")
    os.remove(tmp_path / "lora" / "lora.safetensors")
    with pytest.raises(FileNotFoundError, match=r"declares LoRA but .*lora.safetensors is missing: save or export"):
        DIFFA.from_pretrained(tmp_path / "lora")


def test_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown keys.*'bogus'"):
        DIFFAConfig.from_dict({**tiny_config().to_dict(), "bogus": 1})


def test_tokenizer_travels_with_the_model(official_dirs, tmp_path):
    from diffa.text.tokenizer import train_sentencepiece

    spm = train_sentencepiece(["hello world", "the audio says hello"] * 4, tmp_path / "tok" / "spm.model", vocab_size=300)
    model = DIFFA.from_components(tiny_config(), *official_dirs, tokenizer_dir=spm.parent)
    model.save_pretrained(tmp_path / "m")
    again = DIFFA.from_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "tokenizer" / "spm.model").read_bytes() == spm.read_bytes()
    assert again.load_tokenizer().encode("hello world") == model.load_tokenizer().encode("hello world")
    with pytest.raises(FileNotFoundError, match="no tokenizer"):
        DIFFA(tiny_config()).load_tokenizer()


def test_resave_onto_itself_copies_what_lies_inside(official_dirs, tmp_path):
    """Re-saving a self-contained model in place: its frozen parts are copied, never linked to themselves."""
    model = build(official_dirs)
    model.save_pretrained(tmp_path / "export", link_frozen=False)
    again = DIFFA.from_pretrained(tmp_path / "export")
    again.llm.requires_grad_(False)
    again.save_pretrained(tmp_path / "export")
    assert not any(p.is_symlink() for p in (tmp_path / "export").rglob("*"))
    feats, feat_lens, ids, audio_pos = batch()
    with torch.no_grad():
        assert torch.equal(DIFFA.from_pretrained(tmp_path / "export")(feats, feat_lens, ids, audio_pos),
                           model(feats, feat_lens, ids, audio_pos))
    again.save_pretrained(tmp_path / "elsewhere")  # saving elsewhere still links to the frozen parts
    assert os.readlink(tmp_path / "elsewhere" / "llm") == "../export/llm"  # relative: moved together, they work
    (tmp_path / "moved").mkdir()
    for name in ("export", "elsewhere"):
        (tmp_path / name).rename(tmp_path / "moved" / name)
    with torch.no_grad():
        assert torch.equal(DIFFA.from_pretrained(tmp_path / "moved" / "elsewhere")(feats, feat_lens, ids, audio_pos),
                           model(feats, feat_lens, ids, audio_pos))


def test_saved_files_follow_the_umask(official_dirs, tmp_path):
    model = build(official_dirs)
    nonzero_lora(model)
    old = os.umask(0o022)
    try:
        model.save_pretrained(tmp_path / "m", link_frozen=False)
    finally:
        os.umask(old)
    saved = [tmp_path / "m", *(tmp_path / "m").rglob("*")]
    modes = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in saved}
    assert modes["m"] == modes["m/llm"] == oct(0o755)
    for name in ("adapters.safetensors", "lora.safetensors", "config.json", "encoder/model.safetensors",
                 "llm/model.safetensors", "llm/config.json"):
        assert modes[f"m/{name}"] == oct(0o644), name


@pytest.mark.parametrize("name,content,message", [
    ("config.json", "{oops", r"m/config.json: line 1: not valid JSON .*save or export the model again"),
    ("encoder/config.json", "nope", r"m/encoder/config.json: line 1: not valid JSON"),
    ("adapters.safetensors", None, r"m/adapters.safetensors: not a readable safetensors file .*save or export"),
    ("lora.safetensors", None, r"m/lora.safetensors: not a readable safetensors file"),
    ("encoder/model.safetensors", None, r"m/encoder/model.safetensors: not a readable safetensors file"),
    ("llm/model.safetensors", b"", r"m/llm/model.safetensors: not a readable safetensors file"),
], ids=["config", "encoder-config", "adapters", "lora", "encoder-weights", "llm-empty"])
def test_corrupt_files_are_named(official_dirs, tmp_path, name, content, message):
    model = build(official_dirs)
    nonzero_lora(model)
    model.save_pretrained(tmp_path / "m", link_frozen=False)
    path = tmp_path / "m" / name
    if content is None:  # cut the file in half
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(ValueError, match=message):
        DIFFA.from_pretrained(tmp_path / "m")


def test_dangling_link_names_its_target(official_dirs, tmp_path):
    import shutil

    whisper, llada = (shutil.copytree(d, tmp_path / d.name) for d in official_dirs)
    model = DIFFA.from_components(tiny_config(), whisper, llada)
    model.llm.requires_grad_(False)
    model.save_pretrained(tmp_path / "m")
    llada.rename(tmp_path / "moved")
    with pytest.raises(FileNotFoundError, match=rf"m/llm is a link to {re.escape(str(llada.resolve()))}, which does "
                                                r"not exist \(moved or deleted\?\).*diffa.bin.export"):
        DIFFA.from_pretrained(tmp_path / "m")


def test_stale_old_directory_and_failed_save_leave_nothing_behind(official_dirs, tmp_path, monkeypatch):
    model = build(official_dirs)
    model.save_pretrained(tmp_path / "m")
    (tmp_path / ".m.old").mkdir()  # left by a save that crashed before removing it
    (tmp_path / ".m.old" / "x").write_text("x")
    (tmp_path / ".m.k3j9x2ab").mkdir()  # the temporary directory of a save that was killed
    (tmp_path / ".mm.k3j9x2ab").mkdir()  # another directory's: kept
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".mm.k3j9x2ab", "m"]
    (tmp_path / ".mm.k3j9x2ab").rmdir()

    def broken():
        raise OSError("disk full")

    monkeypatch.setattr(model, "adapter_state_dict", broken)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    DIFFA.from_pretrained(tmp_path / "m")  # the earlier save is intact
