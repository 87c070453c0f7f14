"""Orchestration shared by the training recipes: process setup, optimizer, schedule, batching.

Kept small on purpose: each recipe reads top to bottom and calls these few helpers.
Distributed execution goes through `accelerate` (DDP, FSDP2, DeepSpeed are its job); the
recipes only ever ask for the process rank, the world size and a barrier.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import math
import os
import random
import sys
import time
from dataclasses import dataclass

import torch

from tiller.batching import length_grouped_order
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
    if accelerator.num_processes > 1:  # not a group of one that another library made (vLLM's)
        leave_process_group_at_exit()
    # Same seed on every process: models initialize identically (score head, LoRA); the data
    # each process sees is chosen by rank explicitly, not by a different seed.
    seed_everything(seed)
    return Runtime(accelerator, accelerator.device, accelerator.process_index, accelerator.num_processes)


@functools.cache  # registered once per process
def leave_process_group_at_exit() -> None:
    """Leave the process group this process joined before Python shuts down: an `atexit`
    callback (atexit runs while other threads can still take the GIL, before the interpreter
    finalizes), registered by `setup_runtime` when it runs in several processes.

    Why: a gloo worker thread releases a finished collective, and with it tensors that need the
    GIL to free, just after the collective's `wait()` returns. A process that exits within a few
    milliseconds of its last collective (a run stopped by `stop_after`, right after a step) could
    reach interpreter shutdown before that thread got the GIL; the thread is then cancelled
    inside C++ and the process aborts ("terminate called without an active exception", SIGABRT
    after a finished run: 3 of 6 runs of a 2-process FSDP2 resume test here, a core dump showed
    the thread in `~AsyncAllgatherWork` waiting for the GIL). Destroying the group is accelerate's
    `end_training`; it joins those threads where nothing else holds the group, but FSDP2 and
    accelerate keep references, so the GIL is also handed over for a moment (0.2 s, once per
    process): time for such a thread to finish."""

    def leave() -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            from accelerate.state import PartialState

            PartialState().destroy_process_group()
            time.sleep(0.2)

    atexit.register(leave)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def seed_per_rank(rt: Runtime, seed: int) -> None:
    """Call once every model is built (before --resume restores saved streams): from here each
    process draws from its own stream (python, torch CPU and CUDA), dropout above all, seeded
    seed + 1_000_003 * (rank + 1): never the stream the models were initialized from, and
    another one on every rank. What must be equal on every process does not draw from these: the
    completions' sampling (a seeded generator per prompt) and the data order (seeded by epoch)."""
    seed_everything(seed + 1_000_003 * (rt.rank + 1))


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
                         accumulation: int, micro_batch: int, stage: str = "train"):
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
    updates = OptimizerStep(rt, model, optimizer, scheduler, optim.max_grad_norm, accumulation,
                            optim.max_consecutive_skips, stage)
    return model, rt.accelerator.unwrap_model(model), optimizer, scheduler, updates


class NonFiniteError(RuntimeError):
    """Training met NaN / inf where it cannot go on: too many skipped updates in a row, weights
    that are not finite, or a non-finite loss under DeepSpeed (which updates inside backward)."""


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
    (`scale_wrt_gas=False`): the loss is already scaled.

    The non-finite guard: a step whose gradient norm is NaN or inf applies no update (the
    gradients are dropped; the LR schedule still advances, so it stays aligned with the step
    count), is counted in `skipped` (logged as guard/skipped_updates) and warned about with the
    step and the cause; `skip(reason)` does the same for a cause the recipe found before the
    forward (a non-finite reward). After `max_consecutive_skips` skipped steps in a row the stage
    stops with NonFiniteError. Under DeepSpeed the engine updates inside the last backward, so a
    non-finite loss stops the stage before that backward instead of being skipped."""

    def __init__(self, rt: Runtime, model, optimizer, scheduler, max_grad_norm: float, accumulation: int,
                 max_consecutive_skips: int = 3, stage: str = "train"):
        self.rt, self.model, self.optimizer, self.scheduler = rt, model, optimizer, scheduler
        self.max_grad_norm = max_grad_norm
        self.accumulation = accumulation
        self.max_consecutive_skips = max_consecutive_skips
        self.stage = stage
        self.start = 0  # optimizer steps done before this process started (set on --resume)
        self.steps = 0  # optimizer steps taken by this object (a resumed run counts from its restart)
        self.skipped = 0  # updates skipped by the guard
        self._in_a_row = 0
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
            if self.rt.any_rank(not bool(torch.isfinite(loss.detach()).all())):
                raise NonFiniteError(
                    f"[{self.stage}] non-finite loss ({float(loss.detach()):g} on rank {self.rt.rank} or another) at "
                    f"optimizer step {self.steps + self.skipped + 1}: DeepSpeed applies the update inside its backward, "
                    "so tiller stops before it; the last checkpoint is intact (--resume continues from it)")
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
            if grad_norm is not None and not math.isfinite(float(grad_norm)):
                raise NonFiniteError(f"[{self.stage}] gradient norm {float(grad_norm)} after DeepSpeed's update: the "
                                     "weights may be damaged; stopping without saving (the last checkpoint is intact)")
        else:
            grad_norm = acc.clip_grad_norm_(self.model.parameters(), self.max_grad_norm or math.inf)
            if not math.isfinite(float(grad_norm)):  # the global norm: every process sees the same value
                self.optimizer.zero_grad(set_to_none=True)
                self.skip(f"gradient norm is {float(grad_norm)}")
                return float(grad_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.steps += 1
        self._in_a_row = 0
        return float(grad_norm) if grad_norm is not None else float("nan")

    def skip(self, reason: str, schedule_steps: int = 1) -> None:
        """Apply no update for this step (every process must call it together); the LR schedule
        advances by `schedule_steps` (the optimizer steps the skipped step would have taken)."""
        import warnings

        with warnings.catch_warnings():
            # Advancing the schedule past the skipped step is the point; when no optimizer step
            # came before (the run's first update skipped), PyTorch warns that the first learning
            # rate is skipped as if the calls were out of order: true, intended, and misleading.
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before", category=UserWarning)
            for _ in range(schedule_steps):
                self.scheduler.step()
        self.skipped += 1
        self._in_a_row += 1
        at = self.start + self.steps + self.skipped
        if self.rt.is_main:
            warnings.warn(f"[{self.stage}] step {at}: update skipped, {reason} "
                          f"({self._in_a_row} in a row, {self.skipped} in this run)", stacklevel=2)
        if self._in_a_row >= self.max_consecutive_skips:
            raise NonFiniteError(f"[{self.stage}] {self._in_a_row} updates skipped in a row (last at step {at}: {reason}); "
                                 "stopping (optim.max_consecutive_skips). Nothing non-finite was saved: the last "
                                 "checkpoint is intact")

    def finite_everywhere(self, values: torch.Tensor) -> bool:
        """True on every process if `values` is finite on every process."""
        return not self.rt.any_rank(not bool(torch.isfinite(values).all()))

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
                       select=None, card=None) -> None:
    """Save the trained model as a Hugging Face folder; every process must call this.
    `card` (a `tiller.model_card.CardInfo`) describes it: rank 0 writes it as the folder's README.md.

    Without sharding rank 0 saves its own copy. Under FSDP2 or ZeRO-3 no process holds the
    weights: every process joins the gather of the full state dict (accelerate's
    `get_state_dict`), and rank 0 loads it into a fresh unsharded copy from `rebuild()` on the
    CPU, then saves that (merging LoRA there when asked). `select(module)` picks the part to
    save (the reward stage saves the model inside its score wrapper)."""
    from tiller.checkpoint import weights_are_finite
    from tiller.models import save_model

    select = select or (lambda m: m)
    if not weights_are_finite(model, rt):
        raise NonFiniteError(f"not saving {out_dir}: the trained weights hold NaN or inf (the last checkpoint is kept)")
    if not rt.sharded:
        if rt.is_main:
            save_model(select(unwrapped), tokenizer, out_dir, merge_lora=merge_lora, card=card)
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
        save_model(select(fresh), tokenizer, out_dir, merge_lora=merge_lora, card=card)
    rt.barrier()


def step_indices(num_items: int, per_step: int, step: int, seed: int, rank: int, world_size: int,
                 lengths: list[int] | None = None) -> list[int]:
    """The items (by index) this process trains on at `step`.

    An epoch's order depends only on (seed, epoch), so a resumed run sees exactly the items an
    uninterrupted one would; the step's `per_step` items are split into equal contiguous
    shares, one per process, so 1 process and N processes see the same global batch. With
    `lengths` (one per item), each step holds items of similar length
    (`tiller.batching.length_grouped_order`): padded batches then carry less padding."""
    steps_per_epoch = num_items // per_step
    epoch, index = divmod(step, steps_per_epoch)
    order = list(range(num_items))
    rng = random.Random(seed * 100_003 + epoch)
    rng.shuffle(order)
    if lengths is not None:
        order = length_grouped_order(order[:steps_per_epoch * per_step], lengths, per_step, rng)
    batch = order[index * per_step:(index + 1) * per_step]
    share = per_step // world_size
    return batch[rank * share:(rank + 1) * share]


# What a resumed run may change without altering its trajectory: where and how often it logs,
# saves and evaluates, and how patient it is with a remote service.
HARMLESS_SECTIONS = ("run_dir", "tracking", "pipeline", "eval")
HARMLESS_FIELDS = ("save_every", "keep_checkpoints", "log_every", "sample_every", "eval_every", "num_eval_samples",
                   "timeout_s", "max_retries", "max_consecutive_skips")


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(old: dict, new: dict, section: str, defaults: dict | None = None) -> tuple[list[str], list[str]]:
    """Differences between a checkpoint's config and the current one, as `key: old -> new`:
    (those that alter the run's trajectory, those that do not). The trajectory depends on the
    seed, the model, the data and the stage's own section, except the fields in HARMLESS_FIELDS.
    A field the checkpoint's config lacks (added to tiller since) that is at its default in
    `defaults` is no change: the older tiller behaved as that default does."""
    a, b = _flatten(old), _flatten(new)
    d = _flatten(defaults or {})
    trajectory, harmless = [], []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<unset>") == b.get(key, "<unset>"):
            continue
        if key not in a and key in d and b.get(key) == d[key]:
            continue
        line = f"{key}: {a.get(key, '<unset>')!r} -> {b.get(key, '<unset>')!r}"
        top, leaf = key.split(".")[0], key.split(".")[-1]
        matters = top in ("seed", "model", "data", section) and top not in HARMLESS_SECTIONS and leaf not in HARMLESS_FIELDS
        (trajectory if matters else harmless).append(line)
    return trajectory, harmless


def _take_new_optimizer_settings(optimizer, scheduler, optim: OptimConfig, total_steps: int, step: int) -> None:
    """--accept-config-changes: the optimizer keeps its moments, but lr, betas, eps and weight
    decay are the new config's, and the LR schedule is the new config's (new total steps,
    warmup, kind) taken at the current step."""
    import warnings

    inner = getattr(optimizer, "optimizer", optimizer)
    for group in inner.param_groups:
        group.update(lr=optim.lr, initial_lr=optim.lr, weight_decay=optim.weight_decay,
                     betas=(optim.adam_beta1, optim.adam_beta2), eps=optim.adam_eps)
    fresh = make_scheduler(inner, optim, total_steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "scheduler.step() before optimizer.step()": fast-forwarding on purpose
        for _ in range(step):
            fresh.step()
    # The recipe holds `scheduler`: give it the fresh schedule's state (same optimizer).
    scheduler.__dict__.update({k: v for k, v in fresh.__dict__.items() if k != "optimizer"})


def resume_latest(rt: Runtime, ckpt_root, model, optimizer, scheduler, stage: str, cfg=None, section: str | None = None,
                  total_steps: int | None = None, accept_changes: bool = False, schedule_per_step: int = 1) -> dict:
    """`--resume`: restore the newest intact checkpoint under ckpt_root in place (every process)
    and return its saved state (`step` and what the recipe stored); `{"step": 0}` when there is
    none. A damaged newest checkpoint is reported and the one before it is used.

    With `cfg`, the checkpoint's config is compared with it first: a change that alters the
    run's trajectory (model, data, batch sizes, optimizer, schedule, seed, step count, RL
    settings) stops with the list of changed keys, unless `accept_changes` (the CLI's
    --accept-config-changes): then the new values are used from here on (see
    _take_new_optimizer_settings). Changes to logging, tracking and save cadence pass with a note."""
    import yaml

    from tiller.checkpoint import load_checkpoint, newest_intact_checkpoint
    from tiller.config import to_dict

    last = newest_intact_checkpoint(ckpt_root, log=rt.print)
    if last is None:
        rt.print(f"[{stage}] --resume: no checkpoint in {ckpt_root}, starting from scratch")
        return {"step": 0}
    changed = []
    if cfg is not None and (last / "config.yaml").is_file():
        old = yaml.safe_load((last / "config.yaml").read_text()) or {}
        changed, harmless = config_changes(old, to_dict(cfg), section or stage, to_dict(type(cfg)()))
        if harmless:
            rt.print(f"[{stage}] --resume: config changes that do not alter the run: " + "; ".join(harmless))
        if changed and not accept_changes:
            raise ValueError(f"--resume: the config differs from the one {last} was trained with, in ways that change "
                             "the run:\n  " + "\n  ".join(changed) + "\nrestore those values, or resume with "
                             "--accept-config-changes to continue with the new ones (a new lr and schedule take "
                             "effect from the current step)")
    saved = load_checkpoint(last, model, optimizer, scheduler, rt)
    if changed:
        optim = getattr(cfg, section or stage).optim
        _take_new_optimizer_settings(optimizer, scheduler, optim, total_steps or saved["step"] * schedule_per_step,
                                     saved["step"] * schedule_per_step)
        rt.print(f"[{stage}] --resume --accept-config-changes: continuing with " + "; ".join(changed))
    note = ""
    if saved.get("world_size", 1) != rt.world_size:
        note = (f" (saved by {saved.get('world_size')} process(es), resumed on {rt.world_size}: weights and optimizer "
                "state resharded; dropout streams start afresh)")
    rt.print(f"[{stage}] resumed from {last} at step {saved['step']}{note}")
    return saved
