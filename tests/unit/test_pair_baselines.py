"""The no-training baselines a reward model's accuracy is read against, on hand-made pairs."""

import pytest

from tiller import losses
from tiller.pair_baselines import format_baselines, length_baselines, likelihood_baselines, pairwise_report


def test_pairwise_report_counts_ties_as_half_with_a_wilson_interval():
    # chosen higher in pairs 0 and 2, a tie in pair 1, rejected higher in pair 3: (2 + 0.5) / 4
    r = pairwise_report([3.0, 1.0, 5.0, 0.0], [1.0, 1.0, 4.0, 2.0])
    assert r["n"] == 4 and r["ties"] == 1
    assert r["accuracy"] == pytest.approx(0.625)
    assert r["accuracy_ci95"] == pytest.approx(list(losses.accuracy_interval(2.5, 4)))
    with pytest.raises(ValueError, match="3 chosen values but 2"):
        pairwise_report([1, 2, 3], [1, 2])


def test_length_baselines_are_complements():
    # chosen longer in 3 of 5 pairs, shorter in 1, equal in 1
    chosen, rejected = [10, 20, 30, 5, 7], [5, 10, 20, 9, 7]
    b = length_baselines(chosen, rejected)
    assert b["longer answer wins"]["accuracy"] == pytest.approx(3.5 / 5)
    assert b["shorter answer wins"]["accuracy"] == pytest.approx(1.5 / 5)
    assert b["longer answer wins"]["ties"] == b["shorter answer wins"]["ties"] == 1


def test_likelihood_baselines_sum_and_per_token():
    # pair 0: chosen -10 over 10 tokens (-1.0 per token), rejected -6 over 3 (-2.0): the sum prefers
    # rejected, the per-token mean prefers chosen. pair 1: chosen -4/4 = -1.0, rejected -8/4 = -2.0:
    # both prefer chosen. pair 2: an empty rejected answer gets 0 per token.
    b = likelihood_baselines([-10.0, -4.0, -3.0], [-6.0, -8.0, 0.0], [10, 4, 3], [3, 4, 0])
    total = b["starting model: higher log-likelihood (sum)"]
    per_token = b["starting model: higher log-likelihood per token"]
    assert total["accuracy"] == pytest.approx(1 / 3)  # only pair 1
    assert per_token["accuracy"] == pytest.approx(2 / 3)  # pairs 0 and 1; pair 2: -1.0 < 0.0
    lines = format_baselines(b)
    assert len(lines) == 2 and "0.333 (95% CI" in lines[0] and "0.667" in lines[1]
