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


def test_seed_per_rank_gives_each_process_its_own_stream():
    """Once the models are built, each process draws its own dropout masks: rank 0's stream and
    rank 1's differ from each other and from the one the models were initialized from; a rank
    and a seed always give the same stream. Rank r of a run seeded s draws from
    s + 1_000_003 * (r + 1)."""
    import random
    from types import SimpleNamespace

    import torch

    from tiller.training import seed_everything, seed_per_rank

    def draws(rank=None):
        if rank is None:
            seed_everything(7)  # what setup_runtime does on every process
        else:
            seed_per_rank(SimpleNamespace(rank=rank), 7)
        return torch.nn.functional.dropout(torch.ones(64), 0.5), random.random()

    init, rank0, rank1, rank0_again = draws(), draws(0), draws(1), draws(0)
    assert torch.equal(rank0[0], rank0_again[0]) and rank0[1] == rank0_again[1]
    masks = [init[0], rank0[0], rank1[0]]
    assert all(not torch.equal(a, b) for i, a in enumerate(masks) for b in masks[i + 1:])
    assert len({init[1], rank0[1], rank1[1]}) == 3
    torch.manual_seed(7 + 2 * 1_000_003)
    assert torch.equal(torch.nn.functional.dropout(torch.ones(64), 0.5), rank1[0])


def test_config_changes_split_trajectory_from_harmless_and_ignore_new_defaults():
    from tiller.training import config_changes

    old = {"seed": 0, "run_dir": "a", "reward": {"optim": {"lr": 0.1}, "train": {"save_every": 5}},
           "rloo": {"beta": 0.1}, "tracking": {"wandb": False}}
    new = {"seed": 0, "run_dir": "b", "reward": {"optim": {"lr": 0.2, "new_field": 3}, "train": {"save_every": 9}},
           "rloo": {"beta": 0.5}, "tracking": {"wandb": True}}
    defaults = {"reward": {"optim": {"new_field": 3}}}
    trajectory, harmless = config_changes(old, new, "reward", defaults)
    assert trajectory == ["reward.optim.lr: 0.1 -> 0.2"]
    assert harmless == ["reward.train.save_every: 5 -> 9", "rloo.beta: 0.1 -> 0.5", "run_dir: 'a' -> 'b'",
                        "tracking.wandb: False -> True"]
    # a field added since, set away from its default, is a change
    new["reward"]["optim"]["new_field"] = 4
    assert "reward.optim.new_field: '<unset>' -> 4" in config_changes(old, new, "reward", defaults)[0]
