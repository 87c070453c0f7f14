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

from tiller.batching import (first_and_last_groups, mask_positions, pad_batch, prompt_group_batches, run_in_length_batches,
                             shared_prefix_rows)
from tiller.frozen_prefix import FrozenPrefix
from tiller.models import adapter_base, base_hf_model, load_causal_lm, quiet_peft_wrapping, resolve_model_name
from tiller.score_head import last_token_index, score_sequences, scores_tolerance

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

    @property
    def dtype(self) -> torch.dtype:
        return next(self.policy.parameters()).dtype

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor | None = None,
                 ends: torch.Tensor | None = None, rows: torch.Tensor | None = None) -> torch.Tensor:
        """As `score_head.ScoreHead`: padded rows, or rows of sequences sharing a prefix (a 4D
        mask with their `position_ids`, and each sequence's row and last column)."""
        return self._score(attention_mask, contextlib.nullcontext(), position_ids, ends, rows, input_ids=input_ids)

    def score_hidden(self, hidden: torch.Tensor, attention_mask: torch.Tensor, prefix,
                     position_ids: torch.Tensor | None = None, ends: torch.Tensor | None = None,
                     rows: torch.Tensor | None = None) -> torch.Tensor:
        """The same scores from `hidden`, the output of the policy's frozen layers (`prefix`, a
        `tiller.frozen_prefix.FrozenPrefix` of this policy) for these rows: only the layers after
        them run, with the reward adapter."""
        return self._score(attention_mask, prefix.tail_only(), position_ids, ends, rows, inputs_embeds=hidden)

    @torch.no_grad()
    def _score(self, attention_mask: torch.Tensor, layers, position_ids=None, ends=None, rows=None,
               **inputs) -> torch.Tensor:
        """The decoder (without the LM head) under the reward adapter and `layers` (a context:
        all of them, or the tail after a frozen prefix), the score head at the last real token
        (or at `rows`, `ends`)."""
        hf = base_hf_model(self.policy)
        body = getattr(hf, hf.base_model_prefix)
        positions = mask_positions(attention_mask) if position_ids is None else position_ids
        was_training = self.policy.training
        self.policy.eval()  # no dropout in a score (the policy may be in training mode)
        try:
            with active_adapter(self.policy, self.adapter_name), layers:
                hidden = body(**inputs, attention_mask=attention_mask, position_ids=positions,
                              use_cache=False).last_hidden_state
        finally:
            self.policy.train(was_training)
        if ends is None:
            picked = hidden[torch.arange(hidden.shape[0], device=hidden.device), last_token_index(attention_mask)]
        else:
            picked = hidden[torch.zeros_like(ends) if rows is None else rows, ends]
        return self.head(picked.to(self.head.weight.dtype)).squeeze(-1)

    def detach_adapter(self) -> None:
        """Remove the reward adapter from the policy (before the policy is saved: peft saves every
        adapter it holds)."""
        if self.adapter_name in self.policy.peft_config:
            self.policy.delete_adapter(self.adapter_name)


def attach_reward_adapter(policy, reward_path: str | Path, adapter_name: str = "reward") -> AdapterScoreHead:
    """Load the reward stage's adapter folder onto `policy` (a peft model on the same base, or
    the plain base model, which then becomes a peft model: the returned head's `policy`) as a
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
    if hasattr(policy, "peft_config"):
        policy.add_adapter(adapter_name, config)
    else:  # a plain base (`load_adapters_on_one_base`): this adapter makes it a peft model
        from peft import get_peft_model

        with quiet_peft_wrapping():
            policy = get_peft_model(policy, config, adapter_name=adapter_name)
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


# ---- several reward adapters of one base: the evaluation's judge and optimized reward model ------
#
# The flagship recipe trains both from the policy's base with LoRA. Loaded the ordinary way they
# are two merged models, loaded one after the other; here they are one copy of the base with two
# adapters, and, when the adapters sit on the last layers, one pass of the frozen layers below them
# per batch of answers serves both (the same reasoning as the policy's frozen prefix).


def why_not_one_base(paths: list[str | Path]) -> str | None:
    """None when every folder in `paths` is a LoRA reward adapter of one full base model; else the reason."""
    bases = [adapter_base(path) for path in paths]
    for path, base in zip(paths, bases):
        if base is None:
            return f"{path} holds a full (or merged) model, not a LoRA adapter"
    try:
        resolved = {_resolved(base) for base in bases}
    except FileNotFoundError as error:
        return f"a base is not there ({error})"
    if len(resolved) > 1:
        return f"they were trained on different bases ({', '.join(sorted(set(bases)))})"
    if adapter_base(resolve_model_name(bases[0])) is not None:
        return f"their base {bases[0]} is itself an adapter folder"
    return None


def load_adapters_on_one_base(paths: list[str | Path], device: str = "cpu", model_cfg=None) -> list[AdapterScoreHead]:
    """One copy of the base that the reward adapters in `paths` were trained on (check with
    `why_not_one_base` first), each of them attached to it, frozen, as adapter "scorer_<i>" with
    its score head: one scorer per path, in order, all borrowing the same model."""
    model = load_causal_lm(adapter_base(paths[0]), model_cfg, device)
    model.requires_grad_(False)
    heads = []
    for i, path in enumerate(paths):
        heads.append(attach_reward_adapter(model, path, f"scorer_{i}"))
        model = heads[-1].policy
    return heads


class ScoresOnOneBase:
    """`ClassifierReward` backends whose scorers are adapters of one base (`load_adapters_on_one_base`),
    scored together: `score` gives each answer a tuple of every backend's score. Where every
    backend renders an answer to the same token ids (the same tokenizer, template and length
    limit: checked per answer), the layers below all the adapters run once for all of them and
    each adapter runs only the layers from there; with the first backend's `shared_prompt`, the
    answers to one prompt also share a row with the prompt's tokens once. The first such batch is
    also scored by each backend's own padded full pass and the shortcuts kept only if the scores
    agree (printed either way). Answers rendered differently get each backend's own pass."""

    def __init__(self, backends: list, label: str = "[eval]"):
        self.backends = backends
        self.label = label
        self.prefix = FrozenPrefix.of(backends[0].scorer.policy)
        self.grouped = backends[0].cfg.shared_prompt
        self.checked = self.prefix is None and not self.grouped
        self.own_rows = 0  # answers some backend renders to other ids than the first

    @torch.no_grad()
    def score(self, prompts: list[list[dict]], completions: list[str], group_size: int = 1,
              records: list[dict] | None = None) -> list[tuple[float, ...]]:
        encoded = [[backend.encode(p, c) for backend in self.backends] for p, c in zip(prompts, completions)]
        same = [i for i, ids in enumerate(encoded) if all(other == ids[0] for other in ids[1:])]
        results: list[tuple[float, ...] | None] = [None] * len(encoded)
        keys = [json.dumps(prompts[i], sort_keys=True) for i in same]
        batches = prompt_group_batches(keys, [len(encoded[i][0]) for i in same], self.backends[0].cfg.batch_size)
        for batch in batches:
            groups = [[encoded[same[j]][0] for j in group] for group in batch]
            for j, scores in zip([j for group in batch for j in group], self._score_together(groups)):
                results[same[j]] = scores
        differ = [i for i in range(len(encoded)) if results[i] is None]
        self.own_rows += len(differ)
        if differ:
            columns = []
            for k, backend in enumerate(self.backends):
                columns.append(run_in_length_batches(
                    [len(encoded[i][k]) for i in differ], backend.cfg.batch_size,
                    lambda batch, k=k, backend=backend: score_sequences(
                        backend.scorer, [encoded[differ[j]][k] for j in batch], backend.tokenizer.pad_token_id,
                        backend.device, False).float().cpu().tolist()))
            for row, i in enumerate(differ):
                results[i] = tuple(column[row] for column in columns)
        return results  # type: ignore[return-value]  # every row is scored one way or the other

    def close(self) -> None:
        """Let go of the base and its adapters (nothing else is saved from it)."""
        for backend in self.backends:
            backend.scorer = None
        self.prefix = None

    def _score_together(self, groups: list[list[list[int]]]) -> list[tuple[float, ...]]:
        """Every backend's score of each sequence of `groups` (in order), by the shortcuts in use."""
        first = self.backends[0]
        flat = [sequence for group in groups for sequence in group]
        pad, device = first.tokenizer.pad_token_id, first.device
        if self.grouped:
            ids, positions, mask, rows, ends = (t.to(device) for t in shared_prefix_rows(groups, pad, first.scorer.dtype))
        else:
            ids, mask = (t.to(device) for t in pad_batch(flat, pad))
            positions = rows = ends = None
        try:
            if self.prefix is None:
                scores = torch.stack([backend.scorer(ids, mask, positions, ends, rows).float()
                                      for backend in self.backends], dim=1)
            else:
                hidden = self.prefix.hidden(ids, mask, positions)
                scores = torch.stack([backend.scorer.score_hidden(hidden, mask, self.prefix, positions, ends,
                                                                  rows).float() for backend in self.backends], dim=1)
        except (RuntimeError, ValueError):  # an attention implementation that refuses a 4D mask
            if self.checked:
                raise
            scores = torch.full((len(flat), len(self.backends)), float("inf"), device=device)  # fails the check
        if not self.checked:
            self.checked = True
            # Checked on the sequences of the first and the last group of the batch (the shortest
            # and the longest: padding included), not all of it.
            picked = first_and_last_groups([len(group) for group in groups])
            own = self._own_padded([flat[i] for i in picked])
            diff = float((scores[picked] - own).abs().max())
            shortcuts = ", ".join(
                ([f"the first {self.prefix.layers} layers hold no adapter: computed once per batch for all "
                  f"{len(self.backends)} scorers"] if self.prefix is not None else [])
                + (["the answers to one prompt in one row, the prompt once"] if self.grouped else []))
            if diff > scores_tolerance(first.scorer) * max(1.0, float(own.abs().max())):
                print(f"{self.label} {shortcuts}: other scores than the scorers' own passes (max diff {diff:.1e}): "
                      "each runs its full padded pass", flush=True)
                self.prefix, self.grouped = None, False
                return [tuple(row) for row in self._own_padded(flat).cpu().tolist()]
            print(f"{self.label} {shortcuts} (checked equal to their own full passes, max diff {diff:.1e})", flush=True)
        return [tuple(row) for row in scores.cpu().tolist()]

    def _own_padded(self, sequences: list[list[int]]) -> torch.Tensor:
        """Every backend's scores of `sequences` by its own full padded pass: [n, backends]."""
        first = self.backends[0]
        ids, mask = (t.to(first.device) for t in pad_batch(sequences, first.tokenizer.pad_token_id))
        return torch.stack([backend.scorer(ids, mask).float() for backend in self.backends], dim=1)

