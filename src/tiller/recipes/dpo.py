"""DPO stage: Direct Preference Optimization on chosen/rejected pairs.

    tiller dpo --config FILE [--resume]      trains <run_dir>/dpo/model

Read top to bottom: encode prompt+chosen and prompt+rejected with the policy's chat template,
marking the answer's tokens (content and end-of-turn) the way SFT marks assistant turns; the policy
starts from `dpo.model` or `model.name` (often the SFT output). The reference is the same model
before training: the base with the LoRA adapter disabled (one copy of the weights), a frozen copy
for full fine-tuning, or (`precompute_ref_logps`) log-probs computed once before training and
cached in `<run_dir>/dpo/ref_logps.pt`. A sequence's log-prob is the sum of its answer tokens'
log-probs; chosen and rejected go through the model in one concatenated forward (`dpo.shared_prompt`:
each pair in one row, the prompt they share once). The loop is the reward stage's: per step each
process takes its share of `pairs_per_step` pairs in micro-batches, and the loss is scaled so the
gradient is the mean over the global batch however it is split. The implicit-reward preference
accuracy on the validation pairs is measured before training, every `eval_every` steps and at the
end.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from array import array
from pathlib import Path

import torch

from tiller import losses
from tiller.checkpoint import save_checkpoint
from tiller.config import Config, ConfigError, to_yaml
from tiller.data.run_files import load_pairs
from tiller.data.splits import subset
from tiller.logprobs import describe_logprob_path
from tiller.metrics import StepMetrics
from tiller.model_card import CardInfo
from tiller.preference_logprobs import EncodedPreference, concatenated_logps, encode_preferences, shared_prompt_is_exact
from tiller.models import describe_origin, load_frozen, load_policy, load_tokenizer, policy_start, write_origin
from tiller.tracking import Tracker
from tiller.training import (
    Runtime,
    gradient_accumulation,
    map_over_ranks,
    prepare_for_training,
    resume_latest,
    save_trained_model,
    seed_per_rank,
    setup_runtime,
    show_progress,
    step_indices,
    trainable_parameter_count,
    use_gradient_checkpointing,
)


class Reference:
    """Reference log-probs: the adapter-disabled base under LoRA, or a frozen copy."""

    def __init__(self, policy, frozen=None, shared_prompt: bool = False):
        self.policy = policy  # the unwrapped (peft) policy
        self.frozen = frozen
        self.shared_prompt = shared_prompt

    @torch.no_grad()
    def logps(self, batch: list[EncodedPreference], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        if self.frozen is not None:
            return concatenated_logps(self.frozen, batch, pad_id, device, self.shared_prompt)
        was_training = self.policy.training
        self.policy.eval()  # no LoRA dropout: the reference is deterministic
        try:
            with self.policy.disable_adapter():
                return concatenated_logps(self.policy, batch, pad_id, device, self.shared_prompt)
        finally:
            self.policy.train(was_training)


@torch.no_grad()
def all_logps(fn, pairs: list[EncodedPreference], rt: Runtime, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """fn(batch) -> (chosen, rejected) over all pairs, shared out between processes; every
    process returns the full [N] tensors."""
    both = map_over_ranks(rt, len(pairs), batch_size, lambda ids: torch.stack(fn([pairs[i] for i in ids]), 1), width=2)
    return both[:, 0].float(), both[:, 1].float()


def evaluate(model, pairs: list[EncodedPreference], ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
             cfg: Config, rt: Runtime, pad_id: int, shared_prompt: bool = False) -> dict:
    """Implicit-reward preference accuracy on held-out pairs: beta * (log pi - log pi_ref) of
    the chosen answer above the rejected one's (ties count half)."""
    d = cfg.dpo
    if not pairs:
        return {"n": 0}
    was_training = model.training
    model.eval()
    chosen, rejected = all_logps(lambda b: concatenated_logps(model, b, pad_id, rt.device, shared_prompt), pairs, rt,
                                 d.train.micro_batch_per_device)
    model.train(was_training)
    _, metrics = losses.dpo_loss(chosen, rejected, ref_chosen, ref_rejected, d.beta, d.label_smoothing, d.loss_type)
    return {"n": len(pairs), "accuracy": float(metrics["rewards/accuracies"]), "margin": float(metrics["rewards/margins"]),
            "loss": float(metrics["loss/dpo"])}


def _fingerprint(name: str, cfg: Config, shared_prompt: bool, *sets: list[EncodedPreference]) -> str:
    """What the cached reference log-probs depend on: the reference model, the exact tokens, and
    the layout (the same sums up to float rounding)."""
    h = hashlib.sha256(f"{name}|{cfg.model.dtype}|{cfg.model.revision}|{shared_prompt}".encode())
    for pairs in sets:
        h.update(str(len(pairs)).encode())
        for p in pairs:
            for seq in (p.chosen_ids, p.chosen_labels, p.rejected_ids, p.rejected_labels):
                h.update(array("q", seq).tobytes() + b"|")
    return h.hexdigest()


def _build_policy(cfg: Config, name: str, device: torch.device):
    """(policy, origin). A saved adapter (e.g. SFT with merge_on_save false) is merged: the
    reference is then the starting policy, not the base under it."""
    return load_policy(name, cfg.model, cfg.dpo.lora, device, adapter="merge",
                       gradient_checkpointing=use_gradient_checkpointing(cfg.model, device))


def run(cfg: Config, resume: bool = False, stop_after: int | None = None, accept_config_changes: bool = False) -> Path:
    """Train with DPO; `stop_after` ends the loop early without finishing (tests use it to
    simulate a killed run)."""
    d, t = cfg.dpo, cfg.dpo.train
    if d.loss_type == "ipo" and d.label_smoothing:
        raise ConfigError("config key 'dpo.label_smoothing': applies to loss_type 'sigmoid' only, not 'ipo'")
    rt = setup_runtime(cfg.seed, cfg.model.mixed_precision)
    out = Path(cfg.run_dir) / "dpo"
    name, chosen_by = policy_start(cfg, "dpo")
    if rt.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(to_yaml(cfg))

    # ---- data and batch arithmetic
    tokenizer = load_tokenizer(name, cfg.model)
    train, dropped = encode_preferences(subset(load_pairs(cfg.run_dir, "train"), d.train_subset), tokenizer, t.max_length, t.truncation,
                                        cfg.model.enable_thinking)
    val, dropped_val = encode_preferences(load_pairs(cfg.run_dir, "validation"), tokenizer, t.max_length, t.truncation,
                                          cfg.model.enable_thinking)
    accum = gradient_accumulation(t.pairs_per_step, t.micro_batch_per_device, rt.world_size, "pairs")
    steps_per_epoch = len(train) // t.pairs_per_step
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train)} training pairs are fewer than dpo.train.pairs_per_step={t.pairs_per_step}")
    total_steps = t.max_steps or int(math.ceil(t.epochs * steps_per_epoch))
    ref_kind = ("precomputed once" if d.precompute_ref_logps else "live") + (
        ", base with the adapter disabled" if d.lora.enabled else ", frozen copy")
    rt.print(
        f"[dpo] policy {name} | pairs: train {len(train)} ({dropped} dropped > {t.max_length} tokens), "
        f"validation {len(val)} ({dropped_val} dropped)\n"
        f"[dpo] {t.pairs_per_step} pairs/step = {t.micro_batch_per_device} per micro-batch (x2 sequences: chosen + "
        f"rejected in one forward) x {accum} accumulation x {rt.world_size} process(es); {steps_per_epoch} steps/epoch, "
        f"{total_steps} steps{', each of pairs of similar length' if t.group_by_length else ''}\n"
        f"[dpo] loss {d.loss_type}, beta {d.beta}, label smoothing {d.label_smoothing}; reference: {ref_kind}"
    )

    # ---- policy and reference
    policy, origin = _build_policy(cfg, name, rt.device)
    rt.print(f"[dpo] {describe_origin(origin, chosen_by)}")
    if rt.is_main:
        write_origin(out, origin, chosen_by)
    trainable, total = trainable_parameter_count(policy)
    rt.print(f"[dpo] trainable parameters {trainable:,} of {total:,} ({'LoRA' if d.lora.enabled else 'full'})")
    model, unwrapped, optimizer, scheduler, updates = prepare_for_training(rt, policy, d.optim, total_steps, accum,
                                                                          t.micro_batch_per_device, "dpo")
    rt.print(f"[dpo] {describe_logprob_path(model)}")
    pad_id = tokenizer.pad_token_id
    mb = t.micro_batch_per_device
    # Each pair in one row with its prompt once, where that gives this model's padded log-probs on
    # real pairs (every process decides alike: all run the same forwards).
    shared = bool(d.shared_prompt and (train or val)) and not rt.any_rank(
        not shared_prompt_is_exact(unwrapped, (train or val)[:mb], pad_id, rt.device))
    rt.print("[dpo] sequences per forward: " + (
        "each pair in one row, the prompt its answers share computed once (checked exact)" if shared else
        "chosen and rejected padded" + (" (dpo.shared_prompt gave other log-probs than padding here)"
                                        if d.shared_prompt else "")))

    seed_per_rank(rt, cfg.seed)  # every model is built: from here each process draws its own dropout stream
    start_step, state = 0, {"stage": "dpo"}
    ckpt_root = out / "checkpoints"
    if resume:
        saved = resume_latest(rt, ckpt_root, model, optimizer, scheduler, "dpo", cfg, "dpo",
                              total_steps, accept_config_changes)
        start_step = saved["step"]
        updates.start = start_step
        if start_step:
            state["accuracy_before"] = saved.get("accuracy_before")

    # Reference log-probs. The validation ones are always computed once (the reference never
    # changes); with precompute_ref_logps the training ones too, and cached on disk.
    ref = Reference(unwrapped, shared_prompt=shared) if d.lora.enabled else None
    if ref is None:
        with rt.unsharded_construction():  # frozen: each process keeps it whole
            ref = Reference(unwrapped, load_frozen(name, cfg.model, rt.device), shared)
    t0 = time.perf_counter()
    cache_file = out / "ref_logps.pt"
    fingerprint = _fingerprint(name, cfg, shared, train, val) if d.precompute_ref_logps else ""
    cached = None
    if d.precompute_ref_logps and resume and cache_file.is_file():
        cached = torch.load(cache_file, weights_only=True, map_location="cpu")
        if cached.get("fingerprint") != fingerprint:
            rt.print(f"[dpo] {cache_file} was computed for other data or another model: computing again")
            cached = None
    if cached is None:
        def ref_fn(batch):
            return ref.logps(batch, pad_id, rt.device)

        val_ref = all_logps(ref_fn, val, rt, mb)
        train_ref = all_logps(ref_fn, train, rt, mb) if d.precompute_ref_logps else None
        if d.precompute_ref_logps and rt.is_main:
            torch.save({"fingerprint": fingerprint, "train_chosen": train_ref[0].cpu(), "train_rejected": train_ref[1].cpu(),
                        "val_chosen": val_ref[0].cpu(), "val_rejected": val_ref[1].cpu()}, cache_file)
        rt.barrier()
    else:
        val_ref = (cached["val_chosen"].to(rt.device), cached["val_rejected"].to(rt.device))
        train_ref = (cached["train_chosen"].to(rt.device), cached["train_rejected"].to(rt.device))
        rt.print(f"[dpo] reference log-probs loaded from {cache_file}")
    if d.precompute_ref_logps:
        ref = None  # never used again: free the frozen copy
        rt.print(f"[dpo] reference log-probs of {len(train)} + {len(val)} pairs ready in {time.perf_counter() - t0:.1f} s")

    tracker = Tracker(out, cfg.tracking, enabled=rt.is_main, run_config={"stage": "dpo"})
    if start_step == 0:
        before = evaluate(unwrapped, val, *val_ref, cfg, rt, pad_id, shared)
        state["accuracy_before"] = before.get("accuracy")
        if val:
            tracker.log({"eval/rewards_accuracy": before["accuracy"], "eval/rewards_margins": before["margin"],
                         "eval/loss": before["loss"]}, 0)
            rt.print(f"[dpo] validation implicit-reward accuracy before training {before['accuracy']:.3f} on {len(val)} pairs")

    lengths = [max(len(p.chosen_ids), len(p.rejected_ids)) for p in train] if t.group_by_length else None
    from tqdm.auto import tqdm

    bar = tqdm(total=total_steps, initial=start_step, desc="dpo", disable=not (rt.is_main and show_progress()))
    started = time.time()
    model.train()
    for step in range(start_step, total_steps):
        if stop_after is not None and step >= stop_after:
            break
        t0 = time.perf_counter()
        mine = step_indices(len(train), t.pairs_per_step, step, cfg.seed, rt.rank, rt.world_size, lengths)
        m = StepMetrics()
        for micro in range(accum):
            ids = mine[micro * mb:(micro + 1) * mb]
            batch = [train[i] for i in ids]
            if train_ref is not None:
                ref_chosen, ref_rejected = train_ref[0][ids], train_ref[1][ids]
            else:
                ref_chosen, ref_rejected = ref.logps(batch, pad_id, rt.device)
            with updates.micro_batch(micro):
                chosen, rejected = concatenated_logps(model, batch, pad_id, rt.device, shared)
                loss, metrics = losses.dpo_loss(chosen, rejected, ref_chosen, ref_rejected, d.beta, d.label_smoothing,
                                                d.loss_type)
                updates.backward(loss * len(batch) / t.pairs_per_step)  # this micro-batch's share of the global mean
            for key, value in metrics.items():  # means over the micro-batch's pairs
                m.mean(key, value, len(batch))
        grad_norm = updates.step()
        done = step + 1
        # means over every process's pairs of the step; the rest is equal on every process
        step_metrics = {**m.reduce(rt), "train/grad_norm": float(grad_norm), "train/lr": scheduler.get_last_lr()[0],
                        "guard/skipped_updates": updates.skipped,
                        "train/epoch": done / steps_per_epoch, "time/step": time.perf_counter() - t0}
        logged = tracker.log(step_metrics, done) if done % t.log_every == 0 else {}
        if logged:
            bar.set_postfix(loss=f"{logged['loss/dpo']:.3f}", acc=f"{logged['rewards/accuracies']:.2f}")
        bar.update(1)
        if val and t.eval_every and done % t.eval_every == 0 and done < total_steps:
            report = evaluate(unwrapped, val, *val_ref, cfg, rt, pad_id, shared)
            tracker.log({"eval/rewards_accuracy": report["accuracy"], "eval/rewards_margins": report["margin"],
                         "eval/loss": report["loss"]}, done)
            if rt.is_main:
                bar.write(f"[dpo] step {done}: validation implicit-reward accuracy {report['accuracy']:.3f}")
        if t.save_every and done % t.save_every == 0 and done < total_steps:
            save_checkpoint(ckpt_root, done, model, optimizer, scheduler, state, t.keep_checkpoints, rt,
                            config_yaml=to_yaml(cfg))
    bar.close()
    if stop_after is not None and stop_after < total_steps:
        tracker.close()
        return out

    train_seconds = time.time() - started
    after = evaluate(unwrapped, val, *val_ref, cfg, rt, pad_id, shared)
    report = {"accuracy_before": state.get("accuracy_before"), "accuracy_after": after.get("accuracy"), "n": len(val),
              "margin_after": after.get("margin"), "loss_after": after.get("loss"), "train_pairs": len(train),
              "steps": total_steps, "train_seconds": train_seconds}
    if val:
        tracker.log({"eval/rewards_accuracy": after["accuracy"], "eval/rewards_margins": after["margin"],
                     "eval/loss": after["loss"]}, total_steps)
    if rt.is_main:
        b, a = report["accuracy_before"], report["accuracy_after"]
        fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
        print(f"[dpo] validation implicit-reward accuracy {fmt(b)} -> {fmt(a)} on {len(val)} pairs", flush=True)
        print(f"[dpo] trained in {train_seconds:.0f} s", flush=True)
        print(f"[dpo] {updates.describe()}", flush=True)
    save_trained_model(rt, model, unwrapped, tokenizer, out / "model", d.lora.merge_on_save,
                       rebuild=lambda: _build_policy(cfg, name, torch.device("cpu"))[0],
                       card=CardInfo(cfg, "dpo", name, report))
    if rt.is_main:
        (out / "eval.json").write_text(json.dumps(report, indent=1))
        (out / "DONE").write_text(f"{total_steps} steps\n")
        print(f"[dpo] saved {out / 'model'}", flush=True)
    tracker.close()
    rt.barrier()
    return out
