"""The transformers rollout engine: sampling arithmetic, per-row seeding, the reserved KV cache."""

from __future__ import annotations

import math

import pytest
import torch
from transformers.cache_utils import DynamicCache

from tiller.chat import render_prompt
from tiller.models import load_causal_lm, load_tokenizer
from tiller.rollout import Sampling
from tiller.rollout import transformers_engine as te


def _generators(n: int, offset: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(offset + i) for i in range(n)]


def test_filter_logits_top_p_and_top_k_by_hand():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    # top_p 0.8: the mass before 0.15 is already 0.8, so 0.15 and 0.05 go; 0.5 and 0.3 stay.
    kept = te.filter_logits(logits, Sampling(temperature=1.0, top_p=0.8), []).isfinite()
    assert kept.tolist() == [[True, True, False, False]]
    # top_p 0.81: the mass before 0.15 is 0.8 < 0.81, so it stays.
    kept = te.filter_logits(logits, Sampling(temperature=1.0, top_p=0.81), []).isfinite()
    assert kept.tolist() == [[True, True, True, False]]
    kept = te.filter_logits(logits, Sampling(temperature=1.0, top_k=3), []).isfinite()
    assert kept.tolist() == [[True, True, True, False]]
    # temperature 0.5 squares the probabilities before renormalizing: 0.25/0.09/0.0225/0.0025.
    tempered = torch.softmax(te.filter_logits(logits, Sampling(temperature=0.5), []), -1)
    expected = torch.tensor([0.25, 0.09, 0.0225, 0.0025]) / 0.365
    assert torch.allclose(tempered[0], expected, atol=1e-6)
    # suppress_eos removes the listed ids.
    assert te.filter_logits(logits, Sampling(suppress_eos=True), [2])[0, 2] == -math.inf


def test_sample_next_draws_the_filtered_distribution():
    rows = 20_000
    probs = torch.tensor([0.1, 0.2, 0.0, 0.3, 0.4])
    logits = probs.log().expand(rows, -1).clone()  # log 0 = -inf: never drawn
    picked = te.sample_next(logits, Sampling(temperature=1.0), _generators(rows), [])
    counts = torch.bincount(picked, minlength=5).double()
    assert counts[2] == 0
    for token, p in enumerate(probs.tolist()):
        if p:
            sd = math.sqrt(rows * p * (1 - p))
            assert abs(counts[token] - rows * p) < 5 * sd, (token, counts.tolist())
    # top_k=2 keeps tokens 3 and 4 only, renormalized to 3/7 and 4/7.
    picked = te.sample_next(logits, Sampling(temperature=1.0, top_k=2), _generators(rows, 7), [])
    counts = torch.bincount(picked, minlength=5).double()
    assert counts[:3].sum() == 0
    assert abs(counts[3] / rows - 3 / 7) < 5 * math.sqrt(3 / 7 * 4 / 7 / rows)


def test_sample_next_rows_depend_only_on_their_own_generator():
    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(0))
    sampling = Sampling(temperature=1.0, top_p=0.9)
    together = te.sample_next(logits, sampling, _generators(6), [])
    alone = torch.cat([te.sample_next(logits[i:i + 1], sampling, [torch.Generator().manual_seed(i)], [])
                       for i in range(6)])
    assert together.tolist() == alone.tolist()
    # greedy ignores the generators
    assert te.sample_next(logits, Sampling(temperature=0.0), _generators(6), []).tolist() == logits.argmax(-1).tolist()


def test_sample_next_falls_back_when_the_draw_rounds_up_to_the_total(monkeypatch):
    """u * total can equal the total in floating point; the pick must still have positive probability."""
    probs = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    monkeypatch.setattr(torch, "rand", lambda *a, **k: torch.ones(1, dtype=torch.float64))
    picked = te.sample_next(probs.log(), Sampling(temperature=1.0), _generators(1), [])
    assert picked.tolist() == [1]


def test_reserved_kv_layer_grows_selects_and_repeats():
    layer = te.ReservedKVLayer(reserve=2)
    k = torch.arange(2 * 1 * 3 * 2, dtype=torch.float32).reshape(2, 1, 3, 2)
    keys, values = layer.update(k, -k)
    assert torch.equal(keys, k) and torch.equal(values, -k) and layer.get_seq_length() == 3
    buffer = layer._key_buffer
    step = torch.full((2, 1, 1, 2), 100.0)
    keys, _ = layer.update(step, step)  # within the reserve: written in place, no new buffer
    assert layer._key_buffer is buffer and torch.equal(keys, torch.cat([k, step], 2))
    keys, _ = layer.update(step + 1, step + 1)
    keys, _ = layer.update(step + 2, step + 2)  # past the reserve: a larger buffer, same content
    assert layer._key_buffer is not buffer
    assert torch.equal(keys, torch.cat([k, step, step + 1, step + 2], 2)) and layer.get_seq_length() == 6
    layer.batch_select_indices(torch.tensor([1]))
    assert torch.equal(layer.keys, torch.cat([k, step, step + 1, step + 2], 2)[1:])
    layer.batch_repeat_interleave(3)
    assert layer.keys.shape == (3, 1, 6, 2) and torch.equal(layer.keys[2], layer.keys[0])


@pytest.fixture(scope="module")
def tiny_policy(tiny_llama):
    torch.manual_seed(0)
    return load_causal_lm(str(tiny_llama)).eval(), load_tokenizer(str(tiny_llama))


def _prompt_ids(tokenizer, questions):
    texts = [render_prompt(tokenizer, [{"role": "user", "content": q}]) for q in questions]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def test_reserved_cache_decodes_like_the_dynamic_cache_and_generate(tiny_policy, monkeypatch):
    model, tokenizer = tiny_policy
    prompts = _prompt_ids(tokenizer, ["Hi", "What is the capital of France?", "Name a color please."])
    engine = te.TransformersEngine(model, tokenizer)
    greedy = Sampling(max_new_tokens=12, temperature=0.0)
    reserved = engine.generate(prompts, 1, greedy, [0, 1, 2]).completions
    monkeypatch.setattr(te, "reserved_cache", lambda m, reserve: DynamicCache(config=m.config))
    dynamic = engine.generate(prompts, 1, greedy, [0, 1, 2]).completions
    assert reserved == dynamic
    assert max(len(c) for c in reserved) >= 8  # long enough to exercise the cache
    for ids, completion in zip(prompts, reserved):  # one prompt at a time, no padding: transformers' own loop
        out = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False, eos_token_id=sorted(engine.eos_ids),
                             pad_token_id=tokenizer.pad_token_id)
        assert out[0, len(ids):].tolist()[:len(completion)] == completion


def test_completions_do_not_depend_on_batch_mates(tiny_policy):
    model, tokenizer = tiny_policy
    prompts = _prompt_ids(tokenizer, ["Why is the sky blue?", "What do bees make?", "Suggest a name for a cat."])
    engine = te.TransformersEngine(model, tokenizer)
    sampling = Sampling(max_new_tokens=16, temperature=1.0, top_p=0.95)
    together = engine.generate(prompts, 3, sampling, [11, 12, 13]).completions
    alone = engine.generate(prompts[1:2], 3, sampling, [12]).completions
    assert together[3:6] == alone
    assert len({tuple(c) for c in together}) > 1  # sampling, not a constant


def test_decoding_passes_the_cache_by_the_keyword_transformers_takes(tiny_policy):
    """transformers 5 renamed forward's `past_key_values` to `cache` (the old name warns on every
    call and goes in 5.40); older versions know only `past_key_values`. The engine asks the model
    class, through peft's wrapper too, and decoding warns about neither."""
    import inspect
    import warnings

    from transformers import LlamaForCausalLM

    from tiller.config import LoraConfig
    from tiller.models import apply_lora

    model, tokenizer = tiny_policy
    takes_cache = "cache" in inspect.signature(LlamaForCausalLM.forward).parameters
    assert te.cache_keyword(model) == ("cache" if takes_cache else "past_key_values")
    wrapped = apply_lora(load_causal_lm(str(model.name_or_path)), LoraConfig(r=2, alpha=4, dropout=0.0), "CAUSAL_LM")
    assert te.cache_keyword(wrapped) == te.cache_keyword(model)

    class OlderLlama(LlamaForCausalLM):  # a forward from before the rename
        def forward(self, input_ids=None, attention_mask=None, past_key_values=None, **kwargs):
            return super().forward(input_ids=input_ids, attention_mask=attention_mask, past_key_values=past_key_values, **kwargs)

    assert te._cache_keyword_of(OlderLlama) == "past_key_values"

    prompts = _prompt_ids(tokenizer, ["Hi", "Name a color please."])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for m in (model, wrapped):
            te.TransformersEngine(m, tokenizer).generate(prompts, 2, Sampling(max_new_tokens=6, temperature=1.0), [0, 1])
    assert not [w for w in caught if "past_key_values" in str(w.message) or "deprecated" in str(w.message)], \
        [str(w.message) for w in caught]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_merged_lora_weights_are_merge_and_unload_bit_for_bit(tmp_path, dtype):
    """rollout.vllm_lora_sync: merged sends vLLM every weight of the base, the adapted ones with
    the adapter merged in: the same names and the same bits as peft's merge_and_unload, while
    the training weights (base and adapter) stay exactly as they were."""
    import copy

    from tiller.config import LoraConfig
    from tiller.models import apply_lora
    from tiller.rollout.vllm_engine import merged_lora_weights
    from tiller.tiny import build_tiny_model

    folder = build_tiny_model(tmp_path / "tiny", num_layers=2)
    base = load_causal_lm(str(folder)).to(dtype)
    base_weights = {n: p.detach().clone() for n, p in base.named_parameters()}
    model = apply_lora(base, LoraConfig(r=4, alpha=8, dropout=0.0, last_n_layers=1), "CAUSAL_LM")
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)  # peft starts B at zero: a trained adapter is not
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    merged = dict(merged_lora_weights(model))

    expected = dict(copy.deepcopy(model).merge_and_unload().named_parameters())
    assert list(merged) == list(expected) == list(base_weights)  # the base's checkpoint names, in order
    for name, tensor in expected.items():
        assert merged[name].dtype == dtype
        assert torch.equal(merged[name], tensor), name
    # the last layer's seven projections changed (last_n_layers=1); every other weight is the base's
    changed = sorted(n for n in merged if not torch.equal(merged[n], base_weights[n]))
    assert changed == sorted(f"model.layers.1.{part}.weight" for part in (
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"))
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name
