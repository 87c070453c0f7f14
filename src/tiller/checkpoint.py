"""Full training state on disk, written atomically and verified, for exact resume.

A checkpoint is a folder `step-<N>` holding:
  model_optim/       trainable parameters and optimizer state in torch.distributed.checkpoint
                     (DCP) format: keyed by parameter name (no `module.` prefix of DDP), each
                     process writes its own shard of FSDP2's sharded tensors; it loads on any
                     number of processes (resharding on load)
  deepspeed/         instead of model_optim under DeepSpeed: the engine's own checkpoint (ZeRO
                     partitions its optimizer state by rank; resuming needs the same process count)
  scheduler.pt       LR scheduler state
  rng-rank<R>.pt     RNG states of each process (python, torch CPU, CUDA)
  state.json         step, process count, strategy, and what the recipe needs (data position ...)
  config.yaml        the resolved config of the run (`--resume` compares it with the current one)
  manifest.json      size and sha256 of every other file, written last
Everything is written into a hidden temporary folder that is renamed when complete, so a run
killed while saving leaves the previous checkpoint as the latest one; a folder without a
manifest is never taken for a checkpoint. `--resume` verifies the newest checkpoint against its
manifest and falls back to the newest intact one, saying which file is bad and why.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

_STEP_DIR = re.compile(r"^step-(\d+)$")
MANIFEST = "manifest.json"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: the message names the folder or file and the problem."""


# ----------------------------------------------------------------------------- RNG


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


# ----------------------------------------------------------------------------- manifest


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(folder: Path) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    entries = {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files}
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps({"files": entries}, indent=1))
    os.replace(tmp, folder / MANIFEST)


def verify_checkpoint(folder: str | Path) -> list[str]:
    """What is wrong with a checkpoint folder, file by file; empty when it is intact."""
    folder = Path(folder)
    try:
        entries = json.loads((folder / MANIFEST).read_text())["files"]
    except FileNotFoundError:
        return [f"{folder / MANIFEST}: missing (not a complete checkpoint)"]
    except (ValueError, KeyError, TypeError) as e:
        return [f"{folder / MANIFEST}: unreadable ({e})"]
    problems = []
    for name, expected in entries.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.stat().st_size != expected["bytes"]:
            problems.append(f"{path}: {path.stat().st_size} bytes, the manifest says {expected['bytes']} (truncated or overwritten)")
        elif _sha256(path) != expected["sha256"]:
            problems.append(f"{path}: content differs from the manifest's sha256 (corrupted)")
    return problems


# ----------------------------------------------------------------------------- listing


def list_checkpoints(root: str | Path) -> list[Path]:
    """Complete checkpoint folders (those with a manifest), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _STEP_DIR.match(p.name)) and p.is_dir() and (p / MANIFEST).is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | Path) -> Path | None:
    ckpts = list_checkpoints(root)
    return ckpts[-1] if ckpts else None


def newest_intact_checkpoint(root: str | Path, log: Callable[[str], None] = print) -> Path | None:
    """The newest checkpoint that matches its manifest. A bad one is reported file by file and
    skipped; when checkpoints exist but none is intact, that is an error listing them all."""
    ckpts = list_checkpoints(root)
    report = []
    for path in reversed(ckpts):
        problems = verify_checkpoint(path)
        if not problems:
            if report:
                log(f"[checkpoint] falling back to {path}")
            return path
        report += problems
        log(f"[checkpoint] {path} is damaged, not used:\n  " + "\n  ".join(problems))
    if ckpts:
        raise CheckpointError(f"no intact checkpoint in {root}:\n  " + "\n  ".join(report))
    return None


# ----------------------------------------------------------------------------- save / load


def weights_are_finite(model, rt=None) -> bool:
    """True on every process if every trainable weight (this process's shard of it) is finite."""
    finite = True
    for p in model.parameters():
        if not p.requires_grad:
            continue
        local = getattr(p, "ds_tensor", None)  # DeepSpeed ZeRO-3: this process's partition
        local = p if local is None else local
        if hasattr(local, "to_local"):  # FSDP2 DTensor
            local = local.to_local()
        if local.numel() and not bool(torch.isfinite(local.detach()).all()):
            finite = False
            break
    return not rt.any_rank(not finite) if rt is not None and rt.world_size > 1 else finite


def _inner_optimizer(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer wraps the torch one


@contextlib.contextmanager
def _single_process_quietly():
    """DCP warns on every single-process save and load that it assumes one process: we ask for it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


def _drop_frozen_aliases(model, model_state: dict[str, Any]) -> dict[str, Any]:
    """Remove the frozen parameters that torch's `ignore_frozen_params` leaves in: it drops the names
    of `model.named_parameters()`, which yields a tied tensor once, under its first name only. A
    frozen input embedding tied to the LM head (SmolLM2, Qwen3 small models, most tied models) is
    dropped as `embed_tokens.weight` and kept as `lm_head.weight`: every LoRA checkpoint of the
    embedded model carried its 113 MB embedding matrix. Every name of every frozen tensor goes."""
    # The same name-to-key translation as torch's own drop (strips DDP's `module.`, torch.compile's
    # and activation checkpointing's wrappers): a private helper of the module get_state_dict is in.
    from torch.distributed.checkpoint.state_dict import _get_fqns

    for name, param in model.named_parameters(remove_duplicate=False):
        if not param.requires_grad:
            for fqn in _get_fqns(model, name):
                model_state.pop(fqn, None)
    return model_state


def _dcp_state(model, optimizer) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    model_state, optim_state = get_state_dict(model, _inner_optimizer(optimizer),
                                              options=StateDictOptions(ignore_frozen_params=True))
    # Used to save and, as the target of dcp.load, to resume: a frozen tied weight is neither
    # written nor asked for (older checkpoints that hold it still load: DCP reads only what is asked).
    return {"model": _drop_frozen_aliases(model, model_state), "optimizer": optim_state}


def save_checkpoint(root: str | Path, step: int, model, optimizer, scheduler, state: dict[str, Any], keep: int = 2,
                    rt=None, config_yaml: str | None = None) -> Path:
    """Save the full training state. Every process must call this (`rt`, the recipe's Runtime,
    gives rank, process count, strategy and barrier; without it: one process). Weights that are
    not finite are never saved: that is an error, and the previous checkpoints stay."""
    import torch.distributed.checkpoint as dcp

    rank, world_size = (rt.rank, rt.world_size) if rt else (0, 1)
    strategy = rt.strategy if rt else "none"
    barrier = rt.barrier if rt else (lambda: None)
    root = Path(root)
    if not weights_are_finite(model, rt):
        raise CheckpointError(f"not saving {root / f'step-{step}'}: the trainable weights hold NaN or inf; the earlier "
                              f"checkpoints in {root} are kept")
    final = root / f"step-{step}"
    tmp = root / f".tmp-step-{step}"
    if rank == 0:
        for stale in root.glob(".tmp-step-*") if root.is_dir() else []:
            shutil.rmtree(stale, ignore_errors=True)  # left by a run killed while saving
        tmp.mkdir(parents=True)
    barrier()
    if strategy == "deepspeed":
        model.save_checkpoint(str(tmp / "deepspeed"), tag="state", save_latest=False)
    else:
        with _single_process_quietly():
            dcp.save(_dcp_state(model, optimizer), checkpoint_id=str(tmp / "model_optim"), no_dist=world_size == 1)
    torch.save(rng_state(), tmp / f"rng-rank{rank}.pt")
    if rank == 0:
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        (tmp / "state.json").write_text(json.dumps({"step": step, "world_size": world_size, "strategy": strategy,
                                                    **state}, indent=1))
        if config_yaml is not None:
            (tmp / "config.yaml").write_text(config_yaml)
    barrier()
    if rank == 0:
        write_manifest(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in list_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    barrier()
    return final


def _dcp_reason(e: BaseException) -> str:
    """One line on why a DCP load failed: DCP wraps each process's error in a CheckpointException
    whose own first line names only the ranks, so the first wrapped error is shown."""
    failures = getattr(e, "failures", None)
    if isinstance(failures, dict) and failures:
        e = next(iter(failures.values()))[0]
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"


def read_state(path: str | Path) -> dict[str, Any]:
    """A checkpoint's state.json (step, process count, strategy, the recipe's own entries)."""
    state_file = Path(path) / "state.json"
    try:
        state = json.loads(state_file.read_text())
        int(state["step"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{state_file}: unreadable ({e})") from e
    return state


def load_checkpoint(path: str | Path, model, optimizer, scheduler, rt=None) -> dict[str, Any]:
    """Restore a checkpoint in place on every process; returns its state.json contents. Errors
    name the file. On a different number of processes than it was saved with, the model and
    optimizer reshard (DCP); each process's RNG then starts a fresh stream seeded from
    (step, rank), since the saved per-process streams no longer map onto processes."""
    import torch.distributed.checkpoint as dcp

    path = Path(path)
    rank, world_size = (rt.rank, rt.world_size) if rt else (0, 1)
    strategy = rt.strategy if rt else "none"
    state = read_state(path)
    step = int(state["step"])
    saved_strategy = state.get("strategy", "none")
    if (saved_strategy == "deepspeed") != (strategy == "deepspeed"):
        raise CheckpointError(f"{path} was saved under {saved_strategy} and cannot be resumed under {strategy}: "
                              "DeepSpeed checkpoints hold the engine's own format")
    if strategy == "deepspeed":
        if state.get("world_size") != world_size:
            raise CheckpointError(f"{path} was saved by {state.get('world_size')} DeepSpeed processes; ZeRO partitions "
                                  f"the optimizer state by rank, so resume it on {state.get('world_size')} processes")
        where = path / "deepspeed"
        try:
            loaded, _ = model.load_checkpoint(str(where), tag="state", load_optimizer_states=True,
                                              load_lr_scheduler_states=False)
        except Exception as e:  # noqa: BLE001 - DeepSpeed raises many kinds; say which folder
            raise CheckpointError(f"{where}: cannot be loaded ({type(e).__name__}: {e})") from e
        if loaded is None:
            raise CheckpointError(f"{where}: DeepSpeed found no checkpoint there")
    else:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        where = path / "model_optim"
        target = _dcp_state(model, optimizer)
        try:
            with _single_process_quietly():
                dcp.load(target, checkpoint_id=str(where), no_dist=world_size == 1)
            # dcp.load has already failed on any trainable tensor the checkpoint lacks; strict=False
            # only lets the frozen weights (never saved) stay as they are.
            set_state_dict(model, _inner_optimizer(optimizer), model_state_dict=target["model"],
                           optim_state_dict=target["optimizer"],
                           options=StateDictOptions(ignore_frozen_params=True, strict=False))
        except (Exception, dcp.api.CheckpointException) as e:  # noqa: BLE001 - DCP raises many kinds (its own is a
            # BaseException, which `except Exception` lets through); say which folder and why
            raise CheckpointError(f"{where}: does not fit this model and optimizer ({_dcp_reason(e)})") from e
    scheduler_file = path / "scheduler.pt"
    try:
        scheduler.load_state_dict(torch.load(scheduler_file, weights_only=True))
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{scheduler_file}: cannot be loaded ({type(e).__name__}: {e})") from e
    rng_file = path / f"rng-rank{rank}.pt"
    if state.get("world_size", 1) == world_size:
        try:
            set_rng_state(torch.load(rng_file, weights_only=True))
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{rng_file}: cannot be loaded ({type(e).__name__}: {e})") from e
    else:
        seed = step * 1_000_003 + rank
        random.seed(seed)
        torch.manual_seed(seed)
    return state


def load_model_weights(path: str | Path, model) -> dict[str, Any]:
    """Load only the model part of a checkpoint into `model`, in one process, for evaluating it
    (`tiller eval curve`); returns its state.json. The checkpoint holds the trainable tensors
    only (a LoRA adapter, or every weight of full fine-tuning; frozen weights are never saved),
    so `model` must be built as the stage built it: the same starting model with the same LoRA
    settings (`models.load_policy`). A model that does not fit is an error naming the folder,
    and so is a DeepSpeed checkpoint (the engine's own format, not DCP). FSDP2 shards saved by
    several processes load whole (DCP reshards on load)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, set_model_state_dict

    path = Path(path)
    state = read_state(path)
    if state.get("strategy") == "deepspeed":
        raise CheckpointError(f"{path} was saved under DeepSpeed, in the engine's own format: its weights cannot be "
                              "loaded outside a DeepSpeed engine")
    where = path / "model_optim"
    options = StateDictOptions(ignore_frozen_params=True, strict=False)
    # Nested under "model" as save_checkpoint wrote it; the optimizer's entries are not read.
    target = {"model": _drop_frozen_aliases(model, get_model_state_dict(model, options=options))}
    if not target["model"]:
        raise CheckpointError(f"{path}: the model to load it into has no trainable weights, so nothing of the "
                              "checkpoint fits it (build it as the stage did, with its LoRA settings)")
    try:
        with _single_process_quietly():
            dcp.load(target, checkpoint_id=str(where), no_dist=True)
        # dcp.load has already failed on any of the model's trainable tensors the checkpoint lacks;
        # strict=False only lets the frozen weights (never saved) stay as they are.
        set_model_state_dict(model, target["model"], options=options)
    except (Exception, dcp.api.CheckpointException) as e:  # noqa: BLE001 - DCP's own error is a BaseException
        raise CheckpointError(f"{where}: does not fit this model ({_dcp_reason(e)})") from e
    return state
