"""Reward backends behind one small interface.

A backend turns (prompt messages, completion text) pairs into scalar rewards, without gradients,
in batches. `group_size` tells it that consecutive completions answer the same prompt (the k
RLOO samples), which pairwise judges use; pointwise backends ignore it. `records` are the prompts'
`extra` dicts (the columns data.keep_columns kept, e.g. a gold answer), one per completion: a
callable reward that takes a third argument receives them; the model backends ignore them.

    class RewardBackend(Protocol):
        def score(self, prompts: list[list[dict]], completions: list[str], group_size: int = 1,
                  records: list[dict] | None = None) -> list[float]: ...
        def close(self) -> None: ...

Which backend is used is a plain `if` on `RewardBackendConfig.backend` in `make_reward_backend`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

from tiller.config import RewardBackendConfig

_THINK = re.compile(r"^\s*<think>.*?</think>\s*", re.DOTALL)


class RewardBackend(Protocol):
    def score(self, prompts: list[list[dict]], completions: list[str], group_size: int = 1,
              records: list[dict] | None = None) -> list[float]: ...

    def close(self) -> None: ...


def strip_thinking(text: str) -> str:
    """The answer after a leading Qwen3-style <think>...</think> block (unchanged if none).

    An unterminated <think> block means the model never reached an answer: the answer is empty."""
    match = _THINK.match(text)
    if match:
        return text[match.end():]
    if text.lstrip().startswith("<think>"):
        return ""
    return text


def make_reward_backend(cfg: RewardBackendConfig, default_path: str | Path | None = None, device: str = "cpu") -> RewardBackend:
    """Build the configured backend. `default_path` is the reward stage output for `classifier`."""
    if cfg.backend == "classifier":
        from tiller.rewards.classifier import ClassifierReward

        path = cfg.path or default_path
        if path is None:
            raise ValueError("reward backend 'classifier' needs a model folder (reward.path)")
        return ClassifierReward(str(path), cfg, device=device)
    if cfg.backend == "callable":
        from tiller.rewards.function import FunctionReward

        return FunctionReward(cfg.function, strip=cfg.strip_thinking)
    if cfg.backend == "genrm":
        from tiller.rewards.genrm import GenRMReward

        return GenRMReward(cfg)
    if cfg.backend == "http":
        from tiller.rewards.http import HttpReward

        return HttpReward(cfg)
    raise ValueError(f"unknown reward backend {cfg.backend!r}: use classifier, callable, genrm or http")
