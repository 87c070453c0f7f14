"""The policy evaluation: exact per-position KL along the policy's answers, answers and scores
in the prompts' order whatever the batching, and identical answers scored as ties."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM

from tiller.config import RewardBackendConfig
from tiller.models import load_reward_model, load_tokenizer, render_prompt
from tiller.recipes.evaluate import _score_both, generate_answers, policy_kl
from tiller.rewards.classifier import ClassifierReward
from tiller.rollout import Sampling
from tiller.scoring import length_sorted_batches, run_in_length_batches

QUESTIONS = ["Why is the sky blue on a clear summer afternoon?", "Hi", "Name a primary color.",
             "How do I boil an egg so that the yolk stays soft?", "What is two plus two?"]


def test_length_sorted_batches_by_hand():
    assert length_sorted_batches([5, 1, 3, 2, 4], 2) == [[1, 3], [2, 4], [0]]
    assert length_sorted_batches([2, 2, 1], 8) == [[2, 0, 1]]  # equal lengths keep their order
    assert length_sorted_batches([], 4) == []
    # batches [[1, 2], [0]]; each result goes back to its index, whatever batch computed it
    calls = []
    assert run_in_length_batches([5, 1, 3], 2, lambda b: calls.append(b) or [f"{i} of {len(b)}" for i in b]) == \
        ["0 of 1", "1 of 2", "2 of 2"]
    assert calls == [[1, 2], [0]]


def test_policy_kl_is_the_exact_kl_summed_over_each_answer(tiny_llama):
    reference = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    policy = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    prompts = [[5, 6, 7], [8, 9]]
    answers = [[10, 11, 12, 13], [14]]  # different lengths: padding must not count
    kl = policy_kl(policy, reference, prompts, answers, pad_id=0, batch_size=2, device="cpu")

    expected = []
    with torch.no_grad():
        for prompt, answer in zip(prompts, answers):
            ids = torch.tensor([prompt + answer])
            log_p = torch.log_softmax(policy(ids).logits[0], -1)
            log_q = torch.log_softmax(reference(ids).logits[0], -1)
            # positions len(prompt) - 1 .. end - 1 predict the answer's tokens
            rows = slice(len(prompt) - 1, len(prompt) + len(answer) - 1)
            expected.append(float((log_p.exp() * (log_p - log_q)).sum(-1)[rows].sum()))
    torch.testing.assert_close(torch.tensor(kl), torch.tensor(expected), atol=1e-4, rtol=1e-4)
    assert all(v > 0 for v in kl)
    assert policy_kl(reference, reference, prompts, answers, 0, 2, "cpu") == [0.0, 0.0]


def test_answers_come_back_in_the_prompts_order_whatever_the_batching(tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    tokenizer = load_tokenizer(str(tiny_llama))
    prompt_ids = [tokenizer(render_prompt(tokenizer, [{"role": "user", "content": q}]),
                            add_special_tokens=False)["input_ids"] for q in QUESTIONS]
    assert len({len(p) for p in prompt_ids}) > 2  # batches of 2 are reordered by length
    greedy = Sampling(max_new_tokens=6, temperature=0.0)
    one_by_one = generate_answers(model, tokenizer, prompt_ids, greedy, 1, 0)
    assert generate_answers(model, tokenizer, prompt_ids, greedy, 2, 0) == one_by_one
    # sampled: prompt i keeps its seed (0 + i) whatever batch it lands in
    sampled = Sampling(max_new_tokens=6, temperature=1.0)
    assert generate_answers(model, tokenizer, prompt_ids, sampled, 2, 0) == \
        generate_answers(model, tokenizer, prompt_ids, sampled, 1, 0)


def test_classifier_scores_come_back_in_the_inputs_order(tmp_path, tiny_llama):
    tokenizer = load_tokenizer(str(tiny_llama))
    load_reward_model(str(tiny_llama), pad_token_id=tokenizer.pad_token_id).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    messages = [[{"role": "user", "content": q}] for q in QUESTIONS]
    answers = ["Because of Rayleigh scattering of sunlight.", "Hello!", "Red", "Boil it for six minutes.", "4"]
    alone = ClassifierReward(str(tmp_path), RewardBackendConfig(batch_size=1)).score(messages, answers)
    batched = ClassifierReward(str(tmp_path), RewardBackendConfig(batch_size=2)).score(messages, answers)
    torch.testing.assert_close(torch.tensor(batched), torch.tensor(alone), atol=1e-5, rtol=1e-5)
    assert len(set(alone)) == len(alone)  # distinct scores, so a reordering would show


class _NoisyScorer:
    """A judge whose scores carry batch noise: the same text never gets exactly the same score twice."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def score(self, messages, texts):
        self.calls.append(list(texts))
        return [len(t) + 1e-7 * len(self.calls) for t in texts]


def test_identical_answers_are_ties_and_are_scored_once():
    scorer = _NoisyScorer()
    messages = [[{"role": "user", "content": q}] for q in QUESTIONS[:3]]
    policy_scores, reference_scores = _score_both(scorer, messages, ["same", "longer answer", "x"], ["same", "short", "x"])
    assert policy_scores[0] == reference_scores[0] and policy_scores[2] == reference_scores[2]
    assert policy_scores[1] == len("longer answer") + 1e-7 and reference_scores[1] == len("short") + 2e-7
    assert scorer.calls == [["same", "longer answer", "x"], ["short"]]
    scorer = _NoisyScorer()
    assert _score_both(scorer, messages[:1], ["a"], ["a"]) == ([1 + 1e-7], [1 + 1e-7]) and len(scorer.calls) == 1
