"""PPO's value model beside its policy, as one module.

`PolicyWithValue` holds the policy (a causal LM, peft-wrapped under LoRA) and the value model,
whose decoder's last hidden state feeds a Linear(hidden, 1) head, one value per token. One
module, so that one optimizer, one DDP wrapper and one checkpoint hold both, and one forward
gives the policy's log-probs and the values: DDP needs every trained parameter reached inside its
forward. The value model is either

- shared (`ppo.value_model: shared`, the default under LoRA): a second LoRA adapter, "value",
  on the policy's own base. One copy of the base weights in memory; the policy's forward runs
  with the policy adapter ("default") active, the value forward with "value" active, and the
  reference (adapters disabled) is the starting model, as in rloo. Only LoRA can share: with
  full fine-tuning both objectives would train the same weights;
- separate (`ppo.value_model: separate`, the only choice with full fine-tuning): a second copy
  of the starting model, with its own LoRA adapter under LoRA. It costs a second set of base
  weights.

peft's `set_adapter` marks only the adapter it activates trainable, and autograd silently drops
the gradient of a leaf whose requires_grad is False when backward reaches it; both adapters train
in one optimizer, so every switch (`use_adapter`) sets both trainable again. "default" stays the
active adapter outside the value forward: the rollout engine, vLLM's adapter sync and the saved
policy (models.save_model saves the active adapter only) all see the policy.

The head starts at zero weight and bias: the first values are 0, the first advantages come from
the rewards alone, and the value model learns from the returns.

`build_policy_with_value` is the one way to build the bundle: the ppo stage trains it, and
`tiller eval curve` builds the same to load ppo's checkpoints into it (a checkpoint holds the
trained tensors by name, so the bundle must be built exactly as the stage built it).
"""

from __future__ import annotations

import contextlib
import copy
import functools

import torch

from tiller.batching import mask_positions
from tiller.config import ModelConfig, PpoConfig
from tiller.logprobs import completion_logprobs
from tiller.models import base_hf_model, enable_activation_checkpointing, load_policy

POLICY_ADAPTER, VALUE_ADAPTER = "default", "value"


def _train_both_adapters(peft_model) -> None:
    for name, p in peft_model.named_parameters():
        if "lora_" in name and {POLICY_ADAPTER, VALUE_ADAPTER} & set(name.split(".")):
            p.requires_grad_(True)


def use_adapter(peft_model, name: str) -> None:
    """Make `name` the active adapter, both adapters staying trainable."""
    if peft_model.active_adapter == name:
        return
    peft_model.set_adapter(name)
    _train_both_adapters(peft_model)  # set_adapter froze the other one


@contextlib.contextmanager
def adapter_active(peft_model, name: str):
    before = peft_model.active_adapter
    use_adapter(peft_model, name)
    try:
        yield
    finally:
        use_adapter(peft_model, before)


def _recompute_with_the_same_adapter(peft_model):
    """torch checkpoint's context_fn, called at each checkpointed layer's forward: the layer's
    recomputation in backward runs with the adapter active now. Without it the value forward's
    layers would be recomputed with "default", active again by then: wrong value gradients, and
    no error."""
    return contextlib.nullcontext(), adapter_active(peft_model, peft_model.active_adapter)


class PolicyWithValue(torch.nn.Module):
    def __init__(self, policy: torch.nn.Module, value_model: torch.nn.Module | None = None):
        """`value_model` None: the value adapter goes on `policy`'s base (a peft model), with the
        policy adapter's settings and its own random init (lora_A; lora_B starts at zero)."""
        super().__init__()
        self.policy = policy
        self.value_model = value_model
        self.shared = value_model is None
        # accelerate's FSDP2 wraps the classes the root module names here (the decoder layers) as
        # units of their own; without them the whole bundle would be gathered as one unit.
        self._no_split_modules = getattr(base_hf_model(policy), "_no_split_modules", None)
        if self.shared:
            if not hasattr(policy, "peft_config"):
                raise ValueError("a value adapter on the policy's base needs a LoRA policy (peft model)")
            hf = base_hf_model(policy)
            config = copy.deepcopy(policy.peft_config[POLICY_ADAPTER])
            # The value forward runs the decoder body only: a value adapter on the LM head (in
            # lora.target_modules) would never be reached, and DDP stops on a trained parameter
            # that gets no gradient.
            head = next(n for n, m in hf.named_modules() if m is hf.get_output_embeddings())
            config.exclude_modules = [head]
            policy.add_adapter(VALUE_ADAPTER, config)
            policy.set_adapter(POLICY_ADAPTER)
            _train_both_adapters(policy)
            if any(getattr(m, "gradient_checkpointing", False) for m in hf.modules()):  # load_policy turned it on
                enable_activation_checkpointing(
                    hf, context_fn=functools.partial(_recompute_with_the_same_adapter, policy))
        else:
            # The same for the separate value model: its LM head (or an adapter on it) is never
            # reached, so it is frozen; a head tied to the input embedding trains through the body.
            hf = base_hf_model(value_model)
            in_body = {id(p) for p in getattr(hf, hf.base_model_prefix).parameters()}
            for p in hf.get_output_embeddings().parameters():
                if id(p) not in in_body:
                    p.requires_grad_(False)
        hf = base_hf_model(policy if self.shared else value_model)
        weight = next(hf.parameters())
        self.value_head = torch.nn.Linear(hf.config.hidden_size, 1, dtype=weight.dtype, device=weight.device)
        torch.nn.init.zeros_(self.value_head.weight)
        torch.nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids=None, attention_mask=None, prompt_len: int | None = None, temperature: float = 1.0,
                with_entropy: bool = False, policy_kwargs: dict | None = None):
        """(log-probs of the completion tokens, values, entropies or None) of rows [left-padded
        prompt | right-padded completion] whose completions start at `prompt_len`: log-probs and
        entropies [B, T] from the policy's output layer at the completion tokens only (as rloo's,
        `tiller.logprobs.completion_logprobs`: the [tokens, vocabulary] logits never whole), and
        the value at every completion position and the one after it [B, T + 1]. With
        `policy_kwargs`, the policy's own output for them (`PolicyThroughBundle`)."""
        if policy_kwargs is not None:
            return self.policy(**policy_kwargs)
        logps, entropy = completion_logprobs(self.policy, input_ids, attention_mask, prompt_len, temperature,
                                             with_entropy)
        keep = input_ids.shape[1] - prompt_len + 1
        hf = base_hf_model(self.policy if self.shared else self.value_model)
        body = getattr(hf, hf.base_model_prefix)  # the decoder without the LM head (LoRA layers stay in it)
        with adapter_active(self.policy, VALUE_ADAPTER) if self.shared else contextlib.nullcontext():
            hidden = body(input_ids=input_ids, attention_mask=attention_mask, position_ids=mask_positions(attention_mask),
                          use_cache=False).last_hidden_state[:, -keep:]
        return logps, self.value_head(hidden).squeeze(-1), entropy


def value_model_kind(p: PpoConfig) -> str:
    """ppo.value_model resolved: "auto" is shared under LoRA, separate with full fine-tuning."""
    if p.value_model != "auto":
        return p.value_model
    return "shared" if p.lora.enabled else "separate"


def build_policy_with_value(start: str, model_cfg: ModelConfig, p: PpoConfig, device,
                            gradient_checkpointing: bool = False) -> tuple[PolicyWithValue, dict]:
    """(PolicyWithValue, origin) as the ppo stage builds it from its starting model `start`: the
    policy as rloo loads it (a saved adapter merged), and the value model: shared, a second LoRA
    adapter on the policy's base; separate, a second copy of the same start with its own LoRA
    adapter (or trained in full). Built otherwise, the trained tensors' names would not match
    those of ppo's checkpoints."""
    policy, origin = load_policy(start, model_cfg, p.lora, device, adapter="merge",
                                 gradient_checkpointing=gradient_checkpointing)
    if value_model_kind(p) == "shared":
        return PolicyWithValue(policy), origin
    value, _ = load_policy(start, model_cfg, p.lora, device, adapter="merge",
                           gradient_checkpointing=gradient_checkpointing)
    return PolicyWithValue(policy, value), origin


class PolicyThroughBundle:
    """The policy of a prepared `PolicyWithValue`, each call going through the bundle's forward;
    everything else is the policy's own. Under FSDP2 the bundle is the root unit: its forward
    gathers what the root holds (the policy's embedding, final norm and LM head) and initializes
    the sharding, which a direct call of the policy skips ("aten.embedding.default got mixed
    torch.Tensor and DTensor", or "requires running forward through the root module first").
    Generation and the reference call the policy this way under FSDP2."""

    def __init__(self, bundle, policy):
        self._bundle, self._policy = bundle, policy

    def __call__(self, **kwargs):
        return self._bundle(policy_kwargs=kwargs)

    def __getattr__(self, name):
        return getattr(self._policy, name)


def completion_logprobs_and_values(model, input_ids, attention_mask, prompt_len: int, temperature: float,
                                   with_entropy: bool = False):
    """Per completion token [B, T]: the policy's log-prob of the sampled token, the value of the
    state before it (read at the same position as the logits that predict it), and optionally
    the entropy. Rows are [left-padded prompt | right-padded completion] (`build_batch`)."""
    logps, values, entropy = model(input_ids, attention_mask, prompt_len, temperature, with_entropy)
    return logps, values[:, :-1].float(), entropy
