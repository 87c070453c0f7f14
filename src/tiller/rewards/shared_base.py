"""A LoRA reward model scored on the policy's own base: one copy of the base weights.

The flagship recipe trains its reward model from the policy's base with LoRA, and the reward
stage saves it as an adapter folder (LoRA weights and the trained score head, a pointer to the
base). Loaded the ordinary way (`models.load_reward_model`) it becomes a second full model next
to the policy: 16 GB more for an 8B base in bf16. When the policy itself is a LoRA model on the
same starting weights, the reward adapter can instead sit on the policy's base as a second peft
adapter ("reward"), with its score head beside it; scoring switches to that adapter for a no-grad
forward and back. Policy (adapter "default"), reference (adapters disabled) and reward (adapter
"reward") then share one base.

What it computes is the separate merged reward model's score up to float rounding: the adapter
adds B·A·x to each targeted layer instead of having it merged into the weight (tested against
the merged model; 1e-5 in float32).

Conditions (checked by `why_not_shared`, printed by the recipe either way): the reward folder is
an adapter, the policy is a LoRA model and not sharded (FSDP2 / ZeRO-3 own the base's layers,
and a forward there is a collective), and the reward adapter's base resolves to the weights the
policy started from.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch

from tiller.batching import mask_positions
from tiller.models import adapter_base, base_hf_model, resolve_model_name
from tiller.score_head import last_token_index

SCORE_KEYS = ("base_model.model.score.weight", "base_model.model.score.bias")


def why_not_shared(reward_path: str | Path, policy, policy_start: str, sharded: bool) -> str | None:
    """None when the reward adapter in `reward_path` can score on `policy`'s base; else the reason."""
    base = adapter_base(reward_path)
    if base is None:
        return "the reward model folder holds a full (or merged) model, not a LoRA adapter"
    if not hasattr(policy, "add_adapter") or not hasattr(policy, "peft_config"):
        return "the policy is fully fine-tuned: its base weights change, the reward model's must not"
    if sharded:
        return "FSDP2 / ZeRO-3 shard the policy's base"
    try:
        same = _resolved(base) == _resolved(policy_start)
    except FileNotFoundError:
        same = False
    if not same:
        return f"the reward adapter's base ({base}) is not the policy's starting weights ({policy_start})"
    return None


def _resolved(name: str) -> str:
    path = resolve_model_name(name)
    return str(Path(path).resolve()) if Path(path).exists() else path


@contextlib.contextmanager
def active_adapter(model, name: str):
    """Inside: `model` (a peft model) computes with adapter `name`. peft's `set_adapter` also
    marks the active adapter trainable and the others frozen, so every parameter's requires_grad
    is put back as it was on the way out: the policy's adapter stays the trained one."""
    previous = model.active_adapter
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.set_adapter(name)
    try:
        yield
    finally:
        model.set_adapter(previous)
        for p, flag in flags:
            p.requires_grad_(flag)


class AdapterScoreHead:
    """ids, mask -> one score per row, from the policy's base with the reward adapter active and
    the reward model's trained score head read at the last real token (as `score_head.ScoreHead`).
    Not an nn.Module: it borrows the policy, whose parameters must not be counted twice."""

    def __init__(self, policy, adapter_name: str, head: torch.nn.Linear):
        self.policy = policy
        self.adapter_name = adapter_name
        self.head = head

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self._score(attention_mask, contextlib.nullcontext(), input_ids=input_ids)

    def score_hidden(self, hidden: torch.Tensor, attention_mask: torch.Tensor, prefix) -> torch.Tensor:
        """The same scores from `hidden`, the output of the policy's frozen layers (`prefix`, a
        `tiller.frozen_prefix.FrozenPrefix` of this policy) for these rows: only the layers after
        them run, with the reward adapter."""
        return self._score(attention_mask, prefix.tail_only(), inputs_embeds=hidden)

    @torch.no_grad()
    def _score(self, attention_mask: torch.Tensor, layers, **inputs) -> torch.Tensor:
        """The decoder (without the LM head) under the reward adapter and `layers` (a context:
        all of them, or the tail after a frozen prefix), the score head at the last real token."""
        hf = base_hf_model(self.policy)
        body = getattr(hf, hf.base_model_prefix)
        was_training = self.policy.training
        self.policy.eval()  # no dropout in a score (the policy may be in training mode)
        try:
            with active_adapter(self.policy, self.adapter_name), layers:
                hidden = body(**inputs, attention_mask=attention_mask, position_ids=mask_positions(attention_mask),
                              use_cache=False).last_hidden_state
        finally:
            self.policy.train(was_training)
        picked = hidden[torch.arange(hidden.shape[0], device=hidden.device), last_token_index(attention_mask)]
        return self.head(picked.to(self.head.weight.dtype)).squeeze(-1)

    def detach_adapter(self) -> None:
        """Remove the reward adapter from the policy (before the policy is saved: peft saves every
        adapter it holds)."""
        if self.adapter_name in self.policy.peft_config:
            self.policy.delete_adapter(self.adapter_name)


def attach_reward_adapter(policy, reward_path: str | Path, adapter_name: str = "reward") -> AdapterScoreHead:
    """Load the reward stage's adapter folder onto `policy` (a peft model on the same base) as a
    frozen adapter `adapter_name`, and its score head beside it."""
    from peft import LoraConfig, set_peft_model_state_dict
    from safetensors.torch import load_file

    reward_path = Path(reward_path)
    saved = json.loads((reward_path / "adapter_config.json").read_text())
    if saved.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{reward_path}: a {saved['peft_type']} adapter; only LoRA reward adapters share the base")
    config = LoraConfig(
        r=saved["r"], lora_alpha=saved["lora_alpha"], lora_dropout=0.0, target_modules=saved["target_modules"],
        layers_to_transform=saved.get("layers_to_transform"), layers_pattern=saved.get("layers_pattern"),
        rank_pattern=saved.get("rank_pattern") or {}, alpha_pattern=saved.get("alpha_pattern") or {},
        use_rslora=saved.get("use_rslora", False), bias=saved.get("bias", "none"),
        task_type="CAUSAL_LM", inference_mode=True)
    weights = load_file(str(reward_path / "adapter_model.safetensors"))
    if SCORE_KEYS[0] not in weights:
        raise ValueError(f"{reward_path / 'adapter_model.safetensors'} holds no trained score head "
                         f"({SCORE_KEYS[0]}): not a tiller reward adapter")
    score_weight, score_bias = weights.pop(SCORE_KEYS[0]), weights.pop(SCORE_KEYS[1], None)
    flags = [(p, p.requires_grad) for p in policy.parameters()]
    policy.add_adapter(adapter_name, config)
    result = set_peft_model_state_dict(policy, weights, adapter_name=adapter_name)
    missing = [k for k in result.missing_keys if f".{adapter_name}." in k]
    if result.unexpected_keys or missing:
        policy.delete_adapter(adapter_name)
        raise ValueError(f"{reward_path}: the reward adapter does not fit the policy's base (missing {missing[:3]}, "
                         f"unexpected {result.unexpected_keys[:3]})")
    for p, flag in flags:  # the policy's own adapter stays the trained one
        p.requires_grad_(flag)
    for name, p in policy.named_parameters():
        if f".{adapter_name}." in name:
            p.requires_grad_(False)
    reference = next(p for p in base_hf_model(policy).parameters())
    head = torch.nn.Linear(score_weight.shape[1], score_weight.shape[0], bias=score_bias is not None,
                           dtype=reference.dtype, device=reference.device)
    with torch.no_grad():
        head.weight.copy_(score_weight)
        if score_bias is not None:
            head.bias.copy_(score_bias)
    head.requires_grad_(False)
    return AdapterScoreHead(policy, adapter_name, head)
