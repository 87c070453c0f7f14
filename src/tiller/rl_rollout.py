"""What the RL recipes (rloo, ppo) share around a rollout: their prompts, per-prompt sampling
seeds, dropout off, reference log-probs, and scoring with the reward backends.

The recipes themselves keep their loops and losses; this module holds only the steps that
are the same in both, so that a fix lands once (DESIGN.md: code two recipes need goes down a layer).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from tiller.chat import encode_prompts, encoded_extras
from tiller.data.run_files import load_prompts
from tiller.data.splits import subset
from tiller.logprobs import completion_logprobs
from tiller.rewards import make_reward_backend
from tiller.rewards.shared_base import attach_reward_adapter, why_not_shared


def sampling_seed(seed: int, step: int, prompt_index: int) -> int:
    """A prompt's sampling seed depends on (run seed, step, prompt), not on batching."""
    return ((seed * 1_000_003 + step) * 100_003 + prompt_index) % (2**62)


def rl_prompts(run_dir, section, tokenizer, enable_thinking):
    """(prompts, dropped, extras): the encoded prompts of `section.prompt_split` /
    `prompt_subset` ((messages, ids) pairs), how many were over `max_prompt_tokens`, and each
    kept prompt's record columns (data.keep_columns), for rewards that check an answer."""
    records = subset(load_prompts(run_dir, section.prompt_split), section.prompt_subset)
    prompts, dropped = encode_prompts(records, tokenizer, section.max_prompt_tokens, enable_thinking)
    return prompts, dropped, encoded_extras(records, prompts)


def rl_total_steps(num_prompts: int, section, stage: str) -> int:
    """How many steps an RL stage runs: `max_steps`, else enough for `total_episodes`
    completions, else one pass over the prompts; an error names the stage when there are fewer
    prompts than one step takes."""
    if num_prompts < section.prompts_per_step:
        raise ValueError(f"{num_prompts} prompts are fewer than {stage}.prompts_per_step={section.prompts_per_step}")
    if section.max_steps:
        return section.max_steps
    if section.total_episodes:
        return math.ceil(section.total_episodes / (section.prompts_per_step * section.completions_per_prompt))
    return num_prompts // section.prompts_per_step


def make_reward_backends(section, run_dir, device, policy=None, policy_start: str | None = None,
                         sharded: bool = False, log=print) -> tuple[list, bool]:
    """([(name, weight, backend)], mixed): one backend (`section.reward`), or the weighted sum
    of the named ones (`section.rewards`, mixed=True).

    Given the (peft) `policy` and the weights it started from, a classifier reward whose folder
    is a LoRA adapter on those same weights scores on the policy's own base
    (`tiller.rewards.shared_base`) unless its `share_base` is false; `log` prints which way each
    classifier reward is loaded, and why."""
    mixed = bool(section.rewards)
    components = section.rewards if mixed else [section.reward]
    backends = []
    for i, c in enumerate(components):
        name = c.name if mixed else c.backend
        default_path = Path(run_dir) / "reward" / "model"
        scorer = None
        if c.backend == "classifier" and policy is not None:
            path = Path(c.path or default_path)
            reason = why_not_shared(path, policy, policy_start, sharded) if c.share_base else "share_base: false"
            if reason is None:
                scorer = attach_reward_adapter(policy, path, adapter_name=f"reward_{i}")
                log(f"reward model {path}: its LoRA adapter and score head on the policy's own base "
                    f"(adapter 'reward_{i}'; one copy of the base weights for policy, reference and reward)")
            else:
                log(f"reward model {path}: loaded as a separate model ({reason})")
        if scorer is not None:
            from tiller.rewards.classifier import ClassifierReward

            backend = ClassifierReward(str(Path(c.path or default_path)), c, device=str(device), scorer=scorer)
        else:
            backend = make_reward_backend(c, default_path=default_path, device=str(device))
        backends.append((name, c.weight if mixed else 1.0, backend))
    return backends, mixed


def score_completions(reward_backends, messages, texts, k, records, device):
    """(scores, parts): each backend's scores of the completions (rows: k per prompt), and
    their weighted sum; a NaN / inf in any component makes the combined score non-finite."""
    parts = {name: torch.tensor(backend.score(messages, texts, group_size=k, records=records),
                                dtype=torch.float32, device=device) for name, _, backend in reward_backends}
    scores = sum(weight * parts[name] for name, weight, _ in reward_backends)
    return scores, parts


def non_finite_reason(parts, scores, mixed: bool, backend: str) -> str:
    """Why the guard skips this step: which component gave how many non-finite scores."""
    bad = int((~torch.isfinite(scores)).sum())
    if mixed:
        which = ", ".join(f"'{name}' ({int((~torch.isfinite(v)).sum())})" for name, v in parts.items()
                          if not torch.isfinite(v).all()) or "none (their weighted sum overflowed)"
        return f"reward component(s) {which} gave non-finite score(s): {bad} of {scores.numel()} combined scores"
    return f"reward backend '{backend}' gave {bad} non-finite score(s) of {scores.numel()}"


def without_dropout(model: torch.nn.Module) -> str:
    """Set every dropout in `model` to 0: LoRA's (`lora.dropout`) and the model's own (dropout
    modules, the attention's `attention_dropout` rate). Returns what was turned off ("" if nothing).

    p = 0 rather than `model.eval()` around the forwards: transformers runs gradient
    checkpointing only in training mode (`self.gradient_checkpointing and self.training`), which
    the gradient forward needs on a GPU; p = 0 holds in either mode, whoever calls train() or eval()."""
    found: dict[float, int] = {}
    for module in model.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd) and module.p > 0:
            found[module.p] = found.get(module.p, 0) + 1
            module.p = 0.0
        rate = getattr(module, "attention_dropout", None)
        if isinstance(rate, float) and rate > 0:
            found[rate] = found.get(rate, 0) + 1
            module.attention_dropout = 0.0
    return ", ".join(f"dropout {p:g} in {n} module(s)" for p, n in sorted(found.items()))


def reference_logprobs(policy, reference, input_ids, attention_mask, prompt_len, temperature, prefix=None, hidden=None,
                       once=None):
    """Completion log-probs under the reference: the frozen copy, or (LoRA) the policy with its
    adapter disabled, one copy of the weights in memory. `once`: the prompt-once layout of the
    same rows (`tiller.logprobs.PromptOnceRows`)."""
    if reference is not None:
        return completion_logprobs(reference, input_ids, attention_mask, prompt_len, temperature, once=once)[0]
    with policy.disable_adapter():
        was_training = policy.training
        policy.eval()
        try:
            return completion_logprobs(policy, input_ids, attention_mask, prompt_len, temperature, False, prefix, hidden,
                                       once)[0]
        finally:
            policy.train(was_training)


def add_completion_metrics(m, completions: list[list[int]], has_eos: torch.Tensor, degenerate: torch.Tensor,
                           parts: dict, mixed: bool, reward_backends, device) -> None:
    """The step's completion and reward figures, into `m` (a StepMetrics): EOS count,
    degenerate share, lengths, each reward component's mean (rloo.rewards / ppo.rewards), and
    the counters of remote backends (retries, parse failures, fallbacks)."""
    lengths = torch.tensor([len(c) for c in completions], dtype=torch.float32, device=device)
    m.sum("val/num_eos_tokens", has_eos.float().sum())
    m.mean("completions/degenerate_share", degenerate.mean(), degenerate.numel())
    m.mean("completions/mean_length", lengths.mean(), lengths.numel())
    m.min("completions/min_length", lengths.min())
    m.max("completions/max_length", lengths.max())
    if mixed:  # each component's mean over the step's completions, over all processes
        for name, values in parts.items():
            m.mean(f"reward/{name}", values.mean(), values.numel())
    for _, _, backend in reward_backends:
        if hasattr(backend, "metrics"):
            for key, count in backend.metrics().items():
                m.sum(key, count)


def step_figures(m, rt, grad_norm, scheduler, done: int, completions_per_step: int, skipped: int,
                 timings: dict[str, float], within: dict[str, float] | None = None) -> dict:
    """`m` reduced over every process, plus what is equal on every process: grad norm, lr,
    episodes, skipped updates and the step's timings. `timings` are the step's consecutive
    parts (they sum to time/step); `within` are logged too, each part of one of those."""
    figures = m.reduce(rt)
    figures.update({
        "train/grad_norm": torch.as_tensor(float(grad_norm)),
        "train/lr": torch.tensor(scheduler.get_last_lr()[0]),
        "train/episode": torch.tensor(float(done * completions_per_step)),
        "guard/skipped_updates": torch.tensor(float(skipped)),
    })
    step_total = sum(timings.values())
    figures.update({f"time/{key}": v for key, v in {**timings, **(within or {})}.items()})
    figures["time/step"] = step_total
    figures["time/completions_per_second"] = completions_per_step / step_total
    return figures

