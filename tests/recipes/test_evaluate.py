"""The policy evaluation: exact per-position KL along the policy's answers, answers and scores
in the prompts' order whatever the batching, identical answers scored as ties, and degenerate
answers counted and held against the policy in the guarded win rate."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from tests.conftest import write_prompts
from tiller import length_control, losses
from tiller.batching import length_sorted_batches, run_in_length_batches
from tiller.chat import render_prompt
from tiller.config import RewardBackendConfig
from tiller.config_loading import config_from_dict
from tiller.models import load_reward_model, load_tokenizer
from tiller.recipes import evaluate
from tiller.recipes.evaluate import _score_both, format_summary, generate_answers, policy_kl
from tiller.rewards.classifier import ClassifierReward
from tiller.rollout import Sampling

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


@pytest.mark.parametrize("moved", ["every layer", "the last layer"])
def test_policy_kl_is_the_exact_kl_summed_over_each_answer(tiny_llama, moved, capsys):
    reference = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    policy = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    torch.manual_seed(0)
    # Only the last layer moving is what LoRA on the last layers gives once merged: the layers
    # below are then run once for both models.
    moving = policy.parameters() if moved == "every layer" else policy.model.layers[-1].parameters()
    with torch.no_grad():
        for p in moving:
            p.add_(0.05 * torch.randn_like(p))
    prompts = [[5, 6, 7], [8, 9], [3, 4, 5, 6, 7, 8]]
    answers = [[10, 11, 12, 13], [14], [15, 16]]  # different lengths: padding must not count
    kl = policy_kl(policy, reference, prompts, answers, pad_id=0, batch_size=2, device="cpu")
    printed = capsys.readouterr().out
    shared = f"the first {len(policy.model.layers) - 1} layers are the same in the policy and the reference"
    assert (shared in printed and "checked equal to the full forwards" in printed) == (moved == "the last layer")

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
    assert policy_kl(reference, reference, prompts, answers, 0, 2, "cpu") == [0.0, 0.0, 0.0]


def test_policy_kl_takes_the_output_layers_chunk_by_chunk_where_it_can(tiny_llama, monkeypatch):
    """A Llama's output layer is a plain linear layer: the KL comes from the two models' last
    hidden states, their logits a chunk of tokens at a time, never the [rows, answer, vocabulary]
    logits of each (losses.token_kl is not called); with an output layer that is not plain (here
    made so), from the logits, the same values."""
    from tiller import logprobs

    reference = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    policy = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    prompts, answers = [[5, 6, 7], [8, 9], [3, 4, 5, 6, 7, 8]], [[10, 11, 12, 13], [14], [15, 16]]
    with monkeypatch.context() as patch:
        patch.setattr(losses, "token_kl", lambda *a, **k: pytest.fail("the logits path ran"))
        by_output_layer = policy_kl(policy, reference, prompts, answers, 0, 2, "cpu")
    monkeypatch.setattr(logprobs, "_plain_output_layer", lambda model: None)
    by_logits = policy_kl(policy, reference, prompts, answers, 0, 2, "cpu")
    torch.testing.assert_close(torch.tensor(by_output_layer), torch.tensor(by_logits), atol=1e-6, rtol=1e-6)


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


def test_a_prompts_answers_scored_in_one_row_score_as_each_alone(tmp_path, tiny_llama, capsys):
    """shared_prompt (the default): the answers to one prompt in one row, the prompt's tokens
    once; every score equals scoring each answer alone, padded (1e-5: float rounding), whatever
    the order, the batch size and how many answers a prompt has."""
    tokenizer = load_tokenizer(str(tiny_llama))
    torch.manual_seed(0)
    load_reward_model(str(tiny_llama), pad_token_id=tokenizer.pad_token_id).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    asked = [[{"role": "user", "content": q}] for q in QUESTIONS]
    answers = ["Because of Rayleigh scattering.", "Hello!", "Red", "Boil it for six minutes.", "4", "Blue light.",
               "Hi there", "", "Four."]
    messages = asked + [asked[0], asked[1], asked[1], asked[4]]
    alone = ClassifierReward(str(tmp_path), RewardBackendConfig(batch_size=1, shared_prompt=False)).score(messages, answers)
    for batch_size in (2, 16):
        grouped = ClassifierReward(str(tmp_path), RewardBackendConfig(batch_size=batch_size))
        scores = grouped.score(messages, answers)
        assert grouped.grouped is True
        torch.testing.assert_close(torch.tensor(scores), torch.tensor(alone), atol=1e-5, rtol=1e-5)
    assert "the answers to one prompt scored in one row, the prompt once (checked equal to padded" in capsys.readouterr().out
    assert len(set(alone)) == len(alone)


class _NoisyScorer:
    """A judge whose scores carry batch noise: the same text never gets exactly the same score twice."""

    def __init__(self):
        self.calls: list[list[str]] = []

    def score(self, messages, texts, records=None):
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


def judge_length(prompts, completions):
    """A judge that games as easily as the demo's: the longer answer wins."""
    return [float(len(c)) for c in completions]


# (policy, reference) per prompt, and the length judge's verdict
ANSWERS = [
    ("1. 1. 1. 1. 1. 1. 1. 1. 1. 1.", "Paris is the capital."),  # degenerate policy wins: a guarded loss
    ("Blue, because air scatters blue light the most.", "Blue."),  # win
    ("Four.", "Two plus two is four."),  # loss
    ("1. 2. 3. 4. 5. 6. 7. 8. 9. 10. 11.", "the the the the the the the the"),  # both degenerate: the judge's win stands
]


def test_evaluation_counts_degenerate_answers_and_guards_the_win_rate(tmp_path, tiny_llama, tiny_qwen3, monkeypatch, capsys):
    write_prompts(tmp_path, "validation", QUESTIONS[:4])
    tokenizer = load_tokenizer(str(tiny_llama))

    def fake_generate(model, tokenizer_, prompt_ids, *args, **kwargs):
        column = 0 if model.config.model_type == "llama" else 1  # the policy is the llama, the reference the qwen3
        texts = [ANSWERS[i][column] for i in range(len(prompt_ids))]
        return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts], [True] * len(texts)

    monkeypatch.setattr(evaluate, "generate_answers", fake_generate)
    cfg = config_from_dict({
        "run_dir": str(tmp_path), "model": {"name": str(tiny_llama)},
        "eval": {"policy": str(tiny_llama), "reference": str(tiny_qwen3), "num_prompts": 4, "batch_size": 4,
                 "judge": {"backend": "callable", "function": "tests.recipes.test_evaluate:judge_length"}},
    })
    summary = evaluate.run(cfg, label="toy")

    assert (summary["wins"], summary["ties"], summary["losses"], summary["win_rate"]) == (3, 0, 1, 0.75)
    assert (summary["guarded_wins"], summary["guarded_ties"], summary["guarded_losses"]) == (2, 0, 2)
    assert summary["guarded_win_rate"] == 0.5 and summary["guarded_overruled"] == 1
    assert (summary["guarded_ci_low"], summary["guarded_ci_high"]) == losses.accuracy_interval(2, 4)
    assert (summary["degenerate_policy"], summary["degenerate_reference"]) == (2, 1)
    assert json.loads((tmp_path / "eval" / "toy.json").read_text()) == summary
    rows = [json.loads(line) for line in (tmp_path / "eval" / "toy_samples.jsonl").read_text().splitlines()]
    assert [(r["policy"], r["reference"]) for r in rows] == ANSWERS
    assert [r["policy_degenerate"] for r in rows] == [True, False, False, True]
    assert [r["reference_degenerate"] for r in rows] == [False, False, False, True]
    assert rows[0]["policy_repetition"]["reasons"] == ["loop", "numbers"]
    assert rows[0]["policy_repetition"]["repeated_4gram_share"] == 1 - 1 / 7  # 10 words "1": 7 four-grams, 1 distinct
    assert rows[3]["reference_repetition"]["reasons"] == ["loop"]  # 8 words, 31 characters: too short for "run"
    out = capsys.readouterr().out
    assert "win rate vs reference   0.750" in out and "3 wins, 0 ties, 1 losses" in out
    assert "guarded win rate        0.500" in out and "1 judge verdicts overruled" in out
    assert "degenerate answers      policy 2 / reference 1" in out

    # Sanity rows: answers that say nothing, scored by the same judge on every prompt. The
    # reference's answers have 21, 5, 21 and 31 characters: the empty answer (0) loses all four,
    # the refusal (34 characters) and "You asked: <question>" (59, 13, 32, 60) win all four.
    constant = summary["constant_answers"]
    assert list(constant) == ["empty", "refusal", "restatement"]
    assert constant["refusal"]["text"] == "I'm sorry, I can't help with that." and constant["empty"]["text"] == ""
    assert (constant["empty"]["mean_score"], constant["empty"]["win_rate"]) == (0.0, 0.0)
    assert (constant["refusal"]["mean_score"], constant["refusal"]["win_rate"]) == (34.0, 1.0)
    restated = [len("You asked: " + q) for q in QUESTIONS[:4]]
    assert restated == [59, 13, 32, 60] and constant["restatement"]["mean_score"] == sum(restated) / 4
    assert constant["restatement"]["win_rate"] == 1.0
    assert (constant["empty"]["ci_low"], constant["empty"]["ci_high"]) == losses.accuracy_interval(0, 4)
    assert rows[1]["constant_scores"] == {"empty": 0.0, "refusal": 34.0, "restatement": 13.0}
    assert "constant answers        vs reference: empty 0.00 / refusal 1.00 / restatement 1.00" in out
    # The length-controlled win rate: the fit on the answers' token lengths, as saved per prompt
    expected = length_control.length_controlled_win_rate(
        [r["policy_score"] for r in rows], [r["reference_score"] for r in rows],
        [r["policy_tokens"] for r in rows], [r["reference_tokens"] for r in rows])
    assert (summary["lc_win_rate"], summary["lc_ci_low"], summary["lc_ci_high"], summary["lc_slope"],
            summary["lc_length_sd"]) == (expected["win_rate"], expected["ci_low"], expected["ci_high"],
                                         expected["slope"], expected["length_sd"])
    assert summary["lc_slope"] > 0  # this judge prefers length
    assert f"length-controlled       {summary['lc_win_rate']:.3f}" in out


def judge_words_unless_marked(prompts, completions):
    """Counts the answer's words; on a question marked [short] the shorter answer wins, on one
    marked [tie] every answer scores 0."""
    scores = []
    for prompt, completion in zip(prompts, completions):
        q = prompt[-1]["content"]
        words = len(completion.split())
        scores.append(0.0 if "[tie]" in q else -float(words) if "[short]" in q else float(words))
    return scores


def test_every_win_from_a_longer_answer_gives_a_length_controlled_rate_near_one_half(tmp_path, tiny_llama, tiny_qwen3,
                                                                                      monkeypatch, capsys):
    # 20 prompts where the policy's answer is the longer: 18 wins, 2 losses ([short] questions);
    # 5 where it is the shorter: 4 losses and 1 tie. Raw win rate (18 + 0.5) / 25 = 0.74; at +d the
    # win share is 0.9, at -d it is 0.1, so the fitted intercept is (logit 0.9 + logit 0.1) / 2 = 0.
    long_, short = "good good good good", "good good"
    questions = [f"Question {i}" + (" [short]" if i in (3, 11) else "") for i in range(20)]
    questions += [f"Question {i}" + (" [tie]" if i == 22 else "") for i in range(20, 25)]
    answers = [(long_, short)] * 20 + [(short, long_)] * 5
    write_prompts(tmp_path, "validation", questions)
    tokenizer = load_tokenizer(str(tiny_llama))

    def fake_generate(model, tokenizer_, prompt_ids, *args, **kwargs):
        column = 0 if model.config.model_type == "llama" else 1
        return [tokenizer(answers[i][column], add_special_tokens=False)["input_ids"]
                for i in range(len(prompt_ids))], [True] * len(prompt_ids)

    monkeypatch.setattr(evaluate, "generate_answers", fake_generate)
    cfg = config_from_dict({
        "run_dir": str(tmp_path), "model": {"name": str(tiny_llama)},
        "eval": {"policy": str(tiny_llama), "reference": str(tiny_qwen3), "num_prompts": 25, "batch_size": 8,
                 "judge": {"backend": "callable", "function": "tests.recipes.test_evaluate:judge_words_unless_marked"}},
    })
    summary = evaluate.run(cfg, label="lengthy")

    assert (summary["wins"], summary["ties"], summary["losses"], summary["win_rate"]) == (18, 1, 6, 0.74)
    rows = [json.loads(line) for line in (tmp_path / "eval" / "lengthy_samples.jsonl").read_text().splitlines()]
    assert {r["policy_tokens"] - r["reference_tokens"] for r in rows} == {4, -4}  # two length differences, +d and -d
    assert abs(summary["lc_win_rate"] - 0.5) < 2e-3  # 0.5 exactly without the small slope penalty
    # 5 prompts with a shorter policy answer say little about zero length difference: a wide interval
    assert summary["lc_ci_low"] < 0.5 < summary["lc_ci_high"] and summary["lc_win_rate"] < summary["ci_low"]
    assert summary["lc_slope"] > 1
    out = capsys.readouterr().out
    assert "win rate vs reference   0.740" in out and "length-controlled       0.50" in out


def test_constant_answers_and_their_scores():
    messages = [[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                 {"role": "user", "content": "What is 2+2?"}], [{"role": "system", "content": "Be brief."}]]
    assert evaluate.constant_answers(messages) == {
        "empty": ["", ""], "refusal": ["I'm sorry, I can't help with that."] * 2,
        "restatement": ["You asked: What is 2+2?", "You asked: "]}  # the last user turn; none: nothing to restate
    scorer = _NoisyScorer()
    # the reference answered the first prompt with the empty answer: the empty answer ties it, scored once
    scores = evaluate._score_constant_answers(scorer, messages, ["", "Sure."], [5.0, 6.0])
    assert scores["empty"] == [5.0, 1e-7]  # the judge's score (a length) plus the scorer's noise
    assert scores["refusal"] == [len("I'm sorry, I can't help with that.") + 1e-7] * 2
    assert scores["restatement"] == [len("You asked: What is 2+2?") + 1e-7, len("You asked: ") + 1e-7]
    assert scorer.calls == [["", "I'm sorry, I can't help with that.", "I'm sorry, I can't help with that.",
                             "You asked: What is 2+2?", "You asked: "]]


def test_format_summary_of_a_summary_written_before_the_degeneration_measures():
    old = {"label": "rloo", "n": 4, "judge": "j", "reference": "r", "win_rate": 0.5, "ci_low": 0.15, "ci_high": 0.85, "wins": 2.0,
           "ties": 0.0, "losses": 2.0, "reward_policy_mean": 0.1, "reward_reference_mean": 0.0,
           "reward_improvement": 0.1, "length_ratio": 1.0, "policy_mean_length": 5.0, "reference_mean_length": 5.0,
           "truncated_policy": 0.0, "truncated_reference": 0.0, "kl_mean": 0.2, "seconds": 3.0}
    text = format_summary(old)
    assert "2 wins, 0 ties, 2 losses" in text and "guarded" not in text and "degenerate" not in text
    assert "length-controlled" not in text and "constant answers" not in text


def test_answers_are_scored_against_reference_scores_computed_once():
    """The curve scores the reference's answers once; a model's answer that is the reference's own
    text takes the reference's score (a tie), the others are scored in one call."""
    scorer = _NoisyScorer()
    messages = [[{"role": "user", "content": q}] for q in QUESTIONS[:3]]
    scores = evaluate._score_against(scorer, messages, ["same", "longer answer", "x"], ["same", "short", "x"],
                                     [10.0, 20.0, 30.0])
    assert scores == [10.0, len("longer answer") + 1e-7, 30.0] and scorer.calls == [["longer answer"]]
    assert evaluate._score_against(scorer, messages[:1], ["a"], ["a"], [5.0]) == [5.0] and len(scorer.calls) == 1


def test_compare_by_hand():
    policy = evaluate.Answers([[1, 2], [3], [4, 5, 6]], [True, False, True], ["a b", "c", "d e f"], [2.0, 1.0, 3.0])
    reference = evaluate.Answers([[7], [8], [9]], [True, True, True], ["g", "h", "i"], [1.0, 1.0, 4.0])
    figures = evaluate.compare(policy, reference, [0.3, 0.0, 0.6])
    # a win, a tie and a loss: (1 + 0.5) / 3
    assert (figures["wins"], figures["ties"], figures["losses"], figures["win_rate"]) == (1, 1, 1, 0.5)
    assert (figures["ci_low"], figures["ci_high"]) == losses.accuracy_interval(1.5, 3)
    assert figures["reward_policy_mean"] == 2.0 and figures["reward_reference_mean"] == 2.0
    assert figures["reward_improvement"] == 0.0  # differences +1, 0, -1
    assert figures["kl_mean"] == pytest.approx(0.3) and figures["n"] == 3
    assert (figures["policy_mean_length"], figures["reference_mean_length"], figures["length_ratio"]) == (2.0, 1.0, 2.0)
    assert (figures["truncated_policy"], figures["truncated_reference"]) == (1 / 3, 0.0)
    assert figures["degenerate_policy"] == 0 and figures["guarded_win_rate"] == 0.5
    assert "optimized_rm_win_rate" not in figures  # only where both sides carry the reward model's scores
    policy.rm_scores, reference.rm_scores = [0.5, 0.5, 0.5], [0.0, 1.0, 0.5]
    figures = evaluate.compare(policy, reference, [0.3, 0.0, 0.6])
    assert (figures["optimized_rm_policy_mean"], figures["optimized_rm_reference_mean"],
            figures["optimized_rm_win_rate"]) == (0.5, 0.5, 0.5)


def test_a_judge_and_reward_model_on_one_base_give_the_figures_of_two_separate_models(tmp_path, tiny_llama, tiny_qwen3,
                                                                                       monkeypatch, capsys):
    """The flagship recipe's judge and optimized reward model are LoRA adapters of one base: the
    evaluation loads that base once and scores each answer with both, the layer below their
    adapters once for both, and each prompt's answers (reference, policy, constant answers) in
    one row with the prompt once. Every figure equals loading them as two merged models one after
    the other and scoring each answer alone (eval.judge.share_base and shared_prompt false):
    counts exactly, scores to 1e-5 (float32 rounding: adapter B·A·x against merged W + B·A, one
    row with a 4D mask against padded rows)."""
    from tests.helpers.reward_adapter import reward_adapter_folder

    write_prompts(tmp_path, "validation", QUESTIONS[:4])
    reward_adapter_folder(tmp_path / "judge" / "model", tiny_llama, last_n_layers=1, seed=3)
    reward_adapter_folder(tmp_path / "reward" / "model", tiny_llama, last_n_layers=1, seed=4)
    tokenizer = load_tokenizer(str(tiny_llama))

    def fake_generate(model, tokenizer_, prompt_ids, *args, **kwargs):
        column = 0 if model.config.model_type == "llama" else 1
        texts = [ANSWERS[i][column] for i in range(len(prompt_ids))]
        return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts], [True] * len(texts)

    monkeypatch.setattr(evaluate, "generate_answers", fake_generate)
    settings = {"run_dir": str(tmp_path), "model": {"name": str(tiny_llama)},
                "eval": {"policy": str(tiny_llama), "reference": str(tiny_qwen3), "num_prompts": 4, "batch_size": 4}}
    together = evaluate.run(config_from_dict(settings), label="together")
    out = capsys.readouterr().out
    assert "the judge and the optimized reward model: LoRA adapters of one base" in out
    assert "the first 1 layers hold no adapter: computed once per batch for all 2 scorers" in out
    assert "the answers to one prompt in one row, the prompt once" in out
    # Apart: two merged models one after the other, each answer padded alone.
    settings["eval"]["judge"] = {"share_base": False, "shared_prompt": False}
    apart = evaluate.run(config_from_dict(settings), label="apart")
    out = capsys.readouterr().out
    assert "load one after the other (eval.judge.share_base: false)" in out and "in one row" not in out

    for key in ("wins", "ties", "losses", "guarded_wins", "guarded_losses", "degenerate_policy"):
        assert together[key] == apart[key], key
    for key in ("reward_policy_mean", "reward_reference_mean", "reward_improvement", "optimized_rm_policy_mean",
                "optimized_rm_reference_mean", "optimized_rm_win_rate", "win_rate"):
        assert together[key] == pytest.approx(apart[key], abs=1e-5), key
    for kind in ("empty", "refusal", "restatement"):
        assert together["constant_answers"][kind]["mean_score"] == pytest.approx(
            apart["constant_answers"][kind]["mean_score"], abs=1e-5)
    # Two different models: the judge's view and the optimized reward model's are not one number.
    assert abs(apart["reward_policy_mean"] - apart["optimized_rm_policy_mean"]) > 1e-2
    rows = [json.loads(line) for line in (tmp_path / "eval" / "together_samples.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and len({r["policy_score"] for r in rows}) > 1
