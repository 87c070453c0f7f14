"""`tiller plan --config FILE`: per-GPU memory of the config's RLOO stage, before renting GPUs.

Everything is arithmetic on the model's dimensions (its config.json) and the config's batch
fields; nothing is loaded onto a device. The output states every assumption; the numbers are
estimates to choose a GPU count and a strategy, not a guarantee (allocator fragmentation, NCCL
buffers and kernel workspaces vary by version).

What is counted, per GPU, for the rloo stage as tiller runs it (recipes/rloo.py):
- policy weights in the config's dtype (`auto` = bf16 on GPU);
- trainable state: LoRA adapters (peft keeps them in fp32: weight 4 + grad 4 + AdamW moments
  8 = 16 bytes per adapter parameter), or the full model's gradients and AdamW moments;
- the reference: free under LoRA (the base with the adapter disabled), else a frozen copy;
- the reward model (classifier backend): when it is the reward stage's LoRA adapter on the
  policy's own starting weights (reward.lora on, not merged on save, rloo.lora on, not sharded:
  `reward_shares_base`) only its adapter and score head in fp32, because it scores on the
  policy's base (tiller.rewards.shared_base); else a second model in the same dtype. An
  HTTP/GenRM/callable reward uses no GPU memory here;
- activations kept for backward, with or without gradient checkpointing, and what the
  log-probs need: where the output layer computes them a chunk at a time (tiller.logprobs) a
  chunk's temporaries and the completion tokens' hidden states with their gradient, else the
  logits of the kept completion positions with their gradient;
- vLLM: it reserves `vllm_gpu_memory_utilization` x the GPU for its own weight copy and KV
  cache; released during training when it sleeps between steps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

GIB = 1024**3

# What `torch.cuda.get_device_properties(0).total_memory` reports, in GiB, for the two card
# sizes people rent: H100 80GB (81,559 MiB) and H200 141GB (143,771 MiB).
GPU_CAPACITY_GIB = {"80 GB": 81_559 / 1024, "141 GB": 143_771 / 1024}

# CUDA context, NCCL buffers, allocator slack: assumed, per GPU.
RUNTIME_OVERHEAD_BYTES = int(2.0 * GIB)
# vLLM's own activations, sampler buffers and CUDA graphs inside its share: assumed.
VLLM_OVERHEAD_BYTES = int(1.5 * GIB)

# Used only when a hub id's config.json cannot be read (no network, not in the HF cache).
# Numbers from the models' published config.json files.
KNOWN_CONFIGS: dict[str, dict] = {
    "Qwen/Qwen3-8B": dict(model_type="qwen3", hidden_size=4096, num_hidden_layers=36, num_attention_heads=32,
                          num_key_value_heads=8, head_dim=128, intermediate_size=12288, vocab_size=151936,
                          tie_word_embeddings=False),
    "Qwen/Qwen3-0.6B": dict(model_type="qwen3", hidden_size=1024, num_hidden_layers=28, num_attention_heads=16,
                            num_key_value_heads=8, head_dim=128, intermediate_size=3072, vocab_size=151936,
                            tie_word_embeddings=True),
    "Qwen/Qwen3-1.7B": dict(model_type="qwen3", hidden_size=2048, num_hidden_layers=28, num_attention_heads=16,
                            num_key_value_heads=8, head_dim=128, intermediate_size=6144, vocab_size=151936,
                            tie_word_embeddings=True),
    "Qwen/Qwen3-4B": dict(model_type="qwen3", hidden_size=2560, num_hidden_layers=36, num_attention_heads=32,
                          num_key_value_heads=8, head_dim=128, intermediate_size=9728, vocab_size=151936,
                          tie_word_embeddings=True),
    "Qwen/Qwen3-14B": dict(model_type="qwen3", hidden_size=5120, num_hidden_layers=40, num_attention_heads=40,
                           num_key_value_heads=8, head_dim=128, intermediate_size=17408, vocab_size=151936,
                           tie_word_embeddings=False),
    "Qwen/Qwen3-32B": dict(model_type="qwen3", hidden_size=5120, num_hidden_layers=64, num_attention_heads=64,
                           num_key_value_heads=8, head_dim=128, intermediate_size=25600, vocab_size=151936,
                           tie_word_embeddings=False),
    "meta-llama/Llama-3.1-8B-Instruct": dict(model_type="llama", hidden_size=4096, num_hidden_layers=32,
                                             num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                                             intermediate_size=14336, vocab_size=128256, tie_word_embeddings=False),
}

STRATEGIES = ("single", "ddp", "fsdp2", "zero3")
STRATEGY_NAMES = {"single": "single GPU", "ddp": "DDP", "fsdp2": "FSDP2", "zero3": "ZeRO-3"}
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


# ----------------------------------------------------------------------------- model dimensions


@dataclass
class ModelDims:
    """A Llama-style decoder (Llama, Mistral, Qwen2, Qwen3): GQA attention + gated MLP."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    tie_embeddings: bool = False
    attention_bias: bool = False  # Qwen2: biases on q, k, v
    qk_norm: bool = False  # Qwen3: RMSNorm on q and k per head
    source: str = ""
    model_type: str = ""

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim


def dims_from_config(c: dict, source: str = "") -> ModelDims:
    heads = c["num_attention_heads"]
    model_type = c.get("model_type", "")
    return ModelDims(
        hidden_size=c["hidden_size"], num_layers=c["num_hidden_layers"], num_heads=heads,
        num_kv_heads=c.get("num_key_value_heads") or heads,
        head_dim=c.get("head_dim") or c["hidden_size"] // heads,
        intermediate_size=c["intermediate_size"], vocab_size=c["vocab_size"],
        tie_embeddings=bool(c.get("tie_word_embeddings", False)),
        attention_bias=bool(c.get("attention_bias", model_type == "qwen2")),
        qk_norm=model_type.startswith("qwen3"), source=source, model_type=model_type,
    )


def model_dims(name: str, trust_remote_code: bool = False) -> ModelDims:
    """Dimensions from config.json: a local folder (or `embedded`), a hub id in the local HF cache,
    or else the built-in table (said in `source`)."""
    from tiller.models import EMBEDDED_NAMES, adapter_base, resolve_model_name

    path = resolve_model_name(name) if name.lower() in EMBEDDED_NAMES or Path(name).expanduser().exists() else name
    while adapter_base(path) is not None:  # an adapter folder (lora.merge_on_save false) has its base's dimensions
        base = adapter_base(path)
        path = resolve_model_name(base) if base.lower() in EMBEDDED_NAMES or Path(base).expanduser().exists() else base
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
        config = getattr(config, "text_config", None) or config
        where = f"config.json of {path}" if Path(path).exists() else f"config.json of {name} (Hugging Face cache)"
        return dims_from_config(config.to_dict(), where)
    except (OSError, ValueError) as e:
        if name in KNOWN_CONFIGS:
            return dims_from_config(KNOWN_CONFIGS[name], f"tiller's built-in table for {name} (its config.json "
                                                         "could not be read: no network and not in the HF cache)")
        raise ValueError(f"cannot read the config.json of {name!r} ({e}); pass a local model folder, or one of "
                         f"the built-in {sorted(KNOWN_CONFIGS)}") from None


def module_shapes(d: ModelDims) -> dict[str, tuple[int, int]]:
    """(in_features, out_features) of each linear layer in one decoder layer."""
    h, i = d.hidden_size, d.intermediate_size
    return {
        "q_proj": (h, d.q_dim), "k_proj": (h, d.kv_dim), "v_proj": (h, d.kv_dim), "o_proj": (d.q_dim, h),
        "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h),
    }


def layer_parameter_count(d: ModelDims) -> int:
    linear = sum(a * b for a, b in module_shapes(d).values())
    bias = d.q_dim + 2 * d.kv_dim if d.attention_bias else 0
    norms = 2 * d.hidden_size + (2 * d.head_dim if d.qk_norm else 0)
    return linear + bias + norms


def parameter_count(d: ModelDims, lm_head: bool = True) -> int:
    """Causal LM parameters; `lm_head=False` for a sequence classifier (score head of 1 added)."""
    embed = d.vocab_size * d.hidden_size
    head = (0 if d.tie_embeddings else embed) if lm_head else d.hidden_size
    return embed + d.num_layers * layer_parameter_count(d) + d.hidden_size + head


def lora_parameter_count(d: ModelDims, r: int, target_modules: list[str], num_layers: int | None = None) -> int:
    """r x (in + out) per adapted linear layer, over the adapted layers (all, or the last N)."""
    shapes = module_shapes(d)
    per_layer = sum(r * (shapes[m][0] + shapes[m][1]) for m in target_modules if m in shapes)
    layers = d.num_layers if num_layers is None else min(num_layers, d.num_layers)
    return per_layer * layers


def activation_elements_per_token_layer(d: ModelDims) -> int:
    """Elements one decoder layer keeps for backward, per token (flash/SDPA attention, no dropout):
    norm inputs and outputs 4h, attention q and output 2*q_dim, k and v 2*kv_dim, MLP gate, up,
    act(gate) and their product 4*intermediate."""
    return 4 * d.hidden_size + 2 * d.q_dim + 2 * d.kv_dim + 4 * d.intermediate_size


def activation_bytes(d: ModelDims, seq_len: int, micro_batch: int, dtype_bytes: int, checkpointing: bool,
                     layers_with_grad: int | None = None) -> int:
    """Without checkpointing every layer that backward runs through keeps its activations;
    with it each layer keeps only its input (seq*mb*hidden) and one layer is recomputed at a time."""
    layers = d.num_layers if layers_with_grad is None else min(layers_with_grad, d.num_layers)
    tokens = seq_len * micro_batch
    full_layer = tokens * activation_elements_per_token_layer(d) * dtype_bytes
    if checkpointing:
        return layers * tokens * d.hidden_size * dtype_bytes + full_layer
    return layers * full_layer


def micro_batch_tokens(cfg) -> int:
    """Tokens one rloo micro-batch holds at most: micro_batch rows of prompt + completion, or with
    rloo.shared_prompt (whole groups per micro-batch) each group's prompt once."""
    r = cfg.rloo
    mb, k, prompt, completion = r.micro_batch_per_device, r.completions_per_prompt, r.max_prompt_tokens, r.rollout.max_new_tokens
    if r.shared_prompt and mb % k == 0:
        return (mb // k) * prompt + mb * completion
    return mb * (prompt + completion)


def logits_bytes(d: ModelDims, micro_batch: int, completion_len: int, dtype_bytes: int) -> int:
    """Logits of the kept positions (completion + 1, `logits_to_keep`) and their gradient."""
    return 2 * micro_batch * (completion_len + 1) * d.vocab_size * dtype_bytes


def output_layer_logprobs(d: ModelDims, lora) -> bool:
    """Whether RLOO's log-probs come from the output layer in chunks (`tiller.logprobs`): an
    architecture whose logits are its output layer's output, and no adapter on that layer."""
    from tiller.logprobs import OUTPUT_LAYER_LOGPROBS_ARCHITECTURES

    adapted = lora.enabled and "lm_head" in (lora.target_modules or [])
    return d.model_type in OUTPUT_LAYER_LOGPROBS_ARCHITECTURES and not adapted


def output_layer_logprob_bytes(d: ModelDims, micro_batch: int, completion_len: int, dtype_bytes: int,
                               head_trained: bool) -> int:
    """Where the output layer computes the log-probs a chunk of tokens at a time
    (`tiller.losses.linear_token_logprobs`): four float32 [chunk, vocab] temporaries (a chunk's
    logits, their upcast, the softmax or its gradient and that cast back; a chunk is what 32 MiB
    of float32 logits hold, at most the micro-batch's completion tokens), the completion tokens'
    hidden states kept for the backward and their gradient (in the model's dtype), and with a
    trained output layer its float32 gradient accumulator."""
    from tiller.losses import linear_token_rows

    tokens = micro_batch * completion_len
    chunk = 4 * min(linear_token_rows(d.vocab_size), tokens) * d.vocab_size * 4
    per_token = 2 * tokens * d.hidden_size * dtype_bytes
    return chunk + per_token + (d.vocab_size * d.hidden_size * 4 if head_trained else 0)


def kv_cache_bytes_per_token(d: ModelDims, dtype_bytes: int) -> int:
    return 2 * d.num_layers * d.num_kv_heads * d.head_dim * dtype_bytes


# ----------------------------------------------------------------------------- the estimate


@dataclass
class Estimate:
    strategy: str
    gpus: int
    gpu: str
    parts: dict[str, int]  # resident on the GPU through the step
    train_peak: dict[str, int]  # only during the training forward/backward
    vllm_share: int  # reserved by vLLM while it is awake
    vllm_needs: int  # its weights + KV cache for the concurrent tokens + its overhead
    sleeps: bool
    notes: list[str]

    @property
    def resident(self) -> int:
        return sum(self.parts.values())

    @property
    def peak(self) -> int:
        train = sum(self.train_peak.values())
        if self.sleeps:
            return self.resident + max(train, self.vllm_share)
        return self.resident + train + self.vllm_share

    @property
    def capacity(self) -> int:
        return int(GPU_CAPACITY_GIB[self.gpu] * GIB)

    @property
    def fits(self) -> bool:
        return self.peak <= self.capacity


def reward_shares_base(cfg, strategy: str) -> bool:
    """Whether the rloo stage will score with the reward stage's adapter on the policy's own base
    (the conditions of `tiller.rewards.shared_base.why_not_shared`, read from the config)."""
    r, rm = cfg.rloo, cfg.reward
    return (r.reward.backend == "classifier" and r.reward.share_base and r.reward.path is None
            and r.lora.enabled and rm.lora.enabled and not rm.lora.merge_on_save
            and strategy in ("single", "ddp") and (rm.model or cfg.model.name) == (r.model or cfg.model.name))


def estimate(cfg, strategy: str, gpus: int, gpu: str = "80 GB", policy: ModelDims | None = None,
             reward: ModelDims | None = None) -> Estimate:
    """Per-GPU memory of cfg's rloo stage under `strategy` on `gpus` GPUs of size `gpu`."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}: use one of {STRATEGIES}")
    if strategy == "single" and gpus != 1:
        raise ValueError("strategy 'single' means one GPU")
    r = cfg.rloo
    ro = r.rollout
    notes: list[str] = []
    policy = policy or model_dims(r.model or cfg.model.name, cfg.model.trust_remote_code)
    dtype = "bfloat16" if cfg.model.dtype == "auto" else cfg.model.dtype
    nb = DTYPE_BYTES[dtype]
    mixed = getattr(cfg.model, "mixed_precision", "no")
    n_params = parameter_count(policy)
    shard = gpus if strategy in ("fsdp2", "zero3") else 1

    parts: dict[str, int] = {}
    # Sharded strategies gather one layer's full weights at a time (ZeRO-3 prefetches about one more).
    gathered = (2 if strategy == "zero3" else 1) * layer_parameter_count(policy) * nb if shard > 1 else 0
    parts["policy weights"] = n_params * nb // shard + gathered
    if r.lora.enabled:
        n_lora = lora_parameter_count(policy, r.lora.r, r.lora.target_modules, r.lora.last_n_layers)
        # fp32 adapter weight 4 + fp32 grad 4 + AdamW exp_avg 4 + exp_avg_sq 4
        parts["LoRA weights + grads + AdamW states"] = n_lora * 16 // shard
        parts["reference (base, adapter disabled)"] = 0
    else:
        if mixed == "bf16" and strategy == "fsdp2":
            # accelerate's FSDP2 with mixed precision upcasts trainable weights to fp32:
            # weight 4 + grad 4 + AdamW moments 8
            weight_bytes, per = 4, 12
        elif mixed == "bf16" and strategy == "zero3":
            # DeepSpeed bf16: bf16 weight 2 + bf16 grad 2 + fp32 master 4 + fp32 moments 8
            weight_bytes, per = nb, 14
        else:
            # AdamW on the dtype-loaded weights: grads and both moments in that dtype (no fp32
            # master); DDP keeps a bucket copy of the grads besides
            weight_bytes, per = nb, 3 * nb + (nb if strategy == "ddp" else 0)
        parts["policy weights"] = n_params * weight_bytes // shard + gathered
        parts["grads + AdamW states"] = n_params * per // shard
        parts["reference (frozen copy, not sharded)"] = n_params * nb
    if r.reward.backend == "classifier" and reward_shares_base(cfg, strategy):
        lora = cfg.reward.lora
        # peft keeps an added adapter in fp32; the score head is hidden x 1, also fp32
        adapter = lora_parameter_count(policy, lora.r, lora.target_modules, lora.last_n_layers) + policy.hidden_size
        parts["reward adapter (on the base)"] = adapter * 4
    elif r.reward.backend == "classifier":
        reward = reward or policy
        parts["reward model (classifier)"] = parameter_count(reward, lm_head=False) * nb
    else:
        parts[f"reward model ({r.reward.backend}: off-GPU)"] = 0
    parts["runtime overhead (assumed)"] = RUNTIME_OVERHEAD_BYTES

    # Activations and logits of one micro-batch: [left-padded prompt | completion] rows, or with
    # rloo.shared_prompt one row per prompt group, [prompt | k completions].
    seq = r.max_prompt_tokens + ro.max_new_tokens
    mb = r.micro_batch_per_device
    ckpt = cfg.model.gradient_checkpointing in ("auto", "on")  # auto = on for GPUs
    layers_with_grad = r.lora.last_n_layers if r.lora.enabled else None
    train_peak = {
        f"activations ({'checkpointed' if ckpt else 'no checkpointing'})":
            activation_bytes(policy, micro_batch_tokens(cfg), 1, nb, ckpt, layers_with_grad),
    }
    if output_layer_logprobs(policy, r.lora):
        train_peak["log-probs by the output layer (chunked)"] = output_layer_logprob_bytes(
            policy, mb, ro.max_new_tokens, nb, head_trained=not r.lora.enabled)
    else:
        train_peak["logits + grad (completion positions)"] = logits_bytes(policy, mb, ro.max_new_tokens, nb)

    # vLLM: one engine per process, its own copy of the weights (split over TP ranks).
    vllm_share, vllm_needs, sleeps = 0, 0, False
    if ro.engine == "vllm":
        tp = ro.vllm_tensor_parallel_size
        prompts_per_process = max(r.prompts_per_step // gpus, 1)
        if r.prompts_per_step % gpus:
            notes.append(f"rloo.prompts_per_step={r.prompts_per_step} is not a multiple of {gpus} processes: the run "
                         f"would stop at start; use a multiple of {gpus} (estimated here with "
                         f"{prompts_per_process} prompt(s) per process)")
        concurrent_tokens = tp * prompts_per_process * r.completions_per_prompt * seq
        kv = kv_cache_bytes_per_token(policy, nb) * concurrent_tokens // tp
        vllm_weights = n_params * nb // tp
        vllm_share = int(ro.vllm_gpu_memory_utilization * GPU_CAPACITY_GIB[gpu] * GIB)
        vllm_needs = vllm_weights + kv + VLLM_OVERHEAD_BYTES
        sleeps = ro.vllm_sleep_between_steps
        if vllm_needs > vllm_share:
            need = vllm_needs / (GPU_CAPACITY_GIB[gpu] * GIB)
            if vllm_weights + VLLM_OVERHEAD_BYTES > vllm_share:
                notes.append(f"vLLM's share ({vllm_share / GIB:.1f} GiB) is smaller than its weights: vLLM will not start; "
                             f"raise rollout.vllm_gpu_memory_utilization to >= {need:.2f}")
            else:
                notes.append(f"vLLM's share leaves room for fewer than the {concurrent_tokens:,} concurrent tokens: it "
                             f"will queue sequences (slower); rollout.vllm_gpu_memory_utilization >= {need:.2f} holds all")
    return Estimate(strategy, gpus, gpu, parts, train_peak, vllm_share, vllm_needs, sleeps, notes)


def fitting_counts(cfg, strategy: str, gpu: str, policy: ModelDims, reward: ModelDims | None,
                   counts=(1, 2, 4, 8, 16, 32, 64)) -> list[int]:
    counts = (1,) if strategy == "single" else tuple(c for c in counts if c > 1)
    return [n for n in counts if estimate(cfg, strategy, n, gpu, policy, reward).fits]


# ----------------------------------------------------------------------------- the report


def _gib(n: int) -> str:
    return f"{n / GIB:7.1f}"


def _table(estimates: list[Estimate]) -> list[str]:
    width = 46
    head = " " * width + "".join(f"{STRATEGY_NAMES[e.strategy] + ' x' + str(e.gpus):>14}" for e in estimates)
    lines = [head]
    keys = list(dict.fromkeys(key for e in estimates for key in e.parts))  # the strategies' rows differ
    for key in keys:
        lines.append(f"  {key:<{width - 2}}" + "".join(f"{_gib(e.parts.get(key, 0)):>14}" for e in estimates))
    lines.append(f"  {'= resident through the step':<{width - 2}}" + "".join(f"{_gib(e.resident):>14}" for e in estimates))
    for key in estimates[0].train_peak:
        lines.append(f"  {'+ ' + key:<{width - 2}}" + "".join(f"{_gib(e.train_peak[key]):>14}" for e in estimates))
    if estimates[0].vllm_share:
        lines.append(f"  {'+ vLLM share (gpu_memory_utilization)':<{width - 2}}"
                     + "".join(f"{_gib(e.vllm_share):>14}" for e in estimates))
        lines.append(f"  {'  (vLLM needs: weights + KV + overhead)':<{width - 2}}"
                     + "".join(f"{_gib(e.vllm_needs):>14}" for e in estimates))
    lines.append(f"  {'= peak per GPU':<{width - 2}}" + "".join(f"{_gib(e.peak):>14}" for e in estimates))
    lines.append(f"  {'  capacity':<{width - 2}}" + "".join(f"{_gib(e.capacity):>14}" for e in estimates))
    lines.append(f"  {'  fits':<{width - 2}}" + "".join(f"{'yes' if e.fits else 'NO':>14}" for e in estimates))
    return lines


def run(cfg) -> str:
    """Build, print and return the memory plan of cfg's rloo stage."""
    r = cfg.rloo
    ro = r.rollout
    name = r.model or cfg.model.name
    policy = model_dims(name, cfg.model.trust_remote_code)
    reward = None
    if r.reward.backend == "classifier":
        reward_name = r.reward.path or (cfg.reward.model or cfg.model.name)
        try:
            reward = model_dims(reward_name, cfg.model.trust_remote_code)
        except (ValueError, FileNotFoundError):
            reward = policy
    dtype = "bfloat16" if cfg.model.dtype == "auto" else cfg.model.dtype
    nb = DTYPE_BYTES[dtype]
    n = parameter_count(policy)
    seq = r.max_prompt_tokens + ro.max_new_tokens
    tokens = micro_batch_tokens(cfg)
    ckpt = cfg.model.gradient_checkpointing in ("auto", "on")
    d = policy
    out = [
        f"tiller plan: per-GPU memory of the rloo stage for {name}",
        f"model dimensions from {policy.source}",
        f"  hidden {d.hidden_size}, {d.num_layers} layers, {d.num_heads} heads, {d.num_kv_heads} KV heads, head_dim "
        f"{d.head_dim}, intermediate {d.intermediate_size}, vocab {d.vocab_size}, "
        f"{'tied' if d.tie_embeddings else 'untied'} embeddings",
        f"  parameters {n:,} ({n / 1e9:.2f} B); {dtype} weights = {nb} B x params = {n * nb / GIB:.1f} GiB",
    ]
    if r.lora.enabled:
        nl = lora_parameter_count(d, r.lora.r, r.lora.target_modules, r.lora.last_n_layers)
        out.append(f"  LoRA r={r.lora.r} on {', '.join(r.lora.target_modules)}"
                   f"{f' (last {r.lora.last_n_layers} layers)' if r.lora.last_n_layers else ''}: {nl:,} trainable "
                   f"parameters = sum r*(in+out) x layers")
    else:
        out.append("  full fine-tuning: every parameter trainable; the reference is a frozen copy")
    if reward is not None and reward_shares_base(cfg, "single"):
        lora = cfg.reward.lora
        adapter = lora_parameter_count(d, lora.r, lora.target_modules, lora.last_n_layers) + d.hidden_size
        out.append(f"  reward model: the reward stage's LoRA adapter + score head, {adapter:,} parameters, on the "
                   "policy's own base (1 GPU, DDP); FSDP2 / ZeRO-3 load it as a second model, "
                   f"{parameter_count(reward, lm_head=False):,} parameters")
    elif reward is not None:
        out.append(f"  reward model (classifier, no LM head): {parameter_count(reward, lm_head=False):,} parameters "
                   f"from {reward.source}")
    out += [
        f"batch: micro-batch {r.micro_batch_per_device} completions x up to {seq} tokens "
        f"({r.max_prompt_tokens} prompt + {ro.max_new_tokens} completion); {r.prompts_per_step} prompts x "
        f"{r.completions_per_prompt} completions per step; at most {tokens:,} tokens per micro-batch"
        + (" (rloo.shared_prompt: each prompt group in one row, the prompt once)" if tokens < r.micro_batch_per_device * seq else ""),
        "",
        "formulas and assumptions:",
        "  weights = params x dtype bytes (dtype auto = bf16 on GPU); sharded strategies (FSDP2, ZeRO-3) divide",
        "    the policy's weights, grads and optimizer states by N and gather one layer at a time (ZeRO-3: two);",
        "    the reference copy and the reward model are loaded outside accelerate.prepare, so they are replicated",
        "  reward model: the reward stage's LoRA adapter (not merged on save) on the policy's own starting weights",
        "    scores on the policy's base on 1 GPU and under DDP: its adapter + score head in fp32 (4 B/param);",
        "    otherwise (merged or full folder, another base, FSDP2 / ZeRO-3) a second model in the policy's dtype",
        "  LoRA: peft keeps adapters in fp32: weight 4 + grad 4 + AdamW moments 8 = 16 B per adapter parameter",
        "  full fine-tuning, model.mixed_precision no (tiller's default): AdamW on the dtype-loaded weights, grads",
        "    and both moments in that dtype, no fp32 master: bf16 2+2+4 = 8 B/param (DDP: +2 B gradient bucket);",
        "    with model.mixed_precision bf16: FSDP2 (accelerate upcasts trainable weights to fp32) 4+4+8 = 16 B/param,",
        "    ZeRO-3 2 (weight) + 2 (grad) + 4 (fp32 master) + 8 (moments) = 16 B/param",
        f"  activations per layer = micro-batch tokens x bytes x (4h + 2 q_dim + 2 kv_dim + 4 intermediate) "
        f"= {activation_elements_per_token_layer(d) / d.hidden_size:.1f} x h per token;",
        "    with gradient checkpointing: layers x micro-batch tokens x h x bytes + one layer's full set"
        f" (gradient_checkpointing: {cfg.model.gradient_checkpointing} -> {'on' if ckpt else 'off'})",
        "  log-probs: where the output layer computes them in chunks (Llama, Mistral, Qwen2/3, no adapter on it),",
        "    4 x chunk x vocab x 4 B (a chunk: 32 MiB of float32 logits) + 2 x micro_batch x completion x h x bytes",
        "    (+ vocab x h x 4 B when the output layer is trained); else the logits of the kept positions and",
        "    their gradient, 2 x micro_batch x (completion + 1) x vocab x bytes",
        f"  KV cache = 2 x layers x kv_heads x head_dim x bytes = {kv_cache_bytes_per_token(d, nb) / 1024:.0f} KiB per "
        "token x concurrent tokens (prompts per process x k x seq)",
        "  vLLM reserves gpu_memory_utilization x GPU while awake (its weight copy + KV cache); with",
        "    vllm_sleep_between_steps it frees that during training, so peak = resident + max(train, vLLM share)",
        f"  fixed: {RUNTIME_OVERHEAD_BYTES / GIB:.1f} GiB per GPU runtime overhead, {VLLM_OVERHEAD_BYTES / GIB:.1f} GiB "
        "vLLM overhead inside its share; capacity = what the card reports (80 GB: 79.6 GiB, 141 GB: 140.4 GiB)",
        "  all figures in GiB",
    ]
    if ro.engine != "vllm":
        out.append(f"  rollout.engine is {ro.engine}: generation runs on the training weights (its KV cache is not counted)")
    shown = [
        ("1 x 80 GB", [estimate(cfg, "single", 1, "80 GB", policy, reward)]),
        ("1 x 141 GB", [estimate(cfg, "single", 1, "141 GB", policy, reward)]),
        ("8 x 80 GB", [estimate(cfg, s, 8, "80 GB", policy, reward) for s in ("ddp", "fsdp2", "zero3")]),
    ]
    for title, estimates in shown:
        out += ["", f"{title}:"] + _table(estimates)
        notes = list(dict.fromkeys(note for e in estimates for note in e.notes))
        out += [f"  note: {note}" for note in notes]
    variants = [("as configured", cfg)]
    if r.lora.enabled:
        full = dataclasses.replace(cfg, rloo=dataclasses.replace(r, lora=dataclasses.replace(r.lora, enabled=False)))
        variants.append(("with full fine-tuning (--set rloo.lora.enabled=false)", full))
    for title, variant in variants:
        out += ["", f"GPU counts that fit, {title} (of 1, 2, 4, ..., 64; beyond 8 means several nodes):"]
        for gpu in GPU_CAPACITY_GIB:
            for strategy in STRATEGIES:
                fits = fitting_counts(variant, strategy, gpu, policy, reward)
                marked = [f"{n}*" if r.prompts_per_step % n else str(n) for n in fits]
                shown_fits = ", ".join(marked) if fits else "none"
                out.append(f"  {gpu:>6} {STRATEGY_NAMES[strategy]:<11} {shown_fits}")
    if any(r.prompts_per_step % n for n in (2, 4, 8, 16, 32, 64)):
        out.append(f"  * needs rloo.prompts_per_step (now {r.prompts_per_step}) raised to a multiple of the GPU count")
    text = "\n".join(out)
    print(text, flush=True)
    return text
