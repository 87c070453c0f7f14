"""Degenerate answers: repetition measures of one answer, the rule that flags it, and the
win rate that does not let a flagged answer win.

A policy optimized against a reward model can find answers that are not language at all,
`1. 1. 1. 1. ...`, `1.1.1.1.1...`, `1. 1. 1. 2. 3. 4. 5. ...`, and a judge may still score
them above real answers. The policy evaluation measures every answer, the policy's and the
reference's, with the pure functions below.

Units
- words: maximal runs of Unicode letters and digits (the regex ``[^\\W_]+``), lowercased; every
  other character (space, punctuation, underscore) separates two words, so ``1.1.1`` is three
  words ``1`` and ``my_var`` is two. A word "has a letter" when one of its characters is
  alphabetic (``str.isalpha``): ``1`` and ``2024`` have none, ``x2`` and ``Paris`` have one.
- characters: the answer's Python string (Unicode code points), for measures that need no spaces.

Measures of one answer (`measure`)
- ``words``, ``letter_words``: how many words, and how many of them have a letter.
- ``distinct_1``, ``distinct_2``: distinct word n-grams / word n-grams (distinct-n, n = 1, 2);
  1.0 when the answer has no n-gram.
- ``repeated_4gram_share``: share of the answer's word 4-grams that already occurred earlier in
  the same answer, = 1 - distinct-4; 0.0 with fewer than 4 words.
- ``compression_ratio``: ``len(zlib.compress(utf8, 9)) / len(utf8)``, compressed over raw
  bytes, so LOWER is MORE repetitive: measured 0.66 to 0.73 on 250 to 300 characters of English,
  0.48 on 3,000; 0.26 for a 39-character sentence said 5 times, 0.06 for it 25 times and for
  ``1. `` 100 times. zlib's fixed overhead (about 8 bytes) puts it above 1 for answers of a few
  words; 1.0 for the empty answer. Shown, not used by the rule, because it depends on length.
- ``longest_run_chars``, ``longest_run_unit``, ``longest_run_share``: the longest stretch of
  characters made of one unit of 1 to 32 characters repeated consecutively: every character of
  the stretch equals the one a unit's length before it, and the stretch holds at least two whole
  copies of the unit (a last, partial copy counts). In ``"ok 1. 1. 1. 2."`` it is ``" 1. 1. 1. "``
  (unit ``" 1."``, 10 characters). Its length, its unit (the stretch's first copy) and its share
  of the answer's characters; 0, "" and 0.0 when there is none.

The rule (`DEGENERATE_RULE`): an answer is degenerate when at least one of
- loop:    it has >= 8 words and repeated_4gram_share >= 0.5 (half its word 4-grams repeat);
- numbers: it has >= 8 words and at most one in ten has a letter (numbers and punctuation,
           nearly only: counters like ``1. 1. 1. 2. 3. 4. 5. 6. 7.``, also after a "Sure!");
- run:     it has >= 32 characters and longest_run_share >= 0.5 (half of it is one unit
           repeated: ``1.1.1.1...``, ``!!!!...``, loops in scripts written without spaces).
Answers under 8 words and 32 characters ("Paris.", "4", "No, no, no.") are never flagged. Ordinary numbered lists, code and
markdown tables are not: they have letters, few repeated 4-grams and short runs (indentation,
``|---|---|``). Flagged although they may be fine, because without the prompt they cannot be
told from a counter or a loop: eight or more bare numbers with (almost) no word around them
(the first ten primes alone, arithmetic like ``12 * 3 = 36, 36 + 4 = 40``, a table with nine
numbers or more for each word) and a line like ``x = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]``.
"""

from __future__ import annotations

import itertools
import operator
import re
import zlib
from typing import Sequence

from tiller import losses

MIN_WORDS = 8
MIN_CHARS = 32
LOOP_SHARE = 0.5
RUN_SHARE = 0.5
NUMBERS_LETTER_SHARE = 0.1
MAX_UNIT = 32
DEGENERATE_RULE = ("degenerate = (>= 8 words and >= half of its word 4-grams repeat an earlier one) or "
                   "(>= 8 words and at most one in ten has a letter) or (>= 32 characters and >= half of "
                   "them in one run of a 1-32 character unit repeated)")

_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """Maximal runs of Unicode letters and digits, lowercased."""
    return [w.lower() for w in _WORD.findall(text)]


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(tokens: Sequence[str], n: int) -> float:
    """Distinct n-grams / n-grams; 1.0 when there is no n-gram."""
    grams = _ngrams(tokens, n)
    return len(set(grams)) / len(grams) if grams else 1.0


def repeated_ngram_share(tokens: Sequence[str], n: int) -> float:
    """Share of the n-grams that already occurred earlier in the same sequence (= 1 - distinct-n);
    0.0 when there is no n-gram."""
    grams = _ngrams(tokens, n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def compression_ratio(text: str) -> float:
    """zlib-compressed size (level 9) over UTF-8 size: lower is more repetitive; 1.0 for ""."""
    raw = text.encode("utf-8")
    return len(zlib.compress(raw, 9)) / len(raw) if raw else 1.0


def longest_run(text: str, max_unit: int = MAX_UNIT) -> tuple[int, str]:
    """(length in characters, unit) of the longest stretch made of one unit of 1..max_unit
    characters repeated consecutively, at least two whole copies (a partial last copy counts);
    (0, "") when there is none. On equal lengths the shorter unit wins."""
    best, unit = 0, ""
    for p in range(1, min(max_unit, len(text) // 2) + 1):
        start = 0  # position of the first comparison in the current group
        for same, group in itertools.groupby(map(operator.eq, text, text[p:])):
            length = sum(1 for _ in group)
            # text[k] == text[k + p] for k in [start, start + length): text[start : start + length + p] has period p
            if same and length >= p and length + p > best:
                best, unit = length + p, text[start:start + p]
            start += length
    return best, unit


def measure(text: str) -> dict:
    """The measures of one answer (see the module docstring), `degenerate` and the rule's `reasons`."""
    tokens = words(text)
    run_chars, run_unit = longest_run(text)
    m = {
        "words": len(tokens),
        "letter_words": sum(any(c.isalpha() for c in w) for w in tokens),
        "distinct_1": distinct_n(tokens, 1),
        "distinct_2": distinct_n(tokens, 2),
        "repeated_4gram_share": repeated_ngram_share(tokens, 4),
        "compression_ratio": compression_ratio(text),
        "longest_run_chars": run_chars,
        "longest_run_unit": run_unit,
        "longest_run_share": run_chars / len(text) if text else 0.0,
        "chars": len(text),
    }
    m["reasons"] = degenerate_reasons(m)
    m["degenerate"] = bool(m["reasons"])
    return m


def degenerate_reasons(m: dict) -> list[str]:
    """The parts of the rule that an answer's measures meet: "loop", "numbers", "run"."""
    reasons = []
    if m["words"] >= MIN_WORDS and m["repeated_4gram_share"] >= LOOP_SHARE:
        reasons.append("loop")
    if m["words"] >= MIN_WORDS and m["letter_words"] <= NUMBERS_LETTER_SHARE * m["words"]:
        reasons.append("numbers")
    if m["chars"] >= MIN_CHARS and m["longest_run_share"] >= RUN_SHARE:
        reasons.append("run")
    return reasons


def is_degenerate(text: str) -> bool:
    return measure(text)["degenerate"]


def guarded_win_rate(policy_scores: Sequence[float], reference_scores: Sequence[float],
                     policy_degenerate: Sequence[bool], reference_degenerate: Sequence[bool]) -> dict[str, float]:
    """`losses.win_rate` (ties count half, 95% Wilson interval) where a degenerate policy answer
    against a non-degenerate reference answer is a loss whatever the judge scored. Every other
    pair, both degenerate included, keeps the judge's verdict; a degenerate reference does not
    hand the policy a win. Adds ``overruled``: the pairs this turned from a judge's win or tie
    into a loss."""
    n = len(policy_scores)
    if not n == len(reference_scores) == len(policy_degenerate) == len(reference_degenerate):
        raise ValueError(f"lengths differ: {n} policy scores, {len(reference_scores)} reference scores, "
                         f"{len(policy_degenerate)} and {len(reference_degenerate)} flags")
    guarded_policy, guarded_reference, overruled = [], [], 0
    for p, r, pd, rd in zip(policy_scores, reference_scores, policy_degenerate, reference_degenerate):
        p, r = float(p), float(r)
        if pd and not rd:
            overruled += p >= r
            p, r = 0.0, 1.0  # a loss
        guarded_policy.append(p)
        guarded_reference.append(r)
    return {**losses.win_rate(guarded_policy, guarded_reference), "overruled": float(overruled)}


# ---- degenerate answers made on purpose: negatives for a reward model -------------------------

REWRITE_KINDS = ("counter", "loop", "run", "answer_then_loop")


def degenerate_rewrite(answer: str, kind: str, rng) -> str:
    """A degenerate answer of `kind` (one of REWRITE_KINDS) built from `answer`, flagged by the
    rule above (checked; more repetitions are added until it is):

    - counter:          bare numbered items, ``1. 1. 1. 2. 3. 4.`` (12 to 40 of them), the demo's hack;
    - loop:             the answer's first 2 to 6 words said over and over;
    - run:              the answer's first word repeated without spaces (``SureSureSure``);
    - answer_then_loop: the answer's first sentence, then its last 3 words in a loop (a plausible
                        start that falls into repetition, as sampled text often does).

    `rng` is a `random.Random`; an answer with too few words for a kind gets a counter instead."""
    if kind not in REWRITE_KINDS:
        raise ValueError(f"unknown degenerate kind {kind!r}; one of {REWRITE_KINDS}")
    tokens = answer.split()
    if kind != "counter" and len(tokens) < 3:
        kind = "counter"
    if kind == "counter":
        ones = rng.randint(0, 4)
        count = rng.randint(12, 40)
        numbers = [1] * ones + list(range(1, count - ones + 1))
        sep = rng.choice([" ", "", "\n"])
        pieces, step = [f"{n}." for n in numbers], "1."
    elif kind == "loop":
        unit = " ".join(tokens[:rng.randint(2, min(6, len(tokens)))])
        pieces, step, sep = [unit] * rng.randint(4, 10), unit, " "
    elif kind == "run":
        unit = tokens[0].strip()[:12] or "1."
        pieces, step, sep = [unit] * rng.randint(8, 20), unit, ""
    else:
        sentence = re.split(r"(?<=[.!?])\s", answer.strip(), maxsplit=1)[0].split()[:20]
        tail = " ".join(sentence[-3:])
        pieces, step, sep = [" ".join(sentence)] + [tail] * rng.randint(6, 12), tail, " "
    text = sep.join(pieces)
    for _ in range(400):
        if is_degenerate(text):
            return text
        text = text + sep + step
    raise AssertionError(f"could not make a degenerate {kind} answer from {answer[:60]!r}")


def degenerate_rewrites(answers: Sequence[str], rng) -> list[str]:
    """One `degenerate_rewrite` of each answer, the kinds of REWRITE_KINDS in turn, all drawn
    from `rng` in order (the same rng state gives the same rewrites)."""
    return [degenerate_rewrite(a, REWRITE_KINDS[n % len(REWRITE_KINDS)], rng) for n, a in enumerate(answers)]
