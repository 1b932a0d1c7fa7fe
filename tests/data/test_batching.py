"""Tests of diffa.data.batching: budgets, determinism, disjoint shards, resume, replay mixing."""

import numpy as np
import pytest

from diffa.data.batching import BucketBatchSampler


def _lengths(n=200, seed=0):
    return np.random.default_rng(seed).integers(20, 400, size=n).tolist()


def test_every_batch_fits_the_token_budget_and_each_example_appears_once():
    lengths = _lengths()
    sampler = BucketBatchSampler(lengths, max_tokens=1000, num_buckets=8, seed=3)
    batches = list(sampler)
    assert all(len(b) * max(lengths[i] for i in b) <= 1000 for b in batches)
    flat = [i for b in batches for i in b]
    assert len(flat) == len(set(flat)) == len(lengths)


def test_max_batch_size_caps_batches_and_alone_gives_fixed_sizes():
    lengths = _lengths()
    capped = BucketBatchSampler(lengths, max_tokens=100000, max_batch_size=5, seed=1)
    assert max(len(b) for b in capped) == 5
    fixed = BucketBatchSampler(lengths, max_batch_size=8, num_buckets=1, seed=1)
    assert sorted(len(b) for b in fixed)[1:] == [8] * (len(fixed) - 1)


def test_buckets_group_similar_lengths():
    lengths = _lengths(400)
    bucketed = BucketBatchSampler(lengths, max_tokens=2000, num_buckets=10, seed=0)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in bucketed)
    assert padded < 1.15 * sum(lengths)


def test_an_example_over_budget_gets_its_own_batch():
    sampler = BucketBatchSampler([10, 10, 500], max_tokens=100, num_buckets=2, shuffle=False)
    assert [2] in list(sampler)


def test_same_seed_and_epoch_give_the_same_batches_other_epochs_differ():
    lengths = _lengths()
    a = BucketBatchSampler(lengths, max_tokens=1500, seed=5)
    b = BucketBatchSampler(lengths, max_tokens=1500, seed=5)
    assert list(a) == list(b)
    a.set_epoch(1)
    b.set_epoch(2)
    assert list(a) != list(b)


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_get_disjoint_shards_of_equal_length(world_size):
    lengths = _lengths(101)
    shards = [BucketBatchSampler(lengths, max_tokens=900, seed=2, rank=r, world_size=world_size) for r in range(world_size)]
    for s in shards:
        s.set_epoch(4)
    seen = [set(i for b in s for i in b) for s in shards]
    assert len({len(s) for s in shards}) == 1
    for r in range(world_size):
        for q in range(r):
            assert not seen[r] & seen[q]
    # Only the remainder (fewer than world_size batches) is left out.
    single = BucketBatchSampler(lengths, max_tokens=900, seed=2)
    single.set_epoch(4)
    assert len(single) - world_size < world_size * len(shards[0]) <= len(single)


def test_resume_from_state_dict_continues_with_the_same_batches():
    lengths = _lengths()
    full = BucketBatchSampler(lengths, max_tokens=1200, seed=9)
    full.set_epoch(3)
    expected = list(full)
    first = BucketBatchSampler(lengths, max_tokens=1200, seed=9)
    first.set_epoch(3)
    it = iter(first)
    done = [next(it) for _ in range(4)]
    state = first.state_dict()
    assert state == {"epoch": 3, "consumed": 4}
    resumed = BucketBatchSampler(lengths, max_tokens=1200, seed=9)
    resumed.load_state_dict(state)
    assert done + list(resumed) == expected
    with pytest.raises(ValueError, match="outside epoch 3"):
        resumed.load_state_dict({"epoch": 3, "consumed": 10**6})


def test_set_epoch_of_the_current_epoch_keeps_the_position():
    sampler = BucketBatchSampler(_lengths(), max_tokens=1200, seed=9)
    sampler.load_state_dict({"epoch": 2, "consumed": 3})
    sampler.set_epoch(2)
    assert sampler.state_dict() == {"epoch": 2, "consumed": 3}
    sampler.set_epoch(3)
    assert sampler.state_dict() == {"epoch": 3, "consumed": 0}


def test_replay_ratio_sets_the_share_of_replayed_examples_drawn_afresh_each_epoch():
    main, replay = _lengths(190, seed=1), _lengths(400, seed=2)
    sampler = BucketBatchSampler(main + replay, max_tokens=2000, seed=0, replay_from=190, replay_ratio=0.05)
    picks = []
    for epoch in (1, 2):
        sampler.set_epoch(epoch)
        flat = [i for b in sampler for i in b]
        replayed = [i for i in flat if i >= 190]
        assert sorted(i for i in flat if i < 190) == list(range(190))
        assert len(replayed) == 10 == len(set(replayed))  # 5% of 200
        picks.append(set(replayed))
    assert picks[0] != picks[1]


def test_replay_larger_than_the_pool_repeats_every_replay_example():
    sampler = BucketBatchSampler([10] * 20 + [10] * 3, max_batch_size=4, seed=0, replay_from=20, replay_ratio=0.5)
    replayed = [i for b in sampler for i in b if i >= 20]
    assert len(replayed) == 20 and set(replayed) == {20, 21, 22}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lengths": []}, "non-empty"),
        ({"lengths": [3, 0]}, "positive"),
        ({"lengths": [3], "max_tokens": None}, "max_tokens, max_batch_size or both"),
        ({"lengths": [3], "rank": 2, "world_size": 2}, "rank must be in"),
        ({"lengths": [3], "replay_ratio": 0.1}, "needs replay examples"),
        ({"lengths": [3, 4], "world_size": 3}, "fewer batches than the 3 ranks"),
    ],
)
def test_bad_arguments_are_explained(kwargs, message):
    kwargs = {"max_tokens": 100, **kwargs}
    with pytest.raises(ValueError, match=message):
        BucketBatchSampler(**kwargs)
