"""Sharded training on CPU: 2 processes under FSDP2 and under DeepSpeed ZeRO-3 give what 1 process
gives, for every training stage, with LoRA and with full fine-tuning; checkpoints resume under
FSDP2 and on a different number of processes; every rank runs the same number of decoder forwards.

accelerate does not enter FSDP or DeepSpeed without a GPU, so the 2-process runs go through
tests/helpers/sharded_launch.py (its docstring says exactly what it changes). Each test checks in
the output that the strategy really was FSDP2 / DeepSpeed over 2 processes.

Tolerance: the 2-process runs reduce gradients in another order (reduce-scatter over 2 ranks vs a
local sum over micro-batches), so weights agree to float32 round-off, not bit for bit:
rtol 1e-4 / atol 1e-6 on updates of ~1e-2 (with adam_eps 1 an update is about lr x gradient, so a
gradient scaled wrongly by the accumulation or the process count moves them by far more).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.conftest import ROOT, toy_pairs, write_pairs, write_prompts
from tests.helpers.metrics import assert_same_metrics
from tests.helpers.saved import saved_weights
from tiller.config_loading import config_from_dict
from tiller.recipes import dpo, reward, rloo, sft
from tiller.tracking import read_metrics

pytestmark = pytest.mark.distributed

# adam_eps 1: an update is about lr x gradient (Adam's first step with the default eps is the
# gradient's sign, which would hide a wrongly scaled gradient); no clipping for the same reason.
OPTIM = {"lr": 0.5, "scheduler": "cosine", "warmup_ratio": 0.0, "adam_eps": 1.0, "max_grad_norm": 0.0}
LORA = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0}
FULL = {"enabled": False}
RECIPES = {"reward": reward, "sft": sft, "dpo": dpo, "rloo": rloo}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sharded_launch(strategy: str, commands: list[list[str]], env: dict | None = None, timeout: int = 600) -> str:
    """Run tiller commands one after the other in 2 CPU processes under `strategy`."""
    args = []
    for i, command in enumerate(commands):
        args += (["--then"] if i else []) + command
    full_env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "HF_HUB_OFFLINE": "1",
                "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "TILLER_QUIET_CONFIG": "1", **(env or {})}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(ROOT / "tests" / "helpers" / "sharded_launch.py"), strategy, *args]
    result = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-6000:]
    return result.stdout


def stage_config(run_dir: Path, model: Path, stage: str, lora: dict) -> dict:
    cfg = {"run_dir": str(run_dir), "model": {"name": str(model)}, "tracking": {"tensorboard": False}, "seed": 3}
    loop = {"max_steps": 2, "pairs_per_step": 8, "micro_batch_per_device": 2, "max_length": 128,
            "eval_every": 0, "save_every": 0}
    if stage == "reward":
        # LoRA: each pair in one row with its prompt once (the demo's and the flagship's layout:
        # a 4D attention mask through the sharded model); full: padded pairs. The same for DPO.
        cfg["reward"] = {"lora": lora, "optim": OPTIM, "train": loop, "train_subset": "all",
                         "shared_prompt": lora["enabled"]}
    elif stage == "sft":
        cfg["sft"] = {"lora": lora, "optim": OPTIM, "train": loop, "source": "chosen"}
    elif stage == "dpo":
        cfg["dpo"] = {"lora": lora, "optim": OPTIM, "train": loop, "beta": 0.5, "shared_prompt": lora["enabled"]}
    else:
        cfg["rloo"] = {"lora": lora, "optim": {**OPTIM, "lr": 5.0}, "prompts_per_step": 4, "completions_per_prompt": 4,
                       "micro_batch_per_device": 4, "max_steps": 2, "beta": 0.05, "rollout": {"max_new_tokens": 12},
                       "reward": {"backend": "callable", "function": "tests.helpers.rloo_rewards:vowel_share"},
                       "save_every": 0, "sample_every": 0, "shared_prompt": lora["enabled"]}
        if not lora["enabled"]:  # the other update path: no-grad old log-probs, then 2 epochs
            cfg["rloo"].update(num_ppo_epochs=2, micro_batch_per_device=2)
    return cfg


def prepare(run_dir: Path, model: Path, stage: str, lora: dict) -> Path:
    write_pairs(run_dir, toy_pairs(32), toy_pairs(6, offset=500))
    write_prompts(run_dir)
    path = run_dir / "config.yaml"
    path.write_text(yaml.safe_dump(stage_config(run_dir, model, stage, lora)))
    return path


def assert_same_model(a_dir: Path, b_dir: Path, stage: str, start: dict | None = None) -> None:
    """Same saved tensors: a full model's, or under LoRA the adapter's (lora.merge_on_save false)."""
    a, b = saved_weights(a_dir / stage / "model"), saved_weights(b_dir / stage / "model")
    assert a.keys() == b.keys()
    if start is not None:  # the update is real (not two untrained copies agreeing)
        if (a_dir / stage / "model" / "adapter_config.json").is_file():  # LoRA B starts at zero
            moved = max(a[n].abs().max().item() for n in a if "lora_B" in n)
        else:
            moved = max((a[n] - start[n]).abs().max().item() for n in a if n in start)
        assert moved > 1e-3, stage
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=1e-4, atol=1e-6, msg=lambda m: f"{stage} {n}: {m}")


@pytest.fixture(scope="module")
def eos_heavy_llama(tiny_llama, tmp_path_factory) -> Path:
    """The tiny model with 100 more end-of-sequence ids in its generation config, so sampled
    completions end at very different lengths on the two ranks (the case where a decoding loop
    that stops with its local batch runs fewer forwards than the other rank)."""
    import shutil

    folder = tmp_path_factory.mktemp("eos") / "llama"
    shutil.copytree(tiny_llama, folder)
    gen_file = folder / "generation_config.json"
    gen = json.loads(gen_file.read_text()) if gen_file.is_file() else {}
    eos = gen.get("eos_token_id", json.loads((folder / "config.json").read_text()).get("eos_token_id"))
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    gen["eos_token_id"] = eos + list(range(100, 200))
    gen_file.write_text(json.dumps(gen))
    return folder


CASES = [("reward", LORA), ("reward", FULL), ("sft", LORA), ("sft", FULL), ("dpo", LORA), ("dpo", FULL),
         ("rloo", LORA), ("rloo", FULL)]


def _case_dir(root: Path, stage: str, lora: dict) -> Path:
    return root / f"{stage}-{'lora' if lora['enabled'] else 'full'}"


@pytest.fixture(scope="module")
def one_process(eos_heavy_llama, tmp_path_factory) -> Path:
    """Every case trained in this (single) process: the reference for both strategies."""
    root = tmp_path_factory.mktemp("one")
    for stage, lora in CASES:
        run_dir = _case_dir(root, stage, lora)
        RECIPES[stage].run(config_from_dict(yaml.safe_load(prepare(run_dir, eos_heavy_llama, stage, lora).read_text())))
    return root


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["fsdp2", "zero3"])
def test_two_sharded_processes_match_one(strategy, one_process, eos_heavy_llama, tmp_path):
    """reward, SFT, DPO and RLOO, LoRA and full: 2 processes x 2 accumulation steps under FSDP2 /
    ZeRO-3 give the weights and the losses of 1 process x 4 (with LoRA, the reward model and DPO
    take each pair in one row, its prompt once, and RLOO each prompt group: reward.shared_prompt,
    dpo.shared_prompt, rloo.shared_prompt; RLOO's log-probs come from the output layer in chunks);
    DeepSpeed's own optimizer step count equals tiller's; both ranks ran the same number of decoder
    forwards; the saved folders load: full models with transformers as they are, LoRA adapters
    (rank 0 rebuilt an unsharded copy and saved the adapter only) through tiller, on the base their
    adapter_config.json names."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    from tiller.models import adapter_base, load_causal_lm, load_reward_model

    if strategy == "zero3":
        pytest.importorskip("deepspeed", reason="DeepSpeed is an optional extra (pip install deepspeed)")
    commands = [[stage, "--config", str(prepare(_case_dir(tmp_path, stage, lora), eos_heavy_llama, stage, lora))]
                for stage, lora in CASES]
    forwards = tmp_path / "forwards"
    forwards.mkdir()
    out = sharded_launch(strategy, commands, env={"TILLER_TEST_FORWARDS": str(forwards)})

    kind = "deepspeed" if strategy == "zero3" else "fsdp2"
    assert out.count(f"({kind}, 2 process(es), 2 micro-batch(es) each)") == len(CASES) - 1, out[-3000:]
    assert f"({kind}, 2 process(es), 4 micro-batch(es) each)" in out  # rloo full: 8 completions, 2 per micro-batch
    # the reward and DPO LoRA cases ran with each pair in one row (not a fallback to padding)
    shared_layout = "each pair in one row, the prompt its answers share computed once (checked exact)"
    assert out.count(shared_layout) == 2, out[-3000:]
    assert out.count("each prompt group in one row, the prompt once (rloo.shared_prompt)") == 1, out[-3000:]
    # the SFT, DPO and RLOO cases (LoRA; full, with the output layer trained and tied to the
    # embeddings) took their log-probs from the sharded output layer in chunks, not from whole logits
    for stage in ("sft", "dpo", "rloo"):
        assert out.count(f"[{stage}] log-probs computed by the output layer") == 2, out[-3000:]
    if strategy == "zero3":  # DeepSpeed stepped exactly when tiller did
        lines = [line for line in out.splitlines() if "optimizer step(s) (deepspeed" in line]
        assert len(lines) == len(CASES)
        for line in lines:
            steps = int(line.split("] ")[1].split(" optimizer")[0])
            assert steps in (2, 4) and line.endswith(f"DeepSpeed engine global steps {steps}"), line
    start = load_file(str(eos_heavy_llama / "model.safetensors"))
    for stage, lora in CASES:
        a_dir, b_dir = _case_dir(one_process, stage, lora), _case_dir(tmp_path, stage, lora)
        assert_same_model(a_dir, b_dir, stage, start if stage != "reward" else None)
        key = {"reward": "loss/bt", "sft": "loss/sft", "dpo": "loss/dpo", "rloo": "loss/policy_avg"}[stage]
        compared = assert_same_metrics(a_dir / stage / "metrics.jsonl", b_dir / stage / "metrics.jsonl")
        assert key in compared, (stage, lora)
        folder = b_dir / stage / "model"
        if lora["enabled"]:
            assert adapter_base(folder) == str(eos_heavy_llama) and not (folder / "model.safetensors").exists()
            model = (load_reward_model if stage == "reward" else load_causal_lm)(str(folder))
            trained = saved_weights(folder)  # the loaded model carries the saved, trained tensors
            if stage == "reward":  # merged in memory: the score head is the saved one
                torch.testing.assert_close(model.score.weight, trained["base_model.model.score.weight"], rtol=0, atol=0)
            else:
                name = next(n for n in trained if "lora_B" in n)
                loaded = dict(model.named_parameters())[name.replace(".weight", ".default.weight")]
                torch.testing.assert_close(loaded, trained[name], rtol=0, atol=0)
        else:
            loader = AutoModelForSequenceClassification if stage == "reward" else AutoModelForCausalLM
            loader.from_pretrained(folder)
    lengths = [row["completions/min_length"] for row in read_metrics(tmp_path / "rloo-lora" / "rloo" / "metrics.jsonl")]
    assert min(lengths) < 12  # completions did end early (EOS), so lockstep decoding was exercised
    counts = [json.loads((forwards / f"forwards-rank{r}.json").read_text())["decoder_forwards"] for r in (0, 1)]
    assert counts[0] == counts[1] > 0, counts


def _stage_cmd(config: Path, stop_after: int | None = None, resume: bool = False) -> list[str]:
    return (["--stop-after", str(stop_after)] if stop_after else []) + ["reward", "--config", str(config)] + \
        (["--resume"] if resume else [])


@pytest.mark.slow
def test_fsdp2_resume_exact_and_on_another_process_count(tiny_llama, tmp_path):
    """Checkpoints under FSDP2 hold every rank's shard (DCP): a run stopped after step 3 (last
    checkpoint: step 2) and resumed equals the uninterrupted run bit for bit; a checkpoint written
    by 1 process resumes on 2, and one written by 2 resumes on 1."""
    def config(name: str) -> Path:
        run_dir = tmp_path / name
        write_pairs(run_dir, toy_pairs(32), toy_pairs(6, offset=500))
        cfg = stage_config(run_dir, tiny_llama, "reward", FULL)
        cfg["reward"]["train"].update(max_steps=4, save_every=2)
        path = run_dir / "config.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return path

    def run_here(path: Path, **kwargs) -> None:
        reward.run(config_from_dict(yaml.safe_load(path.read_text())), **kwargs)

    two, two_killed, one, one_to_two, two_to_one = (config(n) for n in ("two", "two_killed", "one", "one_to_two", "two_to_one"))
    run_here(one)
    run_here(one_to_two, stop_after=3)
    out = sharded_launch("fsdp2", [_stage_cmd(two), _stage_cmd(two_killed, 3), _stage_cmd(two_killed, resume=True),
                                   _stage_cmd(one_to_two, resume=True), _stage_cmd(two_to_one, 3)])
    assert out.count("resumed from") == 2 and "saved by 1 process(es), resumed on 2" in out, out[-3000:]
    run_here(two_to_one, resume=True)

    a, b = saved_weights(tmp_path / "two" / "reward" / "model"), saved_weights(tmp_path / "two_killed" / "reward" / "model")
    assert all(torch.equal(a[n], b[n]) for n in a)
    loss = [r["loss/bt"] for r in read_metrics(tmp_path / "two" / "reward" / "metrics.jsonl")]
    assert [r["loss/bt"] for r in read_metrics(tmp_path / "two_killed" / "reward" / "metrics.jsonl")] == loss
    assert_same_model(tmp_path / "one", tmp_path / "one_to_two", "reward")
    assert_same_model(tmp_path / "one", tmp_path / "two_to_one", "reward")
    assert_same_model(tmp_path / "one", tmp_path / "two", "reward")
    ckpt = tmp_path / "two" / "reward" / "checkpoints" / "step-2"
    saved = json.loads((ckpt / "state.json").read_text())
    assert saved["world_size"] == 2 and saved["strategy"] == "fsdp2"
    assert (ckpt / "manifest.json").is_file() and (ckpt / "rng-rank1.pt").is_file()


@pytest.mark.slow
def test_zero3_resume_exact_and_refuses_another_process_count(tiny_llama, tmp_path):
    """Under ZeRO-3 a checkpoint is the engine's own (its optimizer state is partitioned by rank):
    stopped and resumed on 2 processes it equals the uninterrupted run bit for bit; resuming it on
    1 process stops with an error naming the checkpoint and the process count it needs."""
    pytest.importorskip("deepspeed", reason="DeepSpeed is an optional extra (pip install deepspeed)")
    paths = {}
    for name in ("two", "killed"):
        run_dir = tmp_path / name
        write_pairs(run_dir, toy_pairs(32), toy_pairs(6, offset=500))
        cfg = stage_config(run_dir, tiny_llama, "reward", LORA)
        cfg["reward"]["train"].update(max_steps=4, save_every=2)
        paths[name] = run_dir / "config.yaml"
        paths[name].write_text(yaml.safe_dump(cfg))
    out = sharded_launch("zero3", [_stage_cmd(paths["two"]), _stage_cmd(paths["killed"], 3),
                                   _stage_cmd(paths["killed"], resume=True)])
    assert "resumed from" in out, out[-3000:]
    a, b = saved_weights(tmp_path / "two" / "reward" / "model"), saved_weights(tmp_path / "killed" / "reward" / "model")
    assert all(torch.equal(a[n], b[n]) for n in a)
    from tiller.checkpoint import CheckpointError, load_checkpoint

    class OneDeepSpeedProcess:  # what load_checkpoint reads of the runtime; it refuses before loading anything
        rank, world_size, strategy = 0, 1, "deepspeed"

    step2 = tmp_path / "two" / "reward" / "checkpoints" / "step-2"
    with pytest.raises(CheckpointError, match="saved by 2 DeepSpeed processes"):
        load_checkpoint(step2, None, None, None, OneDeepSpeedProcess())


def ppo_config(run_dir: Path, model: Path, lora: dict) -> dict:
    """PPO with 2 epochs over one mini-batch per step (its rows are the same set however the step is
    split over processes), LoRA with the value model as a second adapter on the policy's base, or
    full fine-tuning with a separate value model."""
    return {"run_dir": str(run_dir), "model": {"name": str(model)}, "tracking": {"tensorboard": False}, "seed": 3,
            "ppo": {"lora": lora, "optim": {**OPTIM, "lr": 5.0 if lora["enabled"] else 0.5}, "prompts_per_step": 4,
                    "completions_per_prompt": 4, "micro_batch_per_device": 4, "num_mini_batches": 1, "ppo_epochs": 2,
                    "max_steps": 2, "beta": 0.05, "rollout": {"max_new_tokens": 12},
                    "reward": {"backend": "callable", "function": "tests.helpers.rloo_rewards:vowel_share"},
                    "save_every": 0, "sample_every": 0}}


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["fsdp2", "zero3"])
def test_ppo_two_sharded_processes_match_one(strategy, eos_heavy_llama, tmp_path):
    """PPO, LoRA with the shared value adapter and full fine-tuning with a separate value model:
    2 processes x 2 accumulation steps under FSDP2 / ZeRO-3 give the weights and every metric
    (value losses and values included) of 1 process x 4; the saved LoRA folder holds the policy
    adapter only (rank 0 rebuilt the two-adapter bundle unsharded and saved its policy)."""
    if strategy == "zero3":
        pytest.importorskip("deepspeed", reason="DeepSpeed is an optional extra (pip install deepspeed)")
    cases = {"ppo-lora": LORA, "ppo-full": FULL}
    paths = {}
    for name, lora in cases.items():
        for root in ("one", "two"):
            run_dir = tmp_path / root / name
            write_prompts(run_dir)
            paths[root, name] = run_dir / "config.yaml"
            paths[root, name].write_text(yaml.safe_dump(ppo_config(run_dir, eos_heavy_llama, lora)))
    from tiller.recipes import ppo

    for name in cases:
        ppo.run(config_from_dict(yaml.safe_load(paths["one", name].read_text())))
    out = sharded_launch(strategy, [["ppo", "--config", str(paths["two", name])] for name in cases])
    kind = "deepspeed" if strategy == "zero3" else "fsdp2"
    assert out.count(f"({kind}, 2 process(es), 2 micro-batch(es) each)") == len(cases), out[-3000:]
    assert "value model: a second LoRA adapter ('value')" in out and "value model: a separate copy" in out
    # both cases took the policy's log-probs from the sharded output layer in chunks
    assert out.count("[ppo] log-probs computed by the output layer") == len(cases), out[-3000:]
    start = load_file(str(eos_heavy_llama / "model.safetensors"))
    for name in cases:
        assert_same_model(tmp_path / "one" / name, tmp_path / "two" / name, "ppo", start)
        compared = assert_same_metrics(tmp_path / "one" / name / "ppo" / "metrics.jsonl",
                                       tmp_path / "two" / name / "ppo" / "metrics.jsonl")
        assert {"loss/policy_avg", "loss/value_avg", "value/mean", "train/grad_norm"} <= set(compared)
    adapter = saved_weights(tmp_path / "two" / "ppo-lora" / "ppo" / "model")
    assert adapter and not any(".value" in n for n in adapter)
    assert not (tmp_path / "two" / "ppo-lora" / "ppo" / "model" / "value").exists()
