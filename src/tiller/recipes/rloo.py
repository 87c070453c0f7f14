"""RLOO stage: REINFORCE Leave-One-Out against a reward (definition in DESIGN.md).

    tiller rloo --config FILE [--resume]      trains <run_dir>/rloo/model

One step, top to bottom:
  1. take `prompts_per_step` prompts (each process its own whole prompts);
  2. sample k = `completions_per_prompt` completions per prompt with the rollout engine;
  3. reference log-probs: the base with the LoRA adapter disabled (or a frozen copy); with LoRA
     on the last layers only, the frozen layers below run once for the reference, the policy and
     a reward adapter on the same base (tiller.frozen_prefix);
  4. score them with the reward backend, or the weighted sum of several (no gradients, batched);
  5. per sequence R = score - missing_eos_penalty*[no EOS] - beta*KL, leave-one-out
     advantages, and the REINFORCE (or clipped-ratio) loss, reduced over the global batch.
     The estimator (rloo, grpo, dr_grpo, reinforce_pp), the KL's place (reward or loss), the
     clip and the aggregation are options: docs/algorithms.md.
With one update per batch (num_ppo_epochs=1) the policy forward that carries the gradient also
gives the log-probs for the KL: micro-batches hold whole prompt groups, so the advantages of a
group are known inside its micro-batch and no separate no-grad policy pass is needed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from tiller import losses
from tiller.batching import compare_layouts, first_and_last_groups, floating_dtype, layout_tolerance
from tiller.checkpoint import save_checkpoint
from tiller.config import Config, to_yaml
from tiller.degeneration import is_degenerate
from tiller.frozen_prefix import FrozenPrefix, extend_rows, reward_suffix
from tiller.logprobs import build_batch, completion_logprobs, describe_logprob_path, prompt_once_rows
from tiller.metrics import StepMetrics
from tiller.model_card import CardInfo, rloo_figures
from tiller.models import describe_origin, load_frozen, load_policy, load_tokenizer, policy_start, write_origin
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


def run(cfg: Config, resume: bool = False, stop_after: int | None = None, accept_config_changes: bool = False) -> Path:
    r = cfg.rloo
    rt = setup_runtime(cfg.seed, cfg.model.mixed_precision)
    out = Path(cfg.run_dir) / "rloo"
    name, chosen_by = policy_start(cfg, "rloo")
    k = r.completions_per_prompt
    if rt.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(to_yaml(cfg))

    # ---- prompts and batch arithmetic
    tokenizer = load_tokenizer(name, cfg.model)
    # Each kept prompt's record columns (extras, data.keep_columns) go to rewards that check an answer.
    prompts, dropped, extras = rl_prompts(cfg.run_dir, r, tokenizer, cfg.model.enable_thinking)
    if r.prompts_per_step % rt.world_size:
        raise ValueError(f"rloo.prompts_per_step={r.prompts_per_step} must be a multiple of the {rt.world_size} processes "
                         "(each process takes whole prompt groups)")
    prompts_per_process = r.prompts_per_step // rt.world_size
    completions_per_process = prompts_per_process * k
    if completions_per_process % r.micro_batch_per_device:
        raise ValueError(f"{completions_per_process} completions per process per step are not a multiple of "
                         f"rloo.micro_batch_per_device={r.micro_batch_per_device}")
    accum = completions_per_process // r.micro_batch_per_device
    completions_per_step = r.prompts_per_step * k
    total_steps = rl_total_steps(len(prompts), r, "rloo")
    # The single pass needs each advantage from its micro-batch alone: whole prompt groups, no
    # statistic over the whole step (whitening, REINFORCE++'s batch baseline).
    fused = (r.num_ppo_epochs == 1 and not r.whiten_advantages and r.advantage != "reinforce_pp"
             and r.micro_batch_per_device % k == 0)
    clip_low, clip_high = (r.clip_eps if e is None else e for e in (r.clip_eps_low, r.clip_eps_high))
    rt.print(
        f"[rloo] policy {name} | {len(prompts)} prompts ({dropped} dropped > {r.max_prompt_tokens} tokens)\n"
        f"[rloo] {r.prompts_per_step} prompts x {k} completions = {completions_per_step} completions/step over "
        f"{rt.world_size} process(es); per process "
        f"{completions_per_process} = {r.micro_batch_per_device} per micro-batch x {accum} accumulation; "
        f"{total_steps} steps ({total_steps * completions_per_step} episodes)\n"
        f"[rloo] update: {'single pass (log-probs for KL from the gradient forward)' if fused else 'no-grad old log-probs, then ' + str(r.num_ppo_epochs) + ' epoch(s)'}\n"
        f"[rloo] advantage {r.advantage} | KL {r.kl_estimator} x beta {r.beta} in the {r.kl_in} | aggregation "
        f"{r.aggregation} | ratio clip [1 - {clip_low:g}, 1 + {clip_high:g}]"
        f"{' (never binds: one update per batch)' if r.num_ppo_epochs == 1 else ''}"
    )

    # ---- models: policy (LoRA or full), reference (adapter disabled or frozen copy), reward
    policy, origin = _build_policy(cfg, name, rt.device)
    rt.print(f"[rloo] {describe_origin(origin, chosen_by)}")
    if rt.is_main:
        write_origin(out, origin, chosen_by)
    # Every RL forward (rollout, old log-probs, reference, loss) runs without dropout (DESIGN.md):
    # with it the ratio of an on-policy update is not 1 and the KL estimate is noisy.
    turned_off = without_dropout(policy)
    if turned_off:
        unused = f" (rloo.lora.dropout {r.lora.dropout} is not used)" if r.lora.enabled and r.lora.dropout > 0 else ""
        rt.print(f"[rloo] every RL forward (rollout, old log-probs, reference, loss) runs without dropout: "
                 f"{turned_off} set to 0{unused}")
    reference = None
    if not r.lora.enabled:
        with rt.unsharded_construction():  # frozen: each process keeps it whole
            reference = load_frozen(name, cfg.model, rt.device)
    trainable, total = trainable_parameter_count(policy)
    rt.print(f"[rloo] trainable parameters {trainable:,} of {total:,} ({'LoRA' if r.lora.enabled else 'full'})")
    # The reward: one backend (rloo.reward), or the weighted sum of named ones (rloo.rewards).
    # A LoRA reward model on the policy's starting weights scores on the policy's own base.
    with rt.unsharded_construction():
        reward_backends, mixed = make_reward_backends(r, cfg.run_dir, rt.device, policy=policy, policy_start=name,
                                                      sharded=rt.sharded, log=lambda line: rt.print(f"[rloo] {line}"))
    if mixed:
        terms = [f"{c.weight:g} x {c.name} ({c.backend})" for c in r.rewards]
        rt.print(f"[rloo] reward = {' + '.join(terms)} (each logged as reward/<name>)")
    model, unwrapped, optimizer, scheduler, updates = prepare_for_training(
        rt, policy, r.optim, total_steps * r.num_ppo_epochs, accum, r.micro_batch_per_device, "rloo")
    rt.print(f"[rloo] {describe_logprob_path(model)}")
    engine = make_engine(r.rollout.engine, unwrapped, tokenizer, r.rollout, cfg.model)
    if rt.sharded:
        # Every decoder forward is a collective: all processes decode until the last one is done.
        engine.lockstep = rt.any_rank
    sampling = Sampling(r.rollout.max_new_tokens, r.rollout.temperature, r.rollout.top_p, r.rollout.top_k)
    # LoRA on the last layers only: the reference and the policy share the frozen layers below
    # the adapter, computed once per micro-batch (not under FSDP / DeepSpeed, which own the layers).
    prefix = None
    if reference is None and not rt.sharded:
        prefix = FrozenPrefix.of(unwrapped)
    prefix_checked = prefix is None
    # A reward adapter on the policy's base (and the only reward) runs its forward from the
    # frozen layers' output too, where its token ids extend the policy's (checked every step).
    shared_backend = reward_backends[0][2] if len(reward_backends) == 1 else None
    shared_reward = (prefix is not None and shared_backend is not None
                     and hasattr(getattr(shared_backend, "scorer", None), "score_hidden"))
    reward_sharing_checked = False
    # The one-time checks of those shortcuts run on two prompt groups of the first micro-batch
    # (its shortest and longest prompts, so padding is checked too), not all of it; on all of it
    # where the micro-batch does not hold whole groups.
    mb = r.micro_batch_per_device
    check_rows = first_and_last_groups([k] * (mb // k) if mb % k == 0 else [mb])
    # rloo.shared_prompt: each micro-batch's prompt groups one row each, the prompt once.
    prompt_once = r.shared_prompt and mb % k == 0
    if r.shared_prompt and not prompt_once:
        rt.print(f"[rloo] rloo.shared_prompt needs whole prompt groups per micro-batch (micro_batch_per_device {mb} "
                 f"is not a multiple of k={k}): padded rows")
    prompt_once_checked = not prompt_once
    pad_id = tokenizer.pad_token_id

    seed_per_rank(rt, cfg.seed)  # models built: each process its own stream (sampling has per-prompt seeds)
    start_step = 0
    ckpt_root = out / "checkpoints"
    if resume:
        start_step = resume_latest(rt, ckpt_root, model, optimizer, scheduler, "rloo", cfg, "rloo",
                                   total_steps * r.num_ppo_epochs, accept_config_changes,
                                   schedule_per_step=r.num_ppo_epochs)["step"]
        updates.start = start_step * r.num_ppo_epochs

    tracker = Tracker(out, cfg.tracking, enabled=rt.is_main, run_config={"stage": "rloo"})
    from tqdm.auto import tqdm

    bar = tqdm(total=total_steps, initial=start_step, desc="rloo", disable=not (rt.is_main and show_progress()))
    model.train()
    for step in range(start_step, total_steps):
        if stop_after is not None and step >= stop_after:
            break
        timings: dict[str, float] = {}
        # ---- 1. prompts: this process's whole prompts of the step
        mine = step_indices(len(prompts), r.prompts_per_step, step, cfg.seed, rt.rank, rt.world_size)
        # Sorted by prompt length, so that each micro-batch holds prompts of similar length and pads
        # little (the update then runs the largest micro-batch first, below); a prompt's
        # completions depend on its own seed only, so the order changes no sample.
        mine = sorted(mine, key=lambda i: len(prompts[i][1]))
        messages = [prompts[i][0] for i in mine]
        prompt_ids = [prompts[i][1] for i in mine]

        # ---- 2. generate
        t0 = time.perf_counter()
        engine.sync_weights(unwrapped)
        weight_sync = time.perf_counter() - t0  # part of time/generate: the weights' trip into vLLM
        gen = engine.generate(prompt_ids, k, sampling, [sampling_seed(cfg.seed, step, i) for i in mine])
        timings["generate"] = time.perf_counter() - t0

        # Each micro-batch is padded to its own longest prompt and completion, not the step's
        # (prompts of one group share their length: with whole groups per micro-batch, no prompt padding).
        texts = tokenizer.batch_decode(gen.completions, skip_special_tokens=True)
        row_messages = [m for m in messages for _ in range(k)]
        row_records = [extras[i] for i in mine for _ in range(k)]
        row_prompts = [p for p in prompt_ids for _ in range(k)]
        micro_slices = [slice(i * mb, (i + 1) * mb) for i in range(accum)]
        micro = []
        for s in micro_slices:
            ids, mask, cmask, plen = build_batch(row_prompts[s], gen.completions[s], 1, tokenizer.pad_token_id)
            micro.append((ids.to(rt.device), mask.to(rt.device), cmask.to(rt.device).float(), plen))
        has_eos = torch.tensor(gen.has_eos, device=rt.device)
        temperature = r.rollout.temperature

        # ---- 3. the frozen layers' output, once for the reference, the policy and (when its
        # token ids extend the policy's) a reward adapter on the same base; reference log-probs
        t0 = time.perf_counter()
        if not prefix_checked:
            ids, mask, _, plen = micro[0]
            prefix = _checked_prefix(rt, unwrapped, prefix, ids[check_rows], mask[check_rows], plen, temperature)
            prefix_checked = True
            shared_reward = shared_reward and prefix is not None
        if not prompt_once_checked:
            prompt_once = _checked_prompt_once(rt, unwrapped, prefix, [row_prompts[i] for i in check_rows],
                                               [gen.completions[i] for i in check_rows], k, pad_id, temperature)
            prompt_once_checked = True
        extended, suffixes = None, []
        if shared_reward:  # per row: do the reward model's ids extend the policy's?
            suffixes = [reward_suffix(row_prompts[i] + gen.completions[i], shared_backend.encode(row_messages[i], texts[i]))
                        for i in range(len(texts))]
        reward_from_hidden = shared_reward and any(x is not None for x in suffixes)
        onces = [None] * len(micro)
        if prompt_once:  # a reward adapter's end-of-turn tokens go after each completion, in its segment
            onces = [prompt_once_rows(row_prompts[s], gen.completions[s], k, pad_id, floating_dtype(unwrapped), rt.device,
                                      [x or [] for x in suffixes[s]] if reward_from_hidden else None)
                     for s in micro_slices]
            hiddens = [prefix.hidden(o.input_ids, o.attention_mask, o.position_ids) if prefix else None for o in onces]
            full_hiddens = hiddens
        elif reward_from_hidden:
            extended = [extend_rows(ids, mask, [x or [] for x in suffixes[s]], pad_id)
                        for (ids, mask, _, _), s in zip(micro, micro_slices)]
            full_hiddens = [prefix.hidden(ids, mask) for ids, mask in extended]
            hiddens = [h[:, :ids.shape[1]] for h, (ids, _, _, _) in zip(full_hiddens, micro)]
        else:
            hiddens = [prefix.hidden(ids, mask) if prefix else None for ids, mask, _, _ in micro]
        with torch.no_grad():
            ref_logps = [reference_logprobs(unwrapped, reference, ids, mask, plen, temperature, prefix, h, o)
                         for (ids, mask, _, plen), h, o in zip(micro, hiddens, onces)]
        timings["reference"] = time.perf_counter() - t0

        # ---- 4. reward
        t0 = time.perf_counter()
        if reward_from_hidden:
            if prompt_once:
                scores = torch.cat([shared_backend.scorer.score_hidden(h, o.attention_mask, prefix, o.position_ids,
                                                                       o.ends, o.rows).float()
                                    for h, o in zip(full_hiddens, onces)]).to(rt.device)
            else:
                scores = torch.cat([shared_backend.scorer.score_hidden(h, mask, prefix).float()
                                    for h, (_, mask) in zip(full_hiddens, extended)]).to(rt.device)
            own_rows = [i for i, x in enumerate(suffixes) if x is None]  # re-tokenized differently
            if own_rows:
                own, _ = score_completions(reward_backends, [row_messages[i] for i in own_rows],
                                           [texts[i] for i in own_rows], k, [row_records[i] for i in own_rows], rt.device)
                scores[own_rows] = own
            if not reward_sharing_checked:  # once: the same scores as the reward model's own pass
                own, _ = score_completions(reward_backends, [row_messages[i] for i in check_rows],
                                           [texts[i] for i in check_rows], k, [row_records[i] for i in check_rows],
                                           rt.device)
                shared_reward = _checked_shared_reward(rt, scores[check_rows], own, next(unwrapped.parameters()).dtype)
                reward_sharing_checked = True
            parts = {reward_backends[0][0]: scores}
        else:
            scores, parts = score_completions(reward_backends, row_messages, texts, k, row_records, rt.device)
        timings["reward"] = time.perf_counter() - t0
        if not updates.finite_everywhere(scores):  # the guard: no update from a NaN / inf reward
            reason = non_finite_reason(parts, scores, mixed, r.reward.backend)
            updates.skip(f"{reason} on rank {rt.rank} (or another rank did)", schedule_steps=r.num_ppo_epochs)
            tracker.log({"guard/skipped_updates": updates.skipped}, step + 1)
            bar.update(1)
            continue
        # The optional penalty for degenerate completions is part of the reward, like the
        # missing-EOS penalty; objective/scores stays the reward backend's own score.
        degenerate = torch.tensor([float(is_degenerate(t)) for t in texts], device=rt.device)
        penalized = scores - r.degeneration_penalty * degenerate if r.degeneration_penalty else scores

        # ---- 5. loss and update; normalize by the global token (or sequence) count
        t0 = time.perf_counter()
        if r.aggregation == "token_mean":
            local_norm = sum(cmask.sum() for _, _, cmask, _ in micro)
        else:  # sequences, or sequences x the constant length (sequence_sum_norm, Dr.GRPO)
            per_sequence = r.rollout.max_new_tokens if r.aggregation == "sequence_sum_norm" else 1
            local_norm = torch.tensor(float(len(texts) * per_sequence), device=rt.device)
        global_norm = rt.accelerator.reduce(local_norm.clone(), reduction="sum") if rt.world_size > 1 else local_norm
        m = StepMetrics()  # each metric combined over micro-batches and processes by what it is
        if shared_reward:  # share of rows scored from the shared frozen layers
            shared_rows = sum(x is not None for x in suffixes) / len(texts) if reward_from_hidden else 0.0
            m.mean("reward/shared_rows", torch.tensor(shared_rows, device=rt.device), len(texts))
        reward_beta = r.beta if r.kl_in == "reward" else 0.0  # the KL is counted once: reward or loss
        loss_options = dict(clip_eps_low=r.clip_eps_low, clip_eps_high=r.clip_eps_high,
                            max_length=r.rollout.max_new_tokens)

        def kl_in_loss(ref):  # kl_in: loss adds beta * KL_t (with gradient) to each token's loss
            return dict(ref_logps=ref, kl_coef=r.beta, kl_estimator=r.kl_estimator) if r.kl_in == "loss" else {}

        # The updates run the largest micro-batch first: each later one's activations then fit in
        # the memory the one before freed, where growing ones leave it behind as fragments
        # (measured on CPU: the RLOO bench's SmolLM2 step peaked 130-240 MB lower, bench/README.md).
        # The gradient is the same sum in another order; a step of one micro-batch is unchanged.
        largest_first = sorted(range(len(micro)), key=lambda i: micro[i][0].numel(), reverse=True)
        if fused:
            for j, i in enumerate(largest_first):
                s, (ids, mask, cmask, plen) = micro_slices[i], micro[i]
                with updates.micro_batch(j):
                    logps, entropy = completion_logprobs(model, ids, mask, plen, temperature, True, prefix, hiddens[i],
                                                         onces[i])
                    kl = losses.sequence_kl(logps.detach(), ref_logps[i], cmask, r.kl_estimator)
                    rewards = losses.rloo_rewards(penalized[s], kl, has_eos[s], reward_beta, r.missing_eos_penalty)
                    advantages = losses.advantages_for(r.advantage, rewards, k)
                    loss, metrics = losses.policy_loss(logps, logps.detach(), advantages, cmask, r.clip_eps,
                                                       r.aggregation, normalizer=global_norm, **loss_options,
                                                       **kl_in_loss(ref_logps[i]))
                    updates.backward(loss)  # normalized by the global token (sequence) count already
                _collect(m, logps.detach(), entropy, cmask, kl, rewards, advantages, scores[s])
                m.sum("loss/policy_avg", loss)  # this micro-batch's share of the global loss
                if "loss/kl_term" in metrics:
                    m.sum("loss/kl_term", metrics["loss/kl_term"])
                for key in ("val/ratio", "policy/clipfrac_avg", "policy/approxkl_avg"):
                    m.mean(key, metrics[key], cmask.sum())  # token means: weighted by tokens
            grad_norm = updates.step()
        else:
            with torch.no_grad():
                old = [completion_logprobs(model, ids, mask, plen, temperature, True, prefix, h, o)
                       for (ids, mask, _, plen), h, o in zip(micro, hiddens, onces)]
            # Whole-step tensors for the advantages: per-token values right-padded to one width.
            width = max(cmask.shape[1] for _, _, cmask, _ in micro)

            def step_wide(parts):
                return torch.cat([torch.nn.functional.pad(x, (0, width - x.shape[1])) for x in parts])

            old_logps, entropy_all = step_wide([o[0] for o in old]), step_wide([o[1] for o in old])
            completion_mask = step_wide([cmask for _, _, cmask, _ in micro])
            kl = losses.sequence_kl(old_logps, step_wide(ref_logps), completion_mask, r.kl_estimator)
            rewards = losses.rloo_rewards(penalized, kl, has_eos, reward_beta, r.missing_eos_penalty)
            if r.advantage == "reinforce_pp":  # the baseline is the whole step of every process
                tokens = completion_mask.sum(-1)
                if rt.world_size > 1:
                    n = rewards.numel()  # equal on every process; gather concatenates in rank order
                    advantages = losses.reinforce_pp_advantages(rt.accelerator.gather(rewards),
                                                                rt.accelerator.gather(tokens))[rt.rank * n:(rt.rank + 1) * n]
                else:
                    advantages = losses.reinforce_pp_advantages(rewards, tokens)
            else:
                advantages = losses.advantages_for(r.advantage, rewards, k)
            if r.whiten_advantages:
                gathered = rt.accelerator.gather(advantages) if rt.world_size > 1 else advantages
                advantages = (advantages - gathered.mean()) / (gathered.std() + 1e-8)
            _collect(m, old_logps, entropy_all, completion_mask, kl, rewards, advantages, scores)
            for ppo_epoch in range(r.num_ppo_epochs):
                for j, i in enumerate(largest_first):
                    s, (ids, mask, cmask, plen) = micro_slices[i], micro[i]
                    with updates.micro_batch(j):
                        logps, _ = completion_logprobs(model, ids, mask, plen, temperature, False, prefix, hiddens[i],
                                                       onces[i])
                        loss, metrics = losses.policy_loss(logps, old_logps[s][:, :logps.shape[1]], advantages[s], cmask,
                                                           r.clip_eps, r.aggregation, normalizer=global_norm,
                                                           **loss_options, **kl_in_loss(ref_logps[i]))
                        updates.backward(loss)
                    m.sum("loss/policy_avg", loss / r.num_ppo_epochs)
                    if "loss/kl_term" in metrics:
                        m.sum("loss/kl_term", metrics["loss/kl_term"] / r.num_ppo_epochs)
                    for key in ("val/ratio", "policy/clipfrac_avg", "policy/approxkl_avg"):
                        m.mean(key, metrics[key], cmask.sum())  # over the tokens of every epoch
                grad_norm = updates.step()
        timings["train"] = time.perf_counter() - t0
        done = step + 1

        # ---- metrics (over all processes: counts summed, min / max, means weighted), samples, checkpoints
        add_completion_metrics(m, gen.completions, has_eos, degenerate, parts, mixed, reward_backends, rt.device)
        step_metrics = step_figures(m, rt, grad_norm, scheduler, done, completions_per_step, updates.skipped, timings,
                                   {"weight_sync": weight_sync})
        if done % r.log_every == 0:
            logged = tracker.log(step_metrics, done)
        else:
            logged = {}
        if logged:
            bar.set_postfix(reward=f"{logged.get('objective/scores', 0):.3f}", kl=f"{logged.get('objective/kl', 0):.3f}")
        bar.update(1)
        if r.sample_every and done % r.sample_every == 0 and rt.is_main:
            sample = f"prompt: {messages[0][-1]['content']}\ncompletion: {texts[0]}\nscore: {float(scores[0]):.3f}"
            tracker.log_text("samples/completion", sample, done)
            if not show_progress():
                print(f"[rloo] step {done}: {json.dumps({k: round(v, 4) for k, v in logged.items()})}", flush=True)
        if r.save_every and done % r.save_every == 0 and done < total_steps:
            save_checkpoint(ckpt_root, done, model, optimizer, scheduler, {"stage": "rloo"}, r.keep_checkpoints, rt,
                            config_yaml=to_yaml(cfg))
    bar.close()
    for _, _, backend in reward_backends:
        backend.close()
    rt.print(f"[rloo] {updates.describe()}")
    finished = stop_after is None or stop_after >= total_steps
    if finished:
        figures = {"prompts": len(prompts), "steps": total_steps, **rloo_figures(out / "metrics.jsonl")}
        save_trained_model(rt, model, unwrapped, tokenizer, out / "model", r.lora.merge_on_save,
                           rebuild=lambda: _build_policy(cfg, name, torch.device("cpu"))[0],
                           card=CardInfo(cfg, "rloo", name, figures))
        if rt.is_main:
            (out / "DONE").write_text(f"{total_steps} steps\n")
            print(f"[rloo] saved {out / 'model'}", flush=True)
    tracker.close()
    rt.barrier()
    return out


def _build_policy(cfg: Config, name: str, device: torch.device):
    """(policy, origin). A saved adapter is merged: the reference (the adapter-disabled policy,
    or the frozen copy) is then the starting policy, not the base under it."""
    return load_policy(name, cfg.model, cfg.rloo.lora, device, adapter="merge",
                       gradient_checkpointing=use_gradient_checkpointing(cfg.model, device))


@torch.no_grad()
def _checked_prefix(rt, policy, prefix: FrozenPrefix, input_ids, attention_mask, prompt_len, temperature):
    """The shared-prefix path only where it gives the full forward's log-probs on real rows,
    decided alike on every process."""
    full, shared, error = compare_layouts(
        policy, lambda: completion_logprobs(policy, input_ids, attention_mask, prompt_len, temperature)[0],
        lambda: completion_logprobs(policy, input_ids, attention_mask, prompt_len, temperature, False, prefix,
                                    prefix.hidden(input_ids, attention_mask))[0])
    diff = float("inf") if shared is None else float((full - shared).abs().max())
    tol = layout_tolerance(floating_dtype(policy))
    if not rt.any_rank(shared is None or not torch.allclose(full, shared, atol=tol, rtol=tol)):
        rt.print(f"[rloo] the first {prefix.layers} layers hold no adapter: computed once per micro-batch for the "
                 f"reference and the policy (checked equal to the full forward on {input_ids.shape[0]} rows of the first "
                 f"micro-batch, max diff {diff:.1e})")
        return prefix
    rt.print(f"[rloo] shared frozen layers give different log-probs here (max diff {diff:.1e}"
             f"{'; ' + error if error else ''}): running full forwards")
    return None


@torch.no_grad()
def _checked_prompt_once(rt, policy, prefix: FrozenPrefix | None, prompt_ids, completions, k: int, pad_id: int,
                         temperature: float) -> bool:
    """Whether the prompt-once rows give the padded rows' log-probs (through the frozen prefix
    where one is used) on these whole prompt groups; printed either way, decided alike on every
    process (an attention implementation that ignores or refuses a 4D mask would not)."""
    device = rt.device
    ids, mask, cmask, plen = (x.to(device) if torch.is_tensor(x) else x
                              for x in build_batch(prompt_ids, completions, 1, pad_id))

    def once_logps():
        once = prompt_once_rows(prompt_ids, completions, k, pad_id, floating_dtype(policy), device)
        hidden = prefix.hidden(once.input_ids, once.attention_mask, once.position_ids) if prefix else None
        return completion_logprobs(policy, None, None, None, temperature, False, prefix, hidden, once)[0]

    padded, once, error = compare_layouts(
        policy, lambda: completion_logprobs(policy, ids, mask, plen, temperature)[0] * cmask, once_logps)
    diff = float("inf") if once is None else float((once - padded).abs().max())
    tokens = int(cmask.sum()) + sum(len(p) for p in prompt_ids[::k])
    if not rt.any_rank(diff > layout_tolerance(floating_dtype(policy)) * max(1.0, float(padded.abs().max()))):
        rt.print(f"[rloo] each prompt group in one row, the prompt once (rloo.shared_prompt): {tokens} real tokens "
                 f"where padded rows hold {ids.numel()} on the check rows (checked equal to padded rows on "
                 f"{len(completions)} rows of the first micro-batch, max diff {diff:.1e})")
        return True
    rt.print(f"[rloo] the prompt-once rows give other log-probs than padded rows here (max diff {diff:.1e}"
             f"{'; ' + error if error else ''}): padded rows")
    return False


def _checked_shared_reward(rt, shared: torch.Tensor, own: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether the scores from the shared frozen layers equal the reward model's own full pass
    (`own`, the same rows: the first step's check rows); printed either way."""
    diff = float((shared - own).abs().max())
    # Every process decides alike (a metric and the passes it runs depend on it).
    if not rt.any_rank(diff > layout_tolerance(dtype) * max(1.0, float(own.abs().max()))):
        rt.print(f"[rloo] the reward adapter also runs only the layers above the shared frozen ones, on every row "
                 f"whose reward token ids extend the policy's (checked equal to its own full pass on {len(own)} rows of the first step, "
                 f"max diff {diff:.1e}; rows that re-tokenize differently get its own pass: reward/shared_rows)")
        return True
    rt.print(f"[rloo] the reward adapter's scores from the shared frozen layers differ from its own pass "
             f"(max diff {diff:.1e}): it keeps its own full pass")
    return False


def _collect(m: StepMetrics, logps, entropy, mask, kl, rewards, advantages, scores) -> None:
    """Per-step metrics named as RLOO users expect (TRL's names): means over the sequences, or
    over the tokens (policy/entropy_avg), of the whole step; the std of all its advantages."""
    n = scores.numel()
    m.mean("objective/scores", scores.mean(), n)
    seq_entropy = -(logps * mask).sum(-1)  # sampled-token entropy estimate per sequence
    m.mean("objective/entropy", seq_entropy.mean(), n)
    m.mean("policy/entropy_avg", losses.masked_mean(entropy, mask), mask.sum())
    m.mean("objective/kl", kl.mean(), n)
    m.mean("objective/rlhf_reward", rewards.mean(), n)
    m.std("objective/advantage_std", advantages)
