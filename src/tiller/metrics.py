"""A training step's metrics, each combined over micro-batches and processes by what it is.

    m = StepMetrics()
    m.mean("objective/kl", kl.mean(), weight=kl.numel())   # a mean over `weight` items
    m.sum("val/num_eos_tokens", has_eos.sum())             # a count (or a share of a global sum)
    m.min("completions/min_length", lengths.min())
    m.max("completions/max_length", lengths.max())
    m.std("objective/advantage_std", advantages)           # the spread of all values of the step
    logged = m.reduce(rt)                                  # {name: float}, equal on every process

A mean is kept as (sum of value x weight, sum of weights), both summed over micro-batches and
processes before the one division: the mean over the whole step however its items were split,
e.g. a token mean weighted by tokens, not by micro-batches or processes. A std is kept as
(count, sum, sum of squares). Values are tensors or numbers; nothing is synchronized before
`reduce`, which is one gather: every process must call it, having added the same names.
Metrics equal on every process by construction (learning rate, the global gradient norm) need
none of this: add them to the returned dict.
"""

from __future__ import annotations

import math

import torch

_COMBINE = {"mean": "sum", "sum": "sum", "std": "sum", "min": "min", "max": "max"}


class StepMetrics:
    """One step's metrics by kind (mean, sum, min, max, std); `reduce` gives the step's values."""

    def __init__(self) -> None:
        self._kinds: dict[str, str] = {}
        self._parts: dict[str, torch.Tensor] = {}  # name -> float64 [slots]

    def _add(self, name: str, kind: str, parts: list) -> None:
        if self._kinds.setdefault(name, kind) != kind:
            raise ValueError(f"metric {name!r} is a {self._kinds[name]}, not a {kind}")
        device = next((p.device for p in parts if isinstance(p, torch.Tensor)), torch.device("cpu"))
        new = torch.stack([torch.as_tensor(p, device=device).detach().to(torch.float64).reshape(()) for p in parts])
        old = self._parts.get(name)
        if old is None:
            self._parts[name] = new
            return
        new = new.to(old.device)
        self._parts[name] = {"sum": torch.add, "min": torch.minimum, "max": torch.maximum}[_COMBINE[kind]](old, new)

    def mean(self, name: str, value, weight=1.0) -> None:
        """`value` is a mean over `weight` items (tokens, sequences, pairs)."""
        value = torch.as_tensor(value).detach().to(torch.float64)
        weight = torch.as_tensor(weight, device=value.device).detach().to(torch.float64)
        self._add(name, "mean", [value * weight, weight])

    def sum(self, name: str, value) -> None:
        self._add(name, "sum", [value])

    def min(self, name: str, value) -> None:
        self._add(name, "min", [value])

    def max(self, name: str, value) -> None:
        self._add(name, "max", [value])

    def std(self, name: str, values: torch.Tensor) -> None:
        """Sample standard deviation (n - 1) of all values added under `name` in the step."""
        v = values.detach().to(torch.float64).flatten()
        self._add(name, "std", [torch.tensor(float(v.numel()), dtype=torch.float64, device=v.device), v.sum(), (v * v).sum()])

    def reduce(self, rt=None) -> dict[str, float]:
        """{name: float} over every process of `rt` (this process alone without `rt`)."""
        names = sorted(self._parts)
        if not names:
            return {}
        device = rt.device if rt is not None else self._parts[names[0]].device
        flat = torch.cat([self._parts[n].to(device) for n in names])
        if rt is not None and rt.world_size > 1:
            every = rt.accelerator.gather(flat[None])  # [processes, slots]
            combined, at = [], 0
            for n in names:
                part = every[:, at:at + self._parts[n].numel()]
                at += part.shape[1]
                how = _COMBINE[self._kinds[n]]
                combined.append(part.sum(0) if how == "sum" else part.amin(0) if how == "min" else part.amax(0))
            flat = torch.cat(combined)
        values, out, at = flat.tolist(), {}, 0
        for n in names:
            part = values[at:at + self._parts[n].numel()]
            at += len(part)
            kind = self._kinds[n]
            if kind == "mean":
                out[n] = part[0] / part[1] if part[1] > 0 else 0.0
            elif kind == "std":
                count, total, squares = part
                out[n] = math.sqrt(max(squares - total * total / count, 0.0) / (count - 1)) if count > 1 else 0.0
            else:
                out[n] = part[0]
        return out
