"""PPO on a tiny random model: it learns a rule reward (full fine-tuning, and LoRA with the value
model as a second adapter on the policy's base), the LoRA path saves only the policy, which loads
and computes what the trained policy did, and starts at KL 0, it resumes exactly (every trained
tensor, value adapter and head included), and 2 processes produce the same update as 1."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.conftest import accelerate_launch, write_prompts
from tests.helpers.metrics import assert_same_metrics
from tests.helpers.reward_adapter import reward_adapter_folder
from tests.helpers.saved import saved_weights
from tiller.config_loading import config_from_dict
from tiller.recipes import ppo
from tiller.tracking import read_metrics
from tiller.value_model import value_model_kind


def ppo_config(run_dir: Path, model: Path, **overrides) -> dict:
    section = {
        "lora": {"enabled": False},
        "optim": {"lr": 3e-3, "scheduler": "constant", "warmup_ratio": 0.0},
        "prompts_per_step": 4,
        "completions_per_prompt": 4,
        "micro_batch_per_device": 8,
        "num_mini_batches": 2,
        "ppo_epochs": 2,
        "max_steps": 30,
        "beta": 0.0,
        "missing_eos_penalty": 0.0,
        "rollout": {"max_new_tokens": 16},
        "reward": {"backend": "callable", "function": "tests.helpers.rloo_rewards:vowel_share"},
        "save_every": 0,
        "sample_every": 0,
    }
    section.update(overrides)
    return {"run_dir": str(run_dir), "model": {"name": str(model)}, "tracking": {"tensorboard": False}, "ppo": section}


def series(run_dir: Path, key: str = "objective/scores") -> list[float]:
    return [row[key] for row in read_metrics(run_dir / "ppo" / "metrics.jsonl")]


def test_ppo_learns_a_rule_reward(tmp_path, tiny_llama):
    write_prompts(tmp_path)
    ppo.run(config_from_dict(ppo_config(tmp_path, tiny_llama)))
    curve = series(tmp_path)
    assert len(curve) == 30
    first, last = sum(curve[:5]) / 5, sum(curve[-5:]) / 5
    # A random tiny model writes ~38% vowels; PPO must push that up clearly in 30 steps.
    assert last > first + 0.05, curve
    # The value model learns the returns: its mean value rises from 0 (the head starts at zero).
    values = series(tmp_path, "value/mean")
    assert values[0] == 0.0 and values[-1] > 0.2, values
    assert (tmp_path / "ppo" / "model" / "config.json").is_file()


def test_ppo_shared_value_learns_a_rule_reward(tmp_path, tiny_llama, capsys):
    """LoRA with the value model as a second adapter on the policy's base (the default under LoRA).
    The tiny random model's output is nearly uniform (entropy ~ ln 512) and barely moves through
    adapters on its layers alone, so the LM head is adapted too: the policy's adapter covers it,
    the value adapter leaves it out (the value forward never reaches it)."""
    write_prompts(tmp_path)
    ppo.run(config_from_dict(ppo_config(
        tmp_path, tiny_llama, optim={"lr": 1e-2, "scheduler": "constant", "warmup_ratio": 0.0},
        lora={"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj", "lm_head"]})))
    assert "value model: a second LoRA adapter ('value') on the policy's own base" in capsys.readouterr().out
    curve = series(tmp_path)
    first, last = sum(curve[:5]) / 5, sum(curve[-5:]) / 5
    assert last > first + 0.05, curve
    values = series(tmp_path, "value/mean")
    assert values[0] == 0.0 and values[-1] > 0.2, values


def test_ppo_lora_saves_the_policy_alone_and_starts_at_kl_zero(tmp_path, tiny_llama):
    write_prompts(tmp_path)
    cfg = ppo_config(tmp_path, tiny_llama, lora={"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0},
                     optim={"lr": 1e-2, "scheduler": "constant"}, beta=0.1, max_steps=3, missing_eos_penalty=1.0)
    ppo.run(config_from_dict(cfg))
    rows = read_metrics(tmp_path / "ppo" / "metrics.jsonl")
    assert rows[0]["objective/kl"] == 0.0  # LoRA B starts at zero: the policy is the reference
    assert rows[-1]["objective/kl"] != 0.0
    saved = tmp_path / "ppo" / "model"
    assert (saved / "adapter_model.safetensors").is_file()
    names = load_file(str(saved / "adapter_model.safetensors")).keys()
    assert names and not any("value" in n for n in names)  # the value model is not part of the policy
    assert not (saved / "value").exists()  # peft would save a second adapter in a subfolder


def test_ppo_scores_with_a_lora_reward_model_on_the_policys_base(tmp_path, tiny_llama, capsys):
    """PPO under LoRA with the shared value adapter: a reward model saved as a LoRA adapter on the
    policy's starting weights scores as a third adapter on the policy's base (one copy of the base)
    and gives the run of the same reward model loaded separately and merged (scores, KL, losses
    and grad norm to 1e-4 relative: float rounding of B·A·x against merged weights); the saved
    policy holds its own adapter only. Saved weights agree to 1e-3 after 12 Adam updates at lr
    1e-2 (3 steps x 2 epochs x 2 mini-batches): Adam divides by the gradient's own scale, so an
    element whose gradient is near zero turns a rounding difference into a step of up to lr
    (measured: 2.1e-4)."""
    reward_dir = reward_adapter_folder(tmp_path / "reward", tiny_llama)

    def run(folder: Path, share: bool) -> list[dict]:
        write_prompts(folder)
        ppo.run(config_from_dict(ppo_config(
            folder, tiny_llama, max_steps=3, beta=0.1, optim={"lr": 1e-2, "scheduler": "constant"},
            lora={"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0},
            reward={"backend": "classifier", "path": str(reward_dir), "share_base": share})))
        return read_metrics(folder / "ppo" / "metrics.jsonl")

    shared = run(tmp_path / "shared", True)
    assert "[ppo] reward model" in (out := capsys.readouterr().out) and "on the policy's own base" in out, out[-2000:]
    separate = run(tmp_path / "separate", False)
    assert "loaded as a separate model (share_base: false)" in capsys.readouterr().out
    assert len(shared) == len(separate) == 3
    assert len({round(r["objective/scores"], 6) for r in shared}) > 1  # the classifier's scores vary
    for a, b in zip(shared, separate):
        for key in ("objective/scores", "objective/kl", "loss/policy_avg", "loss/value_avg", "train/grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    wa, wb = saved_weights(tmp_path / "shared" / "ppo" / "model"), saved_weights(tmp_path / "separate" / "ppo" / "model")
    assert wa.keys() == wb.keys() and not any("reward" in k or "value" in k for k in wa)
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-3


@pytest.mark.parametrize("merge", [False, True])
def test_ppo_saved_policy_computes_what_the_trained_policy_did(tmp_path, tiny_llama, monkeypatch, merge):
    """The folder ppo/model (an adapter, or merged), loaded the way every later stage loads a policy
    (models.load_policy), gives the trained policy's logits: the policy adapter, not the value one."""
    from tiller.models import load_policy

    ids = torch.randint(3, 100, (2, 12), generator=torch.Generator().manual_seed(0))
    trained = {}
    original = ppo.save_trained_model

    def spy(rt, model, unwrapped, *args, **kwargs):
        with torch.no_grad():
            trained["logits"] = unwrapped.policy(input_ids=ids).logits
            trained["values"] = model(ids, torch.ones_like(ids), ids.shape[1])[1]
        original(rt, model, unwrapped, *args, **kwargs)

    monkeypatch.setattr(ppo, "save_trained_model", spy)
    write_prompts(tmp_path)
    cfg = ppo_config(tmp_path, tiny_llama, lora={"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0,
                                                "merge_on_save": merge},
                     optim={"lr": 1e-2, "scheduler": "constant"}, max_steps=2)
    ppo.run(config_from_dict(cfg))
    saved = tmp_path / "ppo" / "model"
    assert (saved / ("model.safetensors" if merge else "adapter_model.safetensors")).is_file()
    loaded, _ = load_policy(str(saved), config_from_dict(cfg).model, None)
    with torch.no_grad():
        logits = loaded.eval()(input_ids=ids).logits
    start = load_policy(str(tiny_llama), config_from_dict(cfg).model, None)[0].eval()
    assert not torch.allclose(logits, start(input_ids=ids).logits)  # trained, not the start
    assert trained["values"].abs().max() > 0  # the value adapter and head trained too
    torch.testing.assert_close(logits, trained["logits"], rtol=1e-5, atol=1e-5)


def checkpoint_tensors(folder: Path, tmp: Path) -> dict[str, torch.Tensor]:
    """Every tensor a checkpoint's DCP folder holds (trained weights and optimizer state)."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    out = tmp / f"{folder.parent.parent.parent.name}-{folder.name}.pt"
    dcp_to_torch_save(folder / "model_optim", out)
    flat = {}

    def walk(prefix, tree):
        for key, value in tree.items():
            if isinstance(value, dict):
                walk(f"{prefix}{key}.", value)
            elif isinstance(value, torch.Tensor):
                flat[f"{prefix}{key}"] = value

    walk("", torch.load(out, weights_only=False))
    return flat


@pytest.mark.parametrize("value_model", ["shared", "separate"])
def test_ppo_resume_gives_identical_run(tmp_path, tiny_llama, value_model):
    full, killed = tmp_path / "full", tmp_path / "killed"
    for run_dir in (full, killed):
        write_prompts(run_dir)
    overrides = dict(max_steps=6, save_every=2, beta=0.05, lora={"enabled": True, "r": 4, "alpha": 8, "dropout": 0.1},
                     optim={"lr": 1e-2, "scheduler": "linear", "warmup_ratio": 0.2}, value_model=value_model)
    ppo.run(config_from_dict(ppo_config(full, tiny_llama, **overrides)))
    # "kill" after 3 steps: the last checkpoint is step 2, so step 3 is done again on resume
    ppo.run(config_from_dict(ppo_config(killed, tiny_llama, **overrides)), stop_after=3)
    assert not (killed / "ppo" / "model").exists()
    ppo.run(config_from_dict(ppo_config(killed, tiny_llama, **overrides)), resume=True)
    # loss/value_avg and value/mean equal: the value model and its head were restored too
    for key in ("loss/policy_avg", "loss/value_avg", "value/mean", "objective/scores", "objective/kl", "train/lr"):
        assert series(killed, key) == series(full, key), key
    a, b = saved_weights(full / "ppo" / "model"), saved_weights(killed / "ppo" / "model")
    assert all(torch.equal(a[n], b[n]) for n in a)
    # The step-4 checkpoint, written after the resume, equals the uninterrupted run's in every
    # tensor: both adapters (or the value model's own), the value head, the optimizer state.
    a = checkpoint_tensors(full / "ppo" / "checkpoints" / "step-4", tmp_path)
    b = checkpoint_tensors(killed / "ppo" / "checkpoints" / "step-4", tmp_path)
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    value_part = ".value." if value_model == "shared" else "value_model."
    assert any(value_part in n and "lora_B" in n for n in a) and any("value_head" in n for n in a)
    assert not any("embed_tokens" in n or "lm_head" in n for n in a)  # frozen weights are never saved


# LoRA: the shared value adapter, with the LM head adapted too: the value adapter leaves it out,
# or DDP would stop on a trained parameter that the value forward never reaches.
LORA_SHARED = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj", "lm_head"]}


def _launch(run_dir: Path, model: Path, processes: int, lora: dict) -> None:
    write_prompts(run_dir)
    # One mini-batch per epoch: its rows are the same set however the step is split over
    # processes (shuffling permutes each process's own rows). adam_eps=1: an update is about lr x
    # gradient, so a wrong normalization would show (see test_rloo.py).
    cfg = ppo_config(run_dir, model, max_steps=2, micro_batch_per_device=4, num_mini_batches=1, beta=0.05, lora=lora,
                     optim={"lr": 10.0, "scheduler": "constant", "adam_eps": 1.0, "max_grad_norm": 0.0})
    path = run_dir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = accelerate_launch(["ppo", "--config", str(path)], processes)
    assert f"over {processes} process(es)" in result.stdout, result.stdout[-2000:]
    kind = "a second LoRA adapter ('value')" if lora["enabled"] else "a separate copy"
    assert f"value model: {kind}" in result.stdout


@pytest.mark.distributed
@pytest.mark.parametrize("lora", [{"enabled": False}, LORA_SHARED], ids=["full-separate", "lora-shared"])
def test_ppo_two_processes_match_one(tmp_path, tiny_llama, lora):
    _launch(tmp_path / "one", tiny_llama, 1, lora)
    _launch(tmp_path / "two", tiny_llama, 2, lora)
    a, b = saved_weights(tmp_path / "one" / "ppo" / "model"), saved_weights(tmp_path / "two" / "ppo" / "model")
    assert a.keys() == b.keys()
    if lora["enabled"]:  # the adapter: LoRA B starts at zero
        assert max(a[n].abs().max().item() for n in a if "lora_B" in n) > 1e-4
    else:
        start = load_file(str(tiny_llama / "model.safetensors"))
        assert max((a[n] - start[n]).abs().max().item() for n in a) > 1e-4  # the update is real
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=1e-4, atol=1e-5)
    compared = assert_same_metrics(tmp_path / "one" / "ppo" / "metrics.jsonl", tmp_path / "two" / "ppo" / "metrics.jsonl")
    assert {"loss/policy_avg", "loss/value_avg", "value/mean", "objective/advantage_std", "train/grad_norm"} <= set(compared)


def test_ppo_is_a_pipeline_stage_and_a_command(tmp_path, tiny_llama, capsys):
    """`pipeline.stages` accepts ppo and runs it; `tiller ppo --print-config` shows its section."""
    from tiller.cli import main
    from tiller.config import PIPELINE_STAGES
    from tiller.recipes import pipeline

    assert "ppo" in PIPELINE_STAGES
    write_prompts(tmp_path)
    cfg = ppo_config(tmp_path, tiny_llama, max_steps=1, ppo_epochs=1)
    cfg["pipeline"] = {"stages": ["ppo"]}
    pipeline.run_stage(config_from_dict(cfg), "ppo", resume=False)
    assert (tmp_path / "ppo" / "DONE").is_file() and (tmp_path / "ppo" / "started_from.json").is_file()
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    assert main(["ppo", "--config", str(path), "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "num_mini_batches: 2" in printed and "vf_coef: 0.1" in printed


def test_ppo_config_refuses_mini_batches_that_do_not_split():
    from tiller.config import ConfigError

    with pytest.raises(ConfigError, match="ppo.num_mini_batches"):
        config_from_dict({"ppo": {"prompts_per_step": 4, "completions_per_prompt": 1, "num_mini_batches": 3,
                                  "micro_batch_per_device": 1}})
    with pytest.raises(ConfigError, match="ppo.reward.function"):
        config_from_dict({"ppo": {"reward": {"backend": "callable"}}})
    with pytest.raises(ConfigError, match="ppo.value_model.*needs ppo.lora.enabled"):
        config_from_dict({"ppo": {"value_model": "shared", "lora": {"enabled": False}}})
    assert [value_model_kind(config_from_dict({"ppo": {"lora": {"enabled": lora}}}).ppo) for lora in (True, False)] \
        == ["shared", "separate"]
