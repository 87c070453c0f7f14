"""What a run folder decides about evaluating its policies: which policy stages it holds, the
reference each is measured against, and the held-out prompts they answer.

`tiller eval` (recipes/evaluate.py) and `tiller playground` (playground.py) both read them, so
the playground talks to the same reference on the same prompts that evaluation measured.
"""

from __future__ import annotations

from pathlib import Path

from tiller.chat import encode_prompts, encoded_extras
from tiller.config import Config
from tiller.data.run_files import load_prompts
from tiller.models import STARTED_FROM, read_origin


def held_policy_stages(run_dir: Path, stages: list[str]) -> list[str]:
    """The policy stages of `stages` the run folder holds, in their order: a stage that saved a
    model and recorded what it started from (started_from.json: sft, dpo, rloo, and any later
    policy stage that writes one, so none needs listing here)."""
    return [s for s in stages if (run_dir / s / "model").exists() and (run_dir / s / STARTED_FROM).is_file()]


def reference_for(cfg: Config, policy_path: str) -> tuple[str, str | None, str]:
    """(reference model, its revision, where that choice comes from): eval.reference when set;
    else what the evaluated policy started from, read from its stage folder's started_from.json
    (the SFT model when the pipeline ran sft first); else model.name."""
    if cfg.eval.reference:
        return cfg.eval.reference, cfg.model.revision, "eval.reference"
    stage_dir = Path(policy_path).parent
    origin = read_origin(stage_dir)
    if origin is not None:
        return origin["model"], origin.get("revision"), f"what the policy started from, {stage_dir / STARTED_FROM}"
    return cfg.model.name, cfg.model.revision, f"model.name: no {STARTED_FROM} in {stage_dir}"


def eval_prompts(cfg: Config, tokenizer) -> tuple[list, list[list[int]], int, list[dict]]:
    """(messages, prompt token ids, prompts dropped as too long, records): the first
    eval.num_prompts prompts of eval.split, rendered with the chat template, and each kept
    prompt's record (its data.keep_columns, e.g. the gold answer a verifier checks)."""
    prompts = load_prompts(Path(cfg.run_dir), cfg.eval.split)[: cfg.eval.num_prompts]
    encoded, dropped = encode_prompts(prompts, tokenizer, cfg.rloo.max_prompt_tokens, cfg.model.enable_thinking)
    return [m for m, _ in encoded], [ids for _, ids in encoded], dropped, encoded_extras(prompts, encoded)
