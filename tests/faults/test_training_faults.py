"""Training faults from issue 16: NaN / inf rewards and gradients hit the non-finite guard, no
checkpoint or model is written from non-finite weights, damaged checkpoints are detected and the
newest intact one is used, a changed config is refused on --resume (or accepted on request), and
kill -9 at seeded random moments resumes to bit-identical weights."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import ROOT, toy_pairs, write_pairs, write_prompts
from tests.helpers import rloo_rewards
from tests.helpers.saved import saved_weights
from tiller.checkpoint import CheckpointError, list_checkpoints, newest_intact_checkpoint, save_checkpoint
from tiller.config_loading import config_from_dict
from tiller.recipes import reward, rloo
from tiller.tracking import read_metrics
from tiller.training import NonFiniteError, OptimizerStep, make_optimizer, make_scheduler, setup_runtime

pytestmark = pytest.mark.faults


def rloo_config(run_dir: Path, model: Path, function: str, **overrides) -> dict:
    section = {"lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0},
               "optim": {"lr": 1e-2, "scheduler": "constant"}, "prompts_per_step": 4, "completions_per_prompt": 2,
               "micro_batch_per_device": 8, "max_steps": 6, "beta": 0.0, "rollout": {"max_new_tokens": 8},
               "reward": {"backend": "callable", "function": f"tests.helpers.rloo_rewards:{function}"},
               "save_every": 1, "sample_every": 0}
    section.update(overrides)
    return {"run_dir": str(run_dir), "model": {"name": str(model)}, "tracking": {"tensorboard": False}, "rloo": section}


def reward_config(run_dir: Path, model: Path, **train) -> dict:
    loop = {"max_steps": 6, "pairs_per_step": 4, "micro_batch_per_device": 2, "max_length": 96, "eval_every": 0,
            "save_every": 1, "keep_checkpoints": 3}
    loop.update(train)
    return {"run_dir": str(run_dir), "model": {"name": str(model)}, "tracking": {"tensorboard": False},
            "reward": {"lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.1},
                       "optim": {"lr": 1e-2, "scheduler": "cosine", "warmup_ratio": 0.2}, "train": loop,
                       "train_subset": "all"}}


def finite_model(folder: Path) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in saved_weights(folder).values())


# ----------------------------------------------------------------------------- the guard


def test_one_nan_reward_skips_that_update_and_the_run_goes_on(tmp_path, tiny_llama):
    write_prompts(tmp_path)
    rloo_rewards.CALLS["n"] = 0
    with pytest.warns(UserWarning, match=r"step 3: update skipped, reward backend 'callable' gave 8 non-finite"):
        rloo.run(config_from_dict(rloo_config(tmp_path, tiny_llama, "nan_on_third_call")))
    rows = read_metrics(tmp_path / "rloo" / "metrics.jsonl")
    assert [r["guard/skipped_updates"] for r in rows] == [0, 0, 1, 1, 1, 1]
    assert all(v == v for r in rows for v in r.values() if isinstance(v, float))  # no NaN was logged
    assert (tmp_path / "rloo" / "DONE").is_file() and finite_model(tmp_path / "rloo" / "model")
    assert newest_intact_checkpoint(tmp_path / "rloo" / "checkpoints").name == "step-5"


def test_inf_rewards_stop_the_stage_after_three_skips_without_saving(tmp_path, tiny_llama, capsys):
    from tiller.cli import main

    write_prompts(tmp_path)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(rloo_config(tmp_path, tiny_llama, "always_inf")))
    with pytest.warns(UserWarning, match="update skipped"):
        assert main(["rloo", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("tiller rloo: error:")]
    assert len(errors) == 1 and "3 updates skipped in a row" in errors[0] and "Traceback" not in err, err[-2000:]
    assert not (tmp_path / "rloo" / "model").exists() and not (tmp_path / "rloo" / "DONE").exists()


def _toy_updates(max_skips: int = 3):
    rt = setup_runtime(0)
    model = torch.nn.Linear(3, 1)
    optim_cfg = config_from_dict({}).reward.optim
    optimizer = make_optimizer(model, optim_cfg)
    scheduler = make_scheduler(optimizer, optim_cfg, 10)
    model, optimizer = rt.accelerator.prepare(model, optimizer)
    return model, OptimizerStep(rt, model, optimizer, scheduler, 1.0, 1, max_skips, "toy")


def test_non_finite_gradient_norm_applies_no_update():
    model, updates = _toy_updates()
    before = [p.detach().clone() for p in model.parameters()]
    with updates.micro_batch(0):
        updates.backward(model(torch.ones(2, 3)).sum() * float("nan"))
    with pytest.warns(UserWarning, match="step 1: update skipped, gradient norm is nan"):
        grad_norm = updates.step()
    assert grad_norm != grad_norm  # NaN
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert updates.skipped == 1 and updates.steps == 0
    with updates.micro_batch(0):  # a finite step after it is applied and resets the count in a row
        updates.backward(model(torch.ones(2, 3)).sum())
    updates.step()
    assert updates.steps == 1 and updates._in_a_row == 0
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_three_non_finite_steps_in_a_row_stop():
    model, updates = _toy_updates(max_skips=3)
    with pytest.warns(UserWarning), pytest.raises(NonFiniteError, match="3 updates skipped in a row"):
        for _ in range(3):
            with updates.micro_batch(0):
                updates.backward(model(torch.ones(2, 3)).sum() * float("inf"))
            updates.step()


def test_non_finite_weights_are_never_saved(tmp_path):
    model = torch.nn.Linear(3, 1)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    save_checkpoint(tmp_path, 1, model, optimizer, scheduler, {})
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="hold NaN or inf"):
        save_checkpoint(tmp_path, 2, model, optimizer, scheduler, {})
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-1"]
    assert not list(tmp_path.glob(".tmp-*"))


# ----------------------------------------------------------------------------- damaged checkpoints


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garble":  # same size, different bytes
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])
    else:
        path.unlink()


@pytest.fixture(scope="module")
def trained_reward_run(tiny_llama, tmp_path_factory) -> Path:
    """A reward run stopped after 4 steps with checkpoints at steps 2, 3 and 4."""
    run_dir = tmp_path_factory.mktemp("ckpt")
    write_pairs(run_dir, toy_pairs(16), toy_pairs(4, offset=500))
    reward.run(config_from_dict(reward_config(run_dir, tiny_llama)), stop_after=4)
    return run_dir


FILE_KINDS = ["state.json", "scheduler.pt", "rng-rank0.pt", "config.yaml", "model_optim/.metadata",
              "model_optim/__0_0.distcp", "manifest.json"]


@pytest.mark.parametrize("how", ["truncate", "garble", "delete"])
@pytest.mark.parametrize("kind", FILE_KINDS)
def test_damaged_newest_checkpoint_falls_back_to_the_previous(kind, how, trained_reward_run, tmp_path):
    import shutil

    ckpts = tmp_path / "checkpoints"
    shutil.copytree(trained_reward_run / "reward" / "checkpoints", ckpts)
    assert [p.name for p in list_checkpoints(ckpts)] == ["step-2", "step-3", "step-4"]
    _damage(ckpts / "step-4" / kind, how)
    messages: list[str] = []
    found = newest_intact_checkpoint(ckpts, log=messages.append)
    if kind == "manifest.json" and how == "delete":  # no manifest: not a checkpoint at all, silently skipped
        assert found.name == "step-3" and not messages
        return
    assert found.name == "step-3"
    assert str(ckpts / "step-4" / kind) in messages[0] or (kind == "manifest.json" and "manifest" in messages[0]), messages


def test_no_intact_checkpoint_is_an_error_listing_them(trained_reward_run, tmp_path):
    import shutil

    ckpts = tmp_path / "checkpoints"
    shutil.copytree(trained_reward_run / "reward" / "checkpoints", ckpts)
    for ckpt in list_checkpoints(ckpts):
        _damage(ckpt / "scheduler.pt", "garble")
    with pytest.raises(CheckpointError, match="no intact checkpoint") as e:
        newest_intact_checkpoint(ckpts, log=lambda m: None)
    assert all(f"step-{n}/scheduler.pt" in str(e.value) for n in (2, 3, 4))


def test_resume_with_a_damaged_newest_checkpoint_equals_resuming_from_the_previous(tiny_llama, tmp_path):
    """The fallback really resumes: the damaged step-4 is skipped and step 3 on is recomputed,
    giving the weights of the uninterrupted run."""
    full, damaged = tmp_path / "full", tmp_path / "damaged"
    for run_dir in (full, damaged):
        write_pairs(run_dir, toy_pairs(16), toy_pairs(4, offset=500))
    reward.run(config_from_dict(reward_config(full, tiny_llama)))
    reward.run(config_from_dict(reward_config(damaged, tiny_llama)), stop_after=4)
    _damage(damaged / "reward" / "checkpoints" / "step-4" / "model_optim" / "__0_0.distcp", "garble")
    (damaged / "reward" / "checkpoints" / ".tmp-step-5").mkdir()  # a save killed half way
    reward.run(config_from_dict(reward_config(damaged, tiny_llama)), resume=True)
    a, b = saved_weights(full / "reward" / "model"), saved_weights(damaged / "reward" / "model")
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not (damaged / "reward" / "checkpoints" / ".tmp-step-5").exists()


# ----------------------------------------------------------------------------- config on resume


@pytest.mark.parametrize("change, key", [
    ({"optim": {"lr": 5e-2}}, "reward.optim.lr"),
    ({"train": {"max_steps": 8}}, "reward.train.max_steps"),
    ({"optim": {"scheduler": "linear"}}, "reward.optim.scheduler"),
    ({"seed": 7}, "seed"),
])
def test_resume_refuses_a_changed_trajectory(change, key, trained_reward_run, tiny_llama, tmp_path):
    import shutil

    shutil.copytree(trained_reward_run, tmp_path / "run")
    cfg = reward_config(tmp_path / "run", tiny_llama)
    if "seed" in change:
        cfg["seed"] = change["seed"]
    for part, values in change.items():
        if part != "seed":
            cfg["reward"][part].update(values)
    with pytest.raises(ValueError, match=rf"(?s)changes? the run.*{key.replace('.', '[.]')}: .* -> "):
        reward.run(config_from_dict(cfg), resume=True)


def test_resume_with_another_model_names_the_change(trained_reward_run, tiny_qwen3, tmp_path):
    """Resuming with a model of another size is refused before any tensor is loaded, naming the
    key (it used to be a raw `size of tensor a (32) must match` traceback)."""
    import shutil

    shutil.copytree(trained_reward_run, tmp_path / "run")
    with pytest.raises(ValueError, match=r"(?s)model[.]name: .*tiny.*llama.* -> .*qwen3"):
        reward.run(config_from_dict(reward_config(tmp_path / "run", tiny_qwen3)), resume=True)


def test_a_remote_reward_failure_is_one_line(capsys, monkeypatch, tmp_path):
    from tiller.cli import main
    from tiller.rewards.http import RemoteRewardError

    def failing(cfg, resume, **kwargs):
        raise RemoteRewardError("reward server http://127.0.0.1:9/score: no complete answer within timeout_s=2 s "
                                "(2 attempts)")

    monkeypatch.setattr("tiller.recipes.rloo.run", failing)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"run_dir": str(tmp_path)}))
    monkeypatch.setenv("TILLER_QUIET_CONFIG", "1")
    assert main(["rloo", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tiller rloo: error: reward server") and "Traceback" not in err


def test_resume_accepts_logging_changes_and_on_request_a_new_lr(trained_reward_run, tiny_llama, tmp_path, capsys):
    import shutil

    shutil.copytree(trained_reward_run, tmp_path / "run")
    cfg = reward_config(tmp_path / "run", tiny_llama, log_every=2, save_every=2)
    cfg["reward"]["optim"].update(lr=5e-2, scheduler="constant", warmup_ratio=0.0)
    with pytest.raises(ValueError):
        reward.run(config_from_dict(cfg), resume=True)
    reward.run(config_from_dict(cfg), resume=True, accept_config_changes=True)
    out = capsys.readouterr().out
    assert "do not alter the run: reward.train.log_every" in out and "continuing with reward.optim.lr" in out
    rows = read_metrics(tmp_path / "run" / "reward" / "metrics.jsonl")
    assert rows[-1]["step"] == 6 and rows[-1]["train/lr"] == pytest.approx(5e-2)


# ----------------------------------------------------------------------------- kill -9


def _cli(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "TILLER_QUIET_CONFIG": "1"}
    return subprocess.Popen([sys.executable, "-m", "tiller", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["reward", "rloo"])
def test_kill_9_at_random_moments_then_resume_is_bit_identical(stage, tiny_llama, tmp_path):
    """Two seeded kill times per stage (while training or while saving), then --resume until done:
    the final weights equal the uninterrupted run's bit for bit."""
    def config(run_dir: Path) -> Path:
        write_pairs(run_dir, toy_pairs(16), toy_pairs(4, offset=500))
        write_prompts(run_dir)
        cfg = reward_config(run_dir, tiny_llama, max_steps=12) if stage == "reward" else \
            rloo_config(run_dir, tiny_llama, "vowel_share", max_steps=12,
                        lora={"enabled": True, "r": 4, "alpha": 8, "dropout": 0.1})
        path = run_dir / "config.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    reference = config(tmp_path / "full")
    assert _cli([stage, "--config", str(reference)]).wait(timeout=300) == 0
    expected = saved_weights(tmp_path / "full" / stage / "model")
    rng = random.Random(f"kill-{stage}")
    kills = 0
    for trial in range(2):
        path = config(tmp_path / f"killed{trial}")
        proc = _cli([stage, "--config", str(path)])
        ckpts = tmp_path / f"killed{trial}" / stage / "checkpoints"
        deadline = time.time() + 120
        while not list_checkpoints(ckpts) and time.time() < deadline:  # wait for the first checkpoint
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
        for _ in range(5):  # resume until done (a resumed run might itself be the last one)
            if (tmp_path / f"killed{trial}" / stage / "DONE").is_file():
                break
            resumed = _cli([stage, "--config", str(path), "--resume"])
            assert resumed.wait(timeout=300) == 0, resumed.stderr.read()[-2000:]
        got = saved_weights(tmp_path / f"killed{trial}" / stage / "model")
        assert all(torch.equal(expected[n], got[n]) for n in expected), (stage, trial)
    assert kills >= 1  # at least one trial was killed mid-run (a fast machine could finish one first)
