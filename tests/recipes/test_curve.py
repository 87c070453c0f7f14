"""The over-optimization curve (`tiller eval curve`) on a tiny RLOO run with two checkpoints:
step 0 is the reference itself, the final row is what `tiller eval policy` reports for the final
model, and the reference's answers are scored once for every row. The same on DPO (full
fine-tuning) and on PPO, whose checkpoints hold the value model beside the policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import toy_pairs, write_pairs, write_prompts
from tiller.config_loading import config_from_dict
from tiller.models import load_reward_model, load_tokenizer
from tiller.recipes import dpo, evaluate, ppo, rloo

pytestmark = pytest.mark.usefixtures("one_thread")

EVAL_QUESTIONS = ["Why is the sky blue?", "Hi", "Name a primary color.", "How do I boil an egg?",
                  "What is two plus two?"]
# Figures of the final row that must equal `tiller eval policy` on the final model.
SAME_AS_EVAL_POLICY = ("n", "win_rate", "ci_low", "ci_high", "wins", "ties", "losses", "lc_win_rate", "guarded_win_rate",
                       "degenerate_policy", "degenerate_reference", "reward_policy_mean", "reward_reference_mean",
                       "reward_improvement", "length_ratio", "policy_mean_length", "reference_mean_length",
                       "truncated_policy", "truncated_reference", "kl_mean", "optimized_rm_policy_mean",
                       "optimized_rm_reference_mean", "optimized_rm_win_rate")


def save_random_reward_model(model: Path, out: Path, seed: int) -> None:
    """A classifier on the tiny model with a random score head: distinct scores for distinct texts."""
    tokenizer = load_tokenizer(str(model))
    torch.manual_seed(seed)
    load_reward_model(str(model), pad_token_id=tokenizer.pad_token_id).save_pretrained(out)
    tokenizer.save_pretrained(out)


def curve_config(run_dir: Path, model: Path) -> dict:
    return {
        "run_dir": str(run_dir), "model": {"name": str(model)}, "tracking": {"tensorboard": False},
        "rloo": {"lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0},
                 "optim": {"lr": 3e-2, "scheduler": "constant", "warmup_ratio": 0.0},
                 "prompts_per_step": 4, "completions_per_prompt": 2, "micro_batch_per_device": 8, "max_steps": 7,
                 "beta": 0.0, "missing_eos_penalty": 0.0, "rollout": {"max_new_tokens": 8},
                 "reward": {"backend": "callable", "function": "tests.helpers.rloo_rewards:vowel_share"},
                 "save_every": 2, "sample_every": 0},
        # batch_size 2 < 5 prompts: answers and KL are computed over several length-sorted batches
        "eval": {"num_prompts": 5, "batch_size": 2, "max_new_tokens": 8,
                 "judge": {"backend": "classifier", "path": str(run_dir / "judge" / "model")}},
    }


def test_curve_of_a_tiny_rloo_run(tmp_path, tiny_llama, capsys):
    write_prompts(tmp_path, "train")
    write_prompts(tmp_path, "validation", EVAL_QUESTIONS)
    save_random_reward_model(tiny_llama, tmp_path / "judge" / "model", seed=1)
    save_random_reward_model(tiny_llama, tmp_path / "reward" / "model", seed=2)  # "optimized": the reward stage's
    cfg = config_from_dict(curve_config(tmp_path, tiny_llama))
    rloo.run(cfg)
    # Saved at steps 2, 4 and 6 (not at 7, the last: the final model is saved instead); the newest
    # two are kept (rloo.keep_checkpoints), so step 2 is gone.
    assert sorted(p.name for p in (tmp_path / "rloo" / "checkpoints").iterdir()) == ["step-4", "step-6"]

    rows = evaluate.run_curve(cfg, stage="rloo")
    out = capsys.readouterr().out
    assert [(r["step"], r["checkpoint"]) for r in rows] == [(0, "start"), (4, "step-4"), (6, "step-6"), (7, "final")]
    written = [json.loads(line) for line in (tmp_path / "eval" / "curve.jsonl").read_text().splitlines()]
    assert written == rows
    assert {r["stage"] for r in rows} == {"rloo"} and {r["n"] for r in rows} == {5}
    # The reference's answers were generated and scored once: the same reference figures in every row.
    for key in ("reward_reference_mean", "optimized_rm_reference_mean", "reference_mean_length", "degenerate_reference"):
        assert len({r[key] for r in rows}) == 1, key

    # Step 0: the starting model is the reference (what RLOO started from): its own answers, KL 0,
    # every verdict a tie under both reward models.
    start = rows[0]
    assert start["model"] == str(tiny_llama) and start["reference"] == str(tiny_llama)
    assert start["kl_mean"] == 0.0
    assert (start["wins"], start["ties"], start["losses"], start["win_rate"]) == (0, 5, 0, 0.5)
    assert start["guarded_win_rate"] == 0.5 and start["optimized_rm_win_rate"] == 0.5
    assert start["reward_policy_mean"] == start["reward_reference_mean"]
    assert start["policy_mean_length"] == start["reference_mean_length"]
    # The checkpoints were loaded: trained LoRA weights (B starts at 0, so an untrained adapter gives KL 0).
    assert all(r["kl_mean"] > 0 for r in rows[1:]), [r["kl_mean"] for r in rows]
    assert "over-optimization curve of 'rloo' on 5 held-out prompts" in out and "step-6" in out
    assert "the earliest checkpoint kept is step-4 but rloo.save_every is 2" in out  # says what was pruned

    # The final row is `tiller eval policy` on the final model: same prompts, seed, reference and
    # judge. Scores may differ in the last bits (the curve scores the reference's answers once, in
    # other batches than eval policy does: measured up to 4e-7 for a classifier).
    summary = evaluate.run(cfg, policy_path=str(tmp_path / "rloo" / "model"), label="rloo")
    final = rows[-1]
    for key in SAME_AS_EVAL_POLICY:
        assert final[key] == pytest.approx(summary[key], abs=1e-5), key
    assert final["kl_mean"] > 0 and final["model"] == str(tmp_path / "rloo" / "model")

    # Another stage's rows stay when a stage's curve is written again.
    path = tmp_path / "eval" / "curve.jsonl"
    path.write_text(path.read_text() + json.dumps({"stage": "dpo", "step": 0}) + "\n")
    evaluate._write_curve_rows(path, "rloo", rows[:1])
    assert [(r["stage"], r["step"]) for r in map(json.loads, path.read_text().splitlines())] == [("dpo", 0), ("rloo", 0)]


def test_curve_of_a_tiny_dpo_run_with_full_fine_tuning(tmp_path, tiny_llama, capsys):
    """DPO, every weight trained: the checkpoints hold the whole model, the stage's own keys
    (dpo.train.*) are read, and without a reward stage there is no optimized reward model."""
    write_pairs(tmp_path, toy_pairs(8), toy_pairs(4, offset=100))
    write_prompts(tmp_path, "validation", EVAL_QUESTIONS)
    cfg = config_from_dict({
        "run_dir": str(tmp_path), "model": {"name": str(tiny_llama)}, "tracking": {"tensorboard": False},
        "dpo": {"lora": {"enabled": False}, "optim": {"lr": 3e-3, "scheduler": "constant", "warmup_ratio": 0.0},
                "train": {"pairs_per_step": 4, "micro_batch_per_device": 2, "max_length": 128, "max_steps": 3,
                          "eval_every": 0, "save_every": 1, "keep_checkpoints": 5}},
        "eval": {"num_prompts": 5, "batch_size": 5, "max_new_tokens": 8,
                 "judge": {"backend": "callable", "function": "tests.recipes.test_evaluate:judge_length"}},
    })
    dpo.run(cfg)
    rows = evaluate.run_curve(cfg)  # no --stage: the stages with a model or checkpoints, here dpo alone
    out = capsys.readouterr().out
    assert [(r["stage"], r["step"], r["checkpoint"]) for r in rows] == [
        ("dpo", 0, "start"), ("dpo", 1, "step-1"), ("dpo", 2, "step-2"), ("dpo", 3, "final")]
    assert rows[0]["kl_mean"] == 0.0 and rows[0]["win_rate"] == 0.5
    assert all(r["kl_mean"] > 0 for r in rows[1:]) and "optimized_rm_win_rate" not in rows[0]
    assert "earliest checkpoint kept" not in out  # nothing was pruned: keep_checkpoints 5
    summary = evaluate.run(cfg, policy_path=str(tmp_path / "dpo" / "model"), label="dpo")
    for key in SAME_AS_EVAL_POLICY:
        if not key.startswith("optimized_rm"):
            assert rows[-1][key] == pytest.approx(summary[key], abs=1e-5), key


def test_curve_of_a_tiny_ppo_run_loads_the_policy_of_each_checkpoint(tmp_path, tiny_llama):
    """PPO under LoRA: each checkpoint holds the policy adapter, the value adapter on the same base
    and the value head, so it loads only into the bundle built as ppo built it, and the policy
    adapter must answer. A checkpoint at the last step would equal the final model; ppo saves the
    final model instead, so the run stops after step 4 of 5 (checkpoints at 2 and 4) and a
    resumed run with max_steps 4 saves the final model from checkpoint step-4."""
    write_prompts(tmp_path, "train")
    write_prompts(tmp_path, "validation", EVAL_QUESTIONS)
    config = {
        "run_dir": str(tmp_path), "model": {"name": str(tiny_llama)}, "tracking": {"tensorboard": False},
        "ppo": {"lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0},  # value_model auto: shared
                "optim": {"lr": 3e-2, "scheduler": "constant", "warmup_ratio": 0.0},
                "prompts_per_step": 4, "completions_per_prompt": 2, "micro_batch_per_device": 8,
                "num_mini_batches": 1, "ppo_epochs": 1, "max_steps": 5, "beta": 0.0, "missing_eos_penalty": 0.0,
                "rollout": {"max_new_tokens": 8},
                "reward": {"backend": "callable", "function": "tests.helpers.rloo_rewards:vowel_share"},
                "save_every": 2, "sample_every": 0},
        "eval": {"num_prompts": 5, "batch_size": 5, "max_new_tokens": 8,
                 "judge": {"backend": "callable", "function": "tests.recipes.test_evaluate:judge_length"}},
    }
    ppo.run(config_from_dict(config), stop_after=4)
    config["ppo"]["max_steps"] = 4
    cfg = config_from_dict(config)
    ppo.run(cfg, resume=True, accept_config_changes=True)
    assert sorted(p.name for p in (tmp_path / "ppo" / "checkpoints").iterdir()) == ["step-2", "step-4"]

    rows = evaluate.run_curve(cfg, stage="ppo")
    assert [(r["stage"], r["step"], r["checkpoint"]) for r in rows] == [
        ("ppo", 0, "start"), ("ppo", 2, "step-2"), ("ppo", 4, "step-4"), ("ppo", 4, "final")]
    assert rows[0]["kl_mean"] == 0.0 and rows[0]["win_rate"] == 0.5  # the start is the reference
    # The checkpoints were loaded: the policy moved (an untrained adapter, B at zero, gives KL 0).
    assert all(r["kl_mean"] > 0 for r in rows[1:]), [r["kl_mean"] for r in rows]
    # Checkpoint step-4 is the final model's step: the policy adapter answered (the value adapter,
    # also trained, would answer otherwise), loaded in full. The final model is the adapter folder
    # ppo/model, loaded as any policy: the last bits of the KL may differ.
    checkpoint, final = rows[2], rows[3]
    for key in SAME_AS_EVAL_POLICY:
        if not key.startswith("optimized_rm"):
            assert checkpoint[key] == pytest.approx(final[key], rel=1e-4, abs=1e-5), key
