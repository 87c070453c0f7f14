"""A tiny run folder for the playground tests, built in seconds without training: held-out
prompts, a reference and an rloo policy (two tiny models with different random weights), and
random judge and reward models."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import write_prompts
from tests.helpers.reward_adapter import reward_adapter_folder
from tests.recipes.test_curve import save_random_reward_model
from tiller.models import write_origin
from tiller.tiny import build_tiny_model

HELD_OUT_QUESTIONS = ["Why is the sky blue?", "Name a primary color.", "How do I boil an egg?",
                      "What is two plus two?", "Write a haiku about rain.", "What do bees make?"]


def build_answering_model(out_dir: Path, seed: int) -> Path:
    """A tiny model whose greedy answers are non-empty and differ from seed to seed. With the
    tiny models' tied embeddings every seed greedily repeats the prompt's last token (a newline)
    for ever; a separate random output layer makes them say something."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    build_tiny_model(out_dir, seed=seed)
    config = AutoConfig.from_pretrained(out_dir)
    config.tie_word_embeddings = False
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config).save_pretrained(out_dir)
    return out_dir


def build_tiny_run(folder: Path, with_scorers: bool = True, adapters: bool = False) -> tuple[Path, Path]:
    """(run folder, reference model): <folder>/start is the reference; <folder>/run holds
    data/validation prompts, rloo/model with its started_from.json naming the reference (as the
    rloo stage writes it) and, with `with_scorers`, judge/model and reward/model: full models,
    or (`adapters`) LoRA adapters of the reference on its last layer, as the demo saves them."""
    reference = build_answering_model(folder / "start", seed=0)
    run_dir = folder / "run"
    write_prompts(run_dir, "validation", HELD_OUT_QUESTIONS)
    build_answering_model(run_dir / "rloo" / "model", seed=1)
    write_origin(run_dir / "rloo", {"model": str(reference), "base_model": str(reference), "adapter": None,
                                    "adapter_handling": None, "revision": None, "trust_remote_code": False},
                 "model.name")
    if with_scorers and adapters:
        reward_adapter_folder(run_dir / "judge" / "model", reference, last_n_layers=1, seed=2)
        reward_adapter_folder(run_dir / "reward" / "model", reference, last_n_layers=1, seed=3)
    elif with_scorers:
        save_random_reward_model(reference, run_dir / "judge" / "model", seed=2)
        save_random_reward_model(reference, run_dir / "reward" / "model", seed=3)
    return run_dir, reference
