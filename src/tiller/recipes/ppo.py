"""PPO stage: policy and value model against a reward (Ouyang et al. 2022, with the conventions of
"The N Implementation Details of RLHF with PPO", Huang et al. 2023; docs/algorithms.md).

    tiller ppo --config FILE [--resume]      trains <run_dir>/ppo/model

One step, top to bottom:
  1. take `prompts_per_step` prompts (each process its own whole prompts);
  2. sample `completions_per_prompt` completions per prompt with the rollout engine;
  3. score them with the reward backend(s), as rloo does (tiller.rl_rollout);
  4. without gradients: the policy's log-probs and the value model's values (the rollout's
     "old" ones), and the reference log-probs (LoRA adapter disabled, or a frozen copy);
  5. per-token rewards r_t = -beta * KL_t, plus score - missing_eos_penalty*[no EOS] at the
     last token; GAE (gamma, lam) gives advantages and returns; advantages whitened over the
     whole step of every process;
  6. `ppo_epochs` passes over the step's completions in `num_mini_batches` shuffled
     mini-batches, one optimizer step each: clipped policy loss + vf_coef * clipped value loss,
     token means over the mini-batch's tokens of every process.
The policy and the value model are one module (tiller.value_model.PolicyWithValue): one
optimizer, one DDP wrapper, one checkpoint, one forward for both. Under LoRA the value model is
by default a second adapter on the policy's own base (`ppo.value_model`: shared / separate).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from tiller import losses
from tiller.checkpoint import save_checkpoint
from tiller.config import Config, to_yaml
from tiller.degeneration import is_degenerate
from tiller.logprobs import build_batch, describe_logprob_path
from tiller.metrics import StepMetrics
from tiller.model_card import CardInfo, rloo_figures
from tiller.models import describe_origin, load_frozen, load_tokenizer, policy_start, write_origin
from tiller.rl_rollout import (
    add_completion_metrics,
    make_reward_backends,
    non_finite_reason,
    reference_logprobs,
    rl_prompts,
    rl_total_steps,
    sampling_seed,
    score_completions,
    step_figures,
    without_dropout,
)
from tiller.rollout import Sampling, make_engine
from tiller.tracking import Tracker
from tiller.training import (
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
from tiller.value_model import (
    PolicyThroughBundle,
    build_policy_with_value,
    completion_logprobs_and_values,
    value_model_kind,
)


def run(cfg: Config, resume: bool = False, stop_after: int | None = None, accept_config_changes: bool = False) -> Path:
    p = cfg.ppo
    rt = setup_runtime(cfg.seed, cfg.model.mixed_precision)
    out = Path(cfg.run_dir) / "ppo"
    name, chosen_by = policy_start(cfg, "ppo")
    k = p.completions_per_prompt
    if rt.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(to_yaml(cfg))

    # ---- prompts and batch arithmetic
    tokenizer = load_tokenizer(name, cfg.model)
    prompts, dropped, extras = rl_prompts(cfg.run_dir, p, tokenizer, cfg.model.enable_thinking)
    if p.prompts_per_step % rt.world_size:
        raise ValueError(f"ppo.prompts_per_step={p.prompts_per_step} must be a multiple of the {rt.world_size} processes")
    rows = p.prompts_per_step // rt.world_size * k  # completions per process per step
    if rows % p.num_mini_batches or (rows // p.num_mini_batches) % p.micro_batch_per_device:
        raise ValueError(f"{rows} completions per process per step do not split into {p.num_mini_batches} mini-batch(es) "
                         f"of whole micro-batches of ppo.micro_batch_per_device={p.micro_batch_per_device}")
    mini = rows // p.num_mini_batches
    accum = mini // p.micro_batch_per_device
    completions_per_step = p.prompts_per_step * k
    total_steps = rl_total_steps(len(prompts), p, "ppo")
    updates_per_step = p.ppo_epochs * p.num_mini_batches  # optimizer steps per rollout step
    rt.print(
        f"[ppo] policy {name} | {len(prompts)} prompts ({dropped} dropped > {p.max_prompt_tokens} tokens)\n"
        f"[ppo] {p.prompts_per_step} prompts x {k} completions = {completions_per_step} completions/step over "
        f"{rt.world_size} process(es); per process {rows} = {p.num_mini_batches} mini-batch(es) of {mini} = "
        f"{p.micro_batch_per_device} per micro-batch x {accum} accumulation; {p.ppo_epochs} epoch(s) = "
        f"{updates_per_step} optimizer steps per step; {total_steps} steps ({total_steps * completions_per_step} episodes)\n"
        f"[ppo] GAE gamma {p.gamma} lam {p.lam} | KL {p.kl_estimator} x beta {p.beta} per token in the reward | "
        f"clip {p.clip_eps} | value clip {p.clip_value} x vf_coef {p.vf_coef} | whiten advantages {p.whiten_advantages}, "
        f"rewards {p.whiten_rewards}"
    )

    # ---- models: policy + value model (one module), reference, reward
    model_bundle, origin = _build(cfg, name, rt.device)
    rt.print(f"[ppo] {describe_origin(origin, chosen_by)}")
    if rt.is_main:
        write_origin(out, origin, chosen_by)
    turned_off = without_dropout(model_bundle)  # every RL forward without dropout, as in rloo (DESIGN.md)
    if turned_off:
        rt.print(f"[ppo] every RL forward runs without dropout: {turned_off} set to 0")
    reference = None
    if not p.lora.enabled:
        with rt.unsharded_construction():
            reference = load_frozen(name, cfg.model, rt.device)
    trainable, total = trainable_parameter_count(model_bundle)
    rt.print(f"[ppo] trainable parameters {trainable:,} of {total:,} (policy and value model, "
             f"{'LoRA' if p.lora.enabled else 'full'}; value model: {_VALUE_MODELS[value_model_kind(p)]})")
    # A LoRA reward model on the policy's starting weights scores on the policy's own base (a third
    # adapter beside the policy's and the value model's), as in rloo.
    with rt.unsharded_construction():
        reward_backends, mixed = make_reward_backends(
            p, cfg.run_dir, rt.device, policy=model_bundle.policy, policy_start=name,
            sharded=rt.sharded, log=lambda line: rt.print(f"[ppo] {line}"))
    model, unwrapped, optimizer, scheduler, updates = prepare_for_training(
        rt, model_bundle, p.optim, total_steps * updates_per_step, accum, p.micro_batch_per_device, "ppo")
    rt.print(f"[ppo] {describe_logprob_path(unwrapped.policy)}")
    # Generation and the reference call the policy alone; under FSDP2 through the bundle's forward.
    policy = PolicyThroughBundle(model, unwrapped.policy) if rt.strategy == "fsdp2" else unwrapped.policy
    engine = make_engine(p.rollout.engine, policy, tokenizer, p.rollout, cfg.model)
    if rt.sharded:
        engine.lockstep = rt.any_rank
    sampling = Sampling(p.rollout.max_new_tokens, p.rollout.temperature, p.rollout.top_p, p.rollout.top_k)

    seed_per_rank(rt, cfg.seed)
    start_step = 0
    ckpt_root = out / "checkpoints"
    if resume:
        start_step = resume_latest(rt, ckpt_root, model, optimizer, scheduler, "ppo", cfg, "ppo",
                                   total_steps * updates_per_step, accept_config_changes,
                                   schedule_per_step=updates_per_step)["step"]
        updates.start = start_step * updates_per_step

    tracker = Tracker(out, cfg.tracking, enabled=rt.is_main, run_config={"stage": "ppo"})
    from tqdm.auto import tqdm

    bar = tqdm(total=total_steps, initial=start_step, desc="ppo", disable=not (rt.is_main and show_progress()))
    temperature = p.rollout.temperature
    mb = p.micro_batch_per_device
    model.train()
    for step in range(start_step, total_steps):
        if stop_after is not None and step >= stop_after:
            break
        timings: dict[str, float] = {}
        # ---- 1. prompts (shortest first: micro-batches of similar length pad little)
        mine = sorted(step_indices(len(prompts), p.prompts_per_step, step, cfg.seed, rt.rank, rt.world_size),
                      key=lambda i: len(prompts[i][1]))
        messages = [prompts[i][0] for i in mine]
        prompt_ids = [prompts[i][1] for i in mine]

        # ---- 2. generate
        t0 = time.perf_counter()
        engine.sync_weights(policy)
        weight_sync = time.perf_counter() - t0  # part of time/generate: the weights' trip into vLLM
        gen = engine.generate(prompt_ids, k, sampling, [sampling_seed(cfg.seed, step, i) for i in mine])
        timings["generate"] = time.perf_counter() - t0

        # ---- 3. reward (the guard: no update from a NaN / inf reward)
        t0 = time.perf_counter()
        texts = tokenizer.batch_decode(gen.completions, skip_special_tokens=True)
        scores, parts = score_completions(reward_backends, [m for m in messages for _ in range(k)], texts, k,
                                          [extras[i] for i in mine for _ in range(k)], rt.device)
        timings["reward"] = time.perf_counter() - t0
        if not updates.finite_everywhere(scores):
            reason = non_finite_reason(parts, scores, mixed, p.reward.backend)
            updates.skip(f"{reason} on rank {rt.rank} (or another rank did)", schedule_steps=updates_per_step)
            tracker.log({"guard/skipped_updates": updates.skipped}, step + 1)
            bar.update(1)
            continue
        degenerate = torch.tensor([float(is_degenerate(t)) for t in texts], device=rt.device)
        has_eos = torch.tensor(gen.has_eos, device=rt.device)
        # The sequence-level part of the reward, placed on the last token; objective/scores stays the backend's.
        final = losses.rloo_rewards(scores - p.degeneration_penalty * degenerate, torch.zeros_like(scores), has_eos,
                                    0.0, p.missing_eos_penalty)
        row_prompts = [ids for ids in prompt_ids for _ in range(k)]

        def batch(indices):
            ids, mask, cmask, plen = build_batch([row_prompts[i] for i in indices],
                                                 [gen.completions[i] for i in indices], 1, tokenizer.pad_token_id)
            return ids.to(rt.device), mask.to(rt.device), cmask.to(rt.device).float(), plen

        # ---- 4. the rollout's log-probs and values, and the reference's, in micro-batches
        t0 = time.perf_counter()
        width = max(max(len(c) for c in gen.completions), 1)
        old_logps, old_values, ref_logps, entropy, mask = (torch.zeros(rows, width, device=rt.device) for _ in range(5))
        with torch.no_grad():
            for start in range(0, rows, mb):
                idx = list(range(start, start + mb))
                ids, amask, cmask, plen = batch(idx)
                w = cmask.shape[1]
                lp, v, ent = completion_logprobs_and_values(model, ids, amask, plen, temperature, True)
                old_logps[idx, :w], old_values[idx, :w], entropy[idx, :w], mask[idx, :w] = lp, v, ent, cmask
                ref_logps[idx, :w] = reference_logprobs(policy, reference, ids, amask, plen, temperature)
        timings["reference"] = time.perf_counter() - t0

        # ---- 5. per-token rewards, GAE, whitening (statistics over every process)
        t0 = time.perf_counter()
        kl_t = losses.kl_per_token(old_logps, ref_logps, p.kl_estimator)
        kl = losses.masked_sum(kl_t, mask, dim=-1)  # per sequence, for objective/kl
        token_rewards = losses.ppo_token_rewards(final, kl_t, mask, p.beta)
        if p.whiten_rewards:
            token_rewards = losses.masked_whiten(token_rewards, mask, False, *_global_moments(rt, token_rewards, mask))
        advantages, returns = losses.gae_advantages(token_rewards, old_values, mask, p.gamma, p.lam)
        if p.whiten_advantages:
            advantages = losses.masked_whiten(advantages, mask, True, *_global_moments(rt, advantages, mask))

        # ---- 6. epochs over shuffled mini-batches; each a token mean over its tokens on every process
        m = StepMetrics()
        for epoch in range(p.ppo_epochs):
            # The same seed on every process; a resumed run shuffles exactly as the uninterrupted one.
            order = torch.randperm(rows, generator=torch.Generator().manual_seed(sampling_seed(cfg.seed, step, epoch)))
            for b in range(p.num_mini_batches):
                chosen = order[b * mini:(b + 1) * mini].tolist()
                tokens = mask[chosen].sum()
                tokens = rt.accelerator.reduce(tokens.clone(), reduction="sum") if rt.world_size > 1 else tokens
                for i in range(accum):
                    idx = chosen[i * mb:(i + 1) * mb]
                    ids, amask, cmask, plen = batch(idx)
                    w = cmask.shape[1]
                    with updates.micro_batch(i):
                        logps, values, _ = completion_logprobs_and_values(model, ids, amask, plen, temperature)
                        pg_loss, pm = losses.policy_loss(logps, old_logps[idx, :w], advantages[idx, :w], cmask,
                                                         p.clip_eps, "token_mean", normalizer=tokens)
                        vf_loss, vm = losses.value_loss(values, old_values[idx, :w], returns[idx, :w], cmask,
                                                        p.clip_value, normalizer=tokens)
                        updates.backward(pg_loss + p.vf_coef * vf_loss)
                    m.sum("loss/policy_avg", pg_loss.detach() / updates_per_step)  # mean over the step's updates
                    m.sum("loss/value_avg", vf_loss.detach() / updates_per_step)
                    for key, value in (*pm.items(), *vm.items()):
                        if key not in ("loss/policy_avg", "loss/value_avg"):
                            m.mean(key, value, cmask.sum())  # token means over every epoch
                grad_norm = updates.step()
        timings["train"] = time.perf_counter() - t0
        done = step + 1

        # ---- metrics (over all processes), samples, checkpoints
        n = scores.numel()
        m.mean("objective/scores", scores.mean(), n)
        m.mean("objective/kl", kl.mean(), n)
        m.mean("objective/rlhf_reward", (final - p.beta * kl).mean(), n)
        m.mean("objective/entropy", (-(old_logps * mask).sum(-1)).mean(), n)
        m.mean("policy/entropy_avg", losses.masked_mean(entropy, mask), mask.sum())
        m.mean("value/mean", losses.masked_mean(old_values, mask), mask.sum())
        m.mean("value/returns_mean", losses.masked_mean(returns, mask), mask.sum())
        m.std("objective/advantage_std", advantages[mask.bool()])
        add_completion_metrics(m, gen.completions, has_eos, degenerate, parts, mixed, reward_backends, rt.device)
        step_metrics = step_figures(m, rt, grad_norm, scheduler, done, completions_per_step, updates.skipped, timings,
                                   {"weight_sync": weight_sync})
        logged = tracker.log(step_metrics, done) if done % p.log_every == 0 else {}
        if logged:
            bar.set_postfix(reward=f"{logged.get('objective/scores', 0):.3f}", kl=f"{logged.get('objective/kl', 0):.3f}")
        bar.update(1)
        if p.sample_every and done % p.sample_every == 0 and rt.is_main:
            sample = f"prompt: {messages[0][-1]['content']}\ncompletion: {texts[0]}\nscore: {float(scores[0]):.3f}"
            tracker.log_text("samples/completion", sample, done)
            if not show_progress():
                print(f"[ppo] step {done}: {json.dumps({key: round(v, 4) for key, v in logged.items()})}", flush=True)
        if p.save_every and done % p.save_every == 0 and done < total_steps:
            save_checkpoint(ckpt_root, done, model, optimizer, scheduler, {"stage": "ppo"}, p.keep_checkpoints, rt,
                            config_yaml=to_yaml(cfg))
    bar.close()
    for _, _, backend in reward_backends:
        backend.close()
    rt.print(f"[ppo] {updates.describe()}")
    if stop_after is None or stop_after >= total_steps:
        figures = {"prompts": len(prompts), "steps": total_steps * updates_per_step, **rloo_figures(out / "metrics.jsonl")}
        # The policy alone is the stage's model; the value model is a training device (kept in the checkpoints).
        save_trained_model(rt, model, unwrapped, tokenizer, out / "model", p.lora.merge_on_save,
                           rebuild=lambda: _build(cfg, name, torch.device("cpu"))[0], select=lambda bundle: bundle.policy,
                           card=CardInfo(cfg, "ppo", name, figures))
        if rt.is_main:
            (out / "DONE").write_text(f"{total_steps} steps\n")
            print(f"[ppo] saved {out / 'model'}", flush=True)
    tracker.close()
    rt.barrier()
    return out


_VALUE_MODELS = {
    "shared": "a second LoRA adapter ('value') on the policy's own base, one copy of the base weights",
    "separate": "a separate copy of the starting model",
}


def _build(cfg: Config, name: str, device: torch.device):
    """(PolicyWithValue, origin) from the starting model `name` (tiller.value_model, which `tiller
    eval curve` builds too, to load this stage's checkpoints)."""
    return build_policy_with_value(name, cfg.model, cfg.ppo, device, use_gradient_checkpointing(cfg.model, device))


def _global_moments(rt, values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, unbiased variance) of the masked entries of every process: whitening then does not
    depend on how the step is split over processes."""
    stats = torch.stack([losses.masked_sum(values, mask), losses.masked_sum(values * values, mask), mask.sum()])
    if rt.world_size > 1:
        stats = rt.accelerator.reduce(stats, reduction="sum")
    total, squares, count = stats
    mean = total / count.clamp(min=1)
    return mean, (squares - count * mean * mean) / (count - 1).clamp(min=1)
