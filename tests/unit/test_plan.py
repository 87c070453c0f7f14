"""`tiller plan`: the memory arithmetic against numbers computed by hand."""

from __future__ import annotations

import pytest

from tiller import plan
from tiller.config_loading import config_from_dict, load_config
from tests.conftest import ROOT

GIB = 1024**3
QWEN3_8B = plan.dims_from_config(plan.KNOWN_CONFIGS["Qwen/Qwen3-8B"])
# hidden 64, 2 layers, 4 heads, 2 KV heads, head_dim 16, intermediate 128, vocab 100
SMALL = plan.ModelDims(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                       intermediate_size=128, vocab_size=100, tie_embeddings=True)


def test_qwen3_8b_parameter_count_and_bf16_weights():
    # per layer: q 4096*4096 + k 4096*1024 + v 4096*1024 + o 4096*4096 = 41,943,040
    #            MLP 3 * 4096*12288 = 150,994,944; norms 2*4096 + q/k norms 2*128 = 8,448
    per_layer = 41_943_040 + 150_994_944 + 8_448
    assert plan.layer_parameter_count(QWEN3_8B) == per_layer == 192_946_432
    # + embeddings and an untied LM head (151936 * 4096 each) + the final norm
    total = 36 * per_layer + 2 * 151_936 * 4096 + 4096
    assert plan.parameter_count(QWEN3_8B) == total == 8_190_735_360
    # a classifier from the same base: no LM head, a 4096 -> 1 score head
    assert plan.parameter_count(QWEN3_8B, lm_head=False) == total - 151_936 * 4096 + 4096
    cfg = load_config(ROOT / "configs" / "qwen3-8b-helpsteer3.yaml")
    e = plan.estimate(cfg, "single", 1, "80 GB", QWEN3_8B)
    assert e.parts["policy weights"] == 2 * 8_190_735_360  # bf16: 2 bytes x params


def test_lora_parameter_count_by_hand():
    # r=4 on q_proj (64 -> 4*16 = 64) and v_proj (64 -> 2*16 = 32): 4*(64+64) + 4*(64+32) = 896 per layer
    assert plan.lora_parameter_count(SMALL, 4, ["q_proj", "v_proj"]) == 2 * 896
    assert plan.lora_parameter_count(SMALL, 4, ["q_proj", "v_proj"], num_layers=1) == 896
    # all seven Qwen3-8B projections at r=16:
    # 16*[(4096+4096)*2 + (4096+1024)*2 + (4096+12288)*3] = 1,212,416 per layer, 36 layers
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert plan.lora_parameter_count(QWEN3_8B, 16, targets) == 36 * 1_212_416 == 43_646_976


def test_kv_cache_activations_and_logits_by_hand():
    # 2 (K and V) x 36 layers x 8 KV heads x 128 x 2 bytes
    assert plan.kv_cache_bytes_per_token(QWEN3_8B, 2) == 147_456
    # per token per layer: 4*64 + 2*64 + 2*32 + 4*128 = 960 elements
    assert plan.activation_elements_per_token_layer(SMALL) == 960
    seq, mb = 10, 3
    assert plan.activation_bytes(SMALL, seq, mb, 2, checkpointing=False) == 2 * (30 * 960 * 2)
    # checkpointed: each layer keeps its input (30 tokens x 64 x 2 B), one layer recomputed in full
    assert plan.activation_bytes(SMALL, seq, mb, 2, checkpointing=True) == 2 * 30 * 64 * 2 + 30 * 960 * 2
    assert plan.activation_bytes(SMALL, seq, mb, 2, checkpointing=False, layers_with_grad=1) == 30 * 960 * 2
    # logits of 7 + 1 kept positions and their gradient
    assert plan.logits_bytes(SMALL, mb, 7, 2) == 2 * 3 * 8 * 100 * 2
    # the output layer's log-probs: 21 completion tokens, one chunk of them (32 MiB holds 83,886
    # rows of 100): 4 x 21 x 100 x 4 = 33,600; their hidden states and gradient 2 x 21 x 64 x 2 = 5,376;
    # a trained head's float32 accumulator 100 x 64 x 4 = 25,600
    assert plan.output_layer_logprob_bytes(SMALL, mb, 7, 2, head_trained=False) == 33_600 + 5_376
    assert plan.output_layer_logprob_bytes(SMALL, mb, 7, 2, head_trained=True) == 33_600 + 5_376 + 25_600
    # Qwen3-8B in bf16, 16 x 1024 completion tokens: a chunk is 32 MiB // (4 x 151,936) = 55 rows;
    # 4 x 55 x 151,936 x 4 = 133,703,680; 2 x 16,384 x 4096 x 2 = 268,435,456
    assert plan.output_layer_logprob_bytes(QWEN3_8B, 16, 1024, 2, head_trained=False) == 133_703_680 + 268_435_456


def test_the_flagship_plan_counts_log_probs_from_the_output_layer_not_whole_logits():
    """Qwen3's logits are its output layer's output: the plan counts the chunked log-probs; an
    architecture that changes its logits afterwards (Gemma 2's soft-capping) the whole logits."""
    cfg = load_config(ROOT / "configs" / "qwen3-8b-helpsteer3.yaml")
    mb, completion = cfg.rloo.micro_batch_per_device, cfg.rloo.rollout.max_new_tokens
    e = plan.estimate(cfg, "single", 1, "80 GB", QWEN3_8B)
    assert "logits + grad (completion positions)" not in e.train_peak
    assert e.train_peak["log-probs by the output layer (chunked)"] == plan.output_layer_logprob_bytes(
        QWEN3_8B, mb, completion, 2, head_trained=False)
    capped = plan.estimate(cfg, "single", 1, "80 GB", plan.ModelDims(**{**QWEN3_8B.__dict__, "model_type": "gemma2"}))
    assert capped.train_peak["logits + grad (completion positions)"] == plan.logits_bytes(QWEN3_8B, mb, completion, 2)
    assert "log-probs by the output layer (chunked)" not in capped.train_peak


def _cfg(**rloo):
    section = {"reward": {"backend": "callable", "function": "x:y"}, **rloo}
    return config_from_dict({"model": {"name": "Qwen/Qwen3-8B"}, "rloo": section})


def test_strategies_shard_what_they_should():
    full = _cfg(lora={"enabled": False}, rollout={"engine": "transformers"})
    n = plan.parameter_count(QWEN3_8B)
    layer = plan.layer_parameter_count(QWEN3_8B)
    single = plan.estimate(full, "single", 1, "80 GB", QWEN3_8B)
    assert single.parts["grads + AdamW states"] == 6 * n  # bf16 grad 2 + two bf16 moments 4
    assert single.parts["reference (frozen copy, not sharded)"] == 2 * n
    ddp = plan.estimate(full, "ddp", 8, "80 GB", QWEN3_8B)
    assert ddp.parts["grads + AdamW states"] == 8 * n  # + the DDP gradient bucket
    fsdp = plan.estimate(full, "fsdp2", 8, "80 GB", QWEN3_8B)
    assert fsdp.parts["policy weights"] == 2 * n // 8 + 2 * layer  # a shard + one gathered bf16 layer
    assert fsdp.parts["grads + AdamW states"] == 6 * n // 8
    zero = plan.estimate(full, "zero3", 8, "80 GB", QWEN3_8B)
    assert zero.parts["policy weights"] == 2 * n // 8 + 2 * 2 * layer  # ZeRO-3 prefetches a second layer
    assert zero.parts["reference (frozen copy, not sharded)"] == 2 * n  # outside accelerate.prepare
    assert not single.fits and zero.fits
    lora = plan.estimate(_cfg(rollout={"engine": "transformers"}), "single", 1, "80 GB", QWEN3_8B)
    assert lora.parts["reference (base, adapter disabled)"] == 0
    assert lora.parts["LoRA weights + grads + AdamW states"] == 16 * 43_646_976


def test_mixed_precision_keeps_fp32_master_state():
    full = _cfg(lora={"enabled": False}, rollout={"engine": "transformers"})
    full.model.mixed_precision = "bf16"
    n = plan.parameter_count(QWEN3_8B)
    layer = plan.layer_parameter_count(QWEN3_8B)
    fsdp = plan.estimate(full, "fsdp2", 8, "80 GB", QWEN3_8B)
    assert fsdp.parts["policy weights"] == 4 * n // 8 + 2 * layer  # fp32 master shard + one gathered bf16 layer
    assert fsdp.parts["grads + AdamW states"] == 12 * n // 8
    zero = plan.estimate(full, "zero3", 8, "80 GB", QWEN3_8B)
    assert zero.parts["policy weights"] + zero.parts["grads + AdamW states"] == 16 * n // 8 + 2 * 2 * layer


def test_vllm_share_and_sleep():
    cfg = _cfg(prompts_per_step=4, completions_per_prompt=4, micro_batch_per_device=4, max_prompt_tokens=100,
               rollout={"engine": "vllm", "max_new_tokens": 28, "vllm_gpu_memory_utilization": 0.5,
                        "vllm_sleep_between_steps": False})
    e = plan.estimate(cfg, "single", 1, "80 GB", QWEN3_8B)
    assert e.vllm_share == int(0.5 * 81_559 / 1024 * GIB)
    kv = 147_456 * 4 * 4 * 128  # 16 sequences of 128 tokens
    assert e.vllm_needs == 2 * plan.parameter_count(QWEN3_8B) + kv + plan.VLLM_OVERHEAD_BYTES
    assert e.peak == e.resident + sum(e.train_peak.values()) + e.vllm_share
    cfg.rloo.rollout.vllm_sleep_between_steps = True
    e = plan.estimate(cfg, "single", 1, "80 GB", QWEN3_8B)
    assert e.peak == e.resident + max(sum(e.train_peak.values()), e.vllm_share)


def test_dims_from_a_local_config_match_the_real_model(tiny_llama, tiny_qwen3):
    from transformers import AutoModelForCausalLM

    for folder in (tiny_llama, tiny_qwen3):
        dims = plan.model_dims(str(folder))
        assert "config.json" in dims.source
        model = AutoModelForCausalLM.from_pretrained(folder)
        assert plan.parameter_count(dims) == sum(p.numel() for p in model.parameters())


def test_dims_of_an_adapter_folder_are_its_bases(tiny_llama, tmp_path):
    """A stage's start (or reward path) may be a saved LoRA adapter (lora.merge_on_save false)."""
    from tiller.config import LoraConfig
    from tiller.models import apply_lora, load_causal_lm, load_tokenizer, save_model

    adapter = save_model(apply_lora(load_causal_lm(str(tiny_llama)), LoraConfig(r=4, alpha=8), "CAUSAL_LM"),
                         load_tokenizer(str(tiny_llama)), tmp_path / "sft" / "model", merge_lora=False)
    assert plan.model_dims(str(adapter)) == plan.model_dims(str(tiny_llama))


def test_run_prints_the_flagship_plan(capsys):
    cfg = load_config(ROOT / "configs" / "qwen3-8b-helpsteer3.yaml")
    text = plan.run(cfg)
    assert capsys.readouterr().out.strip() == text.strip()
    assert "built-in table for Qwen/Qwen3-8B" in text
    for heading in ("1 x 80 GB:", "1 x 141 GB:", "8 x 80 GB:", "formulas and assumptions:"):
        assert heading in text
    assert "8,190,735,360" in text and "43,646,976" in text


def test_unknown_hub_id_says_what_to_do():
    with pytest.raises(ValueError, match="local model folder"):
        plan.model_dims("nobody/not-a-model-xyz")


def test_a_reward_adapter_on_the_policys_base_costs_its_adapter_only():
    """The flagship: the reward stage saves a LoRA adapter on the policy's base, so on 1 GPU and
    under DDP the rloo stage scores on the policy's base (tiller.rewards.shared_base): the
    reward costs its adapter and score head in fp32, not a second 8B model; FSDP2 / ZeRO-3
    still load a second model."""
    cfg = load_config(ROOT / "configs" / "qwen3-8b-helpsteer3.yaml")
    targets = cfg.reward.lora.target_modules
    adapter = plan.lora_parameter_count(QWEN3_8B, cfg.reward.lora.r, targets, cfg.reward.lora.last_n_layers) + 4096
    single = plan.estimate(cfg, "single", 1, "80 GB", QWEN3_8B)
    assert single.parts["reward adapter (on the base)"] == 4 * adapter
    assert "reward model (classifier)" not in single.parts
    assert plan.estimate(cfg, "ddp", 8, "80 GB", QWEN3_8B).parts["reward adapter (on the base)"] == 4 * adapter
    zero = plan.estimate(cfg, "zero3", 8, "80 GB", QWEN3_8B)
    assert zero.parts["reward model (classifier)"] == 2 * plan.parameter_count(QWEN3_8B, lm_head=False)
    merged = load_config(ROOT / "configs" / "qwen3-8b-helpsteer3.yaml")
    merged.reward.lora.merge_on_save = True
    separate = plan.estimate(merged, "single", 1, "80 GB", QWEN3_8B)
    assert separate.parts["reward model (classifier)"] == 2 * plan.parameter_count(QWEN3_8B, lm_head=False)
    assert separate.resident - single.resident == 2 * plan.parameter_count(QWEN3_8B, lm_head=False) - 4 * adapter
    text = "\n".join(plan._table([plan.estimate(cfg, s, 8, "80 GB", QWEN3_8B) for s in ("ddp", "zero3")]))
    assert "reward adapter (on the base)" in text and "reward model (classifier)" in text  # each strategy's rows


def test_a_micro_batch_counts_each_groups_prompt_once_with_shared_prompt():
    """rloo.shared_prompt: a micro-batch of whole groups holds each group's prompt once (by hand,
    the flagship's 4 completions of one 1024-token prompt, 1024 tokens each: 1024 + 4 x 1024);
    padded rows repeat it (4 x 2048), as does a micro-batch that splits a group."""
    cfg = load_config(ROOT / "configs" / "qwen3-8b-helpsteer3.yaml")
    assert cfg.rloo.shared_prompt and plan.micro_batch_tokens(cfg) == 5120
    with_ckpt = plan.estimate(cfg, "single", 1, "80 GB", QWEN3_8B).train_peak["activations (checkpointed)"]
    cfg.rloo.shared_prompt = False
    assert plan.micro_batch_tokens(cfg) == 8192
    padded = plan.estimate(cfg, "single", 1, "80 GB", QWEN3_8B).train_peak["activations (checkpointed)"]
    assert with_ckpt == plan.activation_bytes(QWEN3_8B, 5120, 1, 2, True) < padded
    cfg.rloo.shared_prompt, cfg.rloo.micro_batch_per_device = True, 2
    assert plan.micro_batch_tokens(cfg) == 2 * 2048
