"""Config loading: types, ranges, unknown keys with the nearest valid one, overrides, shipped configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tiller.config import ConfigError, to_yaml
from tiller.config_loading import config_from_dict, load_config, parse_override

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_and_stage_specific_optimizer_defaults():
    cfg = config_from_dict({"rloo": {"optim": {"scheduler": "cosine"}}})
    assert cfg.rloo.optim.lr == 1e-6  # the rloo default survives a partial section
    assert cfg.rloo.optim.scheduler == "cosine"
    assert cfg.reward.optim.lr == 1e-5


@pytest.mark.parametrize("data, message", [
    ({"rloo": {"bta": 0.1}}, "unknown config key 'rloo.bta'; did you mean 'rloo.beta'?"),
    ({"rloo": {"beta": "high"}}, "config key 'rloo.beta': expected a number, got 'high'"),
    ({"rloo": {"completions_per_prompt": 1}}, "config key 'rloo.completions_per_prompt': expected a value >= 2, got 1"),
    ({"reward": {"lora": {"dropout": 1.5}}}, "config key 'reward.lora.dropout': expected a value <= 1.0, got 1.5"),
    ({"data": {"format": "csv"}}, "config key 'data.format': expected one of 'helpsteer3'"),
    ({"model": {"trust_remote_code": "yes"}}, "config key 'model.trust_remote_code': expected true or false"),
    ({"data": {"languages": "english"}}, "config key 'data.languages': expected a list of a string"),
    ({"modle": {}}, "did you mean 'model'?"),
    ({"data": {"source": "hub"}}, "data.hub_id': required"),
    ({"data": {"source": "local", "files": {"train": "x.jsonl"}}}, "no file is given for split(s) ['validation']"),
    ({"pipeline": {"stages": ["data", "rlo"]}}, "did you mean 'rloo'?"),
    ({"rloo": {"prompts_per_step": 3, "completions_per_prompt": 2, "micro_batch_per_device": 4}}, "not a multiple of 4"),
])
def test_errors_name_key_value_and_expectation(data, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert message in str(err.value)


def test_overrides_parse_yaml_and_reach_any_field():
    cfg = config_from_dict({}, ["rloo.beta=0.2", "reward.optim.lr=1e-4", "data.languages=[english, french]",
                                "model.enable_thinking=false", "eval.judge.backend=callable", "eval.judge.function=m:f"])
    assert cfg.rloo.beta == 0.2 and cfg.reward.optim.lr == 1e-4
    assert cfg.data.languages == ["english", "french"] and cfg.model.enable_thinking is False
    assert parse_override("a.b=") == (["a", "b"], "")
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("rloo.beta")
    with pytest.raises(ConfigError, match="did you mean 'rloo.beta'"):
        config_from_dict({}, ["rloo.betta=1"])


def test_yaml_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rloo:\n  beta: [1\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    typo = tmp_path / "typo.yaml"
    typo.write_text("reward:\n  trian: {epochs: 1}\n")
    with pytest.raises(ConfigError, match=r"typo.yaml: unknown config key 'reward.trian'; did you mean 'reward.train'"):
        load_config(typo)


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_config(path)
    # round trip: the resolved config saved in a run folder loads back to the same values
    again = config_from_dict(__import__("yaml").safe_load(to_yaml(cfg)))
    assert again == cfg


def test_flagship_config_carries_the_seed_recipe():
    cfg = load_config(ROOT / "configs" / "qwen3-8b-helpsteer3.yaml")
    assert cfg.model.name == "Qwen/Qwen3-8B" and cfg.model.enable_thinking is False
    assert cfg.data.hub_id == "nvidia/HelpSteer3" and cfg.data.hub_config == "preference" and cfg.data.languages == ["english"]
    r = cfg.reward
    assert (r.lora.r, r.lora.alpha, r.optim.lr, r.train.micro_batch_per_device, r.train.max_length, r.train.epochs) == (16, 32, 1e-5, 4, 1024, 3)
    assert r.train.pairs_per_step == 4 * 4  # per-device 4 x grad accumulation 4 on one GPU
    p = cfg.rloo
    assert p.completions_per_prompt == 4 and p.optim.lr == 1e-6 and p.total_episodes == 50_000
    assert p.prompts_per_step * p.completions_per_prompt == 2 * 8  # TRL per-device 2 x accumulation 8
    assert p.missing_eos_penalty == 1.0 and p.reward.backend == "classifier"
    assert cfg.pipeline.stages == ["data", "reward", "judge", "rloo", "eval", "report"]


def test_summary_keys_exist_for_every_stage_the_cli_runs():
    from tiller.cli import build_parser
    from tiller.config import SUMMARY_KEYS, get_key

    cfg = config_from_dict({})
    for stage, keys in SUMMARY_KEYS.items():
        for key in keys:
            get_key(cfg, key)  # an AttributeError here: a renamed field left in SUMMARY_KEYS
    choices = build_parser()._subparsers._group_actions[0].choices
    assert set(choices) - {"report", "serve-reward", "playground"} == set(SUMMARY_KEYS)  # these run no stage


def test_summary_is_a_few_key_value_lines_without_unset_options():
    import re

    from tiller.config import summary

    def parse(text: str) -> dict:  # key=value items; a list value holds spaces: [a, b]
        return dict(re.findall(r"(\S+?)=(\[[^\]]*\]|\S+)", text))

    cfg = config_from_dict({"run_dir": "runs/x", "rloo": {"max_steps": 7}}, ["rloo.rollout.engine=vllm"])
    text = summary(cfg, "rloo", width=60)
    lines = text.splitlines()
    assert 2 <= len(lines) <= 6 and all(len(line) <= 60 for line in lines), text
    items = parse(text)
    assert items["run_dir"] == "runs/x" and items["model.name"] == "embedded"
    assert (items["rloo.max_steps"], items["rloo.rollout.engine"], items["rloo.optim.lr"]) == ("7", "vllm", "1e-06")
    assert "rloo.model" not in items and "rloo.total_episodes" not in items  # null: the default applies
    data = parse(summary(cfg, "data", width=1000))
    assert data["data.languages"] == "[english]" and data["data.splits"] == "[train, validation]"
    assert parse(summary(config_from_dict({}), "sft"))["sft.lora.enabled"] == "true"


def test_rloo_rewards_components_and_their_errors():
    two = [{"name": "rm", "weight": 1.0, "backend": "classifier"},
           {"name": "exact", "weight": 0.5, "backend": "callable", "function": "tests.helpers.rloo_rewards:exact_match"}]
    cfg = config_from_dict({"rloo": {"rewards": two}, "data": {"keep_columns": ["gold_answer"]}})
    assert [(c.name, c.weight, c.backend) for c in cfg.rloo.rewards] == [("rm", 1.0, "classifier"), ("exact", 0.5, "callable")]
    assert cfg.data.keep_columns == ["gold_answer"]
    assert config_from_dict({}).rloo.rewards == [] and config_from_dict({}).data.keep_columns == []

    def error(rloo: dict) -> str:
        with pytest.raises(ConfigError) as e:
            config_from_dict({"rloo": rloo})
        return str(e.value)

    assert "'rloo.rewards[1].name': 'rm' is used twice" in error({"rewards": [two[0], {**two[1], "name": "rm"}]})
    assert "'rloo.rewards[0].name'" in error({"rewards": [{**two[0], "name": ""}]})
    assert "'rloo.rewards[0].name'" in error({"rewards": [{**two[0], "name": "a/b"}]})
    assert "'rloo.rewards[1].weight': expected a finite number" in error({"rewards": [two[0], {**two[1], "weight": float("nan")}]})
    assert "'rloo.rewards[0].weight': expected a finite number" in error({"rewards": [{**two[0], "weight": float("inf")}]})
    assert "'rloo.reward': set together with rloo.rewards" in error({"rewards": two, "reward": {"backend": "callable"}})
    assert "'rloo.rewards[1].function': required" in error({"rewards": [two[0], {"name": "f", "backend": "callable"}]})
    assert "'rloo.rewards[0].url': required" in error({"rewards": [{"name": "g", "backend": "genrm"}]})
    assert "unknown config key 'rloo.rewards[0].wieght'" in error({"rewards": [{"name": "g", "wieght": 1.0}]})
