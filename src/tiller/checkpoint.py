"""Full training state on disk, written atomically, for exact resume.

A checkpoint is a folder `step-<N>` holding:
  trainable.safetensors   the parameters that train (LoRA adapter + score head, or all weights)
  optimizer.pt            optimizer state (tensors and numbers only: loads with weights_only=True)
  scheduler.pt            LR scheduler state
  rng-rank<R>.pt          RNG states of each process (python, torch CPU, CUDA)
  state.json              step, data position and anything else the recipe needs
It is written into a hidden temporary folder and renamed when complete, so a run killed while
saving leaves the previous checkpoint as the latest one.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

_STEP_DIR = re.compile(r"^step-(\d+)$")


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # named_parameters() yields tied weights once, so safetensors never sees shared storage.
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(root: str | Path) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | Path) -> Path | None:
    ckpts = list_checkpoints(root)
    return ckpts[-1] if ckpts else None


def save_checkpoint(root: str | Path, step: int, model: torch.nn.Module, optimizer, scheduler,
                    state: dict[str, Any], keep: int = 2, rank: int = 0, world_size: int = 1, barrier=None) -> Path:
    """Save the full training state; `barrier` (e.g. accelerator.wait_for_everyone) syncs ranks."""
    root = Path(root)
    final = root / f"step-{step}"
    tmp = root / f".tmp-step-{step}"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    if barrier:
        barrier()
    torch.save(rng_state(), tmp / f"rng-rank{rank}.pt")
    if rank == 0:
        save_file(trainable_state(model), str(tmp / "trainable.safetensors"))
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, "world_size": world_size, **state}, indent=1))
    if barrier:
        barrier()
    if rank == 0:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    if barrier:
        barrier()
    return final


def load_checkpoint(path: str | Path, model: torch.nn.Module, optimizer, scheduler, rank: int = 0) -> dict[str, Any]:
    """Restore a checkpoint in place; returns its state.json contents."""
    path = Path(path)
    state = json.loads((path / "state.json").read_text())
    weights = load_file(str(path / "trainable.safetensors"))
    params = dict(model.named_parameters())
    missing = [n for n in weights if n not in params]
    if missing:
        raise ValueError(f"{path}: checkpoint holds parameters the model does not have: {missing[:5]}")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    rng_file = path / f"rng-rank{rank}.pt"
    if not rng_file.is_file():
        raise ValueError(f"{path}: no RNG state for rank {rank} (saved with world size {state.get('world_size')})")
    set_rng_state(torch.load(rng_file, weights_only=True))
    return state
