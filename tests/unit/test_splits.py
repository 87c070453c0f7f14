"""The reward / judge halves: split by prompt, so no prompt is in both, and the same every time."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tiller.data.records import PreferencePair, Prompt
from tiller.data.splits import prompt_half, prompt_key, subset


def pairs_with_repeated_prompts() -> list[PreferencePair]:
    """12 prompts, each answered 3 times, the repeats spread over the whole file (as in
    HelpSteer3, where one context can carry several answer pairs)."""
    return [PreferencePair(prompt=[{"role": "user", "content": f"question {q}"}], chosen=f"good {r}", rejected=f"bad {r}",
                           source_row=r * 12 + q)
            for r in range(3) for q in range(12)]


def prompts_of(items) -> set[str]:
    return {prompt_key(p.prompt) for p in items}


def test_no_prompt_is_in_both_halves_and_every_row_is_in_one():
    pairs = pairs_with_repeated_prompts()
    first, second = subset(pairs, "first_half"), subset(pairs, "second_half")
    assert prompts_of(first).isdisjoint(prompts_of(second))
    assert len(first) + len(second) == len(pairs) == 36
    # every prompt keeps all 3 of its rows on its side, in the file's order
    assert len(first) % 3 == 0 and first == [p for p in pairs if p in first]
    assert len(prompts_of(first)) + len(prompts_of(second)) == 12
    assert subset(pairs, "all") is pairs


def test_halves_are_deterministic_and_independent_of_order_and_of_other_rows():
    pairs = pairs_with_repeated_prompts()
    first = prompts_of(subset(pairs, "first_half"))
    shuffled = list(pairs)
    random.Random(7).shuffle(shuffled)
    assert prompts_of(subset(shuffled, "first_half")) == first
    # dropping rows moves no other prompt across (a split by position would shift them all)
    assert prompts_of(subset(shuffled[:10], "first_half")) == first & prompts_of(shuffled[:10])


def test_the_half_is_the_parity_of_the_sha256_of_the_messages_json():
    hi = [{"role": "user", "content": "hi"}]
    assert prompt_key(hi) == '[{"content":"hi","role":"user"}]'  # sorted keys, no spaces
    # sha256 of that text = 4e79...9237 (`printf '%s' '[{"content":"hi","role":"user"}]' | sha256sum`):
    # its last byte 0x37 = 55 is odd -> second half
    assert prompt_half(hi) == "second_half"
    # a pair and an RL prompt with the same messages fall on the same side
    pair = PreferencePair(prompt=hi, chosen="a", rejected="b")
    assert subset([pair], "second_half") == [pair] and subset([Prompt(messages=hi)], "second_half") == [Prompt(messages=hi)]
    assert subset([pair], "first_half") == []


def test_unknown_subset_and_item_are_errors():
    with pytest.raises(ValueError, match="unknown subset 'third_half'"):
        subset([], "third_half")
    with pytest.raises(TypeError, match="cannot split a dict"):
        subset([{"prompt": []}], "first_half")


def test_policy_recipes_do_not_import_the_reward_recipe():
    code = "import sys, tiller.recipes.rloo, tiller.recipes.dpo; print('tiller.recipes.reward' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr
