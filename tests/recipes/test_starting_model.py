"""Wiring between stages: what a policy stage starts from (its own setting, the sft stage's
output, the base), one loader for full and adapter folders, and evaluation against the
policy's actual starting model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import write_prompts
from tiller.config import LoraConfig, ModelConfig
from tiller.config_loading import config_from_dict
from tiller.models import (apply_lora, load_causal_lm, load_frozen, load_policy, load_tokenizer, policy_start,
                           read_origin, save_model, write_origin)
from tiller.recipes import dpo, evaluate, rloo, sft

IDS = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(input_ids=IDS).logits


@pytest.fixture(scope="module")
def sft_adapter(tiny_llama, tmp_path_factory):
    """An SFT output saved as an unmerged LoRA adapter (sft.lora.merge_on_save: false), with the
    logits of the SFT model and of its base on IDS."""
    torch.manual_seed(0)
    model = apply_lora(load_causal_lm(str(tiny_llama)), LoraConfig(r=4, alpha=8, dropout=0.0), "CAUSAL_LM")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.05)  # a trained adapter: not the zero initialization
    folder = save_model(model, load_tokenizer(str(tiny_llama)), tmp_path_factory.mktemp("sft") / "model", merge_lora=False)
    assert (folder / "adapter_config.json").is_file() and not (folder / "config.json").exists()
    return folder, logits(model), logits(load_causal_lm(str(tiny_llama)))


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


BUILDERS = {"rloo": rloo._build_policy, "dpo": dpo._build_policy, "sft": sft._build_model}


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
@pytest.mark.parametrize("stage", list(BUILDERS))
def test_every_policy_stage_starts_from_the_sft_adapter_not_the_base(stage, lora, sft_adapter, tiny_llama):
    folder, sft_logits, base_logits = sft_adapter
    assert max_diff(sft_logits, base_logits) > 0.1  # the two candidates are far apart
    cfg = config_from_dict({"model": {"name": str(tiny_llama)},
                            stage: {"model": str(folder), "lora": {"enabled": lora, "r": 4, "alpha": 8, "dropout": 0.0}}})
    policy, origin = BUILDERS[stage](cfg, str(folder), torch.device("cpu"))
    assert max_diff(logits(policy), sft_logits) < 1e-5
    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    total = sum(p.numel() for p in policy.parameters())
    if lora:  # a fresh adapter on the merged SFT weights: the adapter-disabled reference is the SFT model too
        assert 0 < trainable < total
        with policy.disable_adapter():
            assert max_diff(logits(policy), sft_logits) < 1e-5
    else:  # full fine-tuning trains every weight, not just the saved adapter's
        assert trainable == total
    assert origin == {"model": str(folder), "base_model": str(tiny_llama), "adapter": str(folder),
                      "adapter_handling": "merged into the base", "revision": None, "trust_remote_code": False}


def test_continue_trains_the_saved_adapter_and_refuses_what_cannot_work(sft_adapter, tiny_llama):
    folder, sft_logits, _ = sft_adapter
    policy, origin = load_policy(str(folder), ModelConfig(), LoraConfig(r=16), "cpu", adapter="continue")
    assert max_diff(logits(policy), sft_logits) < 1e-5
    saved = load_file(str(folder / "adapter_model.safetensors"))
    trainable = {n: p for n, p in policy.named_parameters() if p.requires_grad}
    # exactly the saved adapter's tensors train (its r=4, not a new r=16 adapter)
    assert sum(p.numel() for p in trainable.values()) == sum(t.numel() for t in saved.values())
    assert all("lora_" in n for n in trainable)
    assert origin["adapter_handling"] == "continued (the saved adapter trains)"
    with pytest.raises(ValueError, match="continuing it trains the adapter only"):
        load_policy(str(folder), ModelConfig(), LoraConfig(enabled=False), "cpu", adapter="continue")
    with pytest.raises(ValueError, match="adapter='keep'"):
        load_policy(str(folder), ModelConfig(), None, "cpu", adapter="keep")
    _, full = load_policy(str(tiny_llama), ModelConfig(revision="v1"), None, "cpu")
    assert full == {"model": str(tiny_llama), "base_model": str(tiny_llama), "adapter": None, "adapter_handling": None,
                    "revision": "v1", "trust_remote_code": False}


def test_an_adapter_saved_on_an_adapter_start_loads_through_the_chain(sft_adapter, tiny_llama, tmp_path):
    """DPO (or RLOO) from the SFT adapter, saved as an adapter (lora.merge_on_save false, the
    default): its base is the SFT folder, recorded relative to it; loading it loads the base,
    merges the SFT adapter, then applies its own, wherever the run folder has moved; a policy
    stage can start from it in turn. Without the SFT folder it fails and says why."""
    run = tmp_path / "run"
    shutil.copytree(sft_adapter[0], run / "sft" / "model")
    torch.manual_seed(1)
    policy, origin = load_policy(str(run / "sft" / "model"), ModelConfig(), LoraConfig(r=4, alpha=8, dropout=0.0), "cpu")
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.05)
    expected = logits(policy)
    assert max_diff(expected, sft_adapter[1]) > 0.1  # the second adapter does something
    folder = save_model(policy, load_tokenizer(str(tiny_llama)), run / "dpo" / "model", merge_lora=False)
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == "../../sft/model"
    assert max_diff(logits(load_frozen(str(folder), ModelConfig())), expected) < 1e-5

    moved = tmp_path / "moved"
    shutil.move(run, moved)
    _, origin = load_policy(str(moved / "dpo" / "model"), ModelConfig(), None, "cpu")
    assert origin["base_model"] == str((moved / "sft" / "model").resolve())
    rloo_start, _ = rloo._build_policy(config_from_dict({"model": {"name": str(tiny_llama)}, "rloo": {
        "model": str(moved / "dpo" / "model"), "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}}),
        str(moved / "dpo" / "model"), torch.device("cpu"))
    assert max_diff(logits(rloo_start), expected) < 1e-5

    shutil.rmtree(moved / "sft")
    with pytest.raises(FileNotFoundError, match=r"holds a LoRA adapter for the base model .*sft/model, which is not there"):
        load_frozen(str(moved / "dpo" / "model"), ModelConfig())


def test_policy_start_own_setting_then_sft_output_then_base(tmp_path):
    def start(stage: str, stages: list[str], **section):
        data = {"run_dir": str(tmp_path), "model": {"name": "org/base"}, "pipeline": {"stages": stages}}
        if section:
            data[stage] = section
        return policy_start(config_from_dict(data), stage)

    sft_model = tmp_path / "sft" / "model"
    sft_model.mkdir(parents=True)
    assert start("rloo", ["data", "sft", "reward", "rloo"]) == (
        str(sft_model), "the sft stage's output: sft comes before rloo in pipeline.stages")
    assert start("dpo", ["data", "sft", "dpo"])[0] == str(sft_model)
    assert start("rloo", ["data", "sft", "rloo"], model="org/other") == ("org/other", "rloo.model")
    assert start("rloo", ["data", "reward", "rloo"]) == ("org/base", "model.name")
    assert start("rloo", ["data", "rloo", "sft"]) == ("org/base", "model.name")  # sft after rloo: not its start
    assert start("sft", ["data", "sft", "rloo"]) == ("org/base", "model.name")
    shutil.rmtree(sft_model)
    with pytest.raises(FileNotFoundError, match="does not exist: run the sft stage first, or set rloo.model"):
        start("rloo", ["data", "sft", "rloo"])


def test_eval_compares_against_what_the_policy_started_from(tmp_path, tiny_llama, sft_adapter, capsys):
    """A policy that has not moved from its SFT start: against that start the KL is exactly 0 and
    every answer ties; the default reference used to be model.name (the base), far from it."""
    folder, _, _ = sft_adapter
    start, origin = load_policy(str(folder), ModelConfig(), None, "cpu")
    save_model(start, load_tokenizer(str(folder)), tmp_path / "rloo" / "model")
    write_origin(tmp_path / "rloo", origin, "rloo.model")
    assert read_origin(tmp_path / "rloo")["chosen_by"] == "rloo.model"
    write_prompts(tmp_path, "validation")
    data = {"run_dir": str(tmp_path), "model": {"name": str(tiny_llama)}, "tracking": {"tensorboard": False},
            "eval": {"num_prompts": 4, "batch_size": 4, "max_new_tokens": 6,
                     "judge": {"backend": "callable", "function": "tests.helpers.rloo_rewards:vowel_share"}}}
    summary = evaluate.run(config_from_dict(data))
    assert summary["reference"] == str(folder)
    assert summary["reference_source"] == f"what the policy started from, {tmp_path / 'rloo' / 'started_from.json'}"
    assert summary["kl_mean"] == 0.0 and summary["ties"] == 4
    assert f"  reference               {folder} (what the policy started from, " in capsys.readouterr().out

    policy_path = str(tmp_path / "rloo" / "model")
    data["eval"]["reference"] = "org/chosen"
    assert evaluate.reference_for(config_from_dict(data), policy_path) == ("org/chosen", None, "eval.reference")
    del data["eval"]["reference"]
    (tmp_path / "rloo" / "started_from.json").unlink()
    assert evaluate.reference_for(config_from_dict(data), policy_path) == (
        str(tiny_llama), None, f"model.name: no started_from.json in {Path(policy_path).parent}")
