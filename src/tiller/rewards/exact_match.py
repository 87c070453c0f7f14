"""Exact match against a gold answer: the verifiable reward of questions with one right number.

    rloo.reward: {backend: callable, function: "tiller.rewards.exact_match:exact_match"}
    eval.verifier: "tiller.rewards.exact_match:exact_match"
    data.keep_columns: [answer]        # the gold answer travels with each prompt as its record

The rule: a completion's answer is the LAST number in its text, and it scores 1.0 when that
number equals the record's `answer`, else 0.0 (also when the text holds no number). A number is
- digits, with optional thousands separators (a comma followed by exactly three digits, so
  "1,234" is 1234 while "3,4" is the two numbers 3 and 4, and "1,2345" is 1 and 2345), and an
  optional decimal part;
- negative when a minus sign ("-" or the Unicode minus "−") is right before its first digit and
  the sign does not follow a letter or digit: "is -5" and "(-5)" are -5, while in "10-5" the
  sign is an operator and the last number is 5;
- not part of a word: digits right after a letter or an underscore ("x2", "H2O") are no number.
Trailing punctuation is not part of it ("56." is 56), and the comparison is of exact rationals,
so "56.0" matches 56 but "56.5" does not. The last number, not any number the text holds: listing
candidates does not win, only the number an answer ends on counts ("54, 55 or 56?" answers 56).
"""

from __future__ import annotations

import re
from fractions import Fraction

# The look-behind keeps a sign after a letter or digit out ("10-5") and digits inside a word out
# ("x2"); the look-ahead keeps "1,2345" from reading as 1,234 (it is 1 and 2345).
_NUMBER = re.compile(r"(?<![A-Za-z0-9_])([-−])?(\d+(?:,\d{3}(?!\d))*(?:\.\d+)?)", re.ASCII)
_WHOLE_NUMBER = re.compile(r"\s*[-−]?\d+(?:,\d{3})*(?:\.\d+)?\s*", re.ASCII)


def _value(sign: str | None, digits: str) -> Fraction:
    value = Fraction(digits.replace(",", ""))
    return -value if sign else value


def final_number(text: str) -> Fraction | None:
    """The last number in `text` by the module's rule, or None when it holds none."""
    last = None
    for last in _NUMBER.finditer(text):
        pass
    return None if last is None else _value(last.group(1), last.group(2))


def as_number(gold) -> Fraction:
    """A gold answer as an exact number: an int, a finite float, or a string holding one number."""
    if isinstance(gold, bool):  # True is an int to Python, never a gold answer
        raise ValueError(f"a gold answer must be a number, got {gold!r}")
    if isinstance(gold, int):
        return Fraction(gold)
    if isinstance(gold, float):
        if gold != gold or gold in (float("inf"), float("-inf")):
            raise ValueError(f"a gold answer must be finite, got {gold!r}")
        return Fraction(repr(gold))  # 0.1 as written, not its binary neighbour
    if isinstance(gold, str) and _WHOLE_NUMBER.fullmatch(gold):
        return final_number(gold)
    raise ValueError(f"a gold answer must be a number or a string holding one, got {gold!r}")


def exact_match(prompts: list[list[dict]], completions: list[str], records: list[dict]) -> list[float]:
    """1.0 where the completion's last number equals its record's `answer`, else 0.0."""
    scores = []
    for text, record in zip(completions, records, strict=True):
        if "answer" not in record:
            raise ValueError(f"the prompt's record has no 'answer' (it has: {sorted(record) or 'nothing'}); "
                             "keep the gold answer column with data.keep_columns: [answer]")
        got = final_number(text)
        scores.append(float(got is not None and got == as_number(record["answer"])))
    return scores
