"""The length-controlled win rate: logistic fit of the verdict on the normalized length
difference, solved by hand on small tables, checked against a direct optimizer, and the case
the rate exists for: every win comes from a longer answer."""

from __future__ import annotations

import math

import pytest
import torch

from tiller import length_control as lc
from tiller.losses import win_rate


def test_win_indicators_count_a_tie_as_half():
    assert lc.win_indicators([2.0, 1.0, 0.5], [1.0, 1.0, 0.7]) == [1.0, 0.5, 0.0]
    with pytest.raises(ValueError):
        lc.win_indicators([1.0], [1.0, 2.0])


def test_normalized_differences_by_hand():
    z, s = lc.normalized_differences(torch.tensor([1.0, 3.0]))
    # mean 2, sample variance ((1 - 2)^2 + (3 - 2)^2) / (2 - 1) = 2: not centered, only scaled
    assert float(s) == pytest.approx(math.sqrt(2), abs=1e-15)
    assert z.tolist() == pytest.approx([1 / math.sqrt(2), 3 / math.sqrt(2)], abs=1e-15)
    z, s = lc.normalized_differences(torch.tensor([[4.0, 4.0, 4.0], [0.0, 2.0, 4.0]]))
    assert z[0].tolist() == [0.0, 0.0, 0.0] and float(s[0]) == 0.0  # no spread: the guard
    assert z[1].tolist() == pytest.approx([0.0, 1.0, 2.0]) and float(s[1]) == pytest.approx(2.0)
    z, s = lc.normalized_differences(torch.tensor([7.0]))
    assert z.tolist() == [0.0] and float(s) == 0.0


def test_symmetric_verdicts_give_slope_zero_and_the_raw_rate():
    # length differences -3, -1, +1, +3 with verdicts win, tie, tie, win: y(z) = y(-z), so
    # sum (y - 0.75) z = 0.25 * (-3) - 0.25 * (-1) - 0.25 * 1 + 0.25 * 3 = 0: b = 0, a = logit 0.75 = ln 3
    policy, reference = [1.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 0.0]
    policy_len, reference_len = [0, 5, 7, 9], [3, 6, 6, 6]
    out = lc.length_controlled_win_rate(policy, reference, policy_len, reference_len)
    assert out["intercept"] == pytest.approx(math.log(3), abs=1e-12)
    assert out["slope"] == pytest.approx(0.0, abs=1e-12)
    assert out["win_rate"] == pytest.approx(0.75, abs=1e-12) == win_rate(policy, reference)["win_rate"]
    assert out["length_sd"] == pytest.approx(math.sqrt(20 / 3))  # differences -3, -1, 1, 3: sum of squares 20, / 3
    assert out["ci_low"] <= out["win_rate"] <= out["ci_high"]


def test_two_length_differences_solved_by_hand():
    # Saturated: at +2 tokens 4 wins and 1 loss (p+ = 0.8), at -2 tokens 1 win and 1 loss (p- = 0.5).
    # sigmoid(a + b c / s) = 0.8 and sigmoid(a - b c / s) = 0.5 with c = 2:
    # a = (logit 0.8 + logit 0.5) / 2 = (ln 4 + 0) / 2 = ln 2, so the rate is 2 / 3; b c / s = ln 2.
    # s: mean 6/7, deviations 8/7 (x5) and -20/7 (x2), variance (5 * 64 + 2 * 400) / 49 / 6 = 80 / 21.
    policy = [1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0]
    reference = [0.5] * 7
    policy_len, reference_len = [12] * 5 + [8] * 2, [10] * 7
    out = lc.length_controlled_win_rate(policy, reference, policy_len, reference_len, lam=0.0)
    assert out["intercept"] == pytest.approx(math.log(2), abs=1e-10)
    assert out["win_rate"] == pytest.approx(2 / 3, abs=1e-10)
    assert out["length_sd"] == pytest.approx(math.sqrt(80 / 21), abs=1e-12)
    assert out["slope"] == pytest.approx(math.log(2) * math.sqrt(80 / 21) / 2, abs=1e-10)
    assert win_rate(policy, reference)["win_rate"] == 5 / 7  # raw: the longer answers win more often
    # the slope penalty moves the result by far less than its interval
    penalized = lc.length_controlled_win_rate(policy, reference, policy_len, reference_len)
    assert abs(penalized["win_rate"] - 2 / 3) < 2e-3


def _bce(a, b, z, y, lam):
    t = a + b * z
    return (torch.nn.functional.softplus(t) - y * t).sum() + 0.5 * lam * b * b


@pytest.mark.parametrize("lam", [0.0, lc.SLOPE_PENALTY, 1.0])
def test_newton_agrees_with_a_direct_optimizer(lam):
    g = torch.Generator().manual_seed(3)
    d = torch.randint(-40, 60, (64,), generator=g).double()
    # a judge that prefers longer answers, with ties
    y = torch.bernoulli(torch.sigmoid(0.04 * d + 0.3), generator=g)
    y[::9] = 0.5
    z, _ = lc.normalized_differences(d)
    a, b = lc.fit_logistic(z, y, lam)

    params = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([params], lr=1, max_iter=500, tolerance_grad=1e-13, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = _bce(params[0], params[1], z, y, lam)
        loss.backward()
        return loss

    opt.step(closure)
    direct = params.detach()
    assert float(a) == pytest.approx(float(direct[0]), abs=1e-6)
    assert float(b) == pytest.approx(float(direct[1]), abs=1e-6)
    assert float(b) > 0  # it found the length preference
    # and the gradient of the objective is zero at Newton's answer
    at = torch.stack([a, b]).clone().requires_grad_(True)
    _bce(at[0], at[1], z, y, lam).backward()
    assert at.grad.abs().max() < 1e-9


def test_batched_fits_equal_separate_fits():
    z = torch.tensor([[-1.0, 0.0, 1.0, 2.0], [0.5, -0.5, 1.5, -1.5]], dtype=torch.float64)
    y = torch.tensor([[0.0, 1.0, 0.5, 1.0], [1.0, 0.0, 1.0, 0.5]], dtype=torch.float64)
    a, b = lc.fit_logistic(z, y)
    for i in range(2):
        ai, bi = lc.fit_logistic(z[i], y[i])
        assert float(ai) == pytest.approx(float(a[i]), abs=1e-12) and float(bi) == pytest.approx(float(b[i]), abs=1e-12)


def test_every_win_from_a_longer_answer_gives_a_rate_near_one_half():
    # 80 prompts where the policy's answer is 10 tokens longer: 72 wins, 8 losses.
    # 10 prompts where it is 10 tokens shorter: 2 ties, 8 losses, no win.
    # At +10 the win share is 0.9, at -10 it is 0.1: a = (logit 0.9 + logit 0.1) / 2 = 0.
    policy = [1.0] * 72 + [0.0] * 8 + [0.5] * 2 + [0.0] * 8
    reference = [0.5] * 90
    policy_len, reference_len = [20] * 80 + [0] * 10, [10] * 90
    raw = win_rate(policy, reference)
    assert raw["win_rate"] == pytest.approx(73 / 90)  # 0.811: (72 + 2 / 2) / 90
    exact = lc.length_controlled_win_rate(policy, reference, policy_len, reference_len, lam=0.0, resamples=0)
    assert exact["win_rate"] == pytest.approx(0.5, abs=1e-12)
    out = lc.length_controlled_win_rate(policy, reference, policy_len, reference_len)
    assert out["win_rate"] == pytest.approx(0.5, abs=2e-3) and out["slope"] > 1
    assert out["ci_low"] < 0.5 < out["ci_high"] < raw["ci_low"]  # the raw rate's whole interval lies above


def test_edge_cases():
    # every prompt won: the intercept is infinite, the rate 1 whatever the lengths
    out = lc.length_controlled_win_rate([1.0] * 4, [0.0] * 4, [5, 6, 7, 1], [3] * 4)
    assert (out["win_rate"], out["ci_low"], out["ci_high"], out["intercept"]) == (1.0, 1.0, 1.0, math.inf)
    out = lc.length_controlled_win_rate([0.0] * 3, [1.0] * 3, [5, 6, 7], [3] * 3)
    assert (out["win_rate"], out["ci_high"]) == (0.0, 0.0)
    # every length difference the same: nothing to control for, the raw rate (ties half)
    out = lc.length_controlled_win_rate([1.0, 0.0, 1.0, 1.0], [0.0] * 4, [5] * 4, [3] * 4)
    assert out["win_rate"] == pytest.approx(0.875, abs=1e-12) and out["slope"] == 0.0 and out["length_sd"] == 0.0
    # one prompt
    assert lc.length_controlled_win_rate([1.0], [1.0], [5], [3])["win_rate"] == pytest.approx(0.5)
    # separated (longer always wins, shorter always loses): finite, the interval says how little is known
    out = lc.length_controlled_win_rate([1.0] * 8 + [0.0] * 2, [0.5] * 10, [5] * 8 + [1] * 2, [3] * 10)
    assert 0 < out["win_rate"] < 1 and math.isfinite(out["slope"]) and out["ci_high"] - out["ci_low"] > 0.3
    with pytest.raises(ValueError):
        lc.length_controlled_win_rate([], [], [], [])
    with pytest.raises(ValueError):
        lc.length_controlled_win_rate([1.0], [0.0], [1, 2], [1])


def test_the_interval_is_reproducible():
    policy = [1.0, 0.0, 1.0, 1.0, 0.5, 0.0, 1.0, 0.0]
    reference = [0.5] * 8
    lengths = [30, 10, 25, 12, 20, 18, 40, 5], [20] * 8
    first = lc.length_controlled_win_rate(policy, reference, *lengths)
    assert lc.length_controlled_win_rate(policy, reference, *lengths) == first
    other = lc.length_controlled_win_rate(policy, reference, *lengths, seed=1)
    assert other["win_rate"] == first["win_rate"] and (other["ci_low"], other["ci_high"]) != (first["ci_low"], first["ci_high"])
    point = lc.length_controlled_win_rate(policy, reference, *lengths, resamples=0)
    assert point["ci_low"] == point["ci_high"] == point["win_rate"]
