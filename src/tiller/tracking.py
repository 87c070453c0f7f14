"""Metrics: a JSONL file in the stage folder always, TensorBoard by default, W&B when asked.

Only the main process writes. Values may be tensors or numbers; they are turned into floats
here, once per logging step, so the training loop never syncs on `.item()` per metric.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from tiller.config import TrackingConfig


def _to_float(value: Any) -> float | None:
    if hasattr(value, "detach"):
        value = value.detach().float().mean().item()
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value


class Tracker:
    def __init__(self, stage_dir: str | Path, cfg: TrackingConfig | None = None, run_config: dict | None = None,
                 enabled: bool = True, run_name: str | None = None):
        self.enabled = enabled
        self.cfg = cfg or TrackingConfig(tensorboard=False)
        self.dir = Path(stage_dir)
        self._tb = None
        self._wandb = None
        if not enabled:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        # Append: a resumed run continues the same file (steps after a resume repeat nothing,
        # because resume restarts from the checkpointed step).
        self._jsonl = open(self.dir / "metrics.jsonl", "a", buffering=1)
        if self.cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.dir / "tensorboard"))
        if self.cfg.wandb:
            import wandb  # optional dependency: pip install wandb

            os.environ.setdefault("WANDB_MODE", self.cfg.wandb_mode)
            self._wandb = wandb.init(project=self.cfg.wandb_project, name=run_name or self.dir.name,
                                     dir=str(self.dir), config=run_config or {}, resume="allow")

    def log(self, metrics: dict[str, Any], step: int) -> dict[str, float]:
        values = {k: v for k, v in ((k, _to_float(v)) for k, v in metrics.items()) if v is not None}
        if not self.enabled:
            return values
        record = {"step": step, "time": time.time(), **{k: (v if math.isfinite(v) else str(v)) for k, v in values.items()}}
        self._jsonl.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(k, v, step)
        if self._wandb is not None:
            self._wandb.log(values, step=step)
        return values

    def log_text(self, name: str, text: str, step: int) -> None:
        if not self.enabled:
            return
        with open(self.dir / "samples.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "name": name, "text": text}) + "\n")
        if self._tb is not None:
            self._tb.add_text(name, text, step)

    def close(self) -> None:
        if not self.enabled:
            return
        self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def read_metrics(path: str | Path) -> list[dict]:
    """Rows of a metrics.jsonl; a resumed run may have re-logged steps, the last one wins."""
    path = Path(path)
    if not path.is_file():
        return []
    by_step: dict[int, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            by_step[row["step"]] = {**by_step.get(row["step"], {}), **row}
    return [by_step[s] for s in sorted(by_step)]
