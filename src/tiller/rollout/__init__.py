"""Generation engines behind one small interface.

    engine.generate(prompts: list[list[int]], n: int, sampling: Sampling, seeds: list[int]) -> Generation

`prompts` are token ids (already rendered with the chat template); each prompt gets `n`
completions, returned grouped (prompt 0's n completions first). `seeds[i]` drives the sampling
of prompt i's completions, so a prompt's completions do not depend on which other prompts share
its batch or its process: 1 process and 2 processes sample the same text.

    engine.sync_weights(model)   called before generating when the engine holds its own copy

The engine is picked with a plain `if` on `rollout.engine` in `make_engine`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Sampling:
    max_new_tokens: int = 64
    temperature: float = 1.0  # 0 means greedy
    top_p: float = 1.0
    top_k: int = 0
    # Benchmarks only: never emit EOS, so every completion has exactly max_new_tokens tokens.
    suppress_eos: bool = False


@dataclass
class Generation:
    """Completion token ids per sample, cut after the first EOS (EOS kept), no padding."""

    completions: list[list[int]]
    has_eos: list[bool]
    timings: dict[str, float] = field(default_factory=dict)


def cut_at_eos(tokens: list[int], eos_ids: set[int]) -> tuple[list[int], bool]:
    for i, t in enumerate(tokens):
        if t in eos_ids:
            return tokens[: i + 1], True
    return tokens, False


def make_engine(engine: str, model, tokenizer, rollout_cfg=None, model_cfg=None):
    """`model_cfg` (the run's ModelConfig) gives vLLM the revision and trust_remote_code that
    training loaded the model with; transformers generates with the model object itself."""
    if engine == "transformers":
        from tiller.rollout.transformers_engine import TransformersEngine

        return TransformersEngine(model, tokenizer)
    if engine == "vllm":
        from tiller.rollout.vllm_engine import VllmEngine

        return VllmEngine(model, tokenizer, rollout_cfg, model_cfg=model_cfg)
    raise ValueError(f"unknown rollout engine {engine!r}: use 'transformers' or 'vllm'")
