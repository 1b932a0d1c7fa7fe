"""Tests of diffa.train.stages: what trains in each curriculum stage, with the authors' parameter counts."""

import pytest
import torch
from transformers import WhisperConfig

from diffa.model.config import OFFICIAL_TAPS, DIFFAConfig
from diffa.model.diffa import DIFFA, tiny_config
from diffa.nnet.llada import LLaDAConfig
from diffa.train.stages import STAGES, get_stage, prepare_stage, set_trainable

LLADA_8B = LLaDAConfig(
    d_model=4096, n_layers=32, n_heads=32, n_kv_heads=32, mlp_hidden_size=12288, vocab_size=126464,
    embedding_size=126464, mask_token_id=126336, eos_token_id=126081, pad_token_id=126081,
).to_dict()
WHISPER = {"small": (12, 768, 12, 80), "large-v3": (32, 1280, 20, 128)}
SEMANTIC = {"small": 14_369_280, "large-v3": 36_392_448}
ACOUSTIC = {"small": 22_251_776, "large-v3": 47_892_992}
LORA = 14_680_064
PROMPTS = 20 * 4096


def _meta_model(whisper: str) -> DIFFA:
    layers, d, heads, mels = WHISPER[whisper]
    encoder = WhisperConfig(
        num_mel_bins=mels, d_model=d, encoder_layers=layers, encoder_attention_heads=heads, encoder_ffn_dim=4 * d,
        decoder_layers=1,
    ).to_dict()
    with torch.device("meta"):
        return DIFFA(DIFFAConfig(encoder=encoder, llm=LLADA_8B, taps=OFFICIAL_TAPS[(layers, d)]))


@pytest.fixture(scope="module", params=sorted(WHISPER))
def meta_model(request):
    return request.param, _meta_model(request.param)


def test_stage_parameter_counts_follow_spec(meta_model):
    whisper, model = meta_model
    s1 = prepare_stage(model, "semantic")
    assert s1.counts == {"semantic": SEMANTIC[whisper], "prompts": PROMPTS}
    assert model.config.layout == "stage1"
    s2 = prepare_stage(model, "acoustic")
    assert s2.counts == {"semantic": SEMANTIC[whisper], "acoustic": ACOUSTIC[whisper]}
    assert model.config.layout == "dual"
    s3 = prepare_stage(model, "sft")
    assert s3.counts == {"semantic": SEMANTIC[whisper], "acoustic": ACOUSTIC[whisper], "lora": LORA}
    assert model.config.lora == {"r": 8, "alpha": 16, "dropout": 0.05, "targets": ["q_proj", "k_proj", "v_proj", "ff_proj", "up_proj"]}
    s4 = prepare_stage(model, "vrpo")
    assert s4.names == s3.names
    if whisper == "large-v3":  # DIFFA-2: about 99M trainable, about 1.1% of the whole model
        assert s3.trainable == 98_965_504
        assert 0.010 < s3.trainable / s3.total < 0.012
    else:  # DIFFA v1 stage 2: 36.6M
        assert s2.trainable == 36_621_056


def test_trainable_names_per_stage(meta_model):
    _, model = meta_model
    prepare_stage(model, "sft")
    names = set_trainable(model, "sft").names
    lora = [n for n in names if n.startswith("llm.")]
    assert len(lora) == 32 * 5 * 2
    assert all(".lora_A.default." in n or ".lora_B.default." in n for n in lora)
    assert {n.split(".")[-4] for n in lora} == {"q_proj", "k_proj", "v_proj", "ff_proj", "up_proj"}
    assert not any(n.startswith(("encoder.", "prompts.")) for n in names)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert any(n.startswith("encoder.") for n in frozen) and "llm.model.transformer.ff_out.weight" in frozen
    assert set_trainable(model, "semantic").names == sorted(
        n for n, _ in model.named_parameters() if n.startswith(("semantic.", "prompts."))
    )


def test_a_reference_adapter_stays_frozen():
    from diffa.nnet.lora import LoRAConfig, add_lora

    model = DIFFA(tiny_config())
    prepare_stage(model, "vrpo")
    with pytest.warns(UserWarning, match="multiple adapters"):  # peft's notice: a second adapter is the point
        add_lora(model.llm, LoRAConfig(r=2, alpha=4, dropout=0.0), adapter_name="reference")
    summary = set_trainable(model, "vrpo")
    assert not any(".reference." in n for n in summary.names)
    assert any(".reference." in n and not p.requires_grad for n, p in model.named_parameters())


def test_lora_stage_without_lora_and_unknown_stage_are_errors():
    model = DIFFA(tiny_config())
    with pytest.raises(ValueError, match="trains LoRA but the model has none"):
        set_trainable(model, "sft")
    with pytest.raises(ValueError, match="unknown stage 'sft2'; valid stages: semantic, acoustic, sft, vrpo"):
        get_stage("sft2")
    assert set(STAGES) == {"semantic", "acoustic", "sft", "vrpo"}


def test_summary_text_lists_groups_and_share():
    model = DIFFA(tiny_config())
    text = str(prepare_stage(model, "acoustic"))
    assert text.splitlines()[0] == "trainable parameters:"
    size = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    total, everything = size["acoustic"] + size["semantic"], sum(size.values())
    assert text.splitlines()[1:] == [f"  acoustic    {size['acoustic']:>12,}", f"  semantic    {size['semantic']:>12,}",
                                     f"  total       {total:>12,} of {everything:,} ({100 * total / everything:.2f}%)"]
