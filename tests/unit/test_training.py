"""Batch arithmetic shared by the training recipes."""

import pytest

from tiller.training import gradient_accumulation, step_indices


def test_step_indices_split_one_global_batch_over_processes():
    for step in range(7):  # crosses an epoch boundary (10 items, 4 per step: 2 steps per epoch)
        whole = step_indices(10, 4, step, seed=3, rank=0, world_size=1)
        halves = step_indices(10, 4, step, 3, 0, 2) + step_indices(10, 4, step, 3, 1, 2)
        assert halves == whole and len(set(whole)) == 4
    # one epoch never repeats an item; the order depends on (seed, epoch) only
    epoch0 = step_indices(10, 4, 0, 3, 0, 1) + step_indices(10, 4, 1, 3, 0, 1)
    assert len(set(epoch0)) == 8
    assert step_indices(10, 4, 1, 3, 0, 1) == step_indices(10, 4, 1, 3, 0, 1)


def test_gradient_accumulation_is_exact_or_an_error():
    assert gradient_accumulation(16, 4, 2, "pairs") == 2
    with pytest.raises(ValueError, match="multiple of 8"):
        gradient_accumulation(12, 4, 2, "pairs")
