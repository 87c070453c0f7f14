"""Orchestration shared by the training recipes: process setup, optimizer, schedule, batching.

Kept small on purpose: each recipe reads top to bottom and calls these few helpers.
Distributed execution goes through `accelerate` (DDP, FSDP2, DeepSpeed are its job); the
recipes only ever ask for the process rank, the world size and a barrier.
"""

from __future__ import annotations

import math
import os
import random
import sys
from dataclasses import dataclass

import torch

from tiller.config import ModelConfig, OptimConfig


@dataclass
class Runtime:
    """What a recipe needs to know about the processes it runs in."""

    accelerator: object
    device: torch.device
    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        self.accelerator.wait_for_everyone()

    def print(self, *args) -> None:
        if self.is_main:
            print(*args, flush=True)


def setup_runtime(seed: int, mixed_precision: str = "no") -> Runtime:
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=mixed_precision)
    # Same seed on every process: models initialize identically (score head, LoRA); the data
    # each process sees is chosen by rank explicitly, not by a different seed.
    seed_everything(seed)
    return Runtime(accelerator, accelerator.device, accelerator.process_index, accelerator.num_processes)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def use_gradient_checkpointing(cfg: ModelConfig, device: torch.device) -> bool:
    """`auto` turns it on for GPUs (memory-bound) and off on CPU (measured slower there)."""
    if cfg.gradient_checkpointing == "auto":
        return device.type == "cuda"
    return cfg.gradient_checkpointing == "on"


def make_optimizer(model: torch.nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.AdamW(params, lr=optim.lr, betas=(optim.adam_beta1, optim.adam_beta2), eps=optim.adam_eps,
                             weight_decay=optim.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, optim: OptimConfig, total_steps: int):
    from transformers import get_scheduler

    warmup = int(math.ceil(optim.warmup_ratio * total_steps))
    name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}[optim.scheduler]
    return get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=max(total_steps, 1))


def gradient_accumulation(global_batch: int, micro_batch: int, world_size: int, unit: str) -> int:
    """How many micro-batches each process runs per optimizer step; exact or an error."""
    per_step = micro_batch * world_size
    if global_batch % per_step:
        raise ValueError(
            f"{global_batch} {unit} per step cannot be split into micro-batches of {micro_batch} on "
            f"{world_size} process(es): make it a multiple of {per_step}"
        )
    return global_batch // per_step


def show_progress() -> bool:
    """Progress bars on an interactive terminal or when asked (TILLER_PROGRESS=1)."""
    flag = os.environ.get("TILLER_PROGRESS")
    if flag is not None:
        return flag not in ("0", "false", "")
    return sys.stderr.isatty()


def trainable_parameter_count(model: torch.nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total


def prepare_for_training(rt: Runtime, model: torch.nn.Module, optim: OptimConfig, total_steps: int):
    """Optimizer and LR schedule for the trainable parameters, then model and optimizer through
    accelerate together: DDP wraps the model; FSDP2 and DeepSpeed ZeRO-3 need both to shard.

    Returns (model, unwrapped model, optimizer, scheduler)."""
    optimizer = make_optimizer(model, optim)
    scheduler = make_scheduler(optimizer, optim, total_steps)
    model, optimizer = rt.accelerator.prepare(model, optimizer)
    return model, rt.accelerator.unwrap_model(model), optimizer, scheduler


def step_indices(num_items: int, per_step: int, step: int, seed: int, rank: int, world_size: int) -> list[int]:
    """The items (by index) this process trains on at `step`.

    An epoch's order depends only on (seed, epoch), so a resumed run sees exactly the items an
    uninterrupted one would; the step's `per_step` items are split into equal contiguous
    shares, one per process, so 1 process and N processes see the same global batch."""
    steps_per_epoch = num_items // per_step
    epoch, index = divmod(step, steps_per_epoch)
    order = list(range(num_items))
    random.Random(seed * 100_003 + epoch).shuffle(order)
    batch = order[index * per_step:(index + 1) * per_step]
    share = per_step // world_size
    return batch[rank * share:(rank + 1) * share]


def resume_latest(rt: Runtime, ckpt_root, model, optimizer, scheduler, stage: str) -> dict:
    """`--resume`: restore the newest checkpoint under ckpt_root in place and return its saved
    state (`step` and what the recipe stored); `{"step": 0}` when there is none."""
    from tiller.checkpoint import latest_checkpoint, load_checkpoint

    last = latest_checkpoint(ckpt_root)
    if last is None:
        rt.print(f"[{stage}] --resume: no checkpoint in {ckpt_root}, starting from scratch")
        return {"step": 0}
    saved = load_checkpoint(last, model, optimizer, scheduler, rank=rt.rank)
    rt.print(f"[{stage}] resumed from {last} at step {saved['step']}")
    return saved
