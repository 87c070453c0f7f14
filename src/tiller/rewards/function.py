"""A Python callable as the reward: `package.module:function` taking (prompts, completions), or
(prompts, completions, records) where records are the prompts' `extra` dicts (data.keep_columns),
one per completion. The signature is read once: a third positional parameter (or *args) gets them."""

from __future__ import annotations

import importlib
import inspect

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


def takes_records(fn) -> bool:
    """Whether `fn` accepts a third positional argument (the records)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # some builtins have no signature: call them the old way
        return False
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3


class FunctionReward:
    def __init__(self, spec: str, strip: bool = True):
        self.fn = import_function(spec)
        self.strip = strip
        self.takes_records = takes_records(self.fn)

    def score(self, prompts: list[list[dict]], completions: list[str], group_size: int = 1,
              records: list[dict] | None = None) -> list[float]:
        texts = [strip_thinking(c) if self.strip else c for c in completions]
        if self.takes_records:
            if records is None:  # a caller without records: empty ones, one per completion
                records = [{} for _ in texts]
            if len(records) != len(texts):
                raise ValueError(f"{len(records)} records for {len(texts)} completions")
            scores = [float(s) for s in self.fn(prompts, texts, records)]
        else:
            scores = [float(s) for s in self.fn(prompts, texts)]
        if len(scores) != len(texts):
            raise ValueError(f"reward function returned {len(scores)} scores for {len(texts)} completions")
        return scores

    def close(self) -> None:
        pass
