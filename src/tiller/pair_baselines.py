"""What a reward model's pairwise accuracy should be read against: rules that need no training,
scored on the same held-out pairs.

A reward model at 0.62 on a dataset where the longer answer is the chosen one 0.60 of the
time has learned little beyond length; one below the starting model's own likelihood
preference has learned less than it started with. Each baseline is a pairwise accuracy
(a tie counts 0.5, a coin flip) with a 95% Wilson interval, like the reward model's:

- ``longer answer wins`` / ``shorter answer wins``: answer length in tokens of the reward
  model's tokenizer (prompt + answer, the prompt being the same on both sides). The two add up
  to 1 exactly; both are shown because either can be the strong one (HH-RLHF's harmless
  subset prefers short refusals, helpfulness data long answers).
- ``starting model: higher log-likelihood (sum)``: the starting policy's summed log-prob of
  each answer given the prompt, the quantity DPO's implicit reward is a difference of
  (it favours short answers: every token costs probability).
- ``starting model: higher log-likelihood per token``: the same divided by the answer's token
  count, the length-normalized preference.
"""

from __future__ import annotations

from typing import Sequence

from tiller import losses


def pairwise_report(chosen: Sequence[float], rejected: Sequence[float]) -> dict:
    """Accuracy of "the higher value is the chosen answer" with its 95% Wilson interval; a tie
    counts 0.5. Returns n, accuracy, accuracy_ci95, ties."""
    if len(chosen) != len(rejected):
        raise ValueError(f"{len(chosen)} chosen values but {len(rejected)} rejected values")
    n = len(chosen)
    wins = sum(float(c) > float(r) for c, r in zip(chosen, rejected))
    ties = sum(float(c) == float(r) for c, r in zip(chosen, rejected))
    successes = wins + 0.5 * ties
    low, high = losses.accuracy_interval(successes, n)
    return {"n": n, "accuracy": successes / n if n else 0.0, "accuracy_ci95": [low, high], "ties": ties}


def length_baselines(chosen_lengths: Sequence[int], rejected_lengths: Sequence[int]) -> dict[str, dict]:
    """"longer answer wins" and "shorter answer wins" on the same pairs."""
    return {
        "longer answer wins": pairwise_report(chosen_lengths, rejected_lengths),
        "shorter answer wins": pairwise_report([-x for x in chosen_lengths], [-x for x in rejected_lengths]),
    }


def likelihood_baselines(chosen_logps: Sequence[float], rejected_logps: Sequence[float],
                         chosen_tokens: Sequence[int], rejected_tokens: Sequence[int]) -> dict[str, dict]:
    """The starting model's preference: higher summed log-prob, and higher log-prob per answer
    token (an answer with no token gets 0 per token)."""
    def per_token(logps, tokens):
        return [lp / t if t else 0.0 for lp, t in zip(logps, tokens)]
    return {
        "starting model: higher log-likelihood (sum)": pairwise_report(chosen_logps, rejected_logps),
        "starting model: higher log-likelihood per token": pairwise_report(per_token(chosen_logps, chosen_tokens),
                                                                           per_token(rejected_logps, rejected_tokens)),
    }


def format_baselines(baselines: dict[str, dict]) -> list[str]:
    """One line per baseline, aligned, for the printed evaluation."""
    width = max(len(name) for name in baselines) if baselines else 0
    lines = []
    for name, r in baselines.items():
        lo, hi = r["accuracy_ci95"]
        ties = f", {r['ties']} ties" if r["ties"] else ""
        lines.append(f"  {name:<{width}}  {r['accuracy']:.3f} (95% CI {lo:.3f}-{hi:.3f}{ties})")
    return lines
