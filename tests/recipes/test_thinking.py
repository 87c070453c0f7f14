"""The SFT and DPO stages on a tiny Qwen3 with Qwen3's real chat template: whatever
`model.enable_thinking` says, they train on the same tokens (the answers, not the empty think
block the template writes before them). The rules per stage: tests/unit/test_thinking.py."""

from __future__ import annotations

import pytest
import torch

from tests.recipes.test_sft_dpo import metric, stage_config, write_run_folder
from tiller.config_loading import config_from_dict
from tiller.recipes import dpo, sft


pytestmark = pytest.mark.usefixtures("one_thread")


def test_sft_and_dpo_train_the_same_tokens_in_every_thinking_mode(tmp_path, tiny_qwen3_thinking):
    counts = {}
    for mode in (None, False):
        run_dir = tmp_path / f"thinking-{mode}"
        write_run_folder(run_dir)
        cfg = stage_config(run_dir, tiny_qwen3_thinking, "sft", train={"max_steps": 2})
        cfg["model"]["enable_thinking"] = mode
        cfg["dpo"] = {"lora": {"enabled": False}, "train": {"pairs_per_step": 4, "micro_batch_per_device": 2,
                                                            "max_length": 128, "max_steps": 1, "eval_every": 0,
                                                            "save_every": 0}}
        sft.run(config_from_dict(cfg))
        dpo.run(config_from_dict(cfg))
        counts[mode] = (metric(run_dir, "sft", "train/loss_tokens"), metric(run_dir, "dpo", "loss/dpo"))
    assert counts[None][0] and counts[None] == counts[False]
