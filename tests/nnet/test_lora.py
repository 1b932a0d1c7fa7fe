"""LoRA on LLaDA-8B: DIFFA-2's configuration (r=8, alpha=16, q/k/v/ff_proj/up_proj), counted on meta."""

import torch

from diffa.nnet.llada import LLaDAConfig, LLaDAModel
from diffa.nnet.lora import LLADA_LORA_TARGETS, LoRAConfig, add_lora, base_state_dict, lora_layers, lora_state_dict


def test_llada_8b_lora_matches_spec():
    with torch.device("meta"):
        llm = LLaDAModel(LLaDAConfig(d_model=4096, n_layers=32, n_heads=32, n_kv_heads=32, mlp_hidden_size=12288,
                                     vocab_size=126464, embedding_size=126464))
    base_keys = set(llm.state_dict())
    add_lora(llm, LoRAConfig())
    assert sum(p.numel() for n, p in llm.named_parameters() if ".lora_" in n) == 14_680_064
    layers = dict(lora_layers(llm))
    assert {name.rsplit(".", 1)[1] for name in layers} == set(LLADA_LORA_TARGETS) and len(layers) == 32 * 5
    assert {layer.scaling["default"] for layer in layers.values()} == {16 / 8}
    assert not any(p.requires_grad for n, p in llm.named_parameters() if ".lora_" not in n)
    assert set(base_state_dict(llm)) == base_keys  # the official keys, peft's .base_layer removed
    assert "model.transformer.blocks.31.up_proj.lora_A.weight" in lora_state_dict(llm)
