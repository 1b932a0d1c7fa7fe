"""Tests for diffa.diffusion.sampler: parity with a loop-by-loop transcription of LLaDA's sampler,
batching over left-padded prompts, early stop at eos, parallel decoding and argument checks."""
import math

import pytest
import torch

from diffa.diffusion.sampler import generate

VOCAB, MASK, PAD = 24, 23, 0


class ToyDenoiser:
    """A tiny bidirectional mask predictor: embeddings, one attention layer and an output head.

    Its only positional signal is a bias per *relative* distance, and padded keys are masked out,
    so the logits at a real position do not depend on how much left padding precedes the prompt:
    that is what lets a left-padded batch decode exactly like its rows one at a time. It works in
    float64 so that batched and single-row runs agree far below any argmax/sort margin, and it
    records the batch size of every call. A mask carries no content (zero embedding) and gets a
    large negative logit, as in a trained model; the sharp relative bias (each position mostly
    reads one offset) and the sharp head give varied answers and confidences spread over (0, 1),
    so the factor and threshold rules commit one or several tokens depending on the step.
    """

    def __init__(self, dim=16, max_len=64, sharpness=8.0, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.embed = torch.randn(VOCAB, dim, generator=g, dtype=torch.float64)
        self.embed[MASK] = 0.0
        self.qkv = torch.randn(dim, 3 * dim, generator=g, dtype=torch.float64) / dim**0.5
        self.rel = 6 * torch.randn(2 * max_len - 1, generator=g, dtype=torch.float64)
        self.head = sharpness * torch.randn(dim, VOCAB, generator=g, dtype=torch.float64) / dim**0.5
        self.max_len = max_len
        self.batch_sizes = []

    def __call__(self, x, attention_mask, rows=None):
        self.batch_sizes.append(x.shape[0])
        h = self.embed[x]
        q, k, v = (h @ self.qkv).chunk(3, dim=-1)
        pos = torch.arange(x.shape[1])
        scores = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])
        scores = scores + self.rel[pos[None, :] - pos[:, None] + self.max_len - 1]
        if attention_mask is not None:
            scores = scores.masked_fill(~attention_mask[:, None, :], float("-inf"))
        h = h + scores.softmax(-1) @ v
        logits = h @ self.head
        logits[..., MASK] = -30.0
        return logits


def reference(model, prompt, *, gen_length, block_length, steps, temperature=0.0, cfg_scale=0.0,
              remasking="low_confidence", factor=None, threshold=None, eos_id=None,
              generator=None):
    """LLaDA's sampler (with Fast-dLLM's rules) for ONE unpadded prompt, transcribed with plain Python loops.

    Two documented choices of the sampler are mirrored: a block stops as soon as it has no masks
    (steps that would commit nothing are skipped), and random numbers are drawn per step in this
    order and shape: Gumbel noise (1, block_length, V) in float64, then the random confidences
    (1, block_length).
    """
    plen = len(prompt)
    x = prompt.tolist() + [MASK] * gen_length
    masked = [False] * plen + [True] * gen_length
    nfe = 0
    num_blocks = gen_length // block_length
    per_block = steps // num_blocks
    for b in range(num_blocks):
        lo, hi = plen + b * block_length, plen + (b + 1) * block_length
        quota = [block_length // per_block + (1 if s < block_length % per_block else 0)
                 for s in range(per_block)]
        step = 0
        while any(masked[lo:hi]):
            ids = torch.tensor([x])
            if cfg_scale > 0:
                uncond = ids.clone()
                uncond[0, :plen] = MASK
                both = model(torch.cat([ids, uncond]), None)
                logits = both[1] + (cfg_scale + 1) * (both[0] - both[1])
                nfe += 2
            else:
                logits = model(ids, None)[0]
                nfe += 1
            logits = logits[lo:hi]
            if temperature > 0:
                noise = torch.rand((1,) + logits.shape, dtype=torch.float64, generator=generator)[0]
                x0 = (logits.exp() / (-torch.log(noise)) ** temperature).argmax(-1).tolist()
            else:
                x0 = logits.argmax(-1).tolist()
            if remasking == "random":
                conf = torch.rand((1, block_length), generator=generator)[0].tolist()
            else:
                conf = [torch.softmax(logits[j], -1)[x0[j]].item() for j in range(block_length)]
            ranked = sorted((j for j in range(block_length) if masked[lo + j]),
                            key=lambda j: -conf[j])
            if factor is not None:  # top n while (n + 1)(1 - c_n) <= f, at least one
                n = 1
                while n < len(ranked) and (n + 2) * (1 - conf[ranked[n]]) <= factor:
                    n += 1
                if n == len(ranked) - 1:  # the authors' decoder commits a lone failing last one
                    n += 1
            elif threshold is not None:
                n = max(1, sum(conf[j] >= threshold for j in ranked))
            else:
                n = quota[step]
            for j in ranked[:n]:
                x[lo + j], masked[lo + j] = x0[j], False
            step += 1
            if eos_id is not None:
                committed_eos = [i for i in range(plen, plen + gen_length)
                                 if x[i] == eos_id and not masked[i]]
                if committed_eos and not any(masked[plen:committed_eos[0]]):
                    for i in range(committed_eos[0], plen + gen_length):
                        x[i] = eos_id
                    return x, nfe
    return x, nfe


def make_prompts(lengths=(4, 7, 2), seed=1):
    """Random prompts, LEFT-padded with PAD, and their attention mask."""
    g = torch.Generator().manual_seed(seed)
    rows = [torch.randint(1, MASK, (n,), generator=g) for n in lengths]
    width = max(lengths)
    ids = torch.full((len(rows), width), PAD)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = row
    return rows, ids, ids != PAD if min(lengths) < width else None


def frequent_token(sequences, plen):
    """The most frequent generated token: an eos the toy model is sure to emit somewhere."""
    return sequences[:, plen:].flatten().mode().values.item()


DETERMINISTIC = {
    "quota": dict(gen_length=12, block_length=4, steps=6),
    "quota_uneven": dict(gen_length=10, block_length=5, steps=6),
    "quota_more_steps_than_tokens": dict(gen_length=8, block_length=4, steps=12),
    "cfg": dict(gen_length=12, block_length=12, steps=12, cfg_scale=1.5),
    "factor": dict(gen_length=12, block_length=6, steps=12, factor=1.0),
    "threshold": dict(gen_length=12, block_length=4, steps=12, threshold=0.6),
}
SEEDED = {
    "temperature": dict(gen_length=8, block_length=4, steps=8, temperature=0.7),
    "random": dict(gen_length=8, block_length=4, steps=4, remasking="random"),
    "random_temperature": dict(gen_length=8, block_length=8, steps=8, remasking="random",
                               temperature=1.0),
    "factor_temperature": dict(gen_length=8, block_length=4, steps=8, temperature=0.5,
                               factor=1.0),
    "cfg_temperature": dict(gen_length=8, block_length=4, steps=4, temperature=0.5,
                            cfg_scale=1.0),
}


@pytest.mark.parametrize("eos", [False, True])
@pytest.mark.parametrize("name", sorted(DETERMINISTIC))
def test_batched_matches_reference(name, eos):
    """A left-padded batch gives each row the reference's tokens and NFE (temperature 0)."""
    model, kwargs = ToyDenoiser(), DETERMINISTIC[name]
    rows, ids, mask = make_prompts()
    if eos:
        free = generate(model, ids, attention_mask=mask, mask_id=MASK, **kwargs)
        kwargs = dict(kwargs, eos_id=frequent_token(free.sequences, ids.shape[1]))
    out = generate(model, ids, attention_mask=mask, mask_id=MASK, **kwargs)
    for i, row in enumerate(rows):
        tokens, nfe = reference(model, row, **kwargs)
        assert out.sequences[i, ids.shape[1] - len(row):].tolist() == tokens
        assert out.nfe[i].item() == nfe
    assert torch.equal(out.sequences[:, :ids.shape[1]], ids)  # prompts and pads untouched


@pytest.mark.parametrize("name", sorted(SEEDED))
def test_seeded_sampling_matches_reference(name):
    """With a seeded generator the sampler draws the same numbers as the reference."""
    model, kwargs = ToyDenoiser(), SEEDED[name]
    for row in make_prompts()[0]:
        out = generate(model, row[None], mask_id=MASK,
                       generator=torch.Generator().manual_seed(7), **kwargs)
        tokens, nfe = reference(model, row, generator=torch.Generator().manual_seed(7), **kwargs)
        assert out.sequences[0].tolist() == tokens
        assert out.nfe.tolist() == [nfe]


def llada_generate_py(model, prompt, *, gen_length, block_length, steps, cfg_scale=0.0):
    """The loop of LLaDA's released generate.py at temperature 0 (batch 1), written from its
    formulas: every block runs all of its steps/num_blocks steps, even those that commit nothing;
    get_num_transfer_tokens gives the first (masks mod steps) steps one extra token; confidence
    is the float64 softmax probability of the argmax, -inf past the current block and at
    non-masks; torch.topk picks the committed positions; CFG masks the prompt positions."""
    x = torch.cat([prompt, torch.full((1, gen_length), MASK)], dim=1)
    is_prompt = x != MASK
    per_block = steps // (gen_length // block_length)
    for end in range(prompt.shape[1] + block_length, x.shape[1] + 1, block_length):
        masks = int((x[0, end - block_length:end] == MASK).sum())
        transfer = [masks // per_block + (i < masks % per_block) for i in range(per_block)]
        for k in transfer:
            if cfg_scale > 0:
                cond, uncond = model(torch.cat([x, x.masked_fill(is_prompt, MASK)]), None)
                logits = uncond + (cfg_scale + 1) * (cond - uncond)
            else:
                logits = model(x, None)[0]
            x0 = logits.argmax(-1)
            p = logits.double().softmax(-1).gather(-1, x0[:, None])[:, 0]
            p[end:] = -math.inf
            confidence = torch.where(x[0] == MASK, p, -math.inf)
            chosen = confidence.topk(k).indices
            x[0, chosen] = x0[chosen]
    return x[0].tolist()


@pytest.mark.parametrize("kwargs", [
    dict(gen_length=12, block_length=4, steps=6),
    dict(gen_length=10, block_length=5, steps=6),
    dict(gen_length=8, block_length=4, steps=12),
    dict(gen_length=9, block_length=3, steps=6, cfg_scale=1.5),
], ids=["even", "uneven", "more_steps_than_tokens", "cfg"])
def test_same_tokens_as_llada_generate_py(kwargs):
    """At temperature 0 the quota rule commits LLaDA's generate.py tokens."""
    model = ToyDenoiser()
    for row in make_prompts()[0]:
        out = generate(model, row[None], mask_id=MASK, **kwargs)
        assert out.sequences[0].tolist() == llada_generate_py(model, row[None], **kwargs)


def test_sampling_depends_on_seed():
    """Different seeds give different samples (the noise is actually used)."""
    model, (_, ids, mask) = ToyDenoiser(), make_prompts()
    outs = [generate(model, ids, attention_mask=mask, mask_id=MASK, gen_length=12,
                     block_length=4, steps=12, temperature=1.0,
                     generator=torch.Generator().manual_seed(s)).sequences for s in (1, 2)]
    assert not torch.equal(*outs)


@pytest.mark.parametrize("kwargs", [
    dict(gen_length=12, block_length=4, steps=6),
    dict(gen_length=12, block_length=6, steps=12, factor=1.0, cfg_scale=0.5),
    dict(gen_length=12, block_length=4, steps=12, threshold=0.5, eos_id=5),
], ids=["quota", "factor_cfg", "threshold_eos"])
def test_batched_matches_one_by_one(kwargs):
    """Left padding + attention mask: each row decodes as if it were alone (no padding)."""
    model = ToyDenoiser()
    rows, ids, mask = make_prompts(lengths=(5, 1, 3, 6))
    out = generate(model, ids, attention_mask=mask, mask_id=MASK, **kwargs)
    for i, row in enumerate(rows):
        alone = generate(model, row[None], mask_id=MASK, **kwargs)
        assert torch.equal(out.sequences[i, ids.shape[1] - len(row):], alone.sequences[0])
        assert out.nfe[i] == alone.nfe[0]


@pytest.mark.parametrize("kwargs", [
    dict(gen_length=12, block_length=6, steps=12, factor=1.0, cfg_scale=0.5),
    dict(gen_length=12, block_length=4, steps=12, threshold=0.5, eos_id=5),
], ids=["factor_cfg", "threshold_eos"])
def test_rows_route_per_example_conditioning(kwargs):
    """``rows`` names each row's prompt, also after finished rows drop out and with CFG copies."""
    model = ToyDenoiser()
    bias = 3 * torch.randn(4, VOCAB, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    bias[:, MASK] = 0.0
    seen = []

    def conditioned(x, attention_mask, rows):
        seen.append(rows.tolist())
        return model(x, attention_mask) + bias[rows][:, None]

    prompts, ids, mask = make_prompts(lengths=(5, 1, 3, 6))
    out = generate(conditioned, ids, attention_mask=mask, mask_id=MASK, **kwargs)
    if kwargs.get("cfg_scale"):  # each call holds the conditional and the unconditional copy of its rows
        assert all(len(r) % 2 == 0 and r[: len(r) // 2] == r[len(r) // 2:] for r in seen)
        assert any(len(r) < 8 for r in seen)  # and finished rows dropped out
    else:
        assert any(len(r) < 4 for r in seen)  # finished rows dropped out
    for i, row in enumerate(prompts):
        alone = generate(lambda x, m, rows, i=i: model(x, m) + bias[i], row[None], mask_id=MASK, **kwargs)
        assert torch.equal(out.sequences[i, ids.shape[1] - len(row):], alone.sequences[0])


@pytest.mark.parametrize("kwargs", [
    dict(steps=16), dict(steps=16, factor=1.0),
], ids=["quota", "factor"])
def test_eos_stops_rows_early(kwargs):
    """Rows stop at their first eos once everything before it is committed."""
    model, (_, ids, mask) = ToyDenoiser(), make_prompts(lengths=(4, 7, 2, 5, 3))
    plen, common = ids.shape[1], dict(attention_mask=mask, mask_id=MASK, gen_length=16,
                                      block_length=4, **kwargs)
    free = generate(model, ids, **common)
    eos = frequent_token(free.sequences, plen)
    model.batch_sizes.clear()
    out = generate(model, ids, eos_id=eos, **common)
    gen = out.sequences[:, plen:]
    first = (gen == eos).long().argmax(1)
    after = torch.arange(gen.shape[1]) >= first[:, None]
    assert (gen == eos).any(1).all()
    assert (gen[after] == eos).all()
    assert not (gen == MASK).any()
    assert (out.nfe <= free.nfe).all() and (out.nfe < free.nfe).any()
    assert sum(model.batch_sizes) == out.nfe.sum()  # finished rows are not computed
    assert model.batch_sizes[-1] < len(ids)


def test_without_eos_every_position_is_decoded():
    """No eos: the answer has no masks left and the quota rule takes exactly `steps` steps."""
    _, ids, mask = make_prompts()
    out = generate(ToyDenoiser(), ids, attention_mask=mask, mask_id=MASK, gen_length=12,
                   block_length=4, steps=6)
    assert not (out.sequences == MASK).any()
    assert out.nfe.tolist() == [6, 6, 6]


def test_cfg_counts_two_forward_passes_per_step():
    """A guided step runs the conditional and unconditional copies: 2 NFE per step."""
    (_, ids, mask), model = make_prompts(), ToyDenoiser()
    out = generate(model, ids, attention_mask=mask, mask_id=MASK, gen_length=8, block_length=4,
                   steps=4, cfg_scale=2.0)
    assert out.nfe.tolist() == [8, 8, 8]
    assert model.batch_sizes == [2 * len(ids)] * 4


def test_prompt_mask_tokens_are_kept():
    """A mask id inside the prompt is prompt content: never predicted, never replaced."""
    prompt = torch.tensor([[3, MASK, 5]])
    out = generate(ToyDenoiser(), prompt, mask_id=MASK, gen_length=4, block_length=4, steps=4)
    assert out.sequences[0, :3].tolist() == [3, MASK, 5]
    assert not (out.sequences[0, 3:] == MASK).any()


@pytest.mark.parametrize("rule", ["factor", "threshold"])
def test_parallel_decoding_extremes(rule):
    """Lenient settings commit a whole block per step; strict ones commit one token per step."""
    (_, ids, mask), model = make_prompts(), ToyDenoiser()
    common = dict(attention_mask=mask, mask_id=MASK, gen_length=12, block_length=4, steps=12)
    lenient, strict, typical = ({"factor": 1e6}, {"factor": 1e-9}, {"factor": 1.0}) \
        if rule == "factor" else ({"threshold": 0.0}, {"threshold": 1.0}, {"threshold": 0.6})
    assert generate(model, ids, **common, **lenient).nfe.tolist() == [3, 3, 3]
    # strict: one token a step, except that the last two of a block go together under the factor
    # rule (the authors' decoder commits a lone failing last candidate)
    assert generate(model, ids, **common, **strict).nfe.tolist() == ([9] * 3 if rule == "factor" else [12] * 3)
    nfe = generate(model, ids, **common, **typical).nfe
    assert (nfe < 12).any() and (nfe > 3).any()  # the toy really exercises the rule


@pytest.mark.parametrize("kwargs, message", [
    (dict(gen_length=10, block_length=4), "multiple of block_length"),
    (dict(gen_length=8, block_length=0), "multiple of block_length"),
    (dict(steps=3), "multiple of the number of blocks"),
    (dict(steps=0), "multiple of the number of blocks"),
    (dict(mask_id=VOCAB, vocab_size=VOCAB), "mask_id=24 is outside"),
    (dict(mask_id=-1), "must be token ids"),
    (dict(eos_id=-2), "must be token ids"),
    (dict(eos_id=VOCAB + 5), "eos_id=29 is outside"),
    (dict(eos_id=VOCAB, vocab_size=VOCAB), "eos_id=24 is outside"),
    (dict(remasking="top_p"), "unknown remasking"),
    (dict(factor=1.0, threshold=0.9), "not both"),
    (dict(factor=1.0, remasking="random"), "needs model confidences"),
    (dict(threshold=0.9, remasking="random"), "needs model confidences"),
    (dict(factor=0.0), "factor"),
    (dict(threshold=1.5), "threshold"),
    (dict(temperature=-1.0), "must be >= 0"),
    (dict(cfg_scale=-0.5), "must be >= 0"),
    (dict(prompt_ids=torch.tensor([1, 2])), "prompt_ids must be"),
    (dict(attention_mask=torch.tensor([[True, False]])), "LEFT-padded"),
    (dict(attention_mask=torch.tensor([[True]])), "must match"),
])
def test_bad_arguments_raise_value_error(kwargs, message):
    args = dict(prompt_ids=torch.tensor([[1, 2]]), gen_length=8, block_length=4, steps=4,
                mask_id=MASK)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        generate(ToyDenoiser(), **args)


def test_mask_id_checked_against_logits():
    """Without vocab_size, special ids are checked against the width of the first logits."""
    def wide_input_denoiser(x, attention_mask, rows=None):  # accepts any id, predicts VOCAB classes
        return torch.zeros(x.shape + (VOCAB,))
    with pytest.raises(ValueError, match="mask_id=30 is outside the denoiser's vocabulary"):
        generate(wide_input_denoiser, torch.tensor([[1, 2]]), mask_id=30, gen_length=4,
                 block_length=4, steps=4)


def test_factor_ignores_steps():
    """The adaptive rules need no step budget: steps that do not divide the blocks are fine."""
    out = generate(ToyDenoiser(), torch.tensor([[1, 2]]), mask_id=MASK, gen_length=8,
                   block_length=4, steps=3, factor=1.0)
    assert not (out.sequences == MASK).any()


@pytest.mark.parametrize("probs, expected_nfe", [
    ((0.9, 0.6), 1),        # the last of two fails (0.6 < 1 - 1/3): committed with the first anyway
    ((0.9, 0.8), 1),        # both pass
    ((0.9, 0.6, 0.6), 2),   # the second of three fails: the top one alone, then the last two together
])
def test_factor_rule_commits_a_lone_failing_last_candidate(probs, expected_nfe):
    """Fast-dLLM's get_transfer_index_dynamic, which DIFFA-2 decodes with: with f = 1, position j
    is proposed with probability probs[j]; the top n pass while c_n >= 1 - 1/(n + 1), and when
    only the last candidate fails, every candidate is committed."""
    k = len(probs)

    def denoiser(x, attention_mask, rows):
        logits = torch.full((x.shape[0], x.shape[1], VOCAB), -1e4)
        for j, p in enumerate(probs):  # token j + 1 with probability p, the rest on token 0
            logits[:, 1 + j, j + 1] = math.log(p)
            logits[:, 1 + j, 0] = math.log(1 - p)
        return logits

    out = generate(denoiser, torch.tensor([[5]]), mask_id=MASK, gen_length=k, block_length=k,
                   steps=k, factor=1.0)
    assert out.nfe.tolist() == [expected_nfe]
    assert out.sequences[0, 1:].tolist() == list(range(1, k + 1))
