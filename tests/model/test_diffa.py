"""DIFFA: batching is invisible, save/load round-trips, layouts and LoRA behave."""

import os

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
    with pytest.raises(FileNotFoundError, match="adapters.safetensors"):
        DIFFA.from_pretrained(tmp_path / "m")


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
