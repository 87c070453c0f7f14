"""The verifiable demo on the tiny model: configs/demo-verifiable.yaml's stages end to end (data
from the arithmetic sample, RLOO with the exact-match reward reading each prompt's gold answer,
evaluation judged by the verifier with no judge model, report), and the evaluation's exact-match
figures on answers written by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tiller import losses
from tiller.config_loading import config_from_dict
from tiller.models import load_tokenizer
from tiller.recipes import evaluate, pipeline
from tiller.rewards.exact_match import exact_match

pytestmark = pytest.mark.usefixtures("one_thread")
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo-verifiable.yaml"
VERIFIER = "tiller.rewards.exact_match:exact_match"


def test_the_verifiable_demo_config_runs_end_to_end_on_the_tiny_model(tmp_path, tiny_llama, capsys):
    raw = yaml.safe_load(CONFIG.read_text())
    raw["run_dir"], raw["model"]["name"] = str(tmp_path), str(tiny_llama)
    raw["tracking"] = {"tensorboard": False}
    raw["rloo"].update({"lora": {"r": 4, "alpha": 8, "dropout": 0.0}, "prompts_per_step": 2, "completions_per_prompt": 2,
                        "micro_batch_per_device": 4, "max_steps": 2, "save_every": 0, "sample_every": 1})
    raw["rloo"]["rollout"]["max_new_tokens"] = 8
    raw["eval"].update({"num_prompts": 6, "batch_size": 6, "max_new_tokens": 8})
    cfg = config_from_dict(raw)
    assert cfg.pipeline.stages == ["data", "rloo", "eval", "report"] and cfg.rloo.advantage == "rloo"
    pipeline.run(cfg)

    prompts = [json.loads(line) for line in (tmp_path / "data" / "validation.prompts.jsonl").read_text().splitlines()]
    assert len(prompts) == 200 and all(set(p["extra"]) == {"answer"} for p in prompts)
    assert (tmp_path / "rloo" / "DONE").is_file()  # exact_match raises on a record without its answer
    for stage in ("reward", "judge"):  # no reward model anywhere: the reward and the judge check answers
        assert not (tmp_path / stage).exists()

    summary = json.loads((tmp_path / "eval" / "rloo.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "eval" / "rloo_samples.jsonl").read_text().splitlines()]
    assert summary["judge"] == f"verifier {VERIFIER}" and summary["n"] == len(rows) == 6
    assert [r["record"] for r in rows] == [p["extra"] for p in prompts[:6]]
    for side in ("policy", "reference"):  # the scores are the verifier's verdicts on the saved answers
        assert [r[f"{side}_score"] for r in rows] == exact_match(None, [r[side] for r in rows], [r["record"] for r in rows])
    x = summary["exact_match"]
    assert x["policy_correct"] == sum(r["policy_score"] for r in rows)
    assert x["reference_correct"] == sum(r["reference_score"] for r in rows)
    assert x["policy_accuracy"] == summary["reward_policy_mean"] == x["policy_correct"] / 6
    assert (x["policy_ci_low"], x["policy_ci_high"]) == losses.accuracy_interval(x["policy_correct"], 6)
    out = capsys.readouterr().out
    assert "exact-match accuracy    policy" in out and "accuracy gain" in out
    assert "no held-out judge" not in out  # the default classifier judge was never looked for
    assert (tmp_path / "report.html").is_file()


# (policy answer, reference answer, gold): the policy is right on the first three, the reference
# on the third and fourth; identical texts (the third) are one verdict, a tie.
ANSWERS = [("7 × 8 = 56", "7 × 8 = 54", 56), ("The answer is 12.", "13", 12), ("-3", "-3", -3),
           ("I don't know.", "I think 4", 4)]


def test_evaluation_with_a_verifier_reports_exact_match_accuracy(tmp_path, tiny_llama, tiny_qwen3, monkeypatch, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    with open(folder / "validation.prompts.jsonl", "w") as f:
        for i, (_, _, gold) in enumerate(ANSWERS):
            f.write(json.dumps({"messages": [{"role": "user", "content": f"Question {i}?"}], "source_row": i + 1,
                                "extra": {"answer": gold}}) + "\n")
    (folder / "DONE").write_text("done\n")
    tokenizer = load_tokenizer(str(tiny_llama))

    def fake_generate(model, tokenizer_, prompt_ids, *args, **kwargs):
        column = 0 if model.config.model_type == "llama" else 1  # the policy is the llama, the reference the qwen3
        texts = [ANSWERS[i][column] for i in range(len(prompt_ids))]
        return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts], [True] * len(texts)

    monkeypatch.setattr(evaluate, "generate_answers", fake_generate)
    # eval.judge stays the default classifier, whose folder does not exist: the verifier replaces it.
    cfg = config_from_dict({"run_dir": str(tmp_path), "model": {"name": str(tiny_llama)},
                            "eval": {"policy": str(tiny_llama), "reference": str(tiny_qwen3), "num_prompts": 4,
                                     "batch_size": 4, "verifier": VERIFIER}})
    summary = evaluate.run(cfg, label="toy")

    x = summary["exact_match"]
    assert (x["policy_correct"], x["reference_correct"], x["gained"], x["lost"]) == (3, 2, 2, 1)
    assert (summary["wins"], summary["ties"], summary["losses"]) == (2, 1, 1)
    # differences 1, 1, 0, -1: mean 0.25, sd sqrt(2.75 / 3), half 1.96 * 0.957427 / 2 = 0.938279
    assert x["difference"] == 0.25 == summary["reward_improvement"]
    assert (x["difference_ci_low"], x["difference_ci_high"]) == pytest.approx((-0.688279, 1.188279), abs=1e-6)
    # constant answers: none holds a number except the restatement "You asked: Question i?", whose
    # last number is i (0, 1, 2, 3): right nowhere, since the gold answers are 56, 12, -3 and 4
    assert {kind: v["mean_score"] for kind, v in summary["constant_answers"].items()} == \
        {"empty": 0.0, "refusal": 0.0, "restatement": 0.0}
    rows = [json.loads(line) for line in (tmp_path / "eval" / "toy_samples.jsonl").read_text().splitlines()]
    assert [(r["policy_score"], r["reference_score"]) for r in rows] == [(1.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]
    assert [r["record"] for r in rows] == [{"answer": gold} for _, _, gold in ANSWERS]
    out = capsys.readouterr().out
    assert "judge: verifier tiller.rewards.exact_match:exact_match" in out
    assert "exact-match accuracy    policy 0.750 (95% CI 0.301-0.954; 3 of 4) | reference 0.500" in out
