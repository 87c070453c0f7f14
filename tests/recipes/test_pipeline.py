"""The pipeline end to end on the tiny model and the bundled sample; skipping, --only, --from,
failure handling; and the win-rate arithmetic the evaluation reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tiller import losses
from tiller.config_loading import config_from_dict
from tiller.models import adapter_base
from tiller.recipes import pipeline


def pipeline_config(run_dir: Path, model: Path) -> dict:
    loop = {"epochs": 1, "max_steps": 3, "pairs_per_step": 8, "micro_batch_per_device": 8, "max_length": 256,
            "eval_every": 0, "save_every": 0}
    return {
        "run_dir": str(run_dir), "model": {"name": str(model)}, "tracking": {"tensorboard": True},
        "data": {"source": "sample", "max_prompt_tokens": 200},
        # LoRA saved as adapters (lora.merge_on_save false, the default), as in configs/demo.yaml: rloo's
        # classifier reward, the evaluation's judge and optimized reward model all load adapter folders.
        "reward": {"train_subset": "first_half", "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0},
                   "optim": {"lr": 1e-3}, "train": loop},
        "rloo": {"lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0}, "optim": {"lr": 1e-3},
                 "prompts_per_step": 4, "completions_per_prompt": 2, "micro_batch_per_device": 8, "max_steps": 3,
                 "rollout": {"max_new_tokens": 8}, "save_every": 0, "sample_every": 1},
        "eval": {"num_prompts": 6, "batch_size": 6, "max_new_tokens": 8},
        "pipeline": {"stages": ["data", "reward", "judge", "rloo", "eval", "report"]},
    }


@pytest.mark.slow
def test_pipeline_end_to_end_then_skip_only_and_from(tmp_path, tiny_llama, capsys):
    cfg = config_from_dict(pipeline_config(tmp_path, tiny_llama))
    pipeline.run(cfg)
    for stage in ("data", "reward", "judge", "rloo", "eval"):
        assert (tmp_path / stage / "DONE").is_file(), stage
    for stage in ("reward", "judge", "rloo"):  # adapters on the base, no full copy of it
        assert adapter_base(tmp_path / stage / "model") == str(tiny_llama), stage
        assert not (tmp_path / stage / "model" / "model.safetensors").exists(), stage
    summary = json.loads((tmp_path / "eval" / "rloo.json").read_text())
    assert summary["n"] == 6 and 0.0 <= summary["win_rate"] <= 1.0 and summary["kl_mean"] >= 0.0
    assert summary["wins"] + summary["ties"] + summary["losses"] == 6
    assert len((tmp_path / "eval" / "rloo_samples.jsonl").read_text().splitlines()) == 6
    # The reward stages scored the validation pairs when they finished; the eval stage reuses that.
    assert not (tmp_path / "eval" / "reward_model.json").exists()
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html
    for stage in ("reward", "judge"):
        accuracy = json.loads((tmp_path / stage / "eval.json").read_text())["accuracy"]
        assert f"<code>{stage}/</code>" in html and "pairwise accuracy" in html and 0.0 <= accuracy <= 1.0
    out = capsys.readouterr().out
    assert "validation accuracy from" in out
    assert "win rate vs reference" in out and "report:" in out

    # everything complete: a second run skips every training stage
    stamp = (tmp_path / "rloo" / "model" / "adapter_model.safetensors").stat().st_mtime_ns
    pipeline.run(cfg)
    out = capsys.readouterr().out
    for stage in ("data", "reward", "judge", "rloo", "eval"):
        assert f"[pipeline] {stage}: complete, skipped" in out
    assert (tmp_path / "rloo" / "model" / "adapter_model.safetensors").stat().st_mtime_ns == stamp

    # --only re-runs one stage; --from re-runs it and everything after
    pipeline.run(cfg, only="judge")
    out = capsys.readouterr().out
    assert "[pipeline] judge: starting" in out and "[pipeline] reward" not in out and "[pipeline] rloo" not in out
    pipeline.run(cfg, from_stage="rloo")
    out = capsys.readouterr().out
    assert "[pipeline] reward: complete, skipped" not in out  # not visited at all
    for stage in ("rloo", "eval", "report"):
        assert f"[pipeline] {stage}: starting" in out
    assert (tmp_path / "rloo" / "model" / "adapter_model.safetensors").stat().st_mtime_ns != stamp


def test_pipeline_starts_rloo_from_the_sft_model_and_evaluates_against_it(tmp_path, tiny_llama, capsys):
    """data -> sft -> reward -> rloo -> eval with rloo.model and eval.reference unset: RLOO starts
    from the SFT output (here an unmerged adapter: sft.lora.merge_on_save false); the eval stage
    evaluates sft and rloo side by side against the run's start (model.name, what sft started
    from), and says rloo started from the SFT model (`tiller eval policy` alone evaluates against
    what the policy started from: tests/recipes/test_starting_model.py). RLOO's own adapter (the default
    lora.merge_on_save false) is saved on top of the SFT adapter: its base is the SFT folder,
    recorded relative to it, and every loader follows the chain."""
    import torch

    from tiller.models import load_policy

    cfg_dict = pipeline_config(tmp_path, tiny_llama)
    cfg_dict["tracking"] = {"tensorboard": False}
    cfg_dict["sft"] = {"lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "merge_on_save": False},
                       "optim": {"lr": 1e-2}, "train": cfg_dict["reward"]["train"]}
    cfg_dict["rloo"]["optim"] = {"lr": 1e-6}  # RLOO barely moves: its output stays next to its start
    cfg_dict["pipeline"]["stages"] = ["data", "sft", "reward", "rloo", "eval"]
    pipeline.run(config_from_dict(cfg_dict))

    sft_model = tmp_path / "sft" / "model"
    assert (sft_model / "adapter_config.json").is_file()
    rloo_config = json.loads((tmp_path / "rloo" / "model" / "adapter_config.json").read_text())
    assert rloo_config["base_model_name_or_path"] == "../../sft/model"
    started = json.loads((tmp_path / "rloo" / "started_from.json").read_text())
    assert started["model"] == started["adapter"] == str(sft_model)
    assert started["base_model"] == str(tiny_llama) and started["adapter_handling"] == "merged into the base"
    assert started["chosen_by"] == "the sft stage's output: sft comes before rloo in pipeline.stages"
    summary = json.loads((tmp_path / "eval" / "rloo.json").read_text())
    assert summary["reference"] == str(tiny_llama) and summary["reference_source"].endswith("sft/started_from.json)")
    assert summary["started_from"] == str(sft_model)
    # Model cards: the sft adapter's, and the rloo model's with the evaluation's win rate added.
    assert "library_name: peft" in (sft_model / "README.md").read_text()
    rloo_card = (tmp_path / "rloo" / "model" / "README.md").read_text()
    assert f"(ties count half): **{summary['win_rate']:.3f}**" in rloo_card and "`data/stats.json`" in rloo_card
    assert "from tiller.models import load_causal_lm" in rloo_card  # plain peft cannot resolve a relative base
    out = capsys.readouterr().out
    assert f"[rloo] policy starts from {sft_model} (the sft stage's output" in out
    assert f"side by side against {tiny_llama} (what sft, the first policy stage, started from" in out

    # The weights: the RLOO output is next to the SFT model and far from the base.
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])

    def logits(name: str) -> torch.Tensor:
        with torch.no_grad():
            return load_policy(name, config_from_dict(cfg_dict).model, None)[0].eval()(input_ids=ids).logits

    trained, start, base = logits(str(tmp_path / "rloo" / "model")), logits(str(sft_model)), logits(str(tiny_llama))
    assert (trained - start).abs().max() < 0.1 * (start - base).abs().max()


def test_eval_stage_puts_sft_dpo_and_rloo_side_by_side_against_one_reference(tmp_path, tiny_llama, capsys):
    """data -> sft -> reward -> judge -> dpo -> rloo -> eval -> report: dpo and rloo start from
    sft's output, and the eval stage evaluates all three against the run's start (what sft
    started from) with the reference's answers generated and scored once. Each stage's figures
    are what `tiller eval policy` gives for that policy alone against the same reference: counts
    exactly; judge scores to 1e-5 (the side-by-side scores the reference's answers in one batch
    and `tiller eval policy` the policy's first, and a score differs in the last bits between
    differently padded batches), KL and lengths to 1e-6."""
    import dataclasses

    from tiller.recipes import evaluate

    cfg_dict = pipeline_config(tmp_path, tiny_llama)
    cfg_dict["tracking"] = {"tensorboard": False}
    loop = {**cfg_dict["reward"]["train"], "max_steps": 2}
    lora = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0}
    cfg_dict["reward"]["train"] = loop
    cfg_dict["sft"] = {"lora": lora, "optim": {"lr": 1e-2}, "train": loop}
    cfg_dict["dpo"] = {"lora": lora, "optim": {"lr": 1e-2}, "train": loop}
    cfg_dict["rloo"]["max_steps"] = 2
    # Sampled answers (seeded per prompt alike for every model): the tiny model's greedy answers
    # are the same newlines before and after these few steps, which would make every verdict a tie.
    cfg_dict["eval"]["greedy"] = False
    cfg_dict["eval"]["seeds"] = [0, 5]  # the first is the config's seed, which `tiller eval policy` samples with
    cfg_dict["pipeline"]["stages"] = ["data", "sft", "reward", "judge", "dpo", "rloo", "eval", "report"]
    cfg = config_from_dict(cfg_dict)
    pipeline.run(cfg)

    side = json.loads((tmp_path / "eval" / "policies.json").read_text())
    assert side["stages"] == ["sft", "dpo", "rloo"] and side["reference"] == str(tiny_llama) and side["n"] == 6
    sft_model = str(tmp_path / "sft" / "model")
    assert [side["policies"][s]["started_from"] for s in side["stages"]] == [str(tiny_llama), sft_model, sft_model]
    samples = {s: [json.loads(line) for line in (tmp_path / "eval" / f"{s}_samples.jsonl").read_text().splitlines()]
               for s in side["stages"]}
    for s in ("dpo", "rloo"):  # one reference generation and scoring, shared
        assert [r["reference"] for r in samples[s]] == [r["reference"] for r in samples["sft"]]
        assert [r["reference_score"] for r in samples[s]] == [r["reference_score"] for r in samples["sft"]]
    for s in side["stages"]:
        assert json.loads((tmp_path / "eval" / f"{s}.json").read_text()) == side["policies"][s]
        assert side["policies"][s]["ties"] < 6  # the policies' answers are not all the reference's
    # eval.seeds: the first seed's figures are the summary's, the second seed sampled other answers
    assert side["seeds"] == [0, 5]
    for s in side["stages"]:
        runs = side["policies"][s]["seeds"]["per_seed"]
        assert [r["seed"] for r in runs] == [0, 5]
        assert {k: runs[0][k] for k in evaluate.SPREAD_KEYS} == {k: side["policies"][s][k] for k in evaluate.SPREAD_KEYS}
        assert side["policies"][s]["seeds"]["spread"] == evaluate.seed_spread(runs)
    assert any(r["policy_mean_length"] != side["policies"][s]["policy_mean_length"] or r["wins"] != side["policies"][s]["wins"]
               for s in side["stages"] for r in side["policies"][s]["seeds"]["per_seed"][1:])
    out = capsys.readouterr().out
    assert "policies side by side on 6 held-out prompts" in out and "win rate, 2 seeds: mean ± sd [min, max]" in out
    assert "Policy stages side by side" in (tmp_path / "report.html").read_text()

    exact = ("n", "wins", "ties", "losses", "guarded_wins", "guarded_ties", "guarded_losses", "degenerate_policy",
             "degenerate_reference", "truncated_policy", "truncated_reference")
    close = {"win_rate": 1e-9, "guarded_win_rate": 1e-9, "lc_win_rate": 1e-5, "reward_policy_mean": 1e-5,
             "reward_reference_mean": 1e-5, "reward_improvement": 1e-5, "reward_improvement_ci_low": 1e-5,
             "reward_improvement_ci_high": 1e-5, "optimized_rm_policy_mean": 1e-5,
             "optimized_rm_reference_mean": 1e-5, "optimized_rm_win_rate": 1e-9, "kl_mean": 1e-6,
             "length_ratio": 1e-9, "policy_mean_length": 1e-9, "reference_mean_length": 1e-9}
    for s in side["stages"]:
        alone = evaluate.run(dataclasses.replace(cfg, eval=dataclasses.replace(
            cfg.eval, policy=str(tmp_path / s / "model"), reference=str(tiny_llama))))
        together = side["policies"][s]
        assert alone["reference_source"] == "eval.reference"
        for key in exact:
            assert alone[key] == together[key], (s, key)
        for key, tolerance in close.items():
            assert alone[key] == pytest.approx(together[key], abs=tolerance), (s, key)

    # Complete: a second run skips the eval stage; a policy stage re-trained after it is not.
    capsys.readouterr()
    assert pipeline.is_complete(tmp_path, "eval", cfg)
    (tmp_path / "dpo" / "DONE").write_text((tmp_path / "dpo" / "DONE").read_text())
    assert not pipeline.is_complete(tmp_path, "eval", cfg)


def test_eval_stage_completeness_follows_the_policy_stages_the_run_holds(tmp_path):
    """The eval stage is complete when eval/policies.json lists exactly the policy stages of
    pipeline.stages that the run holds, each finished before it was written; with one policy
    stage, when its eval/<stage>.json was written after it finished (no models here)."""
    import os

    stages = ["data", "sft", "dpo", "eval"]
    cfg = config_from_dict({"run_dir": str(tmp_path), "pipeline": {"stages": stages}})
    (tmp_path / "sft" / "model").mkdir(parents=True)
    (tmp_path / "sft" / "started_from.json").write_text("{}")
    (tmp_path / "sft" / "DONE").write_text("2 steps\n")
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "DONE").write_text("done\n")
    assert not pipeline.is_complete(tmp_path, "eval", cfg)  # one policy stage, no eval/sft.json
    (tmp_path / "eval" / "sft.json").write_text("{}")  # as an eval stage before policies.json wrote it
    assert pipeline.is_complete(tmp_path, "eval", cfg)
    (tmp_path / "dpo" / "model").mkdir(parents=True)
    (tmp_path / "dpo" / "started_from.json").write_text("{}")
    (tmp_path / "dpo" / "DONE").write_text("2 steps\n")
    assert not pipeline.is_complete(tmp_path, "eval", cfg)  # two now: they need the side-by-side
    policies = tmp_path / "eval" / "policies.json"
    policies.write_text(json.dumps({"stages": ["sft"]}))
    assert not pipeline.is_complete(tmp_path, "eval", cfg)  # dpo was added since
    policies.write_text(json.dumps({"stages": ["sft", "dpo"]}))
    assert pipeline.is_complete(tmp_path, "eval", cfg)
    written = policies.stat().st_mtime_ns
    os.utime(tmp_path / "sft" / "DONE", ns=(written + 10**9, written + 10**9))  # sft re-trained afterwards
    assert not pipeline.is_complete(tmp_path, "eval", cfg)
    # eval.policy names one policy: the eval stage's DONE alone, as before
    one = config_from_dict({"run_dir": str(tmp_path), "pipeline": {"stages": stages},
                            "eval": {"policy": str(tmp_path / "dpo" / "model")}})
    assert pipeline.is_complete(tmp_path, "eval", one)


def test_seed_spread_and_its_config():
    from tiller.config import ConfigError
    from tiller.recipes.evaluate import seed_spread

    rows = [{"win_rate": 0.5}, {"win_rate": 0.7}, {"win_rate": 0.6}]
    # mean 0.6; sample sd = sqrt((0.01 + 0.01 + 0) / 2) = 0.1
    assert seed_spread(rows, ("win_rate",))["win_rate"] == pytest.approx({"mean": 0.6, "sd": 0.1, "min": 0.5, "max": 0.7})
    assert seed_spread(rows[:1], ("win_rate",))["win_rate"]["sd"] == 0.0
    with pytest.raises(ConfigError, match="eval.greedy false"):
        config_from_dict({"eval": {"seeds": [0, 1]}})  # greedy answers are the same for every seed
    with pytest.raises(ConfigError, match="no seed twice"):
        config_from_dict({"eval": {"seeds": [0, 0], "greedy": False}})


def test_failed_stage_stops_with_clear_message_and_keeps_finished(tmp_path, tiny_llama):
    cfg_dict = pipeline_config(tmp_path, tiny_llama)
    cfg_dict["pipeline"]["stages"] = ["data", "rloo"]
    cfg_dict["rloo"]["reward"] = {"backend": "classifier", "path": str(tmp_path / "no-such-model")}
    cfg = config_from_dict(cfg_dict)
    with pytest.raises(pipeline.PipelineError) as err:
        pipeline.run(cfg)
    message = str(err.value)
    assert "stage 'rloo' failed" in message and "['data']" in message and "--resume" in message
    assert (tmp_path / "data" / "DONE").is_file()  # the finished stage is intact


def test_curve_stage_curves_the_pipelines_policy_stages_and_is_complete_with_its_file(tmp_path, monkeypatch):
    from tiller.recipes import evaluate

    calls = []

    def fake_curve(cfg, stage=None, stages=evaluate.POLICY_STAGES):
        calls.append((stage, stages))
        (tmp_path / "eval").mkdir(exist_ok=True)
        (tmp_path / "eval" / "curve.jsonl").write_text("{}\n")

    monkeypatch.setattr(evaluate, "run_curve", fake_curve)
    cfg = config_from_dict({"run_dir": str(tmp_path), "pipeline": {"stages": ["data", "dpo", "eval", "curve", "report"]}})
    assert not pipeline.is_complete(tmp_path, "curve")
    pipeline.run(cfg, only="curve")
    assert calls == [(None, ("dpo",))]  # dpo is in pipeline.stages, rloo is not
    assert pipeline.is_complete(tmp_path, "curve") and not (tmp_path / "curve").exists()  # no folder of its own


def test_stage_selection_errors():
    stages = ["data", "reward", "rloo"]
    assert pipeline.select_stages(stages, None, "reward") == (["reward", "rloo"], {"reward", "rloo"})
    assert pipeline.select_stages(stages, "rloo", None) == (["rloo"], {"rloo"})
    with pytest.raises(ValueError, match="not one of this config's pipeline.stages"):
        pipeline.select_stages(stages, "dpo", None)
    with pytest.raises(ValueError, match="not both"):
        pipeline.select_stages(stages, "data", "rloo")


def test_win_rate_counts_ties_as_half_with_wilson_interval():
    # policy vs reference scores: 3 wins, 1 tie, 1 loss -> (3 + 0.5) / 5 = 0.7
    result = losses.win_rate([2.0, 3.0, 1.0, 0.5, 4.0], [1.0, 1.0, 1.0, 0.9, 3.0])
    assert (result["wins"], result["ties"], result["losses"]) == (3, 1, 1)
    assert result["win_rate"] == pytest.approx(0.7)
    # Wilson interval for p = 0.7, n = 5, z = 1.96:
    #   centre = (0.7 + 1.96^2 / 10) / (1 + 1.96^2 / 5) = 1.08416 / 1.76832 = 0.61310
    #   half   = 1.96 * sqrt(0.7 * 0.3 / 5 + 1.96^2 / 100) / 1.76832 = 1.96 * 0.28358 / 1.76832 = 0.31432
    assert result["ci_low"] == pytest.approx(0.61310 - 0.31432, abs=1e-4)
    assert result["ci_high"] == pytest.approx(0.61310 + 0.31432, abs=1e-4)
