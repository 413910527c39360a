import numpy as np
import pytest

from plmforge.data.batching import SizeBatchSampler, TokenBudgetBatchSampler


@pytest.fixture
def lengths():
    rng = np.random.default_rng(0)
    out = rng.integers(5, 400, size=500)
    out[[3, 77]] = [1500, 2100]  # longer than the budget below
    return out


def test_token_budget_covers_every_sample_once_per_epoch_and_respects_the_budget(lengths):
    sampler = TokenBudgetBatchSampler(lengths, max_tokens=1024, seed=1, shuffle=True)
    assert sampler.over_budget == 2
    orders = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(lengths)))  # nothing dropped, nothing repeated
        for b in batches:
            padded = max(lengths[i] for i in b) * len(b)
            assert padded <= 1024 or len(b) == 1  # only an over-budget sequence exceeds it, alone
        orders.append(flat)
    assert orders[0] != orders[1] != orders[2]  # reshuffled every epoch


def test_token_budget_is_reproducible_from_seed_and_epoch(lengths):
    a = TokenBudgetBatchSampler(lengths, 1024, seed=5, shuffle=True)
    b = TokenBudgetBatchSampler(lengths, 1024, seed=5, shuffle=True)
    a.set_epoch(3)
    b.set_epoch(3)
    assert list(a) == list(b)


def test_token_batches_have_less_padding_than_random_batches(lengths):
    tok = TokenBudgetBatchSampler(lengths, 4096, seed=0, shuffle=True)
    size = SizeBatchSampler(lengths, 16, seed=0, shuffle=True)

    def padding(batches):
        real = sum(lengths[i] for b in batches for i in b)
        total = sum(max(lengths[i] for i in b) * len(b) for b in batches)
        return 1 - real / total

    assert padding(list(tok)) < padding(list(size)) / 2


def test_size_batches_cover_everything_and_keep_the_last_partial_batch():
    sampler = SizeBatchSampler(np.arange(1, 51), 16, seed=0, shuffle=True)
    batches = list(sampler)
    assert [len(b) for b in batches] == [16, 16, 16, 2]
    assert sorted(i for b in batches for i in b) == list(range(50))


def test_eval_order_is_longest_first_and_fixed():
    lengths = np.array([3, 9, 1, 7])
    sampler = SizeBatchSampler(lengths, 2, seed=0, shuffle=False)
    assert list(sampler) == [[1, 3], [0, 2]]
    sampler.set_epoch(4)
    assert list(sampler) == [[1, 3], [0, 2]]
