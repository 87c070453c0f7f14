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


def test_length_grouped_steps_hold_items_of_similar_length_and_keep_the_epoch():
    """8 items, 2 per step, lengths 10..80 (item i has length 10*(i+1)): the epoch's items are
    the ones a plain shuffle trains on, each once, and each step pairs neighbours in length, so
    the 4 steps pad to 20+40+60+80 = 200 tokens per sequence against a plain shuffle's more."""
    lengths = [10 * (i + 1) for i in range(8)]
    grouped = [step_indices(8, 2, s, seed=5, rank=0, world_size=1, lengths=lengths) for s in range(4)]
    plain = [step_indices(8, 2, s, seed=5, rank=0, world_size=1) for s in range(4)]
    assert sorted(i for step in grouped for i in step) == list(range(8))
    assert sorted(sorted(step) for step in grouped) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert sum(max(lengths[i] for i in step) for step in grouped) == 200
    assert sum(max(lengths[i] for i in step) for step in plain) > 200
    # resumable (a function of seed and epoch), and 2 processes split the same global step
    assert grouped[1] == step_indices(8, 2, 1, 5, 0, 1, lengths)
    for s in range(4):
        assert step_indices(8, 2, s, 5, 0, 2, lengths) + step_indices(8, 2, s, 5, 1, 2, lengths) == grouped[s]


def test_length_grouping_keeps_the_plain_shuffles_epoch_items_and_shuffles_the_steps():
    """10 items at 4 per step: both orders train on the same 8 items in epoch 0 (the same 2 are
    left over); over many seeds the longest step comes first in some runs and last in others."""
    lengths = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]
    for seed in range(20):
        grouped = step_indices(10, 4, 0, seed, 0, 1, lengths) + step_indices(10, 4, 1, seed, 0, 1, lengths)
        plain = step_indices(10, 4, 0, seed, 0, 1) + step_indices(10, 4, 1, seed, 0, 1)
        assert sorted(grouped) == sorted(plain)
    firsts = {max(lengths[i] for i in step_indices(10, 4, 0, seed, 0, 1, lengths)) for seed in range(20)}
    assert len(firsts) > 1


def test_length_grouped_order_windows_and_errors():
    """With a window of 2 steps (LENGTH_GROUP_STEPS patched), items sort only within their window."""
    import random

    from tiller import batching

    lengths = [1, 8, 2, 7, 3, 6, 4, 5]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(batching, "LENGTH_GROUP_STEPS", 2)
        out = batching.length_grouped_order(list(range(8)), lengths, 2, random.Random(0))
    steps = {tuple(out[i:i + 2]) for i in range(0, 8, 2)}
    # window [0,1,2,3] sorted longest first: 1,3,2,0; window [4,5,6,7]: 5,7,6,4
    assert steps == {(1, 3), (2, 0), (5, 7), (6, 4)}
    with pytest.raises(ValueError, match="whole number of steps"):
        batching.length_grouped_order([0, 1, 2], [1, 2, 3], 2, random.Random(0))


def test_a_process_that_joined_a_group_leaves_it_at_exit_while_python_runs(tmp_path):
    """`leave_process_group_at_exit` (what `setup_runtime` registers when it runs in several
    processes) leaves the group at exit, in an atexit callback (while other threads can still take
    the GIL): gloo's worker threads, still holding a finished collective's tensors, otherwise now
    and then released them during interpreter shutdown and the process aborted after a finished
    run (SIGABRT, "terminate called without an active exception": 3 of 6 runs of test_sharded's
    FSDP2 resume test here before). One process over gloo; the script's own atexit callback,
    registered first, runs last and looks. Registering twice registers once."""
    import os
    import subprocess
    import sys

    script = (
        "import atexit\n"
        "import torch.distributed as dist\n"
        "atexit.register(lambda: print('at exit, still in a group:', dist.is_initialized(), flush=True))\n"
        f"dist.init_process_group('gloo', init_method={(tmp_path / 'store').as_uri()!r}, rank=0, world_size=1)\n"
        "from tiller.training import leave_process_group_at_exit\n"
        "before = atexit._ncallbacks()\n"
        "leave_process_group_at_exit()\n"
        "leave_process_group_at_exit()\n"
        "print('callbacks added:', atexit._ncallbacks() - before, 'in a group:', dist.is_initialized(), flush=True)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""})
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.splitlines()[-2:] == ["callbacks added: 1 in a group: True",
                                            "at exit, still in a group: False"], out.stdout[-2000:]
