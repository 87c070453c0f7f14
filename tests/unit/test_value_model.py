"""PPO's shared value model (tiller.value_model): a second LoRA adapter on the policy's base. The
policy, the values and the reference each see the right adapters; every trained parameter gets
its gradient from one forward (peft's set_adapter would freeze the inactive adapter); gradient
checkpointing recomputes each path with its own adapter; one base costs less than two copies."""

from __future__ import annotations

import contextlib

import pytest
import torch

from tiller import value_model
from tiller.config import LoraConfig, ModelConfig
from tiller.logprobs import completion_logprobs
from tiller.models import load_policy
from tiller.value_model import PolicyWithValue

LORA = LoraConfig(r=4, alpha=8, dropout=0.0)


def shared(model_dir, checkpointing: bool = False) -> PolicyWithValue:
    """A shared bundle whose adapters and head are all non-zero (LoRA B and the head start at zero,
    which would hide an adapter mix-up)."""
    torch.manual_seed(0)
    policy, _ = load_policy(str(model_dir), ModelConfig(), LORA, "cpu", gradient_checkpointing=checkpointing)
    bundle = PolicyWithValue(policy)
    with torch.no_grad():
        for name, p in bundle.named_parameters():
            if "lora_B" in name or "value_head" in name:
                p.normal_(0, 0.5)
    return bundle


PROMPT_LEN = 6  # the inputs' last 4 tokens are the completion


def inputs():
    ids = torch.randint(3, 100, (2, 10), generator=torch.Generator().manual_seed(1))
    return ids, torch.ones_like(ids)


def test_each_path_sees_its_own_adapter_and_the_reference_is_the_start(tiny_llama):
    bundle = shared(tiny_llama).eval()
    ids, mask = inputs()
    start = load_policy(str(tiny_llama), ModelConfig(), None, "cpu")[0]
    with torch.no_grad():
        logps, values, _ = bundle(ids, mask, PROMPT_LEN)
        assert bundle.policy.active_adapter == "default"  # what the rollout engine and the saved policy see
        with bundle.policy.disable_adapter():  # how rl_rollout.reference_logprobs computes the reference
            reference = completion_logprobs(bundle.policy, ids, mask, PROMPT_LEN, 1.0)[0]
        assert torch.equal(reference, completion_logprobs(start, ids, mask, PROMPT_LEN, 1.0)[0])
        assert not torch.allclose(logps, reference)  # the policy adapter is on in the policy's forward
        for name, p in bundle.named_parameters():
            if "lora_B.value" in name:
                p.zero_()
        logps_2, values_2, _ = bundle(ids, mask, PROMPT_LEN)
    assert torch.equal(logps_2, logps)  # the value adapter does not touch the policy ...
    assert not torch.allclose(values_2, values)  # ... and is on in the value forward


def test_the_policy_log_probs_are_those_of_its_logits_at_the_completion_tokens(tiny_llama):
    """The bundle's policy half computes log-probs at the completion tokens from the output layer
    (no [tokens, vocabulary] logits): the values the tempered log-softmax of the policy's own
    logits gives, entropies too; values at every completion position and the one after."""
    bundle = shared(tiny_llama).train()
    ids, mask = inputs()
    logps, values, entropy = bundle(ids, mask, PROMPT_LEN, 0.7, True)
    with torch.no_grad():
        logits = bundle.policy(input_ids=ids, attention_mask=mask).logits[:, PROMPT_LEN - 1:-1] / 0.7
    log_softmax = torch.log_softmax(logits, -1)
    torch.testing.assert_close(logps, log_softmax.gather(-1, ids[:, PROMPT_LEN:, None])[..., 0], rtol=0, atol=1e-6)
    torch.testing.assert_close(entropy, -(log_softmax.exp() * log_softmax).sum(-1), rtol=0, atol=1e-5)
    assert logps.requires_grad and not entropy.requires_grad
    assert values.shape == (ids.shape[0], ids.shape[1] - PROMPT_LEN + 1)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_one_backward_reaches_both_adapters_and_the_head(tiny_llama, checkpointing):
    """Both adapters stay trainable after the forward switched between them, and with gradient
    checkpointing the gradients equal those without it: each checkpointed layer is recomputed
    with the adapter it ran with."""
    ids, mask = inputs()
    grads = {}
    for with_checkpoints in (False, checkpointing):
        bundle = shared(tiny_llama, with_checkpoints).train()
        logps, values, _ = bundle(ids, mask, PROMPT_LEN)
        trainable = [n for n, p in bundle.named_parameters() if p.requires_grad]
        (logps.sum() + values.sum()).backward()
        grads[with_checkpoints] = {n: p.grad for n, p in bundle.named_parameters() if p.requires_grad}
        # both adapters (A and B of 7 modules x 2 layers each) and the head
        assert len(trainable) == 2 * 2 * 7 * 2 + 2 and trainable == list(grads[with_checkpoints])
        assert any(".value." in n for n in trainable) and any(".default." in n for n in trainable)
        assert all(g is not None and g.abs().sum() > 0 for g in grads[with_checkpoints].values())
    for name, g in grads[False].items():
        torch.testing.assert_close(grads[checkpointing][name], g, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("kind", ["shared", "separate"])
def test_an_adapted_lm_head_leaves_no_trained_parameter_without_gradient(tiny_llama, kind):
    """lora.target_modules with the LM head: the value forward never reaches the value model's
    head, so the value adapter leaves it out (shared) or it is frozen (separate); DDP would stop
    on a trained parameter without a gradient."""
    lora = LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "lm_head"])
    policy, _ = load_policy(str(tiny_llama), ModelConfig(), lora, "cpu")
    value = None if kind == "shared" else load_policy(str(tiny_llama), ModelConfig(), lora, "cpu")[0]
    bundle = PolicyWithValue(policy, value)
    ids, mask = inputs()
    logps, values, _ = bundle(ids, mask, PROMPT_LEN)
    (logps.sum() + values.sum()).backward()
    trained = {n: p.grad for n, p in bundle.named_parameters() if p.requires_grad}
    assert any("lm_head.lora_A" in n for n in trained)  # the policy's head adapter trains
    assert [n for n, g in trained.items() if g is None] == []


def test_checkpointing_without_the_recompute_context_is_wrong(tiny_llama, monkeypatch):
    """Why the context exists: without it the value path's layers are recomputed in backward with
    the policy adapter (active again by then), and the value adapter's gradients come out wrong."""
    ids, mask = inputs()
    grads = []
    for checkpointing in (False, True):
        if checkpointing:
            monkeypatch.setattr(value_model, "_recompute_with_the_same_adapter",
                                lambda m: (contextlib.nullcontext(), contextlib.nullcontext()))
        bundle = shared(tiny_llama, checkpointing).train()
        _, values, _ = bundle(ids, mask, PROMPT_LEN)
        values.sum().backward()
        grads.append({n: p.grad for n, p in bundle.named_parameters() if "lora_A.value" in n})
    assert any(not torch.allclose(grads[0][n], grads[1][n], atol=1e-5) for n in grads[0])


def test_one_base_holds_fewer_parameters_than_two_copies(tiny_llama):
    one = shared(tiny_llama)
    policy, _ = load_policy(str(tiny_llama), ModelConfig(), LORA, "cpu")
    value, _ = load_policy(str(tiny_llama), ModelConfig(), LORA, "cpu")
    two = PolicyWithValue(policy, value)
    def count(module, trainable_only: bool) -> int:
        return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)

    base = sum(p.numel() for p in load_policy(str(tiny_llama), ModelConfig(), None, "cpu")[0].parameters())
    assert count(one, True) == count(two, True)  # the same trainable adapters and head
    assert count(two, False) - count(one, False) == base  # one base copy less


def test_shared_needs_a_lora_policy(tiny_llama):
    policy, _ = load_policy(str(tiny_llama), ModelConfig(), LoraConfig(enabled=False), "cpu")
    with pytest.raises(ValueError, match="needs a LoRA policy"):
        PolicyWithValue(policy)
