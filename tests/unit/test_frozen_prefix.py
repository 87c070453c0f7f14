"""FrozenPrefix: which layers count as frozen, and prefix + tail == the full forward."""

from __future__ import annotations

import pytest
import torch

from tiller.config import LoraConfig
from tiller.frozen_prefix import FrozenPrefix, frozen_layer_count
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
