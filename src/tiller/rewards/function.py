"""A Python callable as the reward: `package.module:function` taking (prompts, completions)."""

from __future__ import annotations

import importlib

from tiller.rewards import strip_thinking


def import_function(spec: str):
    if not spec or ":" not in spec:
        raise ValueError(f"reward function must look like 'package.module:function', got {spec!r}")
    module_name, attr = spec.split(":", 1)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(f"cannot import reward function module {module_name!r}: {e}") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"{module_name!r} has no callable {attr!r}")
    return fn


class FunctionReward:
    def __init__(self, spec: str, strip: bool = True):
        self.fn = import_function(spec)
        self.strip = strip

    def score(self, prompts: list[list[dict]], completions: list[str], group_size: int = 1) -> list[float]:
        texts = [strip_thinking(c) if self.strip else c for c in completions]
        scores = [float(s) for s in self.fn(prompts, texts)]
        if len(scores) != len(texts):
            raise ValueError(f"reward function returned {len(scores)} scores for {len(texts)} completions")
        return scores

    def close(self) -> None:
        pass
