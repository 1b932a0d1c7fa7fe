"""Tests of diffa.train.keyed_noise: SplitMix64 parity, distribution, batching independence."""

import pytest
import torch

from diffa.train.keyed_noise import corrupt, keyed_uniform, mix64

MASK64 = 2**64 - 1


def _splitmix64(x: int) -> int:
    """Reference SplitMix64 on Python integers."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def test_mix64_is_splitmix64_bit_for_bit():
    xs = [0, 1, 2, 12345678901234, -1, -(2**63), 2**63 - 1]
    got = mix64(torch.tensor(xs))
    assert [int(v) & MASK64 for v in got] == [_splitmix64(x & MASK64) for x in xs]


def test_uniforms_are_uniform_and_keyed():
    u = keyed_uniform(3, 1, torch.arange(200)[:, None], torch.arange(100)[None, :])
    assert u.shape == (200, 100) and u.dtype == torch.float32
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.var().item() - 1 / 12) < 0.002
    assert torch.histc(u, bins=10, min=0, max=1).min() > 1800
    assert torch.equal(u, keyed_uniform(3, 1, torch.arange(200)[:, None], torch.arange(100)[None, :]))
    assert not torch.equal(u, keyed_uniform(4, 1, torch.arange(200)[:, None], torch.arange(100)[None, :]))


def test_corruption_follows_the_sft_forward_process():
    ids = torch.arange(1, 201).repeat(400, 1)
    answer = torch.zeros(400, 200, dtype=torch.bool)
    answer[:, 50:] = True
    noisy, masked, t = corrupt(ids, answer, torch.arange(400), mask_id=0, seed=1, epoch=1, eps=1e-3)
    assert bool((t >= 1e-3).all()) and bool((t < 1).all())
    assert not masked[:, :50].any() and torch.equal(noisy[~masked], ids[~masked]) and bool((noisy[masked] == 0).all())
    rate = masked[:, 50:].float().mean(1)
    assert (rate - t).abs().mean() < 0.05  # each answer token masked with probability t
    assert abs(t.mean().item() - 0.5) < 0.05


def test_an_example_gets_the_same_noise_in_any_batch():
    ids = torch.randint(5, 50, (6, 12))
    answer = torch.arange(12)[None].expand(6, 12) >= 4
    keys = torch.tensor([10, 11, 12, 13, 14, 15])
    whole = corrupt(ids, answer, keys, mask_id=0, seed=7, epoch=3)
    order = torch.tensor([4, 0, 2])
    part = corrupt(ids[order, :9], answer[order, :9], keys[order], mask_id=0, seed=7, epoch=3)
    assert torch.equal(part[1], whole[1][order, :9]) and torch.equal(part[2], whole[2][order])
    other_epoch = corrupt(ids, answer, keys, mask_id=0, seed=7, epoch=4)
    assert not torch.equal(other_epoch[2], whole[2])


def test_noise_is_made_on_the_keys_device():
    keys = torch.arange(3, device="meta")
    assert keyed_uniform(5, 1, keys).device.type == "meta"
    ids = torch.zeros(3, 4, dtype=torch.long, device="meta")
    noisy, masked, t = corrupt(ids, ids.bool(), keys, mask_id=0, seed=0, epoch=1)
    assert {noisy.device.type, masked.device.type, t.device.type} == {"meta"}


def test_shape_and_eps_errors():
    ids = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="must be \\(B, L\\), \\(B, L\\) and \\(B,\\)"):
        corrupt(ids, ids.bool(), torch.arange(3), mask_id=0, seed=0, epoch=0)
    with pytest.raises(ValueError, match="eps"):
        corrupt(ids, ids.bool(), torch.arange(2), mask_id=0, seed=0, epoch=0, eps=1.0)
