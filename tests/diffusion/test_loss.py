"""Tests for diffa.diffusion.loss: SFT loss, Monte-Carlo ELBO, antithetic ELBOs, VRPO."""
import itertools
import math

import pytest
import torch

from diffa.diffusion.loss import antithetic_elbos, mc_elbo, sft_loss, vrpo_loss
from diffa.diffusion.noise import mask_exactly_k


def _ce(row, target):
    """Cross-entropy of one logit row, by hand."""
    return math.log(sum(math.exp(v) for v in row)) - row[target]


# A 2-example batch, L = 3, V = 3. Row 0: position 0 is prompt, 1-2 answer; row 1: all answer
# (its last position is eos padding, which counts as an answer token).
LOGITS = [[[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
          [[1.0, 0.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]]]
TARGETS = [[0, 0, 1], [2, 1, 2]]
ANSWER = [[False, True, True], [True, True, True]]
MASKED = [[False, True, True], [False, True, False]]
T = [0.5, 0.25]


def _hand_sft(normalization):
    per_row = []
    for b in range(2):
        s = sum(_ce(LOGITS[b][i], TARGETS[b][i]) / T[b] for i in range(3) if MASKED[b][i])
        per_row.append(s)
    n_answer = [sum(row) for row in ANSWER]
    if normalization == "batch":
        return sum(per_row) / sum(n_answer)
    return sum(per_row[b] / n_answer[b] for b in range(2)) / 2


def _sft_args(dtype=torch.float32):
    return (torch.tensor(LOGITS, dtype=dtype), torch.tensor(TARGETS), torch.tensor(MASKED),
            torch.tensor(T), torch.tensor(ANSWER))


@pytest.mark.parametrize("normalization", ["batch", "row"])
def test_sft_loss_matches_hand_computation(normalization):
    loss = sft_loss(*_sft_args(), normalization=normalization)
    assert loss.shape == () and loss.dtype == torch.float32
    assert loss.item() == pytest.approx(_hand_sft(normalization), rel=1e-6)


def test_sft_normalisations_differ_and_batch_is_default():
    assert sft_loss(*_sft_args()).item() == pytest.approx(_hand_sft("batch"), rel=1e-6)
    assert _hand_sft("batch") != pytest.approx(_hand_sft("row"))


def test_sft_loss_ignores_unmasked_positions_and_computes_in_float32():
    logits, targets, masked, t, answer = _sft_args()
    changed = logits.clone()
    changed[~masked] = torch.randn(int((~masked).sum()), 3) * 10
    assert torch.equal(sft_loss(changed, targets, masked, t, answer),
                       sft_loss(logits, targets, masked, t, answer))
    low = sft_loss(logits.bfloat16(), targets, masked, t, answer)
    # the bf16 logits' values, but the log-softmax in float32 (in bf16 it is off by ~5e-5)
    assert low.dtype == torch.float32
    assert low.item() == pytest.approx(sft_loss(logits.bfloat16().float(), targets, masked, t, answer).item(), rel=1e-6)


def test_sft_loss_gradient_only_at_masked_logits():
    logits, targets, masked, t, answer = _sft_args()
    logits.requires_grad_(True)
    sft_loss(logits, targets, masked, t, answer).backward()
    assert (logits.grad[~masked] == 0).all()
    assert (logits.grad[masked].abs().sum(-1) > 0).all()


def test_sft_loss_errors():
    logits, targets, masked, t, answer = _sft_args()
    with pytest.raises(ValueError, match="normalization"):
        sft_loss(logits, targets, masked, t, answer, normalization="token")
    outside = masked.clone()
    outside[0, 0] = True
    with pytest.raises(ValueError, match="outside answer_mask"):
        sft_loss(logits, targets, outside, t, answer)
    with pytest.raises(ValueError, match="t must have shape"):
        sft_loss(logits, targets, masked, t[:1], answer)
    none = torch.zeros_like(answer)
    none[0] = answer[0]
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        sft_loss(logits, targets, masked & none, t, none, normalization="row")


class PatternModel(torch.nn.Module):
    """A denoiser whose logits at every position depend on the whole (masked) sequence."""

    def __init__(self, length, vocab, mask_id, seed=0, frozen_embedding=False):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.vocab, self.in_vocab = vocab, max(vocab, mask_id + 1)
        self.embed = torch.nn.Parameter(torch.randn(length * self.in_vocab, 16, generator=g))
        self.head = torch.nn.Parameter(torch.randn(16, length * vocab, generator=g) * 0.5)
        self.embed.requires_grad_(not frozen_embedding)
        self.calls = []

    def forward(self, x, attention_mask=None, rows=None):
        self.calls.append((x.clone(), None if attention_mask is None else attention_mask.clone()))
        one_hot = torch.nn.functional.one_hot(x, self.in_vocab).float().flatten(1)
        hidden = torch.tanh(one_hot @ self.embed)
        return (hidden @ self.head).view(x.shape[0], x.shape[1], self.vocab)


def _exact_elbo(model, ids, answer, mask_id):
    """E_k E_S [(L/k) sum_{i in S} log p(x_i | x with S masked)] by enumerating every k and S."""
    out = []
    with torch.no_grad():
        for b in range(ids.shape[0]):
            positions = answer[b].nonzero().flatten().tolist()
            n = len(positions)
            per_k = []
            for k in range(1, n + 1):
                values = []
                for subset in itertools.combinations(positions, k):
                    x = ids[b].clone()
                    x[list(subset)] = mask_id
                    log_p = torch.log_softmax(model(x[None])[0], -1)
                    values.append(n / k * sum(log_p[i, ids[b, i]].item() for i in subset))
                per_k.append(sum(values) / len(values))
            out.append(sum(per_k) / n)
    return torch.tensor(out)


def test_mc_elbo_is_unbiased():
    vocab, mask_id = 3, 3
    ids = torch.tensor([[0, 2, 1, 0], [1, 1, 0, 2]])
    answer = torch.tensor([[False, True, True, True], [False, False, True, True]])
    model = PatternModel(4, vocab, mask_id)
    exact = _exact_elbo(model, ids, answer, mask_id)
    n = 4000
    masks, _, lengths = mask_exactly_k(answer, n, torch.Generator().manual_seed(0))
    with torch.no_grad():
        draws = mc_elbo(model, ids, masks, lengths, mask_id)
    assert draws.shape == (n, 2)
    mean, stderr = draws.mean(0), draws.std(0) / n ** 0.5
    assert (stderr > 0).all()
    assert ((mean - exact).abs() < 3 * stderr).all(), (mean, exact, stderr)


def test_mc_elbo_single_batched_call_draw_major():
    vocab, mask_id = 3, 3
    ids = torch.tensor([[0, 2, 1, 0], [1, 1, 0, 2]])
    attention = torch.tensor([[True, True, True, True], [False, True, True, True]])
    answer = torch.tensor([[False, True, True, True], [False, False, True, True]])
    masks, k, lengths = mask_exactly_k(answer, 5, torch.Generator().manual_seed(1))
    model = PatternModel(4, vocab, mask_id)
    draws = mc_elbo(model, ids, masks, lengths, mask_id, attention_mask=attention)
    assert len(model.calls) == 1
    x, seen_attention = model.calls[0]
    assert x.shape == (10, 4)
    for d in range(5):
        for b in range(2):
            expected = ids[b].masked_fill(masks[d, b], mask_id)
            assert torch.equal(x[d * 2 + b], expected)
            assert torch.equal(seen_attention[d * 2 + b], attention[b])
            log_p = torch.log_softmax(model(expected[None])[0], -1)
            by_hand = sum(log_p[i, ids[b, i]] for i in masks[d, b].nonzero().flatten())
            assert draws[d, b].item() == pytest.approx(
                (lengths[b] / k[d, b] * by_hand).item(), rel=1e-5)


def test_mc_elbo_errors():
    ids = torch.tensor([[0, 1]])
    model = PatternModel(2, 3, 3)
    with pytest.raises(ValueError, match="at least one"):
        mc_elbo(model, ids, torch.zeros(1, 1, 2, dtype=torch.bool), torch.tensor([2]), 3)
    with pytest.raises(ValueError, match="must match"):
        mc_elbo(model, ids, torch.ones(1, 2, 2, dtype=torch.bool), torch.tensor([2]), 3)


def test_antithetic_elbos_share_masked_sequences():
    ids = torch.tensor([[0, 2, 1, 0], [1, 1, 0, 2]])
    answer = torch.tensor([[False, True, True, True], [False, False, True, True]])
    attention = torch.ones(2, 4, dtype=torch.bool)
    policy = PatternModel(4, 3, 3, seed=1)
    reference = PatternModel(4, 3, 3, seed=2)
    pol, ref = antithetic_elbos(policy, reference, ids, answer, 4, 3, attention,
                                torch.Generator().manual_seed(0))
    assert pol.shape == ref.shape == (2,)
    assert len(policy.calls) == len(reference.calls) == 1
    assert torch.equal(policy.calls[0][0], reference.calls[0][0])
    assert torch.equal(policy.calls[0][1], reference.calls[0][1])
    assert pol.requires_grad and not ref.requires_grad
    assert not torch.allclose(pol, ref)


def test_vrpo_loss_matches_hand_formula():
    pol_w, ref_w = torch.tensor([-1.0, -4.0]), torch.tensor([-2.0, -4.5])
    pol_l, ref_l = torch.tensor([-5.0, -2.0]), torch.tensor([-4.5, -3.0])
    beta = 0.2
    loss, stats = vrpo_loss(pol_w, ref_w, pol_l, ref_l, beta=beta)
    margins = [beta * ((-1 + 2) - (-5 + 4.5)), beta * ((-4 + 4.5) - (-2 + 3))]  # 0.3, -0.1
    by_hand = sum(-math.log(1 / (1 + math.exp(-m))) for m in margins) / 2
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)
    assert stats["reward_margin"].item() == pytest.approx(sum(margins) / 2, rel=1e-6)
    assert stats["reward_chosen"].item() == pytest.approx(beta * (1 + 0.5) / 2, rel=1e-6)
    assert stats["reward_rejected"].item() == pytest.approx(beta * (-0.5 + 1) / 2, rel=1e-6)
    assert stats["accuracy"].item() == 0.5


def test_vrpo_loss_errors():
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="beta"):
        vrpo_loss(x, x, x, x, beta=0.0)
    with pytest.raises(ValueError, match="shape"):
        vrpo_loss(x, x, x, torch.zeros(3))


def test_vrpo_gradient_reaches_only_trainable_parameters():
    ids_w = torch.tensor([[0, 2, 1, 0], [1, 1, 0, 2]])
    ids_l = torch.tensor([[0, 2, 2, 1], [1, 1, 2, 2]])
    answer = torch.tensor([[False, True, True, True], [False, False, True, True]])
    policy = PatternModel(4, 3, 3, seed=1, frozen_embedding=True)
    reference = PatternModel(4, 3, 3, seed=2)  # parameters require grad, yet must get none
    g = torch.Generator().manual_seed(0)
    pol_w, ref_w = antithetic_elbos(policy, reference, ids_w, answer, 4, 3, generator=g)
    pol_l, ref_l = antithetic_elbos(policy, reference, ids_l, answer, 4, 3, generator=g)
    loss, _ = vrpo_loss(pol_w, ref_w, pol_l, ref_l)
    loss.backward()
    assert policy.head.grad is not None and policy.head.grad.abs().sum() > 0
    assert policy.embed.grad is None
    assert reference.head.grad is None and reference.embed.grad is None
