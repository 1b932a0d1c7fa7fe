"""Tests for diffa.diffusion.noise: timesteps, SFT masking and "exactly k of L" masks."""
import pytest
import torch

from diffa.diffusion.noise import mask_answer, mask_exactly_k, sample_t


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_sample_t_range_and_mean():
    t = sample_t(20000, eps=0.1, generator=_gen())
    assert t.shape == (20000,) and t.dtype == torch.float32
    assert t.min() >= 0.1 and t.max() < 1.0
    # t = 0.9 u + 0.1 with u ~ U(0,1): mean 0.55, std 0.9 / sqrt(12)
    assert abs(t.mean().item() - 0.55) < 3 * 0.9 / (12 * 20000) ** 0.5


def test_sample_t_reproducible_and_device():
    a = sample_t(5, generator=_gen(3))
    b = sample_t(5, generator=_gen(3), device=torch.device("cpu"))
    assert torch.equal(a, b)
    assert not torch.equal(a, sample_t(5, generator=_gen(4)))


@pytest.mark.parametrize("kwargs, message", [(dict(batch_size=0), "batch_size must be >= 1, got 0"),
                                             (dict(batch_size=2, eps=1.0), r"eps must be in \[0, 1\), got 1.0"),
                                             (dict(batch_size=2, eps=-0.1), r"eps must be in \[0, 1\), got -0.1")])
def test_sample_t_bad_args(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sample_t(**kwargs)


def test_mask_answer_only_answer_positions_at_rate_t():
    batch, length = 2, 4000
    ids = torch.randint(1, 50, (batch, length), generator=_gen(1))
    answer = torch.zeros(batch, length, dtype=torch.bool)
    answer[0, 1000:] = True
    answer[1, 2000:] = True
    t = torch.tensor([0.2, 0.7])
    noisy, masked = mask_answer(ids, answer, t, mask_id=0, generator=_gen(2))
    assert masked.dtype == torch.bool
    assert not (masked & ~answer).any()
    assert torch.equal(noisy[masked], torch.zeros(int(masked.sum()), dtype=torch.long))
    assert torch.equal(noisy[~masked], ids[~masked])
    rate = masked.sum(-1).float() / answer.sum(-1)
    n = answer.sum(-1).float()
    assert ((rate - t).abs() < 4 * (t * (1 - t) / n).sqrt()).all()


def test_mask_answer_t_one_masks_every_answer_token():
    ids = torch.tensor([[4, 5, 6], [7, 8, 9]])
    answer = torch.tensor([[False, True, True], [True, False, True]])
    noisy, masked = mask_answer(ids, answer, torch.ones(2), mask_id=1)
    assert torch.equal(masked, answer)
    assert noisy.tolist() == [[4, 1, 1], [1, 8, 1]]


def test_mask_answer_bad_shapes():
    ids = torch.zeros(2, 3, dtype=torch.long)
    answer = torch.ones(2, 3, dtype=torch.bool)
    with pytest.raises(ValueError, match="same"):
        mask_answer(ids, answer[:, :2], torch.ones(2), mask_id=0)
    with pytest.raises(ValueError, match="t must have shape"):
        mask_answer(ids, answer, torch.ones(3), mask_id=0)
    with pytest.raises(ValueError, match="bool"):
        mask_answer(ids, answer.long(), torch.ones(2), mask_id=0)


def test_mask_exactly_k_counts_and_support():
    answer = torch.tensor([[False, True, True, True, False],
                           [True, True, False, False, False]])
    masks, k, lengths = mask_exactly_k(answer, 500, _gen(5))
    assert masks.shape == (500, 2, 5) and k.shape == (500, 2)
    assert lengths.tolist() == [3, 2]
    assert torch.equal(masks.sum(-1), k)
    assert not (masks & ~answer).any()
    assert (k >= 1).all() and (k <= lengths).all()


def test_mask_exactly_k_uniform_k_and_positions():
    n = 6000
    answer = torch.tensor([[False, True, True, True]])
    masks, k, _ = mask_exactly_k(answer, n, _gen(6))
    # k uniform on {1, 2, 3}
    counts = torch.bincount(k[:, 0], minlength=4)[1:].float()
    assert ((counts / n - 1 / 3).abs() < 4 * (2 / 9 / n) ** 0.5).all()
    # given k, each answer position is masked with probability k / 3
    for kk in (1, 2):
        sel = masks[k[:, 0] == kk, 0, 1:].float()
        p = kk / 3
        assert ((sel.mean(0) - p).abs() < 4 * (p * (1 - p) / sel.shape[0]) ** 0.5).all()


def test_mask_exactly_k_by_strata_spreads_k_without_bias():
    answer = torch.tensor([[False, True, True, True], [True, True, False, False]])
    masks, k, lengths = mask_exactly_k(answer, 6, _gen(3), stratified=True)
    assert sorted(k[:, 0].tolist()) == [1, 1, 2, 2, 3, 3] and sorted(k[:, 1].tolist()) == [1, 1, 1, 2, 2, 2]
    assert torch.equal(masks.sum(-1), k) and bool((masks <= answer).all())
    # n not a multiple of L: each row's mean k is still (L + 1) / 2 on average, and steadier
    rows = torch.ones(20000, 3, dtype=torch.bool)
    strata = mask_exactly_k(rows, 4, _gen(4), stratified=True).k.float().mean(0)
    independent = mask_exactly_k(rows, 4, _gen(4)).k.float().mean(0)
    assert abs(strata.mean().item() - 2.0) < 4 * (strata.var().item() / 20000) ** 0.5
    assert strata.var().item() < independent.var().item() / 3


def test_mask_exactly_k_coupled_rows_share_draws_and_keep_their_distribution():
    # a pair's two answers after one prompt (column 0): lengths 3 and 2
    answer = torch.tensor([[False, True, True, True], [False, True, True, False]])
    groups = torch.tensor([0, 0])
    masks = mask_exactly_k(answer.repeat(2, 1), 8, _gen(5), groups=torch.tensor([0, 0, 1, 1])).masks
    assert bool((masks <= answer.repeat(2, 1)).all())
    assert not torch.equal(masks[:, 0], masks[:, 2])  # another pair: its own draws
    same = mask_exactly_k(answer[[0, 0]], 50, _gen(6), groups=groups).masks
    assert torch.equal(same[:, 0], same[:, 1])
    # each row alone is still "k ~ U{1..L}, then a uniform subset of k": per-position rate (L + 1) / 2L
    many = mask_exactly_k(answer, 40000, _gen(7), groups=groups)
    for row, length in ((0, 3), (1, 2)):
        assert sorted(torch.bincount(many.k[:, row]).tolist()[1:]) == pytest.approx([40000 / length] * length, rel=0.05)
        rate = many.masks[:, row, 1:1 + length].float().mean(0)
        assert torch.allclose(rate, torch.full_like(rate, (length + 1) / (2 * length)), atol=0.015)
    # and the two rows are drawn together: same masking ratio, so the shorter row's k never exceeds the longer's
    assert bool((many.k[:, 1] <= many.k[:, 0]).all())
    independent = mask_exactly_k(answer, 4000, _gen(7))
    assert not bool((independent.k[:, 1] <= independent.k[:, 0]).all())


def test_mask_exactly_k_reproducible():
    answer = torch.ones(3, 7, dtype=torch.bool)
    a = mask_exactly_k(answer, 4, _gen(9))
    b = mask_exactly_k(answer, 4, _gen(9))
    assert torch.equal(a.masks, b.masks) and torch.equal(a.k, b.k)


def test_mask_exactly_k_errors():
    answer = torch.tensor([[True, False], [False, False]])
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        mask_exactly_k(answer, 2)
    with pytest.raises(ValueError, match="n_draws"):
        mask_exactly_k(answer[:1], 0)
    with pytest.raises(ValueError, match=r"groups must be \(1,\) ids in \[0, 1\), got \[1\]"):
        mask_exactly_k(answer[:1], 2, groups=torch.tensor([1]))
