"""Length-controlled win rate: the judge's win rate of the policy at zero length difference.

A judge that prefers longer answers rewards a policy that learned to write more, and the raw
win rate cannot tell that from better answers. This module fits how the judge's verdict depends
on the length difference and reads off the win rate where the two answers are equally long.

Data, per evaluated prompt i
- d_i = len_policy_i - len_reference_i, the length difference of the two answers (the
  evaluation uses tokens of the answers, as generated).
- y_i = 1 for a win (judge score of the policy's answer above the reference's), 0.5 for a tie,
  0 for a loss: the verdict that the raw win rate averages (`win_indicators`).
- z_i = d_i / s with s the standard deviation of the d_i (n - 1 in the denominator; n = 1 or all
  d_i equal gives s = 0, and then z_i = 0 for every prompt, so the fit has only its intercept
  and the length-controlled rate equals the raw one: with no spread in length difference there
  is nothing to control for). z is scaled but not centered: z = 0 is zero length difference.

Model: P(win | z) = sigmoid(a + b z), with (a, b) minimizing the binary cross-entropy
    L(a, b) = -sum_i [y_i log p_i + (1 - y_i) log(1 - p_i)] + lam * b^2 / 2,   p_i = sigmoid(a + b z_i)
(maximum likelihood: fractional targets y_i = 0.5 are fine, the cross-entropy of one prompt is
smallest at p_i = y_i). The length-controlled win rate is sigmoid(a), the predicted win rate at
z = 0. lam = `SLOPE_PENALTY` = 0.01, on the slope only: when the length difference separates wins
from losses perfectly (every longer answer wins, every shorter one loses) the unpenalized slope
is infinite; the penalty keeps it finite. Away from separation it moves nothing measurable: the
slope's curvature is sum_i p_i (1 - p_i) z_i^2 >= (n - 1) min p (1 - p), about 24 at n = 96, so
the penalty shrinks the slope by about 0.01 / 24 = 0.04%. Under separation the data say nothing
about the verdict at zero length difference beyond the few prompts near it, and the intercept
comes from the penalty and the tails of the fit: read such a rate with its interval and the
slope.

Fit (`fit_logistic`): Newton's method in float64, batched over independent fits. With
w_i = p_i (1 - p_i) the gradient is g = (sum (p_i - y_i), sum (p_i - y_i) z_i + lam b) and the
Hessian H = [[sum w_i, sum w_i z_i], [sum w_i z_i, sum w_i z_i^2 + lam]], positive definite when
lam > 0 (det >= lam * sum w_i); the step -H^-1 g is halved while it increases L by more than L's
rounding, and the fit stops when a step moves a and b by less than 1e-12 (relative). When every
y_i is 1 (or every one 0) the intercept is infinite, and the rate is 1 (or 0): every prompt was
won (lost) whatever the lengths.

Results by hand
- Symmetric verdicts: when y is the same at z and -z for every pair of prompts (and z values come
  in such pairs), sum_i (y_i - mean y) z_i = 0, so b = 0, a = logit(mean y) and the rate equals
  the raw win rate.
- Two length differences +c and -c with win shares p+ and p- (lam = 0): the model is saturated,
  sigmoid(a + b c / s) = p+ and sigmoid(a - b c / s) = p-, so a = (logit p+ + logit p-) / 2.
  With p+ = 0.9 and p- = 0.1 that is 0 (rate 0.5) however many prompts sit at +c.

Interval (`length_controlled_win_rate`): percentile bootstrap over prompts. B = 1000 resamples
of the n prompts with replacement (torch.Generator seeded with `seed`, 0 by default, so the same
evaluation gives the same interval), each refit from scratch (its own s); the 2.5th and 97.5th
percentiles of the B rates (torch.quantile, linear interpolation).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

SLOPE_PENALTY = 0.01  # lam: ridge on the slope only, against separation (see the module docstring)
RESAMPLES = 1000
MAX_NEWTON_STEPS = 100
MAX_HALVINGS = 40


def win_indicators(policy_scores: Sequence[float], reference_scores: Sequence[float]) -> list[float]:
    """1.0 for a win, 0.5 for a tie, 0.0 for a loss of the policy on each prompt."""
    if len(policy_scores) != len(reference_scores):
        raise ValueError(f"score lists differ in length: {len(policy_scores)} vs {len(reference_scores)}")
    return [1.0 if p > r else 0.5 if p == r else 0.0
            for p, r in zip(map(float, policy_scores), map(float, reference_scores))]


def normalized_differences(differences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, s) along the last dimension: z = d / s with s the sample standard deviation of d
    (n - 1); where s = 0 (or n = 1), z = 0 and s = 0."""
    d = differences.to(torch.float64)
    n = d.shape[-1]
    if n < 2:
        return torch.zeros_like(d), torch.zeros(d.shape[:-1], dtype=torch.float64)
    s = d.std(dim=-1, unbiased=True)
    safe = torch.where(s > 0, s, torch.ones_like(s))
    z = torch.where((s > 0).unsqueeze(-1), d / safe.unsqueeze(-1), torch.zeros_like(d))
    return z, s


def _loss(a: torch.Tensor, b: torch.Tensor, z: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    logits = a.unsqueeze(-1) + b.unsqueeze(-1) * z
    # -[y log sigmoid(t) + (1 - y) log(1 - sigmoid(t))] = softplus(t) - y t, stable for any t
    return (torch.nn.functional.softplus(logits) - y * logits).sum(-1) + 0.5 * lam * b * b


def fit_logistic(z: torch.Tensor, y: torch.Tensor, lam: float = SLOPE_PENALTY,
                 tol: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) minimizing sum_i BCE(y_i, sigmoid(a + b z_i)) + lam b^2 / 2, by Newton's method
    with step halving, in float64. z and y have shape [..., n]; a and b have shape [...] (one
    fit per leading index). Rows whose y are all 1 (all 0) get a = +inf (-inf) and b = 0.
    lam = 0 is allowed when the fit has a finite minimum (no separation)."""
    z = z.to(torch.float64)
    y = y.to(torch.float64)
    if z.shape != y.shape or z.shape[-1] == 0:
        raise ValueError(f"need z and y of the same non-empty shape, got {tuple(z.shape)} and {tuple(y.shape)}")
    if ((y < 0) | (y > 1)).any():
        raise ValueError("targets must lie in [0, 1]")
    all_won = (y == 1).all(-1)
    all_lost = (y == 0).all(-1)
    # Those rows have no finite fit; give them harmless targets, then overwrite their result.
    y = torch.where((all_won | all_lost).unsqueeze(-1), torch.full_like(y, 0.5), y)
    a = torch.zeros(z.shape[:-1], dtype=torch.float64)
    b = torch.zeros_like(a)
    loss = _loss(a, b, z, y, lam)
    for _ in range(MAX_NEWTON_STEPS):
        p = torch.sigmoid(a.unsqueeze(-1) + b.unsqueeze(-1) * z)
        r = p - y
        w = p * (1 - p)
        g_a, g_b = r.sum(-1), (r * z).sum(-1) + lam * b
        h_aa, h_ab, h_bb = w.sum(-1), (w * z).sum(-1), (w * z * z).sum(-1) + lam
        det = h_aa * h_bb - h_ab * h_ab
        # lam = 0 and a constant z (or w underflowing) leave H singular: then the intercept alone
        ok = det > 1e-300
        safe_det = torch.where(ok, det, torch.ones_like(det))
        step_a = torch.where(ok, (h_bb * g_a - h_ab * g_b) / safe_det, g_a / h_aa.clamp_min(1e-300))
        step_b = torch.where(ok, (h_aa * g_b - h_ab * g_a) / safe_det, torch.zeros_like(g_b))
        t = torch.ones_like(a)
        new_a, new_b = a - step_a, b - step_b
        new_loss = _loss(new_a, new_b, z, y, lam)
        # Near the minimum a step changes L by less than L's rounding: accept it (the loss
        # cannot see it, the gradient can), and halve only a step that clearly overshoots.
        slack = 1e-12 * (1 + loss.abs())
        for _ in range(MAX_HALVINGS):
            worse = new_loss > loss + slack
            if not worse.any():
                break
            t = torch.where(worse, t / 2, t)
            new_a, new_b = a - t * step_a, b - t * step_b
            new_loss = torch.where(worse, _loss(new_a, new_b, z, y, lam), new_loss)
        worse = new_loss > loss + slack  # no decrease even after the halvings: stay put
        new_a, new_b = torch.where(worse, a, new_a), torch.where(worse, b, new_b)
        new_loss = torch.where(worse, loss, new_loss)
        moved = torch.maximum((new_a - a).abs(), (new_b - b).abs())
        a, b, loss = new_a, new_b, new_loss
        if bool((moved <= tol * (1 + torch.maximum(a.abs(), b.abs()))).all()):
            break
    a = torch.where(all_won, torch.full_like(a, math.inf), torch.where(all_lost, torch.full_like(a, -math.inf), a))
    b = torch.where(all_won | all_lost, torch.zeros_like(b), b)
    return a, b


def length_controlled_win_rate(
    policy_scores: Sequence[float],
    reference_scores: Sequence[float],
    policy_lengths: Sequence[float],
    reference_lengths: Sequence[float],
    resamples: int = RESAMPLES,
    seed: int = 0,
    lam: float = SLOPE_PENALTY,
) -> dict[str, float]:
    """The judge's win rate of the policy at zero length difference (see the module docstring),
    with a percentile-bootstrap 95% interval over prompts.

    Returns win_rate (sigmoid(a)), ci_low, ci_high, slope (b: change in the log-odds of a win
    per standard deviation of the length difference), intercept (a) and length_sd (s, in the
    lengths' unit)."""
    n = len(policy_scores)
    if not n == len(reference_scores) == len(policy_lengths) == len(reference_lengths):
        raise ValueError("scores and lengths must have one entry per prompt each")
    if n == 0:
        raise ValueError("length_controlled_win_rate needs at least one prompt")
    y = torch.tensor(win_indicators(policy_scores, reference_scores), dtype=torch.float64)
    d = torch.tensor([float(p) - float(r) for p, r in zip(policy_lengths, reference_lengths)], dtype=torch.float64)
    z, s = normalized_differences(d)
    a, b = fit_logistic(z, y, lam)
    low = high = float(torch.sigmoid(a))
    if resamples > 0:
        generator = torch.Generator().manual_seed(seed)
        idx = torch.randint(0, n, (resamples, n), generator=generator)
        zb, _ = normalized_differences(d[idx])
        ab, _ = fit_logistic(zb, y[idx], lam)
        rates = torch.sigmoid(ab)
        low, high = (float(v) for v in torch.quantile(rates, torch.tensor([0.025, 0.975], dtype=torch.float64)))
    return {"win_rate": float(torch.sigmoid(a)), "ci_low": low, "ci_high": high, "slope": float(b),
            "intercept": float(a), "length_sd": float(s)}
