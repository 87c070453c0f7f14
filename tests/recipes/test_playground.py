"""The playground's logic without a browser (`tiller.playground`): which stages, reference and
held-out prompts a run folder gives, two answers streamed at once, multi-turn transcripts and
the scores of each answer, on a tiny run folder (tests/helpers/playground_run.py)."""

from __future__ import annotations

import json
import sys

import pytest

from tests.helpers.playground_run import HELD_OUT_QUESTIONS, build_tiny_run
from tiller import cli
from tiller.chat import render_prompt
from tiller.config import RewardBackendConfig
from tiller.playground import EXAMPLE_COUNT, Playground, format_scores, stream_side_by_side
from tiller.rewards.classifier import ClassifierReward
from tiller.rollout import Sampling

pytestmark = pytest.mark.usefixtures("one_thread")

MAX_NEW_TOKENS = 10
GREEDY = Sampling(max_new_tokens=MAX_NEW_TOKENS, temperature=0.0)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return build_tiny_run(tmp_path_factory.mktemp("playground"))


@pytest.fixture(scope="module")
def playground(tiny_run):
    return Playground(tiny_run[0])


def greedy_tokens(model, tokenizer, messages: list[dict]) -> list[int]:
    """The answer's tokens from a plain (not streamed) greedy generate."""
    ids = tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False, return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return out[0, ids.shape[1]:].tolist()


def test_the_run_folder_gives_its_stages_the_reference_and_held_out_prompts(tiny_run, playground):
    run_dir, reference = tiny_run
    assert playground.stages == ["rloo"]
    assert playground.policy_path("rloo") == run_dir / "rloo" / "model"
    name, _, why = playground.reference("rloo")
    assert name == str(reference) and "started_from.json" in why  # what the policy started from
    # The evaluation split's prompts, in their order, as many as the page shows.
    assert playground.examples("rloo") == HELD_OUT_QUESTIONS[:EXAMPLE_COUNT]


def test_a_multi_turn_held_out_prompt_is_not_offered(tmp_path, tiny_run, playground):
    run_dir, _ = tiny_run
    folder = tmp_path / "run"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "DONE").write_text("done\n")
    rows = [{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                          {"role": "user", "content": "And then?"}]},
            {"messages": [{"role": "user", "content": HELD_OUT_QUESTIONS[0]}]}]
    (folder / "data" / "validation.prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    from tiller.playground import held_out_examples, stage_config

    assert held_out_examples(stage_config(folder, "rloo"), playground.tokenizer("rloo")) == [HELD_OUT_QUESTIONS[0]]
    # No data stage: no examples, no error (the page works without them).
    assert held_out_examples(stage_config(tmp_path / "elsewhere", "rloo"), playground.tokenizer("rloo")) == []


def test_a_stage_the_run_lacks_is_a_message_naming_the_ones_it_has(tmp_path, playground):
    with pytest.raises(FileNotFoundError, match=r"no trained dpo policy .* it has: rloo"):
        playground.models("dpo")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no trained policy"):
        Playground(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="run folder not found"):
        Playground(tmp_path / "missing")


def test_two_answers_stream_token_by_token_and_end_as_plain_greedy_answers(playground):
    reference, policy = playground.models("rloo")
    tokenizer = playground.tokenizer("rloo")
    asked = [{"role": "user", "content": HELD_OUT_QUESTIONS[0]}]
    updates = list(stream_side_by_side((reference, policy), tokenizer, (asked, asked), GREEDY))
    expected = [greedy_tokens(model, tokenizer, asked) for model in (reference, policy)]
    # The last update holds both complete answers, the same as without streaming ...
    assert updates[-1] == tuple(tokenizer.decode(t, skip_special_tokens=True) for t in expected)
    assert updates[-1][0] != updates[-1][1] and all(len(t) <= MAX_NEW_TOKENS for t in expected)
    # ... and before it came one update per generated token of either model.
    assert len(updates) == len(expected[0]) + len(expected[1]) + 1


def test_a_chat_keeps_each_models_transcript_and_scores_each_answer(tiny_run, playground):
    run_dir, _ = tiny_run
    reference, policy = playground.models("rloo")
    tokenizer = playground.tokenizer("rloo")
    judge = ClassifierReward(str(run_dir / "judge" / "model"), RewardBackendConfig())
    reward = ClassifierReward(str(run_dir / "reward" / "model"), RewardBackendConfig())
    reference_transcript, policy_transcript = [], []
    for question in HELD_OUT_QUESTIONS[:2]:
        asked = [reference_transcript + [{"role": "user", "content": question}],
                 policy_transcript + [{"role": "user", "content": question}]]
        turns = list(playground.turn("rloo", reference_transcript, policy_transcript, question, GREEDY))
        assert all(t.reference_scores is None and t.policy_scores is None for t in turns[:-1])  # scored once complete
        done = turns[-1]
        # Each model answered its own transcript (the second turn includes its own first answer).
        for model, messages, answer in ((reference, asked[0], done.reference), (policy, asked[1], done.policy)):
            assert answer == tokenizer.decode(greedy_tokens(model, tokenizer, messages), skip_special_tokens=True)
        assert reference_transcript == asked[0] + [{"role": "assistant", "content": done.reference}]
        assert policy_transcript == asked[1] + [{"role": "assistant", "content": done.policy}]
        # The judge's and the reward model's scores of each answer to its own conversation.
        for messages, answer, scores in ((asked[0], done.reference, done.reference_scores),
                                         (asked[1], done.policy, done.policy_scores)):
            assert scores["judge"] == pytest.approx(judge.score([messages], [answer])[0], abs=1e-6)
            assert scores["reward model"] == pytest.approx(reward.score([messages], [answer])[0], abs=1e-6)
    assert [m["role"] for m in policy_transcript] == ["user", "assistant"] * 2
    assert reference_transcript[1] != policy_transcript[1]


def test_a_judge_and_reward_model_on_one_base_load_it_once_and_score_as_apart(tmp_path, capsys):
    """A run whose judge and reward model are LoRA adapters of one base (as the demo saves them):
    the playground loads that base once for both and scores each answer as each model alone does
    (1e-5), and says so; with full models each loads on its own."""
    run_dir, _ = build_tiny_run(tmp_path, adapters=True)
    playground = Playground(run_dir)
    playground.load_scorers()  # what `tiller playground` does before serving
    assert playground._scorers == {}  # neither model was loaded on its own as well
    messages = [{"role": "user", "content": HELD_OUT_QUESTIONS[0]}]
    done = list(playground.turn("rloo", [], [], HELD_OUT_QUESTIONS[0], GREEDY))[-1]
    together = playground.scorers_on_one_base()
    assert together is not None and "LoRA adapters of one base, loaded once" in capsys.readouterr().out
    judge_head, reward_head = (backend.scorer for backend in together.backends)
    assert judge_head.policy is reward_head.policy  # one model object: one copy of the base weights
    for label, folder in (("judge", "judge"), ("reward model", "reward")):
        alone = ClassifierReward(str(run_dir / folder / "model"), RewardBackendConfig())
        for answer, scores in ((done.reference, done.reference_scores), (done.policy, done.policy_scores)):
            assert scores[label] == pytest.approx(alone.score([messages], [answer])[0], abs=1e-5)
    full_run, _ = build_tiny_run(tmp_path / "full")
    assert Playground(full_run).scorers_on_one_base() is None
    assert "load separately" in capsys.readouterr().out


def test_a_run_without_judge_or_reward_model_says_so(tmp_path):
    run_dir, _ = build_tiny_run(tmp_path, with_scorers=False)
    done = list(Playground(run_dir).turn("rloo", [], [], HELD_OUT_QUESTIONS[0], GREEDY))[-1]
    assert done.policy_scores == done.reference_scores == {"judge": None, "reward model": None}
    assert format_scores(done.policy_scores, done.reference_scores) == "no judge in this run · no reward model in this run"


def test_format_scores_by_hand():
    ours, theirs = {"judge": 1.5, "reward model": -0.25}, {"judge": 1.0, "reward model": None}
    assert format_scores(ours, theirs) == "judge +1.500 (+0.500 vs reference) · reward model -0.250"
    assert format_scores(theirs) == "judge +1.000 · no reward model in this run"
    assert format_scores(None) == "scoring when both answers are complete"


def test_the_command_line_errors_are_one_line(tmp_path, capsys, monkeypatch):
    assert cli.main(["playground", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip() == f"tiller playground: error: run folder not found: {tmp_path / 'missing'}"
    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` raises ImportError
    assert cli.main(["playground", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'tiller[playground]'" in err
