"""Reward model stage: Bradley-Terry training on chosen/rejected pairs, and its evaluation.

    tiller reward --config FILE [--resume]      trains <run_dir>/reward/model
    tiller eval reward --config FILE [--model DIR]

Read top to bottom: encode pairs with the reward model's own chat template, build the model
(LoRA or full, score head always trained), then a plain loop: per optimizer step each process
takes its share of `pairs_per_step` pairs in micro-batches; chosen and rejected go through the
model in one concatenated forward; the loss is scaled so the gradient is the mean over the
global batch however it is split over accumulation steps and processes.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch

from tiller import losses
from tiller.chat import render_conversation
from tiller.checkpoint import save_checkpoint
from tiller.config import Config, to_yaml
from tiller.data.records import PreferencePair
from tiller.data.run_files import load_pairs
from tiller.degeneration import degenerate_rewrites
from tiller.data.splits import subset
from tiller.metrics import StepMetrics
from tiller.model_card import CardInfo
from tiller.frozen_prefix import FrozenOutputs, FrozenPrefix, ReusablePrefix
from tiller.models import (apply_lora, base_identity, enable_activation_checkpointing, load_frozen, load_reward_model,
                           load_tokenizer)
from tiller.pair_baselines import format_baselines, length_baselines, likelihood_baselines
from tiller.preference_logprobs import answer_token_counts, concatenated_logps, encode_preferences
from tiller.score_head import ScoreHead, packing_is_exact, score_groups, score_sequences, shared_prefix_is_exact
from tiller.tracking import Tracker
from tiller.training import (
    Runtime,
    gradient_accumulation,
    map_over_ranks,
    prepare_for_training,
    rank_batches,
    resume_latest,
    save_trained_model,
    seed_per_rank,
    setup_runtime,
    show_progress,
    step_indices,
    trainable_parameter_count,
    use_gradient_checkpointing,
)


@dataclass
class EncodedPair:
    chosen: list[int]
    rejected: list[int]
    margin: float
    domain: str | None
    prompt: list[dict]
    chosen_text: str
    rejected_text: str


def judge_subset(reward_subset: str) -> str:
    if reward_subset == "all":
        raise ValueError(
            "the judge must be trained on pairs the RLOO reward model never saw: set "
            "reward.train_subset: first_half (the judge then takes second_half)"
        )
    return "second_half" if reward_subset == "first_half" else "first_half"


def encode_pairs(pairs, tokenizer, max_length: int, truncation: str, enable_thinking=None) -> tuple[list[EncodedPair], int]:
    """Token ids of prompt+chosen and prompt+rejected; returns (encoded, number dropped as too long)."""
    encoded, dropped = [], 0
    for pair in pairs:
        _, chosen_text = render_conversation(tokenizer, pair.prompt, pair.chosen, enable_thinking)
        _, rejected_text = render_conversation(tokenizer, pair.prompt, pair.rejected, enable_thinking)
        ids = tokenizer([chosen_text, rejected_text], add_special_tokens=False)["input_ids"]
        if max(len(ids[0]), len(ids[1])) > max_length:
            if truncation == "drop":
                dropped += 1
                continue
            ids = [x[-max_length:] for x in ids]  # cut from the left: the prompt's start goes first
        encoded.append(EncodedPair(ids[0], ids[1], float(pair.margin), pair.domain, pair.prompt, pair.chosen, pair.rejected))
    return encoded, dropped


def degenerate_pairs(pairs: list[PreferencePair], share: float, seed: int) -> list[PreferencePair]:
    """round(share x len(pairs)) pairs, each one pair's prompt and chosen answer against a
    degenerate rewrite of that answer (the kinds in turn), margin 3.0 (HelpSteer3's strongest
    preference). Which pairs, and the rewrites, depend only on `seed`."""
    rng = random.Random(seed)
    picked = sorted(rng.sample(range(len(pairs)), round(share * len(pairs))))
    rewrites = degenerate_rewrites([pairs[i].chosen for i in picked], rng)
    return [PreferencePair(prompt=pairs[i].prompt, chosen=pairs[i].chosen, rejected=rewrite, margin=3.0,
                           domain=pairs[i].domain, language=pairs[i].language, source_row=pairs[i].source_row)
            for i, rewrite in zip(picked, rewrites)]


def score_pairs(scorer: torch.nn.Module, batch: list[EncodedPair], pad_id: int, device,
                layout: str = "padded") -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen scores, rejected scores) of the pairs in one forward (`score_side_by_side`)."""
    scores = score_side_by_side(scorer, [[p.chosen, p.rejected] for p in batch], pad_id, device, layout)
    return scores[:, 0], scores[:, 1]


def score_side_by_side(scorer: torch.nn.Module, groups: list[list[list[int]]], pad_id: int, device,
                       layout: str, frozen: ReusablePrefix | None = None) -> torch.Tensor:
    """Scores [n, k] of n groups of k sequences that share a prompt (a pair's chosen and rejected
    answers, and for the degenerate check a rewrite of the chosen one) in one forward: every
    sequence padded or packed into one row, or each group in its own row with the prompt once.
    `frozen`: the frozen leading layers through a store of their outputs (`_reusable_prefix`)."""
    if layout == "shared_prompt":
        return score_groups(scorer, groups, pad_id, device, frozen).float().view(len(groups), -1)
    k = len(groups[0])
    side_major = [group[j] for j in range(k) for group in groups]  # all first sequences, then all second, ...
    return score_sequences(scorer, side_major, pad_id, device, layout == "packed", frozen).float().view(k, len(groups)).T


def _reusable_prefix(rt: Runtime, scorer: ScoreHead, outputs: FrozenOutputs | None, name: str,
                     cfg: Config) -> ReusablePrefix | None:
    """The scorer's frozen leading layers (LoRA on the last layers) with their outputs kept in
    `outputs` under the base's identity, so that another reward model on the same base (the
    judge after the reward model, in one pipeline run) reuses them on the same pairs; None
    without a store, under FSDP / ZeRO-3 (which own the layers) or without frozen layers."""
    if outputs is None or rt.sharded:
        return None
    prefix = FrozenPrefix.of(scorer.model)
    return None if prefix is None else ReusablePrefix(prefix, outputs, base_identity(name, cfg.model))


def choose_layout(rcfg, scorer: torch.nn.Module, probe: list[EncodedPair], pad_id: int, device) -> str:
    """reward.shared_prompt, else reward.packing, where it gives this model's padded scores on
    the shortest and the longest pair of `probe` (real pairs: two of different lengths check
    the padding too, at a quarter of a micro-batch's cost); else padded."""
    if not probe:
        return "padded"
    if len(probe) > 2:
        probe = [min(probe, key=_pair_length), max(probe, key=_pair_length)]
    if rcfg.shared_prompt and shared_prefix_is_exact(scorer, [[p.chosen, p.rejected] for p in probe], pad_id, device):
        return "shared_prompt"
    if rcfg.packing and packing_is_exact(scorer, [s for p in probe for s in (p.chosen, p.rejected)], pad_id, device):
        return "packed"
    return "padded"


def _pair_length(pair: EncodedPair) -> int:
    return len(pair.chosen) + len(pair.rejected)


def describe_layout(rcfg, layout: str) -> str:
    asked = "shared_prompt" if rcfg.shared_prompt else "packed" if rcfg.packing else "padded"
    text = {"padded": "padded", "packed": "packed into one row (checked exact)",
            "shared_prompt": "each pair in one row, the prompt its answers share computed once (checked exact)"}[layout]
    if asked != layout:
        text += f" (reward.{'shared_prompt' if rcfg.shared_prompt else 'packing'} gave other scores than padding here)"
    return text


@torch.no_grad()
def evaluate_pairs(scorer, pairs: list[EncodedPair], pad_id: int, rt: Runtime, batch_size: int = 8, num_samples: int = 4,
                   layout: str = "padded", rewrites: list[list[int]] | None = None,
                   frozen: ReusablePrefix | None = None) -> dict:
    """Pairwise accuracy with a Wilson 95% interval, mean margin, by domain and by strength; with
    `rewrites` (token ids of a degenerate rewrite of each pair's chosen answer,
    `degenerate_rewrite_ids`) also the degenerate check, each rewrite scored in its pair's
    forward (in its row, after the same prompt, under the shared_prompt layout). `frozen` as in
    `score_side_by_side`.

    The pairs are shared out between the processes (every process returns the same report)."""
    if not pairs:
        return {"n": 0} if rewrites is None else {"n": 0, "degenerate_check": {"n": 0}}
    was_training = scorer.training
    scorer.eval()

    groups = [[p.chosen, p.rejected] + ([rewrites[i]] if rewrites is not None else []) for i, p in enumerate(pairs)]
    # Pairs of similar length share a padded batch (the pairs keep their order in the report).
    scores = map_over_ranks(rt, len(pairs), batch_size,
                            lambda ids: score_side_by_side(scorer, [groups[i] for i in ids], pad_id, rt.device, layout,
                                                           frozen),
                            lengths=[max(map(len, g)) for g in groups], width=len(groups[0]))
    scorer.train(was_training)
    c, r = scores[:, :2].float().cpu().T
    correct = (c > r).float() + 0.5 * (c == r).float()
    low, high = losses.accuracy_interval(float(correct.sum()), len(pairs))
    report = {
        "n": len(pairs),
        "accuracy": float(correct.mean()),
        "accuracy_ci95": [low, high],
        "mean_margin": float((c - r).mean()),
        "by_domain": {},
        "by_strength": {},
        "samples": [],
    }
    for key, values in (("by_domain", [p.domain or "unknown" for p in pairs]),
                        ("by_strength", [str(int(p.margin)) for p in pairs])):
        for value in sorted(set(values)):
            idx = torch.tensor([i for i, v in enumerate(values) if v == value])
            report[key][value] = {"n": len(idx), "accuracy": float(correct[idx].mean())}
    for i in range(min(num_samples, len(pairs))):
        p = pairs[i]
        report["samples"].append({
            "prompt": p.prompt[-1]["content"], "chosen": p.chosen_text, "rejected": p.rejected_text,
            "chosen_score": float(c[i]), "rejected_score": float(r[i]),
        })
    if rewrites is not None:
        report["degenerate_check"] = degenerate_check(c, scores[:, 2].float().cpu())
    return report


def degenerate_rewrite_ids(val: list[EncodedPair], tokenizer, cfg: Config) -> list[list[int]]:
    """Token ids of one degenerate rewrite of each validation pair's chosen answer, after the
    pair's prompt: the kinds in turn, seed 0, so every model meets the same rewrites."""
    ids = []
    for p, text in zip(val, degenerate_rewrites([p.chosen_text for p in val], random.Random(0))):
        _, rendered = render_conversation(tokenizer, p.prompt, text, cfg.model.enable_thinking)
        ids.append(tokenizer(rendered, add_special_tokens=False)["input_ids"][-cfg.reward.train.max_length:])
    return ids


def degenerate_check(chosen_scores: torch.Tensor, rewrite_scores: torch.Tensor) -> dict:
    """How often a chosen answer scores above the degenerate rewrite of it (ties half), with a
    Wilson 95% interval, and the mean margin."""
    chosen, rewrites = chosen_scores.double(), rewrite_scores.double()
    correct = (chosen > rewrites).double() + 0.5 * (chosen == rewrites).double()
    low, high = losses.accuracy_interval(float(correct.sum()), len(chosen))
    return {"n": len(chosen), "accuracy": float(correct.mean()), "accuracy_ci95": [low, high],
            "mean_margin": float((chosen - rewrites).mean())}


def format_degenerate_check(check: dict, prefix: str) -> str:
    if not check.get("n"):
        return f"{prefix} degenerate check: no validation pairs"
    lo, hi = check["accuracy_ci95"]
    return (f"{prefix} degenerate check: chosen answer above a degenerate rewrite of it in {check['accuracy']:.3f} "
            f"(95% CI {lo:.3f}-{hi:.3f}) of {check['n']} validation pairs, mean margin {check['mean_margin']:.3f}")


def format_eval(report: dict, title: str) -> str:
    if not report.get("n"):
        return f"{title}: no pairs to evaluate"
    lo, hi = report["accuracy_ci95"]
    lines = [f"{title}: pairwise accuracy {report['accuracy']:.3f} (95% CI {lo:.3f}-{hi:.3f}) on {report['n']} pairs, "
             f"mean margin {report['mean_margin']:.3f}"]
    for key, label in (("by_domain", "domain"), ("by_strength", "|preference|")):
        parts = [f"{k}: {v['accuracy']:.3f} (n={v['n']})" for k, v in report[key].items()]
        lines.append(f"  by {label}: " + ", ".join(parts))
    return "\n".join(lines)


def _build_model(cfg: Config, name: str, tokenizer, device: torch.device):
    rcfg = cfg.reward
    model = load_reward_model(name, cfg.model, device=str(device), pad_token_id=tokenizer.pad_token_id)
    if use_gradient_checkpointing(cfg.model, device):
        enable_activation_checkpointing(model)
    if rcfg.lora.enabled:
        model = apply_lora(model, rcfg.lora, "SEQ_CLS")
    return model


def run(cfg: Config, stage: str = "reward", resume: bool = False, stop_after: int | None = None,
        accept_config_changes: bool = False, frozen_outputs: FrozenOutputs | None = None) -> Path:
    """Train a reward model; `stage` is "reward" or "judge" (the held-out judge for evaluation).

    `stop_after` ends the loop after that many steps without finishing (tests use it to
    simulate a killed run). `frozen_outputs` keeps the frozen layers' outputs on the validation
    pairs for the next stage on the same base, and reuses the previous one's (the pipeline's)."""
    rcfg = cfg.reward
    rt = setup_runtime(cfg.seed, cfg.model.mixed_precision)
    out = Path(cfg.run_dir) / stage
    which = rcfg.train_subset if stage == "reward" else judge_subset(rcfg.train_subset)
    name = rcfg.model or cfg.model.name
    if rt.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(to_yaml(cfg))

    tokenizer = load_tokenizer(name, cfg.model)
    train_pairs = subset(load_pairs(cfg.run_dir, "train"), which)
    val_pairs = load_pairs(cfg.run_dir, "validation")
    added = degenerate_pairs(train_pairs, rcfg.degenerate_negatives, cfg.seed) if stage == "reward" else []
    train_pairs = train_pairs + added
    train, dropped_train = encode_pairs(train_pairs, tokenizer, rcfg.train.max_length, rcfg.train.truncation, cfg.model.enable_thinking)
    val, dropped_val = encode_pairs(val_pairs, tokenizer, rcfg.train.max_length, rcfg.train.truncation, cfg.model.enable_thinking)

    t = rcfg.train
    accum = gradient_accumulation(t.pairs_per_step, t.micro_batch_per_device, rt.world_size, "pairs")
    steps_per_epoch = len(train) // t.pairs_per_step
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train)} training pairs are fewer than reward.train.pairs_per_step={t.pairs_per_step}")
    total_steps = t.max_steps or int(math.ceil(t.epochs * steps_per_epoch))
    rt.print(
        f"[{stage}] model {name} | pairs: train {len(train)} ({which}; {dropped_train} dropped > {t.max_length} tokens), "
        f"validation {len(val)} ({dropped_val} dropped)\n"
        + (f"[{stage}] train pairs include {len(added)} degenerate negatives (reward.degenerate_negatives "
           f"{rcfg.degenerate_negatives}): a chosen answer against a degenerate rewrite of it\n" if added else "") +
        f"[{stage}] {t.pairs_per_step} pairs/step = {t.micro_batch_per_device} per micro-batch x {accum} accumulation "
        f"x {rt.world_size} process(es); {steps_per_epoch} steps/epoch, {total_steps} steps"
        f"{', each of pairs of similar length' if t.group_by_length else ''}"
    )

    model = _build_model(cfg, name, tokenizer, rt.device)
    trainable, total = trainable_parameter_count(model)
    rt.print(f"[{stage}] trainable parameters {trainable:,} of {total:,} ({'LoRA' if rcfg.lora.enabled else 'full'})")
    scorer, unwrapped, optimizer, scheduler, updates = prepare_for_training(
        rt, ScoreHead(model), rcfg.optim, total_steps, accum, t.micro_batch_per_device, stage)

    seed_per_rank(rt, cfg.seed)  # every model is built: from here each process draws its own dropout stream
    start_step = 0
    ckpt_root = out / "checkpoints"
    if resume:
        start_step = resume_latest(rt, ckpt_root, scorer, optimizer, scheduler, stage, cfg, "reward",
                                   total_steps, accept_config_changes)["step"]
        updates.start = start_step

    tracker = Tracker(out, cfg.tracking, enabled=rt.is_main, run_config={"stage": stage})
    pad_id = tokenizer.pad_token_id
    layout = choose_layout(rcfg, unwrapped, train[: t.micro_batch_per_device], pad_id, rt.device)
    rt.print(f"[{stage}] sequences per forward: {describe_layout(rcfg, layout)}")
    lengths = [max(len(p.chosen), len(p.rejected)) for p in train] if t.group_by_length else None
    from tqdm.auto import tqdm

    bar = tqdm(total=total_steps, initial=start_step, desc=stage, disable=not (rt.is_main and show_progress()))
    started = time.time()
    scorer.train()
    for step in range(start_step, total_steps):
        if stop_after is not None and step >= stop_after:
            break
        mine = step_indices(len(train), t.pairs_per_step, step, cfg.seed, rt.rank, rt.world_size, lengths)
        m = StepMetrics()
        for micro in range(accum):
            batch = [train[i] for i in mine[micro * t.micro_batch_per_device:(micro + 1) * t.micro_batch_per_device]]
            with updates.micro_batch(micro):
                chosen, rejected = score_pairs(scorer, batch, pad_id, rt.device, layout)
                margins = torch.tensor([p.margin for p in batch], device=rt.device)
                loss, metrics = losses.bradley_terry_loss(chosen, rejected, margins, rcfg.margin_scale, rcfg.center_coef)
                updates.backward(loss * len(batch) / t.pairs_per_step)  # this micro-batch's share of the global mean
            for k, v in metrics.items():  # means over the micro-batch's pairs
                m.mean(k, v, len(batch))
        grad_norm = updates.step()
        done = step + 1
        step_metrics = m.reduce(rt)  # means over every process's pairs of the step
        step_metrics.update({"train/grad_norm": float(grad_norm), "train/lr": scheduler.get_last_lr()[0],  # equal everywhere
                             "guard/skipped_updates": updates.skipped,
                             "train/epoch": done / steps_per_epoch})
        if done % t.log_every == 0:
            tracker.log(step_metrics, done)
        bar.set_postfix(loss=f"{step_metrics['loss/bt']:.3f}", acc=f"{step_metrics['reward/accuracy']:.2f}")
        bar.update(1)
        if t.eval_every and done % t.eval_every == 0 and done < total_steps:
            # Every process scores its share; the unwrapped module, so no DDP gradient hooks.
            report = evaluate_pairs(unwrapped, val, pad_id, rt, t.micro_batch_per_device, 0, layout)
            tracker.log({"eval/accuracy": report.get("accuracy", 0.0), "eval/mean_margin": report.get("mean_margin", 0.0)}, done)
            if rt.is_main:
                bar.write(f"[{stage}] step {done}: validation accuracy {report.get('accuracy', 0.0):.3f}")
        if t.save_every and done % t.save_every == 0 and done < total_steps:
            save_checkpoint(ckpt_root, done, scorer, optimizer, scheduler, {"stage": stage}, t.keep_checkpoints, rt,
                            config_yaml=to_yaml(cfg))
    bar.close()
    if stop_after is not None and stop_after < total_steps:
        tracker.close()
        return out

    elapsed = time.time() - started
    evaluation_started = time.time()
    frozen = _reusable_prefix(rt, unwrapped, frozen_outputs, name, cfg)
    reused_before = frozen_outputs.reused if frozen_outputs is not None else 0
    report = evaluate_pairs(unwrapped, val, pad_id, rt, t.micro_batch_per_device, rcfg.num_eval_samples, layout,
                            degenerate_rewrite_ids(val, tokenizer, cfg), frozen)
    if frozen is not None and frozen_outputs.reused > reused_before:
        rt.print(f"[{stage}] validation: the first {frozen.prefix.layers} layers' output (no adapter there) reused "
                 f"from the previous reward model on the same base for {frozen_outputs.reused - reused_before} of "
                 f"{len(rank_batches(len(val), t.micro_batch_per_device, rt.rank, rt.world_size))} batches")
    report.update({"train_pairs": len(train), "steps": total_steps, "train_seconds": elapsed, "subset": which,
                   "degenerate_negatives": len(added)})
    tracker.log({"eval/accuracy": report.get("accuracy", 0.0), "eval/mean_margin": report.get("mean_margin", 0.0)}, total_steps)
    rt.print(format_eval(report, f"[{stage}] validation"))
    rt.print(format_degenerate_check(report["degenerate_check"], f"[{stage}]"))
    rt.print(f"[{stage}] trained in {elapsed:.0f} s; validation and degenerate check in "
             f"{time.time() - evaluation_started:.0f} s")
    rt.print(f"[{stage}] {updates.describe()}")
    save_trained_model(rt, scorer, unwrapped, tokenizer, out / "model", rcfg.lora.merge_on_save,
                       rebuild=lambda: ScoreHead(_build_model(cfg, name, tokenizer, torch.device("cpu"))),
                       select=lambda scorer: scorer.model, card=CardInfo(cfg, stage, name, report))
    if rt.is_main:
        (out / "eval.json").write_text(json.dumps(report, indent=1))
        (out / "DONE").write_text(f"{total_steps} steps\n")
        print(f"[{stage}] saved {out / 'model'}", flush=True)
    tracker.close()
    rt.barrier()
    return out


def run_eval(cfg: Config, model_path: str | None = None, stage: str = "reward") -> dict:
    """`tiller eval reward`: score the validation pairs with a trained reward model."""
    path = model_path or str(Path(cfg.run_dir) / stage / "model")
    if not Path(path).exists():
        raise FileNotFoundError(f"no reward model at {path}: run `tiller reward` first or pass --model")
    rt = setup_runtime(cfg.seed)
    device = rt.device
    tokenizer = load_tokenizer(path, cfg.model)
    model = load_reward_model(path, cfg.model, device=str(device), pad_token_id=tokenizer.pad_token_id)
    val, dropped = encode_pairs(load_pairs(cfg.run_dir, "validation"), tokenizer, cfg.reward.train.max_length,
                                cfg.reward.train.truncation, cfg.model.enable_thinking)
    scorer = ScoreHead(model)
    layout = choose_layout(cfg.reward, scorer, val[: cfg.reward.train.micro_batch_per_device], tokenizer.pad_token_id,
                           device)
    report = evaluate_pairs(scorer, val, tokenizer.pad_token_id, rt, cfg.reward.train.micro_batch_per_device,
                            cfg.reward.num_eval_samples, layout, degenerate_rewrite_ids(val, tokenizer, cfg))
    report["dropped_too_long"] = dropped
    del model, scorer  # the likelihood baseline loads the starting model next
    report["baselines"] = length_baselines([len(p.chosen) for p in val], [len(p.rejected) for p in val])
    if cfg.reward.likelihood_baseline and val:
        report["baselines"].update(_likelihood_baselines(cfg, val, rt))
    print(format_eval(report, f"reward model {path}"))
    print(format_degenerate_check(report["degenerate_check"], " "))
    print("  baselines on the same pairs (no training):")
    print("\n".join(format_baselines(report["baselines"])))
    for s in report.get("samples", []):
        print(f"  - prompt: {s['prompt'][:80]!r}\n    chosen {s['chosen_score']:+.2f} | rejected {s['rejected_score']:+.2f}")
    out = Path(cfg.run_dir) / "eval"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stage}_model.json").write_text(json.dumps(report, indent=1))
    return report


def _likelihood_baselines(cfg: Config, pairs: list[EncodedPair], rt: Runtime) -> dict[str, dict]:
    """The starting model's (model.name) preference on the same pairs: summed and per-token
    log-likelihood of each answer (tiller.pair_baselines)."""
    tokenizer = load_tokenizer(cfg.model.name, cfg.model)
    model = load_frozen(cfg.model.name, cfg.model, rt.device)
    # Re-encoded with the causal LM's answer targets; cut from the left, never dropped, so the
    # pairs are exactly the ones the reward model was scored on.
    encoded, _ = encode_preferences([SimpleNamespace(prompt=p.prompt, chosen=p.chosen_text, rejected=p.rejected_text)
                                     for p in pairs], tokenizer, cfg.reward.train.max_length, "left",
                                    cfg.model.enable_thinking)
    rt.print(f"[eval] starting model's log-likelihood of {len(encoded)} pairs ({cfg.model.name})")
    both = map_over_ranks(rt, len(encoded), cfg.reward.train.micro_batch_per_device,
                          lambda ids: torch.stack(concatenated_logps(model, [encoded[i] for i in ids],
                                                                     tokenizer.pad_token_id, rt.device), 1),
                          lengths=[max(len(p.chosen_ids), len(p.rejected_ids)) for p in encoded], width=2)
    counts = [answer_token_counts(p) for p in encoded]
    return likelihood_baselines(both[:, 0].float().tolist(), both[:, 1].float().tolist(),
                                [c for c, _ in counts], [r for _, r in counts])

