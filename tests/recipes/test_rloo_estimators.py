"""The rloo stage's other estimators and loss options (docs/algorithms.md) on a tiny random
model: GRPO with the KL in the loss gives the same run on the single-pass and split paths,
REINFORCE++ and Dr.GRPO run, and REINFORCE++'s batch baseline spans every process."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import write_prompts
from tests.helpers.metrics import assert_same_metrics
from tests.helpers.saved import saved_weights
from tests.recipes.test_rloo import _launch, rloo_config
from tiller.config_loading import config_from_dict
from tiller.recipes import rloo
from tiller.tracking import read_metrics

LORA = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0}


def test_grpo_kl_in_loss_single_pass_equals_split(tmp_path, tiny_llama, capsys):
    """GRPO advantages need only the prompt's group: micro-batches of 8 (two whole groups, the
    single-pass path) and of 2 (half a group, the split path) give the same run. The KL is a k3
    term of the loss (LoRA: policy != reference from step 2), reduced like the policy term. The
    two sum the micro-batches' gradients in other groupings and orders, so they agree to float
    rounding: adam_eps 1 makes an update about lr x gradient (with the default eps Adam's first
    steps are the signs of the gradients, which turn round-off in a near-zero one into a whole
    lr, as in the DDP tests)."""
    def run(folder: Path, micro: int) -> list[dict]:
        write_prompts(folder)
        optim = {"lr": 0.5, "scheduler": "constant", "adam_eps": 1.0, "max_grad_norm": 0.0}
        cfg = rloo_config(folder, tiny_llama, lora=LORA, optim=optim, max_steps=3,
                          micro_batch_per_device=micro, advantage="grpo", kl_in="loss", kl_estimator="k3", beta=0.1,
                          aggregation="sequence_mean")
        rloo.run(config_from_dict(cfg))
        return read_metrics(folder / "rloo" / "metrics.jsonl")

    fused = run(tmp_path / "fused", 8)
    assert "single pass" in capsys.readouterr().out
    split = run(tmp_path / "split", 2)
    assert "no-grad old log-probs" in capsys.readouterr().out
    assert fused[0]["objective/kl"] == 0.0 and fused[-1]["objective/kl"] != 0.0
    assert fused[-1]["loss/kl_term"] > 0.0  # k3 >= 0, beta > 0
    # the KL is in the loss, not in the reward: rlhf_reward = scores - 0 (no EOS penalty here)
    assert all(r["objective/rlhf_reward"] == pytest.approx(r["objective/scores"], abs=1e-6) for r in fused)
    assert "loss/kl_term" in assert_same_metrics(tmp_path / "fused" / "rloo" / "metrics.jsonl",
                                                 tmp_path / "split" / "rloo" / "metrics.jsonl", rel=1e-4, abs=1e-6)
    a, b = saved_weights(tmp_path / "fused" / "rloo" / "model"), saved_weights(tmp_path / "split" / "rloo" / "model")
    assert max(a[n].abs().max().item() for n in a if "lora_B" in n) > 1e-3  # B starts at zero: the adapter moved
    assert max((a[n] - b[n]).abs().max().item() for n in a) < 1e-5  # 1.1e-8 measured


@pytest.mark.parametrize("section", [
    {"advantage": "reinforce_pp"},
    {"advantage": "dr_grpo", "aggregation": "sequence_sum_norm", "num_ppo_epochs": 2, "clip_eps_high": 0.28},
])
def test_other_estimators_run(tmp_path, tiny_llama, capsys, section):
    write_prompts(tmp_path)
    rloo.run(config_from_dict(rloo_config(tmp_path, tiny_llama, max_steps=3, **section)))
    out = capsys.readouterr().out
    assert f"advantage {section['advantage']}" in out
    assert "no-grad old log-probs" in out  # the batch baseline and 2 epochs both need the split path
    rows = read_metrics(tmp_path / "rloo" / "metrics.jsonl")
    assert len(rows) == 3
    assert all(math.isfinite(r["loss/policy_avg"]) and r["train/grad_norm"] > 0 for r in rows)


@pytest.mark.distributed
def test_reinforce_pp_two_processes_match_one(tmp_path, tiny_llama):
    """REINFORCE++'s baseline is the mean over the whole step: each process gathers every
    process's rewards and token counts, so 2 processes give the 1-process update."""
    settings = dict(advantage="reinforce_pp", kl_in="loss", kl_estimator="k3", beta=0.1)
    _launch(tmp_path / "one", tiny_llama, 1, **settings)
    _launch(tmp_path / "two", tiny_llama, 2, **settings)
    a = load_file(str(tmp_path / "one" / "rloo" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "rloo" / "model" / "model.safetensors"))
    start = load_file(str(tiny_llama / "model.safetensors"))
    assert max((a[n] - start[n]).abs().max().item() for n in a) > 1e-4  # the update is real
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=1e-4, atol=1e-5)
    assert_same_metrics(tmp_path / "one" / "rloo" / "metrics.jsonl", tmp_path / "two" / "rloo" / "metrics.jsonl")
