"""Rule-based reward callables for tests: `tests.helpers.rule_rewards:count_a` in a config."""

from __future__ import annotations

import time


def count_a(prompts, completions):
    """Reward = number of letters 'a' in the completion."""
    return [c.count("a") for c in completions]


def slow_count_a(prompts, completions):
    """count_a after a pause: keeps a request in flight long enough to kill the server under it."""
    time.sleep(1.0)
    return count_a(prompts, completions)


def prompt_length(prompts, completions):
    """Reward = number of characters in the last prompt message (checks prompts travel intact)."""
    return [len(p[-1]["content"]) for p in prompts]
