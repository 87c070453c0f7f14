"""Orchestration shared by the training recipes: process setup, optimizer, schedule, batching.

Kept small on purpose: each recipe reads top to bottom and calls these few helpers.
Distributed execution goes through `accelerate` (DDP, FSDP2, DeepSpeed are its job); the
recipes only ever ask for the process rank, the world size and a barrier.
"""

from __future__ import annotations

import contextlib
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

    @property
    def strategy(self) -> str:
        """`none`, `ddp`, `fsdp2`, `fsdp1` or `deepspeed`: what accelerate runs the model under."""
        kind = self.accelerator.distributed_type.value
        if kind == "FSDP":
            return "fsdp2" if self.accelerator.is_fsdp2 else "fsdp1"
        if kind == "DEEPSPEED":
            return "deepspeed"
        return "ddp" if self.world_size > 1 else "none"

    @property
    def sharded(self) -> bool:
        """Parameters split over processes: every forward is a collective that all must join."""
        return self.strategy in ("fsdp1", "fsdp2", "deepspeed")

    @contextlib.contextmanager
    def unsharded_construction(self):
        """Build models inside this as plain, whole modules. Under ZeRO-3 accelerate tells
        transformers to construct every model partitioned (deepspeed.zero.Init: a collective,
        and a module that only a DeepSpeed engine can run): right for the model being trained,
        wrong for frozen models each process keeps whole (reward model, frozen reference) and
        for the copy rank 0 alone rebuilds to save the gathered weights."""
        if self.strategy != "deepspeed":
            yield
            return
        from transformers.integrations import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
        try:
            yield
        finally:
            self.accelerator.state.deepspeed_plugin.set_deepspeed_weakref()

    def any_rank(self, flag: bool) -> bool:
        """True on every process if `flag` is true on any (one small all-reduce)."""
        if self.world_size == 1:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        return bool(self.accelerator.reduce(value, reduction="sum").item() > 0)


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
    def size(p):  # a ZeRO-3 partitioned parameter is empty here; ds_numel is its real size
        return getattr(p, "ds_numel", p.numel())

    trainable = sum(size(p) for p in model.parameters() if p.requires_grad)
    total = sum(size(p) for p in model.parameters())
    return trainable, total


def prepare_for_training(rt: Runtime, model: torch.nn.Module, optim: OptimConfig, total_steps: int,
                         accumulation: int, micro_batch: int):
    """Optimizer and LR schedule for the trainable parameters, then model and optimizer through
    accelerate together: DDP wraps the model; FSDP2 and DeepSpeed ZeRO-3 need both to shard.

    Under DeepSpeed the engine owns accumulation and clipping, so its config gets this stage's
    values (accumulation steps, micro-batch, `optim.max_grad_norm`) before it is built,
    whatever the accelerate config file said.

    Returns (model, unwrapped model, optimizer, scheduler, updates: OptimizerStep)."""
    optimizer = make_optimizer(model, optim)
    scheduler = make_scheduler(optimizer, optim, total_steps)
    if rt.strategy == "deepspeed":
        ds = rt.accelerator.state.deepspeed_plugin.deepspeed_config
        ds.update({
            "gradient_accumulation_steps": accumulation,
            "train_micro_batch_size_per_gpu": micro_batch,
            "train_batch_size": micro_batch * accumulation * rt.world_size,
            "gradient_clipping": optim.max_grad_norm,  # 0 = no clipping, as in tiller
        })
        rt.print(f"[deepspeed] ZeRO stage {ds.get('zero_optimization', {}).get('stage')}: gradient_accumulation_steps "
                 f"{accumulation}, train_micro_batch_size_per_gpu {micro_batch}, gradient_clipping {optim.max_grad_norm} "
                 "(set by tiller from the stage config)")
    model, optimizer = rt.accelerator.prepare(model, optimizer)
    updates = OptimizerStep(rt, model, optimizer, scheduler, optim.max_grad_norm, accumulation)
    return model, rt.accelerator.unwrap_model(model), optimizer, scheduler, updates


class OptimizerStep:
    """One optimizer step over `accumulation` micro-batches, the same under every strategy.

        for i in range(updates.accumulation):
            with updates.micro_batch(i):
                updates.backward(loss)      # this micro-batch's share of the global mean loss
        grad_norm = updates.step()

    The loss handed to `backward` is the micro-batch's share of the loss of the whole step
    (summed over micro-batches and processes it gives the global mean), so the gradient is the
    same however the step is split. DDP, FSDP2 and DeepSpeed average gradients over processes,
    hence the factor world_size. Gradients are synchronized on the last micro-batch only: DDP's
    and FSDP2's `no_sync` before it; for DeepSpeed, which ignores `no_sync` at ZeRO >= 2,
    accelerate's `sync_gradients` flag sets the engine's accumulation boundary, and the engine
    steps (clipping with `gradient_clipping`, set from optim.max_grad_norm) on that last
    backward only. Its own division by the accumulation steps is turned off
    (`scale_wrt_gas=False`): the loss is already scaled."""

    def __init__(self, rt: Runtime, model, optimizer, scheduler, max_grad_norm: float, accumulation: int):
        self.rt, self.model, self.optimizer, self.scheduler = rt, model, optimizer, scheduler
        self.max_grad_norm = max_grad_norm
        self.accumulation = accumulation
        self.steps = 0  # optimizer steps taken by this object (a resumed run counts from its restart)
        self._last = True
        self._engine_start = None

    @contextlib.contextmanager
    def micro_batch(self, index: int):
        """Wrap the forward and backward of micro-batch `index` (DDP decides in the forward
        whether the backward synchronizes)."""
        self._last = index == self.accumulation - 1
        acc = self.rt.accelerator
        if self.rt.strategy == "deepspeed":
            acc.gradient_state._set_sync_gradients(self._last)
            try:
                yield
            finally:
                acc.gradient_state._set_sync_gradients(True)
        elif self._last:
            yield
        else:
            with acc.no_sync(self.model):
                yield

    def backward(self, loss: torch.Tensor) -> None:
        acc = self.rt.accelerator
        if self.rt.strategy == "deepspeed":
            acc.gradient_state._set_sync_gradients(self._last)
            acc.backward(loss * self.rt.world_size, scale_wrt_gas=False)
        else:
            acc.backward(loss * self.rt.world_size)

    def step(self) -> float:
        """Clip, step the optimizer and the schedule once; returns the gradient norm before
        clipping (max_grad_norm 0: no clipping, the norm is still measured)."""
        acc = self.rt.accelerator
        if self.rt.strategy == "deepspeed":
            # The engine stepped inside the last backward (clipping included); it must have
            # taken exactly one optimizer step per tiller step.
            engine = acc.deepspeed_engine_wrapped.engine
            if self._engine_start is None:
                self._engine_start = engine.global_steps - 1
            if engine.global_steps - self._engine_start != self.steps + 1:
                raise RuntimeError(f"DeepSpeed took {engine.global_steps - self._engine_start} optimizer steps where "
                                   f"tiller took {self.steps + 1}: the accumulation boundary is wrong")
            grad_norm = acc.deepspeed_engine_wrapped.get_global_grad_norm()
        else:
            grad_norm = acc.clip_grad_norm_(self.model.parameters(), self.max_grad_norm or math.inf)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.steps += 1
        return float(grad_norm) if grad_norm is not None else float("nan")

    def describe(self) -> str:
        """One line for the end of a stage: the optimizer steps taken, and DeepSpeed's own count."""
        text = f"{self.steps} optimizer step(s) ({self.rt.strategy}, {self.rt.world_size} process(es), " \
               f"{self.accumulation} micro-batch(es) each)"
        if self.rt.strategy == "deepspeed":
            engine = self.rt.accelerator.deepspeed_engine_wrapped.engine
            text += f"; DeepSpeed engine global steps {engine.global_steps - (self._engine_start or 0)}"
        return text


def rank_batches(n: int, batch_size: int, rank: int, world_size: int) -> list[list[int]]:
    """Index batches of range(n) for this process. Every process gets the same number of
    batches (sharded models need every process in every forward): one with nothing left
    gets an empty list and should run a throwaway forward."""
    per_round = batch_size * world_size
    return [list(range(min(r * per_round + rank * batch_size, n), min(r * per_round + (rank + 1) * batch_size, n)))
            for r in range(math.ceil(n / per_round))]


def map_over_ranks(rt: Runtime, n: int, batch_size: int, run_batch, lengths: list[int] | None = None,
                   width: int = 1) -> torch.Tensor:
    """`run_batch(indices) -> [len(indices), width]` over items 0..n-1, shared out between the
    processes in batches (of items of similar length when `lengths` is given); every process
    returns the full [n, width] float64 tensor in the items' order. Every process runs the same
    number of batches (a process with nothing left scores item order[0] and drops it), so this
    is safe where every forward is a collective."""
    order = sorted(range(n), key=lambda i: lengths[i]) if lengths is not None else list(range(n))
    out = torch.zeros(n, width, dtype=torch.float64, device=rt.device)
    for positions in rank_batches(n, batch_size, rt.rank, rt.world_size):
        items = [order[p] for p in positions]
        values = run_batch(items or order[:1])
        if items:
            out[items] = values.reshape(len(items), width).double()
    if rt.world_size > 1:
        out = rt.accelerator.reduce(out, reduction="sum")
    return out


def save_trained_model(rt: Runtime, model, unwrapped, tokenizer, out_dir, merge_lora: bool, rebuild=None,
                       select=None) -> None:
    """Save the trained model as a Hugging Face folder; every process must call this.

    Without sharding rank 0 saves its own copy. Under FSDP2 or ZeRO-3 no process holds the
    weights: every process joins the gather of the full state dict (accelerate's
    `get_state_dict`), and rank 0 loads it into a fresh unsharded copy from `rebuild()` on the
    CPU, then saves that (merging LoRA there when asked). `select(module)` picks the part to
    save (the reward stage saves the model inside its score wrapper)."""
    from tiller.models import save_model

    select = select or (lambda m: m)
    if not rt.sharded:
        if rt.is_main:
            save_model(select(unwrapped), tokenizer, out_dir, merge_lora=merge_lora)
        rt.barrier()
        return
    state = rt.accelerator.get_state_dict(model)
    if rt.is_main:
        with rt.unsharded_construction():
            fresh = rebuild()
        missing, unexpected = fresh.load_state_dict(state, strict=False)
        if unexpected or missing:
            raise RuntimeError(f"the gathered state dict does not fit the rebuilt model: missing {missing[:5]}, "
                               f"unexpected {unexpected[:5]}")
        save_model(select(fresh), tokenizer, out_dir, merge_lora=merge_lora)
    rt.barrier()


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
    """`--resume`: restore the newest intact checkpoint under ckpt_root in place (every process)
    and return its saved state (`step` and what the recipe stored); `{"step": 0}` when there is
    none. A damaged newest checkpoint is reported and the one before it is used."""
    from tiller.checkpoint import load_checkpoint, newest_intact_checkpoint

    last = newest_intact_checkpoint(ckpt_root, log=rt.print)
    if last is None:
        rt.print(f"[{stage}] --resume: no checkpoint in {ckpt_root}, starting from scratch")
        return {"step": 0}
    saved = load_checkpoint(last, model, optimizer, scheduler, rt)
    note = ""
    if saved.get("world_size", 1) != rt.world_size:
        note = (f" (saved by {saved.get('world_size')} process(es), resumed on {rt.world_size}: weights and optimizer "
                "state resharded; dropout streams start afresh)")
    rt.print(f"[{stage}] resumed from {last} at step {saved['step']}{note}")
    return saved
