"""Tests of diffa.train.schedule."""

import math

import pytest

from diffa.train.schedule import WarmupCosine


def test_linear_warmup_then_half_cosine_to_the_floor():
    s = WarmupCosine(2e-4, warmup_steps=100, total_steps=1100, min_lr_ratio=0.1)
    assert s(1) == pytest.approx(2e-6) and s(50) == pytest.approx(1e-4) and s(100) == pytest.approx(2e-4)
    floor = 2e-5
    for step in (101, 350, 600, 850, 1100):
        progress = (step - 100) / 1000
        assert s(step) == pytest.approx(floor + (2e-4 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
    assert s(5000) == pytest.approx(floor)
    lrs = [s(k) for k in range(100, 1101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_constant_decay_and_no_warmup():
    s = WarmupCosine(1e-3, warmup_steps=0, total_steps=10, decay="constant")
    assert [s(k) for k in (1, 5, 50)] == [1e-3] * 3


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"peak_lr": 0}, "peak_lr"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"total_steps": 0}, "total_steps"),
        ({"min_lr_ratio": 2}, "min_lr_ratio"),
        ({"decay": "linear"}, "decay must be one of"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = {"peak_lr": 1e-3, "warmup_steps": 1, "total_steps": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        WarmupCosine(**args)
