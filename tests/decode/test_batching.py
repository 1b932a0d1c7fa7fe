"""Decoding batches: per task type, sorted by cost, within batch_size and max_tokens."""

import numpy as np
import pytest

from diffa.decode.batching import plan_batches


def test_every_example_once_per_task_sorted():
    rng = np.random.default_rng(0)
    tasks = list(rng.choice(["asr", "mcq", "open_qa"], size=50))
    costs = list(rng.integers(10, 200, size=50))
    batches = plan_batches(tasks, costs, batch_size=7, max_tokens=600)
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(50))
    for b in batches:
        assert len({tasks[i] for i in b}) == 1 and len(b) <= 7
        assert len(b) == 1 or len(b) * max(costs[i] for i in b) <= 600
        assert [costs[i] for i in b] == sorted((costs[i] for i in b), reverse=True)
    # longest first within a task type
    asr = [b for b in batches if tasks[b[0]] == "asr"]
    assert [costs[b[0]] for b in asr] == sorted((costs[b[0]] for b in asr), reverse=True)


def test_too_long_example_decodes_alone():
    assert plan_batches(["asr"] * 3, [100, 10, 10], batch_size=8, max_tokens=50) == [[0], [1, 2]]


def test_bad_arguments():
    with pytest.raises(ValueError, match="2 task types but 1 costs"):
        plan_batches(["asr", "asr"], [1], batch_size=2)
    with pytest.raises(ValueError, match="must be >= 1"):
        plan_batches(["asr"], [1], batch_size=0)
