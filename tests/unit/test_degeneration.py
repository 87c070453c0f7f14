"""Degeneration measures and rule, computed by hand; the demo's kind of runs are flagged,
ordinary answers (lists, code, tables, short answers) are not; the guarded win rate."""

from __future__ import annotations

import zlib

import pytest

from tiller import losses
from tiller.degeneration import (compression_ratio, degenerate_reasons, distinct_n, guarded_win_rate, longest_run,
                                 measure, repeated_ngram_share, words)


def test_words_are_runs_of_letters_and_digits_lowercased():
    assert words("1.1.1 my_var, Paris! x2 é") == ["1", "1", "1", "my", "var", "paris", "x2", "é"]
    assert words("") == [] and words(" .,!? ") == []


def test_distinct_n_and_repeated_ngram_share_by_hand():
    abab = ["a", "b", "a", "b"]
    assert distinct_n(abab, 1) == 2 / 4
    assert distinct_n(abab, 2) == 2 / 3  # ab, ba, ab
    assert distinct_n(abab, 5) == 1.0  # no 5-gram
    assert repeated_ngram_share(abab + ["a"], 2) == 1 - 2 / 4  # ab, ba, ab, ba: the last two repeat
    assert repeated_ngram_share(["a", "b", "c"], 4) == 0.0  # no 4-gram
    assert repeated_ngram_share(list("abcde"), 1) == 0.0


def test_compression_ratio_is_compressed_over_utf8_bytes():
    assert compression_ratio("") == 1.0
    # "é" is two UTF-8 bytes; a zlib stream is 2 header bytes + deflate data + 4 checksum bytes
    assert compression_ratio("é") == len(zlib.compress("é".encode(), 9)) / 2 > 1.0
    loop, prose = "1. " * 100, ("The sky looks blue because air scatters the short wavelengths of sunlight more "
                                "strongly than long ones; at sunset the light crosses more air and turns red.")
    assert compression_ratio(loop) < 0.1 < 0.5 < compression_ratio(prose)


def test_longest_run_by_hand():
    assert longest_run("abcabcab") == (8, "abc")  # 2 whole copies and a partial third
    assert longest_run("xaab") == (2, "a")
    assert longest_run("abab") == (4, "ab")
    assert longest_run("aba") == (0, "")  # 1.5 copies of "ab": not two whole ones
    assert longest_run("abcd") == (0, "") and longest_run("") == (0, "")
    assert longest_run("aaaa") == (4, "a")  # "aa" twice is as long: the shorter unit wins
    # text[2:12] = " 1. 1. 1. ": every character equals the one 3 before it; "2" breaks it
    assert longest_run("ok 1. 1. 1. 2.") == (10, " 1.")
    assert longest_run("x" + "abcdefghij" * 4, max_unit=9) == (0, "")
    assert longest_run("x" + "abcdefghij" * 4, max_unit=10) == (40, "abcdefghij")


def test_measures_of_the_demo_runs_by_hand():
    ones = measure("1. 1. 1. 1. 1. 1. 1. 1.")  # 23 characters, 8 words "1"
    assert (ones["words"], ones["letter_words"], ones["chars"]) == (8, 0, 23)
    assert ones["distinct_1"] == 1 / 8 and ones["distinct_2"] == 1 / 7
    assert ones["repeated_4gram_share"] == 1 - 1 / 5  # 5 four-grams, all "1 1 1 1"
    assert (ones["longest_run_chars"], ones["longest_run_unit"], ones["longest_run_share"]) == (23, "1. ", 1.0)
    assert ones["reasons"] == ["loop", "numbers"] and ones["degenerate"]  # too short for "run" (< 32 characters)

    dots = measure("1.1.1.1.1.1.1.1.1.1")  # 19 characters, 10 words "1"
    assert dots["words"] == 10 and dots["repeated_4gram_share"] == 1 - 1 / 7
    assert (dots["longest_run_chars"], dots["longest_run_unit"]) == (19, "1.")
    assert dots["reasons"] == ["loop", "numbers"]

    counter = measure("1. 1. 1. 2. 3. 4. 5. 6. 7.")  # 26 characters
    assert (counter["words"], counter["letter_words"]) == (9, 0)
    assert counter["distinct_1"] == 7 / 9 and counter["distinct_2"] == 7 / 8  # (1, 1) twice
    assert counter["repeated_4gram_share"] == 0.0
    assert (counter["longest_run_chars"], counter["longest_run_unit"]) == (9, "1. ")
    assert counter["longest_run_share"] == 9 / 26
    assert counter["reasons"] == ["numbers"]

    the = measure(" ".join(["the"] * 12))  # 47 characters
    assert the["repeated_4gram_share"] == 1 - 1 / 9 and the["letter_words"] == 12
    assert (the["longest_run_chars"], the["longest_run_unit"], the["longest_run_share"]) == (47, "the ", 1.0)
    assert the["reasons"] == ["loop", "run"]

    bangs = measure("!" * 40)
    assert bangs["words"] == 0 and bangs["distinct_1"] == 1.0 and bangs["repeated_4gram_share"] == 0.0
    assert bangs["reasons"] == ["run"]

    empty = measure("")
    assert empty["reasons"] == [] and not empty["degenerate"] and empty["longest_run_share"] == 0.0


def _m(words=0, letter_words=0, rep4=0.0, chars=0, run_share=0.0) -> dict:
    return {"words": words, "letter_words": letter_words, "repeated_4gram_share": rep4, "chars": chars,
            "longest_run_share": run_share}


def test_the_rule_at_its_thresholds():
    assert degenerate_reasons(_m(words=8, letter_words=8, rep4=0.5)) == ["loop"]
    assert degenerate_reasons(_m(words=8, letter_words=8, rep4=0.49)) == []
    assert degenerate_reasons(_m(words=7, letter_words=0, rep4=1.0)) == []  # short answers are never flagged
    assert degenerate_reasons(_m(words=10, letter_words=1)) == ["numbers"]  # one word in ten has a letter
    assert degenerate_reasons(_m(words=10, letter_words=2)) == []
    assert degenerate_reasons(_m(words=20, letter_words=20, chars=32, run_share=0.5)) == ["run"]
    assert degenerate_reasons(_m(words=20, letter_words=20, chars=32, run_share=0.49)) == []
    assert degenerate_reasons(_m(chars=31, run_share=1.0)) == []
    assert degenerate_reasons(_m(words=8, rep4=1.0, chars=40, run_share=1.0)) == ["loop", "numbers", "run"]


DEGENERATE = {
    "ones": "1. 1. 1. 1. 1. 1. 1. 1.",
    "ones, long": "1. " * 60,
    "dots": "1.1.1.1.1.1.1.1.1.1",
    "dots, long": "1." * 100,
    "counter": "1. 1. 1. 2. 3. 4. 5. 6. 7.",
    "counter, long": "1. 1. 1. " + " ".join(f"{i}." for i in range(2, 41)),
    "counter after a word": "Sure! 1. 1. 1. " + " ".join(f"{i}." for i in range(2, 30)),
    "the the": " ".join(["the"] * 12),
    "a sentence in a loop": "I'm sorry, but I can't help with that. " * 5,
    "one character": "!" * 40,
    "no spaces": "好的" * 30,
}

ORDINARY = {
    "numbered list": "1. Preheat the oven to 180 C.\n2. Mix flour and sugar.\n3. Add two eggs and the butter, "
                     "then stir.\n4. Bake for 25 minutes.",
    "short": "Paris.",
    "a number": "4",
    "short repetition": "No, no, no.",
    "function": "def total(xs):\n    result = 0\n    for x in xs:\n        if x > 0:\n            result += x\n"
                "    return result\n",
    "for loop": "```python\nfor i in range(10):\n    print(i)\n    print(i * i)\n```",
    "markdown table": "| Name  | Age | City   |\n|-------|-----|--------|\n| Alice | 30  | Paris  |\n"
                      "| Bob   | 25  | London |\n| Carol | 41  | Rome   |",
    "json": '[\n  {"name": "Alice", "age": 30},\n  {"name": "Bob", "age": 25},\n  {"name": "Carol", "age": 41}\n]',
    "html": "<ul>\n  <li>Apples</li>\n  <li>Pears</li>\n  <li>Plums</li>\n  <li>Grapes</li>\n</ul>",
    "sql": "SELECT name, age FROM users WHERE age > 30 ORDER BY age DESC;",
    "bullets": "**Pros:**\n- Cheap\n- Fast\n\n**Cons:**\n- Loud\n- Heavy\n\n**Verdict:** buy it if you need speed.",
    "prose": "The sky looks blue because air molecules scatter short wavelengths of sunlight more strongly than "
             "long ones. This is called Rayleigh scattering; at sunset the light travels through more air, so the "
             "blue is scattered away and the sky turns red and orange.",
    "numbers in a sentence": "The first ten primes are 2, 3, 5, 7, 11, 13, 17, 19, 23 and 29.",
    "a refrain": "Row, row, row your boat, gently down the stream. Merrily, merrily, merrily, merrily, life is but "
                 "a dream.",
    "empty": "",
}


@pytest.mark.parametrize("name", sorted(DEGENERATE))
def test_the_demos_kind_of_runs_are_flagged(name):
    assert measure(DEGENERATE[name])["degenerate"], name


@pytest.mark.parametrize("name", sorted(ORDINARY))
def test_ordinary_answers_lists_code_and_tables_are_not_flagged(name):
    m = measure(ORDINARY[name])
    assert not m["degenerate"], (name, m)


def test_documented_limits_bare_numbers_and_a_list_of_zeros_are_flagged():
    """The docstring says so: without the prompt they look like a counter or a loop."""
    assert measure("2, 3, 5, 7, 11, 13, 17, 19, 23, 29")["reasons"] == ["numbers"]
    assert measure("12 * 3 = 36, 36 + 4 = 40, 40 / 2 = 20")["reasons"] == ["numbers"]
    assert measure("x = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]")["reasons"] == ["loop", "numbers", "run"]


def test_guarded_win_rate_by_hand():
    policy, reference = [2.0, 1.0, 0.0, 5.0], [1.0, 1.0, 1.0, 0.0]
    clean = [False] * 4
    # the judge: win, tie, loss, win -> (2 + 0.5) / 4
    assert guarded_win_rate(policy, reference, clean, clean) == {**losses.win_rate(policy, reference), "overruled": 0.0}
    assert losses.win_rate(policy, reference)["win_rate"] == 0.625
    # the last policy answer is degenerate, its reference is not: the judge's win becomes a loss
    g = guarded_win_rate(policy, reference, [False, False, False, True], clean)
    assert (g["wins"], g["ties"], g["losses"], g["overruled"]) == (1.0, 1.0, 2.0, 1.0)
    assert g["win_rate"] == 1.5 / 4
    # Wilson, p = 0.375, n = 4, z = 1.96: center 0.85520 / 1.9604 = 0.43624, half 0.67505 / 1.9604 = 0.34434
    assert g["ci_low"] == pytest.approx(0.0919, abs=1e-4) and g["ci_high"] == pytest.approx(0.7806, abs=1e-4)
    assert (g["ci_low"], g["ci_high"]) == losses.accuracy_interval(1.5, 4)
    # a degenerate tie is overruled too; a judge's loss stays a loss and is not counted as overruled
    g = guarded_win_rate(policy, reference, [False, True, True, False], clean)
    assert (g["wins"], g["ties"], g["losses"], g["overruled"]) == (2.0, 0.0, 2.0, 1.0)
    # both degenerate: the judge decides; a degenerate reference alone does not make a win
    g = guarded_win_rate(policy, reference, [False, False, False, True], [False, False, True, True])
    assert (g["wins"], g["ties"], g["losses"], g["overruled"]) == (2.0, 1.0, 1.0, 0.0)
    with pytest.raises(ValueError):
        guarded_win_rate(policy, reference, clean[:3], clean)


def test_degenerate_rewrites_are_flagged_repeatable_and_built_from_the_answer():
    import random

    from tiller.degeneration import REWRITE_KINDS, degenerate_rewrite

    answers = ["Soak the whetstone in water for ten minutes. Hold the blade at fifteen degrees.",
               "Paris is the capital of France.", "Yes.", ""]
    for answer in answers:
        for kind in REWRITE_KINDS:
            text = degenerate_rewrite(answer, kind, random.Random(7))
            assert measure(text)["degenerate"], (kind, text)
            assert text == degenerate_rewrite(answer, kind, random.Random(7))  # the seed alone decides
    first = answers[0]
    assert degenerate_rewrite(first, "loop", random.Random(1)).startswith("Soak the")
    assert degenerate_rewrite(first, "answer_then_loop", random.Random(1)).startswith(
        "Soak the whetstone in water for ten minutes. for ten minutes. for ten minutes.")
    assert set(words(degenerate_rewrite(first, "counter", random.Random(1)))) <= set(map(str, range(41)))
    assert degenerate_rewrite(first, "run", random.Random(1)).startswith("SoakSoakSoak")
    # Too few words for a loop: a counter instead.
    assert measure(degenerate_rewrite("Yes.", "loop", random.Random(1)))["reasons"] != [] and \
        set(words(degenerate_rewrite("Yes.", "loop", random.Random(1)))) <= set(map(str, range(41)))
    with pytest.raises(ValueError, match="unknown degenerate kind"):
        degenerate_rewrite(first, "babble", random.Random(1))
