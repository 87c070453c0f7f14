"""StepMetrics: each metric combined over micro-batches and processes by what it is."""

import math

import pytest
import torch

from tiller.metrics import StepMetrics


class FakeRuntime:
    """Stands in for one of 2 processes: `gather` returns this process's row over `other_row`
    (accelerate's gather concatenates the processes' tensors along dim 0)."""

    world_size = 2
    device = torch.device("cpu")

    def __init__(self, other_row: torch.Tensor | None = None):
        self.accelerator = self
        self.other_row = other_row
        self.sent = None

    def gather(self, row: torch.Tensor) -> torch.Tensor:
        self.sent = row
        return torch.cat([row, row if self.other_row is None else self.other_row])


def row_of(m: StepMetrics) -> torch.Tensor:
    """What process `m` contributes to the gather."""
    rt = FakeRuntime()
    m.reduce(rt)
    return rt.sent


def process(ratio, tokens, eos, low, high, advantages) -> StepMetrics:
    m = StepMetrics()
    m.mean("val/ratio", torch.tensor(ratio), torch.tensor(tokens))
    m.sum("val/num_eos_tokens", torch.tensor(eos))
    m.min("completions/min_length", low)
    m.max("completions/max_length", high)
    m.std("objective/advantage_std", torch.tensor(advantages))
    return m


def test_one_process_hand_checked():
    m = process(1.0, 10.0, 3.0, 5.0, 9.0, [1.0, 3.0])
    m.mean("val/ratio", 0.5, 30.0)  # a second micro-batch: (10 * 1 + 30 * 0.5) / 40
    m.sum("val/num_eos_tokens", 1.0)
    m.min("completions/min_length", 7.0)
    m.max("completions/max_length", 12.0)
    m.std("objective/advantage_std", torch.tensor([5.0]))  # values 1, 3, 5: mean 3, var (4 + 0 + 4) / 2
    assert m.reduce() == {"val/ratio": 0.625, "val/num_eos_tokens": 4.0, "completions/min_length": 5.0,
                          "completions/max_length": 12.0, "objective/advantage_std": 2.0}


def test_two_processes_hand_checked():
    """Counts add up, min and max are the min and max, a mean is weighted by its count (the mean
    of the two processes' means would be 0.75), the std is that of all values."""
    zero = process(1.0, 10.0, 3.0, 5.0, 9.0, [1.0, 3.0])
    one = process(0.5, 30.0, 4.0, 2.0, 12.0, [5.0])
    got = zero.reduce(FakeRuntime(row_of(one)))
    assert got == {"val/ratio": 0.625, "val/num_eos_tokens": 7.0, "completions/min_length": 2.0,
                   "completions/max_length": 12.0, "objective/advantage_std": 2.0}


def test_empty_and_single_values_give_zero_not_nan():
    m = StepMetrics()
    m.mean("policy/entropy_avg", torch.tensor(0.0), torch.tensor(0.0))  # a micro-batch without tokens
    m.std("objective/advantage_std", torch.tensor([4.0]))
    assert m.reduce() == {"policy/entropy_avg": 0.0, "objective/advantage_std": 0.0}
    assert StepMetrics().reduce() == {}


def test_std_equals_torch_std():
    values = torch.randn(37, dtype=torch.float64) * 3 + 1
    m = StepMetrics()
    for part in values.split(10):
        m.std("s", part)
    assert math.isclose(m.reduce()["s"], float(values.std()), rel_tol=1e-12)


def test_a_name_keeps_its_kind():
    m = StepMetrics()
    m.sum("val/num_eos_tokens", 1.0)
    with pytest.raises(ValueError, match="is a sum, not a mean"):
        m.mean("val/num_eos_tokens", 1.0, 2.0)
