"""Semantic and acoustic adapters: released parameter counts, shapes, padding, the authors' layout."""

import pytest
import torch
from torch import nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertEncoder

from diffa.nnet.adapters import AcousticAdapter, QFormerLayer, SemanticAdapter


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(
    "d, heads, taps, semantic, acoustic",
    [(768, 12, 4, 14_369_280, 22_251_776), (1280, 20, 8, 36_392_448, 47_892_992)],
    ids=["whisper-small", "whisper-large-v3"],
)
def test_parameter_counts_match_spec(d, heads, taps, semantic, acoustic):
    with torch.device("meta"):
        assert n_params(SemanticAdapter(d, 4096)) == semantic
        assert n_params(AcousticAdapter(d, 4096, n_taps=taps, n_heads=heads)) == acoustic


# ---------------------------------------------------------------------------------- semantic
def spec_semantic(d, d_llm):
    """The authors' semantic adapter, written as their module layout (conv / linear_connector / layernorm)."""
    return nn.ModuleDict({
        "conv": nn.Sequential(nn.Conv1d(d, d, 3, 1, 1), nn.GELU(), nn.Conv1d(d, 4 * d, 3, 4, 1)),
        "linear_connector": nn.Sequential(nn.Linear(4 * d, d), nn.ReLU(), nn.Linear(d, d_llm), nn.ReLU()),
        "layernorm": nn.LayerNorm(d_llm),
    })


def run_spec_semantic(ref, x):
    x = x[:, : x.shape[1] // 4 * 4]
    h = ref["conv"](x.transpose(1, 2)).transpose(1, 2)
    return ref["layernorm"](ref["linear_connector"](h))


def test_semantic_matches_spec_formula_through_the_official_key_map():
    torch.manual_seed(0)
    ref = spec_semantic(8, 12)
    adapter = SemanticAdapter(8, 12)
    adapter.load_state_dict(SemanticAdapter.convert_official_state_dict(ref.state_dict()))
    x = torch.randn(2, 23, 8)
    emb, lens = adapter(x, torch.tensor([23, 17]))
    torch.testing.assert_close(emb, run_spec_semantic(ref, x))
    assert emb.shape == (2, 5, 12) and lens.tolist() == [5, 4]


@pytest.mark.parametrize("T", [4, 5, 6, 7, 8, 13])
def test_semantic_drops_the_remainder_frames(T):
    adapter = SemanticAdapter(6, 10)
    x = torch.randn(2, T, 6)
    emb, lens = adapter(x)
    assert emb.shape == (2, T // 4, 10) and lens.tolist() == [T // 4] * 2
    torch.testing.assert_close(emb, adapter(x[:, : T // 4 * 4])[0])


def test_semantic_valid_tokens_never_see_padding():
    torch.manual_seed(0)
    adapter = SemanticAdapter(6, 10)
    lens = torch.tensor([21, 9, 6])
    x = torch.randn(3, 21, 6)
    garbage = x.clone()
    for b, n in enumerate(lens.tolist()):
        garbage[b, n:] = 1e3
    a, out_lens = adapter(x, lens)
    g, _ = adapter(garbage, lens)
    assert out_lens.tolist() == [5, 2, 1]
    for b, m in enumerate(out_lens.tolist()):
        torch.testing.assert_close(a[b, :m], g[b, :m])
    assert not torch.allclose(a[1, 2:], g[1, 2:])  # tokens past the valid ones do see it


def test_semantic_rejects_too_short_input():
    with pytest.raises(ValueError, match="at least 4 encoder frames"):
        SemanticAdapter(4, 4)(torch.randn(1, 3, 4))


# ---------------------------------------------------------------------------------- acoustic
D, HEADS, FFN, Q = 16, 4, 24, 5


def make_acoustic(n_taps=3, dropout=0.1):
    torch.manual_seed(0)
    return AcousticAdapter(D, 12, n_taps=n_taps, n_heads=HEADS, n_queries=Q, ffn=FFN, dropout=dropout).eval()


def per_tap_reference(adapter, taps, weights):
    """Q-Former run tap by tap (no batching over taps), then the given per-query tap mixture."""
    outs = []
    for n, tap in enumerate(taps):
        x = adapter.queries[n].expand(tap.shape[0], -1, -1)
        for layer in adapter.layers:
            x = layer(x, tap)
        outs.append(x)
    mixed = torch.einsum("nbqd,qn->bqd", torch.stack(outs), weights)
    return adapter.proj(adapter.norm(mixed))


def test_acoustic_at_init_is_the_mean_over_taps():
    adapter = make_acoustic()
    assert torch.equal(adapter.tap_weights, torch.zeros(Q, 3))
    taps = [torch.randn(2, 7, D) for _ in range(3)]
    out = adapter(taps)
    assert out.shape == (2, Q, 12)
    torch.testing.assert_close(out, per_tap_reference(adapter, taps, torch.full((Q, 3), 1 / 3)))


def test_acoustic_mixes_taps_with_a_per_query_softmax():
    adapter = make_acoustic()
    with torch.no_grad():
        adapter.tap_weights.normal_()
    taps = [torch.randn(2, 7, D) for _ in range(3)]
    expected = per_tap_reference(adapter, taps, torch.softmax(adapter.tap_weights, dim=-1))
    torch.testing.assert_close(adapter(taps), expected)


def test_acoustic_with_lens_ignores_padding_and_without_lens_sees_it():
    adapter = make_acoustic()
    lens = torch.tensor([7, 4])
    taps = [torch.randn(2, 7, D) for _ in range(3)]
    for t in taps:
        t[1, 4:] = 0.0
    out = adapter(taps, lens)
    padded = [torch.cat([t, 50 * torch.randn(2, 6, D)], dim=1) for t in taps]
    for t in padded:
        t[1, 4:7] = 50.0
    torch.testing.assert_close(adapter(padded, lens), out, atol=1e-5, rtol=0)
    # each row equals the row run alone on its real frames
    alone = adapter([t[1:, :4] for t in taps])
    torch.testing.assert_close(out[1:], alone, atol=1e-5, rtol=0)
    assert not torch.allclose(adapter(padded), adapter(padded, lens))


def test_acoustic_matches_authors_bert_encoder_through_the_official_key_map():
    """The authors' layout: per-tap prompts, a transformers BertEncoder with cross-attention
    (bidirectional self-attention: eager attention, no mask), softmax(layer_weights) over taps,
    then proj = LayerNorm + Linear."""
    torch.manual_seed(0)
    n_taps = 3
    cfg = BertConfig(hidden_size=D, num_attention_heads=HEADS, intermediate_size=FFN, num_hidden_layers=2,
                     is_decoder=True, add_cross_attention=True)
    cfg._attn_implementation = "eager"
    bert = BertEncoder(cfg).eval()
    prompts = [torch.randn(1, Q, D) for _ in range(n_taps)]
    layer_weights = torch.randn(Q, n_taps)
    proj = nn.Sequential(nn.LayerNorm(D), nn.Linear(D, 12))
    official = {f"layer_prompts.{i}": p for i, p in enumerate(prompts)}
    official["layer_weights"] = layer_weights
    official.update({f"qformer.{k}": v for k, v in bert.state_dict().items()})
    official.update({f"proj.{k}": v for k, v in proj.state_dict().items()})

    adapter = AcousticAdapter(D, 12, n_taps=n_taps, n_heads=HEADS, n_queries=Q, ffn=FFN).eval()
    adapter.load_state_dict(AcousticAdapter.convert_official_state_dict(official))

    taps = [torch.randn(2, 9, D) for _ in range(n_taps)]
    with torch.no_grad():
        per_tap = [bert(hidden_states=p.expand(2, -1, -1), encoder_hidden_states=t).last_hidden_state
                   for p, t in zip(prompts, taps)]
        mixed = (torch.stack(per_tap, dim=2) * torch.softmax(layer_weights, -1)[..., None]).sum(2)
        expected = proj(mixed)
        torch.testing.assert_close(adapter(taps), expected, atol=1e-5, rtol=1e-5)


def test_official_key_map_rejects_unknown_keys():
    with pytest.raises(ValueError, match="acoustic_connector: unknown key 'qformer.pooler.dense.weight'"):
        AcousticAdapter.convert_official_state_dict({"qformer.pooler.dense.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="semantic_connector: unknown key 'conv.1.weight'"):
        SemanticAdapter.convert_official_state_dict({"conv.1.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="layer_prompts indices"):
        AcousticAdapter.convert_official_state_dict({"layer_prompts.1": torch.zeros(1, 2, 3)})


def test_gradients_reach_every_parameter():
    adapter = make_acoustic().train()
    semantic = SemanticAdapter(D, 12)
    with torch.no_grad():
        adapter.tap_weights.normal_()
    taps = [torch.randn(2, 8, D) for _ in range(3)]
    loss = adapter(taps, torch.tensor([8, 5])).pow(2).mean() + semantic(taps[0])[0].pow(2).mean()
    loss.backward()
    for name, p in [*adapter.named_parameters(), *semantic.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_dropout_only_in_training():
    adapter = make_acoustic(dropout=0.5)
    taps = [torch.randn(1, 6, D) for _ in range(3)]
    assert torch.equal(adapter(taps), adapter(taps))
    adapter.train()
    assert not torch.equal(adapter(taps), adapter(taps))


def test_acoustic_bad_arguments():
    adapter = make_acoustic()
    with pytest.raises(ValueError, match="expected 3 tapped hidden states, got 2"):
        adapter([torch.randn(1, 4, D)] * 2)
    with pytest.raises(ValueError, match="every entry >= 1"):
        adapter([torch.randn(2, 4, D)] * 3, torch.tensor([4, 0]))
    with pytest.raises(ValueError, match="width 8, expected 16"):
        adapter([torch.randn(1, 4, 8)] * 3)
    with pytest.raises(ValueError, match="not divisible by 3 heads"):
        QFormerLayer(16, 3, 8, 0.0)
