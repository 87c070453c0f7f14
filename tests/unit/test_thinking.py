"""Thinking mode per stage (docs/thinking.md), on a tiny Qwen3 with Qwen3's real chat template.

The bug this guards against: with `model.enable_thinking: null` (the template default, thinking
on), SFT marked the empty `<think>\\n\\n</think>\\n\\n` block Qwen3's template writes before an
answer as part of the answer, so every example taught the model to open and close an empty
think block.
"""

from __future__ import annotations

import pytest

from tiller.chat import IGNORE, assistant_spans, encode_prompts, render_conversation, render_prompt
from tiller.data.records import PreferencePair, Prompt
from tiller.models import load_tokenizer
from tiller.preference_logprobs import encode_preferences
from tiller.recipes.reward import encode_pairs
from tiller.recipes.sft import encode_conversations

MODES = [None, True, False]
EMPTY_THINK = "<think>\n\n</think>\n\n"
QUESTION = [{"role": "user", "content": "Name a color."}]
ANSWER = "Blue is a color."
REASONED = "<think>\nThe sky is blue, so blue is a color.\n</think>\n\nBlue is a color."
PROMPT_TEXT = "<|im_start|>user\nName a color.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def tok(tiny_qwen3_thinking):
    return load_tokenizer(str(tiny_qwen3_thinking))


def learned(tok, labels: list[int]) -> str:
    """The text of the tokens that carry a loss."""
    return tok.decode([t for t in labels if t != IGNORE])


def test_the_fixture_renders_what_qwen3_renders(tok):
    """Qwen3's template, written out by hand: the prompt per mode, the empty think block before
    the last answer, no think block on earlier answers, reasoning kept on the last one."""
    assert render_prompt(tok, QUESTION) == PROMPT_TEXT
    assert render_prompt(tok, QUESTION, enable_thinking=True) == PROMPT_TEXT
    assert render_prompt(tok, QUESTION, enable_thinking=False) == PROMPT_TEXT + EMPTY_THINK
    answered = QUESTION + [{"role": "assistant", "content": ANSWER}]
    assert tok.apply_chat_template(answered, tokenize=False) == PROMPT_TEXT + EMPTY_THINK + ANSWER + "<|im_end|>\n"
    two_turns = answered + [{"role": "user", "content": "Another?"}, {"role": "assistant", "content": REASONED}]
    assert tok.apply_chat_template(two_turns, tokenize=False) == (
        PROMPT_TEXT + ANSWER + "<|im_end|>\n<|im_start|>user\nAnother?<|im_end|>\n<|im_start|>assistant\n" + REASONED
        + "<|im_end|>\n")


@pytest.mark.parametrize("mode", MODES)
def test_sft_learns_the_answer_and_never_an_empty_think_block(tok, mode):
    (example,), dropped = encode_conversations([QUESTION + [{"role": "assistant", "content": ANSWER}]], tok, 512,
                                               "drop", enable_thinking=mode)
    assert dropped == {"too_long": 0, "no_loss_tokens": 0}
    assert learned(tok, example.labels) == ANSWER + "<|im_end|>"
    # the template's empty block is still in the input, as the thinking-off prompt the model answers after
    assert EMPTY_THINK + ANSWER in tok.decode(example.input_ids)


@pytest.mark.parametrize("mode", MODES)
def test_sft_learns_the_reasoning_of_an_answer_that_has_some(tok, mode):
    (example,), _ = encode_conversations([QUESTION + [{"role": "assistant", "content": REASONED}]], tok, 512, "drop",
                                         enable_thinking=mode)
    assert learned(tok, example.labels) == REASONED + "<|im_end|>"


@pytest.mark.parametrize("mode", MODES)
def test_sft_multi_turn_spans(tok, mode):
    """An earlier answer is rendered without a think block (Qwen3 drops them): its content and end
    of turn are learned; the last answer likewise, without the template's empty block."""
    conversation = [{"role": "system", "content": "Be brief."}, *QUESTION, {"role": "assistant", "content": ANSWER},
                    {"role": "user", "content": "Another?"}, {"role": "assistant", "content": "Red."}]
    text, spans = assistant_spans(tok, conversation, mode)
    assert [text[a:b] for a, b in spans] == [ANSWER + "<|im_end|>", "Red.<|im_end|>"]


@pytest.mark.parametrize("mode", MODES)
def test_dpo_compares_the_answers_only(tok, mode):
    pair = PreferencePair(prompt=QUESTION, chosen=ANSWER, rejected="No.")
    (encoded,), dropped = encode_preferences([pair], tok, 512, "drop", enable_thinking=mode)
    assert dropped == 0
    assert learned(tok, encoded.chosen_labels) == ANSWER + "<|im_end|>"
    assert learned(tok, encoded.rejected_labels) == "No.<|im_end|>"


def test_reward_model_sees_one_format_in_every_mode(tok):
    """Training encodes with model.enable_thinking; the classifier backend scores with the
    template default: the same tokens, the template's empty block included."""
    pair = PreferencePair(prompt=QUESTION, chosen=ANSWER, rejected="No.")
    encoded = [encode_pairs([pair], tok, 512, "drop", mode)[0][0] for mode in MODES]
    assert all(e.chosen == encoded[0].chosen and e.rejected == encoded[0].rejected for e in encoded)
    _, scored = render_conversation(tok, QUESTION, ANSWER)  # what ClassifierReward.encode renders
    assert tok(scored, add_special_tokens=False)["input_ids"] == encoded[0].chosen
    assert scored == PROMPT_TEXT + EMPTY_THINK + ANSWER + "<|im_end|>\n"


@pytest.mark.parametrize("mode, ending", [(None, "assistant\n"), (True, "assistant\n"), (False, "assistant\n" + EMPTY_THINK)])
def test_rloo_and_eval_generate_after_the_modes_prompt(tok, mode, ending):
    """Thinking on: the policy answers after `assistant\\n` and writes its own reasoning; off: after
    the empty think block."""
    (encoded,), dropped = encode_prompts([Prompt(messages=QUESTION)], tok, 512, mode)
    assert dropped == 0
    assert tok.decode(encoded[1]) == render_prompt(tok, QUESTION, mode)
    assert tok.decode(encoded[1]).endswith(ending)


def test_templates_without_thinking_modes_are_unchanged(tiny_llama):
    """ChatML without enable_thinking: one generation prompt, the same spans in every mode."""
    tok = load_tokenizer(str(tiny_llama))
    conversation = QUESTION + [{"role": "assistant", "content": ANSWER}]
    for mode in MODES:
        text, spans = assistant_spans(tok, conversation, mode)
        assert [text[a:b] for a, b in spans] == [ANSWER + "<|im_end|>"]
