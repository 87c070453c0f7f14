"""FrozenPrefix: which layers count as frozen, and prefix + tail == the full forward."""

from __future__ import annotations

import pytest
import torch

from tiller.batching import mask_positions
from tiller.config import LoraConfig
from tiller.frozen_prefix import FrozenOutputs, FrozenPrefix, equal_leading_layers, frozen_layer_count
from tiller.models import apply_lora, load_causal_lm
from tiller.tiny import build_tiny_model


@pytest.fixture(scope="module", params=["llama", "qwen3"])
def four_layer_model(request, tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("fp") / request.param, arch=request.param, num_layers=4)


def test_frozen_layer_count(four_layer_model):
    full = load_causal_lm(str(four_layer_model))
    assert frozen_layer_count(full) == 0  # everything trainable
    assert FrozenPrefix.of(full) is None
    assert frozen_layer_count(apply_lora(load_causal_lm(str(four_layer_model)), LoraConfig(r=4, alpha=8), "CAUSAL_LM")) == 0
    last = apply_lora(load_causal_lm(str(four_layer_model)), LoraConfig(r=4, alpha=8, last_n_layers=1), "CAUSAL_LM")
    assert frozen_layer_count(last) == 3 and FrozenPrefix.of(last).layers == 3
    frozen = load_causal_lm(str(four_layer_model)).requires_grad_(False)
    assert frozen_layer_count(frozen) == 4 and FrozenPrefix.of(frozen) is None  # no tail left to train


def test_prefix_then_tail_equals_the_full_forward(four_layer_model):
    torch.manual_seed(0)
    model = apply_lora(load_causal_lm(str(four_layer_model)), LoraConfig(r=4, alpha=8, dropout=0.0, last_n_layers=2), "CAUSAL_LM")
    for name, p in model.named_parameters():  # a non-zero adapter, so the tail differs from the base
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    prefix = FrozenPrefix.of(model)
    assert prefix.layers == 2
    ids = torch.randint(3, 200, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    full = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    hidden = prefix.hidden(ids, mask)
    assert not hidden.requires_grad
    with prefix.tail_only():
        tail = model(inputs_embeds=hidden, attention_mask=mask, position_ids=positions).logits
    assert len(prefix.decoder.layers) == 4  # restored
    assert torch.allclose(full, tail, atol=1e-5)
    with model.disable_adapter():  # the reference shares the same prefix
        base = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        with prefix.tail_only():
            base_tail = model(inputs_embeds=hidden, attention_mask=mask, position_ids=positions).logits
    assert torch.allclose(base, base_tail, atol=1e-5) and not torch.allclose(base, full, atol=1e-3)
    # gradients reach the adapter through the tail
    with prefix.tail_only():
        model(inputs_embeds=hidden, attention_mask=mask, position_ids=positions).logits.sum().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad)


def test_equal_leading_layers_of_a_merged_policy_and_its_base(four_layer_model):
    base = load_causal_lm(str(four_layer_model)).eval()
    torch.manual_seed(0)
    lora = apply_lora(load_causal_lm(str(four_layer_model)), LoraConfig(r=4, alpha=8, dropout=0.0, last_n_layers=1),
                      "CAUSAL_LM")
    for name, p in lora.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    merged = lora.merge_and_unload().eval()  # as the evaluation loads a LoRA policy
    policy_prefix, base_prefix = equal_leading_layers(merged, base)
    assert policy_prefix.layers == base_prefix.layers == 3
    ids = torch.randint(3, 200, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    hidden = base_prefix.hidden(ids, mask)
    for model, prefix in ((merged, policy_prefix), (base, base_prefix)):  # one hidden, two tails
        with torch.no_grad():
            full = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
            with prefix.tail_only():
                tail = model(inputs_embeds=hidden, attention_mask=mask, position_ids=positions).logits
        assert torch.equal(full, tail)  # the same operations in the same order
    assert equal_leading_layers(base, base) is None  # every layer equal: nothing to split
    with torch.no_grad():
        next(base.parameters()).add_(1e-3)  # the embeddings differ: no shared layer
    assert equal_leading_layers(merged, base) is None


def test_frozen_outputs_reuse_only_the_same_inputs_on_the_same_base(four_layer_model):
    model = apply_lora(load_causal_lm(str(four_layer_model)), LoraConfig(r=4, alpha=8, last_n_layers=1), "CAUSAL_LM")
    prefix = FrozenPrefix.of(model)
    ids = torch.randint(3, 200, (2, 7))
    mask = torch.ones_like(ids)
    outputs = FrozenOutputs()
    first = outputs.hidden(prefix, "base-a", ids, mask)
    assert torch.equal(first, prefix.hidden(ids, mask)) and outputs.reused == 0
    assert outputs.hidden(prefix, "base-a", ids.clone(), mask.clone()) is first and outputs.reused == 1
    other_ids = ids.clone()
    other_ids[1, 3] += 1
    for args in (("base-b", ids, mask), ("base-a", other_ids, mask), ("base-a", ids, mask, mask_positions(mask) + 1)):
        assert outputs.hidden(prefix, *args) is not first  # another base, token or position: computed
    assert outputs.reused == 1
    small = FrozenOutputs(max_bytes=first.numel() * first.element_size() - 1)  # too small for one output
    small.hidden(prefix, "base-a", ids, mask)
    assert not small.stored and small.hidden(prefix, "base-a", ids, mask) is not None and small.reused == 0


def test_reward_suffix_by_hand():
    from tiller.frozen_prefix import reward_suffix

    assert reward_suffix([1, 2, 3], [1, 2, 3, 9, 10]) == [9, 10] and reward_suffix([4], [4]) == []
    assert reward_suffix([1, 2, 3], [1, 2, 7, 9]) is None  # a token differs
    assert reward_suffix([1, 2, 3], [1, 2]) is None  # the reward row is shorter (cut)


def test_extend_rows_writes_each_suffix_after_its_last_real_token():
    from tiller.frozen_prefix import extend_rows

    # [left-padded prompt | right-padded completion], pad 0
    ids = torch.tensor([[0, 5, 6, 7, 0], [8, 9, 10, 11, 12]])
    mask = torch.tensor([[0, 1, 1, 1, 0], [1, 1, 1, 1, 1]])
    ext_ids, ext_mask = extend_rows(ids, mask, [[20, 21], [22]], pad_id=0)
    assert ext_ids.tolist() == [[0, 5, 6, 7, 20, 21, 0], [8, 9, 10, 11, 12, 22, 0]]
    assert ext_mask.tolist() == [[0, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1, 0]]
    same_ids, same_mask = extend_rows(ids, mask, [[], []], pad_id=0)
    assert torch.equal(same_ids, ids) and torch.equal(same_mask, mask)


def test_a_reward_adapter_scores_the_same_from_the_shared_frozen_layers(tmp_path, four_layer_model):
    """AdapterScoreHead.score_hidden on the frozen layers' output of the extended rows equals the
    reward adapter's own full pass on the reward rows alone (right-padded, as the reward backend
    pads them), and the policy's log-probs from the first columns equal its own full forward."""
    from tiller.batching import mask_positions, pad_batch
    from tiller.frozen_prefix import extend_rows, reward_suffix
    from tiller.logprobs import build_batch, completion_logprobs
    from tiller.models import load_policy, load_reward_model, load_tokenizer, save_model
    from tiller.config import ModelConfig
    from tiller.rewards.shared_base import attach_reward_adapter

    torch.manual_seed(0)
    reward = apply_lora(load_reward_model(str(four_layer_model), pad_token_id=0),
                        LoraConfig(r=4, alpha=8, dropout=0.0, last_n_layers=2), "SEQ_CLS")
    with torch.no_grad():
        for n, p in reward.named_parameters():
            if "lora_B" in n or "score" in n:
                p.normal_(0.0, 0.3)
    folder = save_model(reward, load_tokenizer(str(four_layer_model)), tmp_path / "reward", merge_lora=False)
    policy, _ = load_policy(str(four_layer_model), ModelConfig(), LoraConfig(r=4, alpha=8, dropout=0.0, last_n_layers=2))
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.3)
    head = attach_reward_adapter(policy, folder)
    prefix = FrozenPrefix.of(policy)
    assert prefix is not None and prefix.layers == 2  # both adapters on the last 2 layers

    prompts, completions = [[3, 4, 5], [6, 7]], [[8, 9], [10, 11, 12, 13]]
    suffixes = [[14, 15], [16]]
    reward_rows = [p + c + s for p, c, s in zip(prompts, completions, suffixes)]
    assert [reward_suffix(p + c, r) for p, c, r in zip(prompts, completions, reward_rows)] == suffixes
    ids, mask, cmask, plen = build_batch(prompts, completions, 1, pad_id=0)
    ext_ids, ext_mask = extend_rows(ids, mask, suffixes, pad_id=0)
    hidden = prefix.hidden(ext_ids, ext_mask)
    shared = head.score_hidden(hidden, ext_mask, prefix)
    own_ids, own_mask = pad_batch(reward_rows, 0)
    own = head(own_ids, own_mask)
    assert torch.allclose(shared, own, atol=1e-5) and (own[0] - own[1]).abs() > 1e-3
    full = completion_logprobs(policy, ids, mask, plen, 1.0)[0]
    from_shared = completion_logprobs(policy, ids, mask, plen, 1.0, False, prefix, hidden[:, :ids.shape[1]])[0]
    # Equal at every completion token; the padding columns (masked out everywhere) see the suffix.
    assert torch.allclose(full[cmask.bool()], from_shared[cmask.bool()], atol=1e-5)
    assert mask_positions(ext_mask)[:, :ids.shape[1]][mask.bool()].tolist() == mask_positions(mask)[mask.bool()].tolist()
