"""RLOO on a tiny random model: it learns a rule reward, resumes exactly, and 2 processes
produce the same update as 1."""

from __future__ import annotations

import json
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
from tiller.models import adapter_base
from tiller.recipes import rloo
from tiller.tracking import read_metrics


def rloo_config(run_dir: Path, model: Path, **rloo_overrides) -> dict:
    section = {
        "lora": {"enabled": False},
        "optim": {"lr": 3e-3, "scheduler": "constant", "warmup_ratio": 0.0},
        "prompts_per_step": 4,
        "completions_per_prompt": 4,
        "micro_batch_per_device": 8,
        "max_steps": 30,
        "beta": 0.0,
        "missing_eos_penalty": 0.0,
        "rollout": {"max_new_tokens": 16},
        "reward": {"backend": "callable", "function": "tests.helpers.rloo_rewards:vowel_share"},
        "save_every": 0,
        "sample_every": 0,
    }
    section.update(rloo_overrides)
    return {"run_dir": str(run_dir), "model": {"name": str(model)}, "tracking": {"tensorboard": False}, "rloo": section}


def scores(run_dir: Path, key: str = "objective/scores") -> list[float]:
    return [row[key] for row in read_metrics(run_dir / "rloo" / "metrics.jsonl")]


def test_rloo_learns_a_rule_reward(tmp_path, tiny_llama):
    write_prompts(tmp_path)
    rloo.run(config_from_dict(rloo_config(tmp_path, tiny_llama)))
    curve = scores(tmp_path)
    assert len(curve) == 30
    first, last = sum(curve[:5]) / 5, sum(curve[-5:]) / 5
    # A random tiny model writes ~38% vowels; RLOO must push that up clearly in 30 steps.
    assert last > first + 0.05, curve
    assert (tmp_path / "rloo" / "model" / "config.json").is_file()


def test_rloo_lora_and_kl_penalty_run(tmp_path, tiny_llama):
    """LoRA path: the reference is the adapter-disabled base, KL starts at exactly 0."""
    write_prompts(tmp_path)
    cfg = rloo_config(tmp_path, tiny_llama, lora={"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0},
                      optim={"lr": 1e-2, "scheduler": "constant"}, beta=0.1, max_steps=3, missing_eos_penalty=1.0)
    rloo.run(config_from_dict(cfg))
    rows = read_metrics(tmp_path / "rloo" / "metrics.jsonl")
    # Step 1 samples from the untouched policy (LoRA B is zero-initialized): policy == reference.
    assert rows[0]["objective/kl"] == 0.0
    assert rows[-1]["objective/kl"] != 0.0
    # rlhf_reward = scores - penalty for missing EOS - beta*KL, averaged
    assert rows[0]["objective/rlhf_reward"] < rows[0]["objective/scores"]
    saved = tmp_path / "rloo" / "model"  # lora.merge_on_save false (the default): the adapter and a pointer to its base
    assert (saved / "adapter_model.safetensors").is_file() and not (saved / "model.safetensors").exists()
    assert adapter_base(saved) == str(tiny_llama)


def test_rloo_resume_gives_identical_losses(tmp_path, tiny_llama):
    full, killed = tmp_path / "full", tmp_path / "killed"
    for run_dir in (full, killed):
        write_prompts(run_dir)
    overrides = dict(max_steps=6, save_every=2, lora={"enabled": True, "r": 4, "alpha": 8, "dropout": 0.1},
                     optim={"lr": 1e-2, "scheduler": "linear", "warmup_ratio": 0.2})
    rloo.run(config_from_dict(rloo_config(full, tiny_llama, **overrides)))
    # "kill" after 3 steps: the last checkpoint is step 2, so step 3 is done again on resume
    rloo.run(config_from_dict(rloo_config(killed, tiny_llama, **overrides)), stop_after=3)
    assert not (killed / "rloo" / "model").exists()
    rloo.run(config_from_dict(rloo_config(killed, tiny_llama, **overrides)), resume=True)
    for key in ("loss/policy_avg", "objective/scores", "objective/kl", "train/lr"):
        assert scores(killed, key) == scores(full, key), key
    a, b = saved_weights(full / "rloo" / "model"), saved_weights(killed / "rloo" / "model")
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_rl_forwards_run_without_dropout(tmp_path, tiny_llama, monkeypatch, capsys):
    """lora.dropout 0.1 configured: no RL forward uses it (DESIGN.md). With the split update path
    (micro-batches of 2 < k = 4 completions, no-grad old log-probs, 2 PPO epochs) the first
    epoch's importance ratio is exactly 1 and nothing is clipped, at every step (with dropout it
    was 0.92-1.06 per micro-batch with up to 25% of the tokens clipped from step 2 on, once LoRA B
    is not zero); and the whole run, every metric and the weights, equals the run with dropout 0."""
    calls = []
    policy_loss = rloo.losses.policy_loss

    def recording(*args, **kwargs):
        loss, metrics = policy_loss(*args, **kwargs)
        calls.append({key: float(value) for key, value in metrics.items()})
        return loss, metrics

    monkeypatch.setattr(rloo.losses, "policy_loss", recording)

    def run(folder: Path, dropout: float) -> None:
        write_prompts(folder)
        cfg = rloo_config(folder, tiny_llama, lora={"enabled": True, "r": 4, "alpha": 8, "dropout": dropout},
                          optim={"lr": 3e-2, "scheduler": "constant"}, beta=0.1, max_steps=3, num_ppo_epochs=2,
                          micro_batch_per_device=2)
        rloo.run(config_from_dict(cfg))

    run(tmp_path / "dropout", 0.1)
    assert "without dropout" in capsys.readouterr().out
    per_epoch = 4 * 4 // 2  # 16 completions in micro-batches of 2
    assert len(calls) == 3 * 2 * per_epoch
    for step in range(3):
        first_epoch = calls[step * 2 * per_epoch:][:per_epoch]
        assert [c["val/ratio"] for c in first_epoch] == [1.0] * per_epoch, step
        assert [c["policy/clipfrac_avg"] for c in first_epoch] == [0.0] * per_epoch, step
    assert read_metrics(tmp_path / "dropout" / "rloo" / "metrics.jsonl")[-1]["objective/kl"] != 0.0  # LoRA moved
    run(tmp_path / "none", 0.0)
    assert "objective/kl" in assert_same_metrics(tmp_path / "dropout" / "rloo" / "metrics.jsonl",
                                                 tmp_path / "none" / "rloo" / "metrics.jsonl", rel=0.0, abs=0.0)
    a, b = saved_weights(tmp_path / "dropout" / "rloo" / "model"), saved_weights(tmp_path / "none" / "rloo" / "model")
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_the_update_runs_the_largest_micro_batch_first(tmp_path, tiny_llama, monkeypatch):
    """Less peak memory on CPU (the later micro-batches' activations fit where the first one's
    were): the update's forwards go from the largest micro-batch to the smallest, every one once."""
    seen = []  # per update forward (the ones with gradients), in order: tokens in its rows
    forward = rloo.completion_logprobs

    def recording(model, ids, *args, **kwargs):
        if torch.is_grad_enabled():
            seen.append(ids.numel())
        return forward(model, ids, *args, **kwargs)

    monkeypatch.setattr(rloo, "completion_logprobs", recording)
    write_prompts(tmp_path)
    rloo.run(config_from_dict(rloo_config(tmp_path, tiny_llama, max_steps=2, micro_batch_per_device=4)))
    assert len(seen) == 2 * 4  # 4 prompt groups a step, one per micro-batch
    for step in (seen[:4], seen[4:]):
        assert step == sorted(step, reverse=True), seen
    assert len(set(seen)) > 1, seen  # micro-batches of different sizes: the order was decided, not given


def _launch(run_dir: Path, model: Path, processes: int, **overrides) -> str:
    write_prompts(run_dir)
    # adam_eps=1 makes an update about lr x gradient: with the default eps Adam's first step is
    # the sign of the gradient, which would hide a wrong normalization (and amplify round-off).
    settings = dict(max_steps=2, prompts_per_step=4, micro_batch_per_device=4,
                    optim={"lr": 10.0, "scheduler": "constant", "adam_eps": 1.0, "max_grad_norm": 0.0}, beta=0.05)
    settings.update(overrides)
    cfg = rloo_config(run_dir, model, **settings)
    path = run_dir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = accelerate_launch(["rloo", "--config", str(path)], processes)
    assert f"over {processes} process(es)" in result.stdout, result.stdout[-2000:]
    return result.stdout


@pytest.mark.distributed
def test_two_processes_match_one(tmp_path, tiny_llama):
    """Each process takes whole prompt groups; the loss is normalized by the global token count
    and DDP averages gradients, so the update equals the single-process one."""
    _launch(tmp_path / "one", tiny_llama, 1)
    _launch(tmp_path / "two", tiny_llama, 2)
    a = load_file(str(tmp_path / "one" / "rloo" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "rloo" / "model" / "model.safetensors"))
    start = load_file(str(tiny_llama / "model.safetensors"))
    moved = max((a[n] - start[n]).abs().max().item() for n in a)
    assert moved > 1e-4  # the update is real
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=1e-4, atol=1e-5)
    # every metric: counts summed, min / max over both, means weighted by their counts
    compared = assert_same_metrics(tmp_path / "one" / "rloo" / "metrics.jsonl", tmp_path / "two" / "rloo" / "metrics.jsonl")
    assert {"val/num_eos_tokens", "completions/min_length", "completions/max_length", "val/ratio", "policy/entropy_avg",
            "objective/advantage_std", "train/grad_norm", "loss/policy_avg"} <= set(compared)


def test_shared_frozen_layers_give_the_same_run(tmp_path, tiny_qwen3, monkeypatch, capsys):
    """LoRA on the last layer only: the frozen layer below it is computed once for the reference
    and the policy. Same metrics, losses and weights as full forwards for both."""
    def run(folder: Path, share: bool) -> list[dict]:
        write_prompts(folder)
        if not share:
            monkeypatch.setattr(rloo.FrozenPrefix, "of", classmethod(lambda cls, model: None))
        cfg = rloo_config(folder, tiny_qwen3, lora={"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "last_n_layers": 1},
                          optim={"lr": 1e-2, "scheduler": "constant"}, beta=0.1, max_steps=3, micro_batch_per_device=4)
        rloo.run(config_from_dict(cfg))
        monkeypatch.undo()
        return read_metrics(folder / "rloo" / "metrics.jsonl")

    shared = run(tmp_path / "shared", True)
    assert "the first 1 layers hold no adapter" in capsys.readouterr().out
    full = run(tmp_path / "full", False)
    assert len(shared) == len(full) == 3
    assert shared[-1]["objective/kl"] != 0.0  # the adapter moved: the reference path was exercised
    for a, b in zip(shared, full):
        for key in ("objective/scores", "objective/kl", "loss/policy_avg", "train/grad_norm", "objective/entropy"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    wa, wb = saved_weights(tmp_path / "shared" / "rloo" / "model"), saved_weights(tmp_path / "full" / "rloo" / "model")
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-5


@pytest.mark.distributed
@pytest.mark.parametrize("shared_prompt", [False, True], ids=["padded rows", "prompt once"])
def test_two_processes_match_one_with_shared_frozen_layers(tmp_path, tiny_llama, shared_prompt):
    """LoRA on the last layer: the tail runs through the DDP-wrapped model from the shared hidden
    states, and 2 processes still give the 1-process update; also with each prompt group in one
    row, the prompt once (rloo.shared_prompt)."""
    lora = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "last_n_layers": 1, "merge_on_save": True}
    optim = {"lr": 0.1, "scheduler": "constant", "adam_eps": 1.0, "max_grad_norm": 0.0}
    for processes in (1, 2):
        out = _launch(tmp_path / str(processes), tiny_llama, processes, lora=lora, optim=optim,
                      shared_prompt=shared_prompt)
        assert "the first 1 layers hold no adapter" in out, out[-2000:]
        assert ("each prompt group in one row, the prompt once" in out) == shared_prompt, out[-2000:]
    a = load_file(str(tmp_path / "1" / "rloo" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "2" / "rloo" / "model" / "model.safetensors"))
    start = load_file(str(tiny_llama / "model.safetensors"))
    assert max((a[n] - start[n]).abs().max().item() for n in a) > 1e-5  # the adapter moved
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=1e-4, atol=1e-6)
    assert_same_metrics(tmp_path / "1" / "rloo" / "metrics.jsonl", tmp_path / "2" / "rloo" / "metrics.jsonl")


def test_degeneration_penalty_is_part_of_the_reward(tmp_path, tiny_llama, monkeypatch):
    """rlhf_reward = score - degeneration_penalty * [degenerate] (beta 0, no EOS penalty), while
    objective/scores stays the reward backend's own score; the flagged share is logged."""
    import tiller.recipes.rloo as recipe

    write_prompts(tmp_path)
    monkeypatch.setattr(recipe, "is_degenerate", lambda text: True)  # every completion flagged
    cfg = rloo_config(tmp_path, tiny_llama, max_steps=2, degeneration_penalty=0.75)
    rloo.run(config_from_dict(cfg))
    for row in read_metrics(tmp_path / "rloo" / "metrics.jsonl"):
        assert row["completions/degenerate_share"] == 1.0
        assert row["objective/rlhf_reward"] == pytest.approx(row["objective/scores"] - 0.75, abs=1e-6)


def test_callable_reward_gets_the_records_when_it_takes_them():
    from tiller.rewards.function import FunctionReward

    prompts = [[{"role": "user", "content": "2+2?"}]] * 2
    exact = FunctionReward("tests.helpers.rloo_rewards:exact_match")
    assert exact.takes_records
    assert exact.score(prompts, ["It is 4.", "five"], 2, records=[{"gold_answer": 4}] * 2) == [1.0, 0.0]
    with pytest.raises(KeyError):  # no records (evaluation): empty ones, so a missing column is the function's error
        exact.score(prompts, ["4", "4"], 2)
    two_args = FunctionReward("tests.helpers.rloo_rewards:vowel_share")
    assert not two_args.takes_records
    assert two_args.score(prompts, ["aa", "bb"], 2, records=[{}, {}]) == [1.0, 0.0]


def write_prompts_with_gold(run_dir: Path) -> None:
    """Prompts as `tiller data` writes them with data.keep_columns: [question, gold_answer]."""
    from tests.conftest import QUESTIONS

    folder = run_dir / "data"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.prompts.jsonl", "w") as f:
        for i, q in enumerate(QUESTIONS):
            f.write(json.dumps({"messages": [{"role": "user", "content": q}], "source_row": i + 1,
                                "extra": {"question": q, "gold_answer": "aeiou"[i % 5]}}) + "\n")
    (folder / "DONE").write_text("done\n")


def test_weighted_rewards_log_each_component_and_sum_them(tmp_path, tiny_llama):
    write_prompts_with_gold(tmp_path)
    fn = "tests.helpers.rloo_rewards:"
    cfg = rloo_config(tmp_path, tiny_llama, max_steps=2, completions_per_prompt=2, reward={}, rewards=[
        {"name": "vowels", "weight": 1.0, "backend": "callable", "function": fn + "vowel_share"},
        {"name": "exact", "weight": 0.5, "backend": "callable", "function": fn + "exact_match"},
        {"name": "aligned", "weight": -0.25, "backend": "callable", "function": fn + "record_matches_prompt"},
    ])
    rloo.run(config_from_dict(cfg))
    rows = read_metrics(tmp_path / "rloo" / "metrics.jsonl")
    assert len(rows) == 2
    for row in rows:
        assert row["reward/aligned"] == 1.0  # every record reached the completions of its own prompt
        assert 0.0 <= row["reward/exact"] <= 1.0 and 0.0 < row["reward/vowels"] < 1.0
        combined = 1.0 * row["reward/vowels"] + 0.5 * row["reward/exact"] - 0.25 * row["reward/aligned"]
        assert row["objective/scores"] == pytest.approx(combined, abs=1e-6)
        assert row["objective/rlhf_reward"] == pytest.approx(combined, abs=1e-6)  # beta 0, no EOS penalty
    assert any(0.0 < row["reward/exact"] for row in rows)  # the gold letters do occur: the test checks something


def test_a_non_finite_component_skips_the_update_and_is_named(tmp_path, tiny_llama):
    write_prompts(tmp_path)
    fn = "tests.helpers.rloo_rewards:"
    cfg = rloo_config(tmp_path, tiny_llama, max_steps=1, completions_per_prompt=2, reward={}, rewards=[
        {"name": "vowels", "weight": 1.0, "backend": "callable", "function": fn + "vowel_share"},
        {"name": "broken", "weight": 0.0, "backend": "callable", "function": fn + "always_inf"},  # weight 0 still counts
    ])
    with pytest.warns(UserWarning, match=r"update skipped, reward component\(s\) 'broken' \(8\) gave non-finite") as caught:
        rloo.run(config_from_dict(cfg))
    rows = read_metrics(tmp_path / "rloo" / "metrics.jsonl")
    assert rows[-1]["guard/skipped_updates"] == 1
    # the schedule moved past the skipped first step on purpose: no PyTorch warning calling it a mistake
    assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)], [str(w.message) for w in caught]


def test_a_lora_reward_model_on_the_policys_base_gives_the_separate_models_run(tmp_path, tiny_llama, capsys):
    """The reward adapter scores on the policy's own base (one copy of the base): the run's
    scores, KL and saved weights are those of the run with the reward model loaded separately
    and merged (tolerances: scores 1e-4 relative, weights 1e-5, float rounding of B·A·x against
    merged weights), the saved policy holds its own adapter only, and a resumed run with the
    shared reward gives the uninterrupted one's losses exactly."""
    reward_dir = reward_adapter_folder(tmp_path / "reward", tiny_llama)
    lora = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "last_n_layers": 1}

    def config(folder: Path, share: bool) -> dict:
        write_prompts(folder)
        return rloo_config(folder, tiny_llama, lora=lora, optim={"lr": 1e-2, "scheduler": "constant"}, beta=0.1,
                           max_steps=4, micro_batch_per_device=4, save_every=2,
                           reward={"backend": "classifier", "path": str(reward_dir), "share_base": share})

    rloo.run(config_from_dict(config(tmp_path / "shared", True)))
    out = capsys.readouterr().out
    assert "its LoRA adapter and score head on the policy's own base" in out, out[-2000:]
    rloo.run(config_from_dict(config(tmp_path / "separate", False)))
    assert "loaded as a separate model (share_base: false)" in capsys.readouterr().out
    shared = read_metrics(tmp_path / "shared" / "rloo" / "metrics.jsonl")
    separate = read_metrics(tmp_path / "separate" / "rloo" / "metrics.jsonl")
    assert len(shared) == len(separate) == 4
    assert len({round(r["objective/scores"], 6) for r in shared}) > 1  # the classifier's scores vary
    for a, b in zip(shared, separate):
        for key in ("objective/scores", "objective/kl", "loss/policy_avg", "train/grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
    wa, wb = saved_weights(tmp_path / "shared" / "rloo" / "model"), saved_weights(tmp_path / "separate" / "rloo" / "model")
    assert wa.keys() == wb.keys() and not any("reward" in k for k in wa)
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-5

    killed = tmp_path / "killed"
    rloo.run(config_from_dict(config(killed, True)), stop_after=3)
    rloo.run(config_from_dict(config(killed, True)), resume=True)
    for key in ("loss/policy_avg", "objective/scores", "objective/kl"):
        assert scores(killed, key) == scores(tmp_path / "shared", key), key
    wk = saved_weights(killed / "rloo" / "model")
    assert all(torch.equal(wa[n], wk[n]) for n in wa)


@pytest.mark.parametrize("shared_prompt", [False, True], ids=["padded rows", "prompt once"])
def test_a_reward_adapter_on_the_last_layers_shares_the_frozen_layers_and_gives_the_same_run(tmp_path, tiny_llama,
                                                                                              capsys, shared_prompt):
    """Reward and policy adapters both on the last layer: the frozen layers below run once for
    reference, policy and reward (the reward rows extend the policy's), checked on the first
    step and printed; the run's figures and weights are those of the separate merged reward
    model's run with padded rows (the same tolerances as above). With rloo.shared_prompt each
    prompt group is one row, the prompt once and the reward's end-of-turn tokens after each
    completion: the same run again."""
    reward_dir = reward_adapter_folder(tmp_path / "reward", tiny_llama, last_n_layers=1)
    lora = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "last_n_layers": 1}

    def config(folder: Path, share: bool) -> dict:
        write_prompts(folder)
        return rloo_config(folder, tiny_llama, lora=lora, optim={"lr": 1e-2, "scheduler": "constant"}, beta=0.1,
                           max_steps=4, micro_batch_per_device=8, shared_prompt=share and shared_prompt,
                           reward={"backend": "classifier", "path": str(reward_dir), "share_base": share})

    rloo.run(config_from_dict(config(tmp_path / "shared", True)))
    out = capsys.readouterr().out
    assert "the reward adapter also runs only the layers above the shared frozen ones" in out, out[-3000:]
    assert "do not extend" not in out
    assert ("each prompt group in one row, the prompt once" in out) == shared_prompt, out[-3000:]
    rloo.run(config_from_dict(config(tmp_path / "separate", False)))
    shared = read_metrics(tmp_path / "shared" / "rloo" / "metrics.jsonl")
    separate = read_metrics(tmp_path / "separate" / "rloo" / "metrics.jsonl")
    assert len(shared) == len(separate) == 4
    assert len({round(r["objective/scores"], 6) for r in shared}) > 1
    # The tiny model samples near-random tokens, and few of them re-tokenize to the same ids
    # (6% of rows here; those go through the reward model's own pass): the path ran, not always.
    assert any(r["reward/shared_rows"] > 0 for r in shared) and "reward/shared_rows" not in separate[0]
    for a, b in zip(shared, separate):
        for key in ("objective/scores", "loss/policy_avg", "train/grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
        # A sum of log-prob differences that nearly cancel: compared in absolute terms.
        assert a["objective/kl"] == pytest.approx(b["objective/kl"], abs=2e-5)
    # Adam moves each element by about lr (1e-2) per step whatever the size of its gradient, so
    # rounding in the tiniest gradients shows in a few elements (measured 1.9e-4 at most here);
    # the runs' figures above agree, and a run that learned differently would differ by ~1e-2.
    wa, wb = saved_weights(tmp_path / "shared" / "rloo" / "model"), saved_weights(tmp_path / "separate" / "rloo" / "model")
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-3


@pytest.mark.distributed
def test_two_processes_match_one_with_the_reward_on_the_policys_base(tmp_path, tiny_llama):
    """Under DDP the frozen reward adapter sits in the wrapped policy without taking part in
    its gradients; 2 processes still give the 1-process update."""
    reward_dir = reward_adapter_folder(tmp_path / "reward", tiny_llama)
    lora = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "last_n_layers": 1, "merge_on_save": True}
    optim = {"lr": 0.1, "scheduler": "constant", "adam_eps": 1.0, "max_grad_norm": 0.0}
    reward = {"backend": "classifier", "path": str(reward_dir)}
    for processes in (1, 2):
        out = _launch(tmp_path / str(processes), tiny_llama, processes, lora=lora, optim=optim, reward=reward)
        assert "on the policy's own base" in out, out[-2000:]
    a = load_file(str(tmp_path / "1" / "rloo" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "2" / "rloo" / "model" / "model.safetensors"))
    start = load_file(str(tiny_llama / "model.safetensors"))
    assert a.keys() == start.keys()  # the policy alone, merged: no reward adapter in it
    assert max((a[n] - start[n]).abs().max().item() for n in a) > 1e-5
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=1e-4, atol=1e-6)
    assert_same_metrics(tmp_path / "1" / "rloo" / "metrics.jsonl", tmp_path / "2" / "rloo" / "metrics.jsonl")
