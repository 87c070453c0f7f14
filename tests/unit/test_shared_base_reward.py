"""A LoRA reward model scored on the policy's own base (tiller.rewards.shared_base): the same
scores as the separate merged reward model, the policy untouched, and the fallbacks named."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers.reward_adapter import reward_adapter_folder
from tiller.config import LoraConfig, ModelConfig, RewardBackendConfig, RlooConfig
from tiller.models import apply_lora, load_policy, load_reward_model, load_tokenizer, save_model
from tiller.rewards.classifier import ClassifierReward
from tiller.rewards.shared_base import (ScoresOnOneBase, active_adapter, attach_reward_adapter,
                                       load_adapters_on_one_base, why_not_one_base, why_not_shared)
from tiller.rl_rollout import make_reward_backends

PROMPTS = [[{"role": "user", "content": "What boils at one hundred degrees?"}],
           [{"role": "user", "content": "Name a fox."}],
           [{"role": "user", "content": "hi"}]]
ANSWERS = ["Water at sea level.", "The quick brown fox jumps over the lazy dog, twice.", ""]


def _reward_adapter(tmp_path, base, last_n_layers=1):
    """A 'trained' reward adapter folder on `base`: random LoRA B and score head, saved unmerged."""
    return reward_adapter_folder(tmp_path / "reward", base, last_n_layers)


def _policy(base, seed=1):
    torch.manual_seed(seed)
    policy, _ = load_policy(str(base), ModelConfig(), LoraConfig(r=4, alpha=8, dropout=0.0, last_n_layers=1))
    with torch.no_grad():
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.3)  # a policy that has moved: its adapter is not the reward's
    return policy


def test_shared_base_scores_equal_the_separate_merged_reward_model(tmp_path, tiny_llama):
    """Tolerance 1e-5 in float32: the adapter adds B·A·x to each targeted layer where the merged
    model holds W + B·A; the two differ by rounding only."""
    path = _reward_adapter(tmp_path, tiny_llama)
    cfg = RewardBackendConfig(batch_size=2)
    separate = ClassifierReward(str(path), cfg).score(PROMPTS, ANSWERS)
    policy = _policy(tiny_llama)
    shared = ClassifierReward(str(path), cfg, scorer=attach_reward_adapter(policy, path)).score(PROMPTS, ANSWERS)
    assert max(abs(a - b) for a, b in zip(shared, separate)) < 1e-5
    assert max(separate) - min(separate) > 0.1  # the scores differ between answers: a real comparison


def test_attaching_and_scoring_leave_the_policy_as_it_was(tmp_path, tiny_llama):
    path = _reward_adapter(tmp_path, tiny_llama)
    policy = _policy(tiny_llama).train()
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.no_grad():
        before = policy(input_ids=ids).logits
    trainable_before = {n for n, p in policy.named_parameters() if p.requires_grad}
    reward = ClassifierReward(str(path), RewardBackendConfig(), scorer=attach_reward_adapter(policy, path))
    reward.score(PROMPTS, ANSWERS)
    assert {n for n, p in policy.named_parameters() if p.requires_grad} == trainable_before
    assert not any(".reward." in n for n in trainable_before)
    assert policy.active_adapter == "default" and policy.training
    with torch.no_grad():
        torch.testing.assert_close(policy(input_ids=ids).logits, before, rtol=0, atol=0)
        with active_adapter(policy, "reward"):  # the reward adapter does change the base's output
            assert (policy(input_ids=ids).logits - before).abs().max() > 1e-3
    reward.close()  # the policy is saved without the reward adapter
    saved = save_model(policy, load_tokenizer(str(tiny_llama)), tmp_path / "policy", merge_lora=False)
    assert "reward" not in policy.peft_config
    assert not any("reward" in k for k in load_file(str(saved / "adapter_model.safetensors")))
    assert sorted(p.name for p in saved.iterdir() if p.is_dir()) == []


def test_why_not_shared_names_each_fallback(tmp_path, tiny_llama, tiny_qwen3):
    adapter = _reward_adapter(tmp_path, tiny_llama)
    policy = _policy(tiny_llama)
    assert why_not_shared(adapter, policy, str(tiny_llama), sharded=False) is None
    assert "FSDP2 / ZeRO-3" in why_not_shared(adapter, policy, str(tiny_llama), sharded=True)
    assert "not the policy's starting weights" in why_not_shared(adapter, policy, str(tiny_qwen3), sharded=False)
    full_ft, _ = load_policy(str(tiny_llama), ModelConfig(), None)
    assert "fully fine-tuned" in why_not_shared(adapter, full_ft, str(tiny_llama), sharded=False)
    merged = save_model(apply_lora(load_reward_model(str(tiny_llama), pad_token_id=0), LoraConfig(r=4, alpha=8),
                                   "SEQ_CLS"), load_tokenizer(str(tiny_llama)), tmp_path / "merged", merge_lora=True)
    assert "not a LoRA adapter" in why_not_shared(merged, policy, str(tiny_llama), sharded=False)


def test_make_reward_backends_shares_the_base_and_says_so(tmp_path, tiny_llama):
    """The RL recipes' entry point: shared by default, separate with share_base false, each
    choice printed; the mixed form gives each classifier its own adapter."""
    path = _reward_adapter(tmp_path, tiny_llama)
    lines = []
    section = RlooConfig(reward=RewardBackendConfig(path=str(path)))
    policy = _policy(tiny_llama)
    (_, _, shared), = make_reward_backends(section, tmp_path, "cpu", policy=policy, policy_start=str(tiny_llama),
                                           log=lines.append)[0]
    assert "on the policy's own base" in lines[-1] and "reward_0" in policy.peft_config
    section.reward.share_base = False
    (_, _, separate), = make_reward_backends(section, tmp_path, "cpu", policy=policy, policy_start=str(tiny_llama),
                                             log=lines.append)[0]
    assert "separate model (share_base: false)" in lines[-1]
    a, b = shared.score(PROMPTS, ANSWERS), separate.score(PROMPTS, ANSWERS)
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-5
    shared.close()
    assert "reward_0" not in policy.peft_config


def test_an_adapter_for_other_layers_fits_and_a_foreign_one_is_refused(tmp_path, tiny_llama):
    """The reward adapter may cover other layers than the policy's (here all of them); one
    trained on a base of another width does not fit (why_not_shared refuses it first in the
    recipes: its base is not the policy's)."""
    from tiller.tiny import build_tiny_model

    path = _reward_adapter(tmp_path, tiny_llama, last_n_layers=None)
    cfg = RewardBackendConfig()
    separate = ClassifierReward(str(path), cfg).score(PROMPTS, ANSWERS)
    shared = ClassifierReward(str(path), cfg, scorer=attach_reward_adapter(_policy(tiny_llama), path)).score(PROMPTS, ANSWERS)
    assert max(abs(a - b) for a, b in zip(shared, separate)) < 1e-5
    foreign = _reward_adapter(tmp_path / "w", build_tiny_model(tmp_path / "wide", hidden_size=32))
    with pytest.raises((ValueError, RuntimeError)):
        attach_reward_adapter(_policy(tiny_llama), foreign)


# ---- the evaluation's judge and optimized reward model: two adapters of one base ----------------


def test_two_reward_adapters_on_one_base_score_as_their_separate_merged_models(tmp_path, tiny_llama, capsys):
    """Both adapters on the last of 2 layers: the first layer runs once per batch for both, checked
    against their own full passes on the first batch. Tolerance 1e-5 in float32 against the
    separately loaded merged models (adapter B·A·x against merged W + B·A: rounding only)."""
    judge_path = reward_adapter_folder(tmp_path / "judge", tiny_llama, last_n_layers=1, seed=0)
    rm_path = reward_adapter_folder(tmp_path / "rm", tiny_llama, last_n_layers=1, seed=1)
    assert why_not_one_base([judge_path, rm_path]) is None
    cfg = RewardBackendConfig(batch_size=2)
    separate = [ClassifierReward(str(p), cfg).score(PROMPTS, ANSWERS) for p in (judge_path, rm_path)]
    judge_head, rm_head = load_adapters_on_one_base([judge_path, rm_path])
    assert judge_head.policy is rm_head.policy  # one copy of the base
    together = ScoresOnOneBase([ClassifierReward(str(judge_path), cfg, scorer=judge_head),
                                ClassifierReward(str(rm_path), cfg, scorer=rm_head)])
    assert together.prefix is not None and together.prefix.layers == 1
    scores = together.score(PROMPTS, ANSWERS)
    for k in (0, 1):
        assert max(abs(row[k] - s) for row, s in zip(scores, separate[k])) < 1e-5
    assert max(abs(a - b) for a, b in zip(*separate)) > 0.1  # two different reward models: a real comparison
    assert together.prefix is not None and together.grouped and together.own_rows == 0
    out = capsys.readouterr().out
    assert "the first 1 layers hold no adapter: computed once per batch for all 2 scorers" in out
    assert "the answers to one prompt in one row, the prompt once (checked equal to their own full passes" in out
    # Several answers to one prompt share its row (and the frozen layer's pass over it).
    prompts, answers = PROMPTS + PROMPTS[:2], ANSWERS + ["Steam does not.", "A red one."]
    alone = [ClassifierReward(str(p), RewardBackendConfig(shared_prompt=False)).score(prompts, answers)
             for p in (judge_path, rm_path)]
    for k, row_scores in enumerate(zip(*together.score(prompts, answers))):
        assert max(abs(a - b) for a, b in zip(row_scores, alone[k])) < 1e-5
    assert not any(p.requires_grad for p in judge_head.policy.parameters())


def test_answers_one_scorer_renders_differently_get_each_scorers_own_pass(tmp_path, tiny_llama):
    """The optimized reward model here keeps only the last 32 tokens (max_length): the two longer
    answers render to other ids than the judge's, and score as each model does alone."""
    judge_path = reward_adapter_folder(tmp_path / "judge", tiny_llama, last_n_layers=1, seed=0)
    rm_path = reward_adapter_folder(tmp_path / "rm", tiny_llama, last_n_layers=1, seed=1)
    judge_cfg, rm_cfg = RewardBackendConfig(batch_size=2), RewardBackendConfig(batch_size=2, max_length=32)
    lengths = [len(ClassifierReward(str(judge_path), judge_cfg).encode(p, a)) for p, a in zip(PROMPTS, ANSWERS)]
    assert 1 <= sum(n > 32 for n in lengths) < len(lengths)  # some rows shared, some not
    separate = [ClassifierReward(str(judge_path), judge_cfg).score(PROMPTS, ANSWERS),
                ClassifierReward(str(rm_path), rm_cfg).score(PROMPTS, ANSWERS)]
    heads = load_adapters_on_one_base([judge_path, rm_path])
    together = ScoresOnOneBase([ClassifierReward(str(judge_path), judge_cfg, scorer=heads[0]),
                                ClassifierReward(str(rm_path), rm_cfg, scorer=heads[1])])
    scores = together.score(PROMPTS, ANSWERS)
    assert together.own_rows == sum(n > 32 for n in lengths)
    for k in (0, 1):
        assert max(abs(row[k] - s) for row, s in zip(scores, separate[k])) < 1e-5


def test_why_not_one_base_names_each_fallback(tmp_path, tiny_llama, tiny_qwen3):
    on_llama = reward_adapter_folder(tmp_path / "a", tiny_llama)
    on_qwen = reward_adapter_folder(tmp_path / "b", tiny_qwen3)
    assert "different bases" in why_not_one_base([on_llama, on_qwen])
    merged = save_model(apply_lora(load_reward_model(str(tiny_llama), pad_token_id=0), LoraConfig(r=4, alpha=8),
                                   "SEQ_CLS"), load_tokenizer(str(tiny_llama)), tmp_path / "merged", merge_lora=True)
    assert f"{merged} holds a full (or merged) model" in why_not_one_base([on_llama, merged])
