"""The rloo section's estimator, KL-placement, clipping and aggregation options
(docs/algorithms.md): defaults are today's RLOO, and nonsense combinations are refused with
the reason."""

from __future__ import annotations

import pytest

from tiller.config import ConfigError, to_yaml
from tiller.config_loading import config_from_dict


def test_defaults_are_plain_rloo():
    r = config_from_dict({}).rloo
    assert (r.advantage, r.kl_in, r.kl_estimator, r.aggregation) == ("rloo", "reward", "k1", "token_mean")
    assert r.clip_eps == 0.2 and r.clip_eps_low is None and r.clip_eps_high is None
    assert not r.whiten_advantages


@pytest.mark.parametrize("section", [
    {"advantage": "grpo", "beta": 0.04, "kl_in": "loss", "kl_estimator": "k3", "aggregation": "sequence_mean"},
    {"advantage": "grpo", "clip_eps_low": 0.2, "clip_eps_high": 0.28, "num_ppo_epochs": 2, "micro_batch_per_device": 4},
    {"advantage": "dr_grpo", "aggregation": "sequence_sum_norm"},
    {"advantage": "reinforce_pp", "kl_in": "loss", "kl_estimator": "k3"},
    {"advantage": "rloo", "aggregation": "sequence_sum_norm", "beta": 0.0},
    {"clip_eps_high": 0.28},  # num_ppo_epochs 1: accepted, the clip never binds (documented)
])
def test_sensible_combinations_load(section):
    cfg = config_from_dict({"rloo": section}, [])
    for key, value in section.items():
        assert getattr(cfg.rloo, key) == value
    assert "advantage:" in to_yaml(cfg)


@pytest.mark.parametrize("section, message", [
    ({"kl_in": "loss", "beta": 0.0, "kl_estimator": "k3"}, "'loss' with rloo.beta=0 puts no KL term anywhere"),
    ({"kl_in": "loss", "beta": 0.05}, "'k1' as a loss term has the gradient grad log pi, which is 0 in expectation"),
    ({"advantage": "dr_grpo"}, "aggregation 'token_mean' brings back: set rloo.aggregation: sequence_sum_norm"),
    ({"advantage": "dr_grpo", "aggregation": "sequence_mean"}, "set rloo.aggregation: sequence_sum_norm"),
    ({"advantage": "reinforce_pp", "whiten_advantages": True}, "already whitens over the whole batch"),
    ({"advantage": "ppo"}, "config key 'rloo.advantage': expected one of 'rloo', 'grpo', 'dr_grpo', 'reinforce_pp'"),
    ({"kl_in": "both"}, "config key 'rloo.kl_in': expected one of 'reward', 'loss'"),
    ({"aggregation": "sum"}, "expected one of 'token_mean', 'sequence_mean', 'sequence_sum_norm'"),
    ({"clip_eps_low": 0.0}, "config key 'rloo.clip_eps_low': expected a value > 0.0"),
    ({"clip_eps_low": 1.5}, "config key 'rloo.clip_eps_low': expected a value <= 1.0"),
    ({"clip_eps_high": -0.1}, "config key 'rloo.clip_eps_high': expected a value > 0.0"),
])
def test_nonsense_is_refused_with_the_reason(section, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"rloo": section})
    assert message in str(err.value)


def test_overrides_spell_the_options():
    cfg = config_from_dict({}, ["rloo.advantage=grpo", "rloo.kl_in=loss", "rloo.kl_estimator=k3",
                                "rloo.beta=0.04", "rloo.clip_eps_high=0.28"])
    assert (cfg.rloo.advantage, cfg.rloo.kl_in, cfg.rloo.clip_eps_high) == ("grpo", "loss", 0.28)
