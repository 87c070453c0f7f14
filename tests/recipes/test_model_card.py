"""Model cards (issue 17 item 11): every stage's saved model folder has a README.md in the Hugging
Face convention whose front matter parses and whose body names the stage, the data counts, the
settings and the evaluation figures; the folder still loads, and the card's own loading snippet
runs. Each stage trains 2 steps on the tiny model."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import write_prompts
from tests.recipes.test_reward import reward_config
from tests.recipes.test_rloo import rloo_config
from tests.recipes.test_sft_dpo import stage_config, write_run_folder
from tiller import model_card
from tiller.config_loading import config_from_dict
from tiller.model_card import CardInfo, add_policy_evaluation, trace_base
from tiller.models import save_model
from tiller.recipes import dpo, reward, rloo, sft

HUB_ID = "tiller-tests/tiny-llama"


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def hub_snapshot(tiny_llama, tmp_path_factory) -> Path:
    """The tiny model where a Hub download lives (the HF cache's layout), with the Hub card's license."""
    folder = tmp_path_factory.mktemp("hub") / f"models--{HUB_ID.replace('/', '--')}" / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_llama, folder)
    (folder / "README.md").write_text("---\nlicense: apache-2.0\nlibrary_name: transformers\n---\n\n# tiny llama\n")
    return folder


def write_stats(run_dir: Path) -> None:
    """data/stats.json as the data stage writes it (the counts of write_run_folder's data)."""
    splits = {name: {"split": name, "rows_read": rows, "pairs_kept": kept, "prompts_kept": kept,
                     "conversations_kept": kept, "ties": 2, "rows_dropped": rows - kept}
              for name, rows, kept in (("train", 21, 16), ("validation", 11, 8))}
    (run_dir / "data" / "stats.json").write_text(json.dumps({
        "format": "helpsteer3", "source": "sample", "languages": ["english"], "domains": [], "splits": splits}))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, hub_snapshot) -> Path:
    """A run whose sft stage (2 steps, full fine-tuning) started from the Hub snapshot."""
    root = tmp_path_factory.mktemp("run")
    write_run_folder(root)
    write_stats(root)
    write_prompts(root)
    sft.run(config_from_dict(stage_config(root, hub_snapshot, "sft", train={"max_steps": 2})))
    return root


def read_card(folder: Path) -> tuple[dict, str]:
    text = (folder / "README.md").read_text()
    match = re.match(r"---\n(.*?)\n---\n(.*)", text, re.S)
    assert match, text[:300]
    return yaml.safe_load(match.group(1)), match.group(2)


def run_snippet(body: str, folder: Path) -> dict:
    """Run the card's "How to load" code on this folder."""
    code = re.search(r"## How to load.*?```python\n(.*?)```", body, re.S).group(1)
    scope = {"messages": [{"role": "user", "content": "What is two plus two?"}], "answer": "Four."}
    exec(code.replace("path/to/this/folder", str(folder)).replace("max_new_tokens=128", "max_new_tokens=4"), scope)
    return scope


def assert_common(meta: dict, body: str, stage: str, tag: str) -> None:
    assert meta["tags"][:2] == ["tiller", "rlhf"] and tag in meta["tags"], meta
    assert meta["license"] and meta["library_name"] in ("transformers", "peft")
    assert f"tiller's `{stage}` stage" in body
    assert f"tiller {model_card.tiller_version()}" in body
    assert "| train | 21 | 16 | 16 | 16 | 2 | 5 |" in body and "| validation | 11 | 8 |" in body  # data/stats.json


def test_sft_card(run_dir):
    folder = run_dir / "sft" / "model"
    meta, body = read_card(folder)
    assert meta["base_model"] == HUB_ID and meta["license"] == "apache-2.0"  # traced through the HF cache path
    assert meta["pipeline_tag"] == "text-generation" and meta["library_name"] == "transformers"
    assert "datasets" not in meta  # the bundled sample is not a Hub dataset
    assert_common(meta, body, "sft", "sft")
    assert "16 training examples" in body and "8 validation conversations" in body and "2 optimizer steps" in body
    assert "| `sft.optim.lr` | 0.003 |" in body and "| `sft.lora.enabled` | false (full fine-tuning) |" in body
    report = json.loads((run_dir / "sft" / "eval.json").read_text())
    assert f"**{report['loss_after']:.4f}** after, on 8 conversations" in body
    from transformers import AutoModelForCausalLM

    assert AutoModelForCausalLM.from_pretrained(folder).config.model_type == "llama"
    assert isinstance(run_snippet(body, folder)["output"], torch.Tensor)


def test_dpo_adapter_card(run_dir, hub_snapshot):
    cfg = stage_config(run_dir, hub_snapshot, "dpo", beta=0.2, train={"max_steps": 2},
                       lora={"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "merge_on_save": False})
    folder = dpo.run(config_from_dict(cfg)) / "model"
    assert (folder / "adapter_config.json").is_file()
    meta, body = read_card(folder)  # replaces the card peft writes with an adapter
    assert meta["library_name"] == "peft" and "lora" in meta["tags"] and meta["base_model"] == HUB_ID
    assert_common(meta, body, "dpo", "dpo")
    assert "| `dpo.beta` | 0.2 |" in body and "r 4, alpha 8" in body and "saved as a LoRA adapter" in body
    assert "16 training pairs" in body and "8 validation pairs" in body
    report = json.loads((run_dir / "dpo" / "eval.json").read_text())
    assert f"{report['accuracy_before']:.3f} before training -> **{report['accuracy_after']:.3f}** after" in body
    from peft import AutoPeftModelForCausalLM

    assert AutoPeftModelForCausalLM.from_pretrained(folder) is not None
    run_snippet(body, folder)


def test_rloo_card_follows_the_chain_to_the_hub_model(run_dir, hub_snapshot):
    cfg = rloo_config(run_dir, hub_snapshot, max_steps=2)
    cfg["rloo"]["model"] = str(run_dir / "sft" / "model")
    folder = rloo.run(config_from_dict(cfg)) / "model"
    meta, body = read_card(folder)
    # started from the sft folder; its tiller card names the Hub model it came from
    assert meta["base_model"] == HUB_ID and meta["license"] == "apache-2.0"
    assert_common(meta, body, "rloo", "rloo")
    assert f"- model: `{run_dir / 'sft' / 'model'}` (chosen by: rloo.model)" in body
    assert "16 prompts of the `train` split" in body and "| `rloo.completions_per_prompt` | 4 |" in body
    rows = [json.loads(line) for line in (run_dir / "rloo" / "metrics.jsonl").read_text().splitlines()]
    assert f"**{rows[-1]['objective/scores']:.3f}** at step 2" in body and "KL to the reference" in body
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(folder)

    # `tiller eval policy` adds its figures to the card, once per label, and keeps the front matter.
    summary = {"label": "rloo", "reference": "ref", "reference_source": "started_from.json", "judge": "judge", "n": 16,
               "win_rate": 0.625, "ci_low": 0.4, "ci_high": 0.8, "wins": 10, "ties": 0, "losses": 6,
               "reward_improvement": 0.3, "reward_policy_mean": 1.0, "reward_reference_mean": 0.7, "kl_mean": 0.01,
               "length_ratio": 1.1}
    assert add_policy_evaluation(folder, summary)
    assert add_policy_evaluation(folder, {**summary, "win_rate": 0.75})
    again, body = read_card(folder)
    assert again == meta
    assert body.count("## Evaluation against the starting model") == 1 and "**0.750**" in body and "0.625" not in body
    assert body.index("## Evaluation against the starting model") < body.index("## License")


def test_adapter_card_on_another_stage_of_the_run_loads_through_tiller(run_dir, hub_snapshot, tmp_path):
    """An rloo adapter on the sft stage's folder records it relative to itself (../../sft/model),
    which plain peft cannot resolve: the card's snippet loads it through tiller, and runs (also
    after the run folder moved)."""
    cfg = rloo_config(run_dir, hub_snapshot, max_steps=1, lora={"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0})
    cfg["rloo"]["model"] = str(run_dir / "sft" / "model")
    folder = rloo.run(config_from_dict(cfg)) / "model"
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == "../../sft/model"
    meta, body = read_card(folder)
    assert meta["library_name"] == "peft" and "from tiller.models import load_causal_lm, load_tokenizer" in body
    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved)
    assert isinstance(run_snippet(body, moved / "rloo" / "model")["output"], torch.Tensor)


def test_reward_card_from_a_local_model_without_a_hub_id(run_dir, tiny_llama):
    folder = reward.run(config_from_dict(reward_config(run_dir, tiny_llama, max_steps=2, pairs_per_step=4,
                                                                    micro_batch_per_device=2))) / "model"
    meta, body = read_card(folder)
    # a local folder that nothing traces to the Hub: no base_model key (the Hub takes ids only)
    assert "base_model" not in meta and meta["license"] == "other"
    assert f"- model: `{tiny_llama}`" in body and "unknown — check the base model's license" in body
    assert meta["pipeline_tag"] == "text-classification" and "reward-model" in meta["tags"]
    assert_common(meta, body, "reward", "reward-model")
    report = json.loads((run_dir / "reward" / "eval.json").read_text())
    assert f"{report['train_pairs']} training pairs (subset `first_half`)" in body
    assert "| `reward.optim.lr` | 0.003 |" in body and "| `reward.train.pairs_per_step` | 4 |" in body
    lo, hi = report["accuracy_ci95"]
    assert f"**{report['accuracy']:.3f}** (95% Wilson interval {lo:.3f}-{hi:.3f}) on 8 pairs" in body
    from transformers import AutoModelForSequenceClassification

    assert AutoModelForSequenceClassification.from_pretrained(folder).config.num_labels == 1
    assert run_snippet(body, folder)["score"].numel() == 1

    # the judge: the reward section's settings, the other half of the pairs
    judge = reward.run(config_from_dict(reward_config(run_dir, tiny_llama, max_steps=1, pairs_per_step=4,
                                                      micro_batch_per_device=2)), stage="judge") / "model"
    meta, body = read_card(judge)
    assert_common(meta, body, "judge", "reward-model")
    assert "held-out judge" in body and "(subset `second_half`)" in body and "| `reward.train.pairs_per_step` | 4 |" in body


def test_trace_base_names_hub_models_only():
    embedded = trace_base("embedded")
    assert (embedded.hub_id, embedded.license) == ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0")
    hub = trace_base("Qwen/Qwen3-8B")  # offline in tests and not cached: the license is not known
    assert hub.hub_id == "Qwen/Qwen3-8B" and hub.license is None
    assert trace_base("./no/such/folder").hub_id is None


def test_card_of_the_flagship_setup_names_hub_ids(tmp_path):
    """Hub data and the embedded model: `datasets` and `base_model` are Hub ids, the license known."""
    cfg = config_from_dict({"run_dir": str(tmp_path), "model": {"name": "embedded"},
                            "data": {"source": "hub", "hub_id": "nvidia/HelpSteer3", "hub_config": "preference"}})
    (tmp_path / "reward" / "model").mkdir(parents=True)
    card = model_card.build_card(CardInfo(cfg, "reward", "embedded"), tmp_path / "reward" / "model")
    assert card.data.datasets == ["nvidia/HelpSteer3"] and card.data.license == "apache-2.0"
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "[`nvidia/HelpSteer3`](https://huggingface.co/datasets/nvidia/HelpSteer3), config `preference`" in card.text
    assert "none recorded at save time" in card.text and "no `data/stats.json`" in card.text


def test_a_failing_card_never_costs_the_model(tmp_path, tiny_llama, monkeypatch, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(model_card, "build_card", broken)
    cfg = config_from_dict({"run_dir": str(tmp_path), "model": {"name": str(tiny_llama)}})
    folder = save_model(AutoModelForCausalLM.from_pretrained(tiny_llama), AutoTokenizer.from_pretrained(tiny_llama),
                        tmp_path / "sft" / "model", card=CardInfo(cfg, "sft", str(tiny_llama)))
    meta, body = read_card(folder)
    assert meta["tags"] == ["tiller", "rlhf", "sft"] and "RuntimeError: boom" in body
    assert "could not be built" in capsys.readouterr().out
    assert (folder / "model.safetensors").is_file()
