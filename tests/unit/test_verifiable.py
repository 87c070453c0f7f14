"""The verifiable demo's parts: the exact-match rule by hand, the arithmetic sample (seeded,
disjoint, gold answers right, the bundled files what the generator writes), its data-stage
records, and the exact-match figures of the evaluation."""

from __future__ import annotations

import json
import re
from fractions import Fraction

import pytest

from tiller.config import ConfigError, DataConfig
from tiller.config_loading import config_from_dict
from tiller.data import arithmetic
from tiller.data.sources import sample_path
from tiller.recipes import data as data_stage
from tiller.recipes.evaluate import format_summary, verified_accuracy
from tiller.rewards.exact_match import as_number, exact_match, final_number

# ----------------------------------------------------------------------------- the rule


@pytest.mark.parametrize("text, number", [
    ("7 × 8 = 56", 56),
    ("The answer is 12.", 12),                   # trailing punctuation is not part of it
    ("So it is 3!", 3),
    ("12 + 5 = 17, so 17", 17),
    ("First 4, then 9.", 9),                      # the LAST number, not the first
    ("The answer is -5.", -5),
    ("(−3)", -3),                                 # the Unicode minus
    ("x = -12", -12),
    ("10-5", 5),                                  # a minus after a digit is an operator
    ("well-5", 5),                                # ... and after a letter, a hyphen
    ("It is 1,234.", 1234),                       # thousands separators
    ("12,345,678", 12345678),
    ("3,4", 4),                                   # not a separator: two numbers
    ("1,2345", 2345),                             # nor this: 1 and 2345
    ("56.0", 56),
    ("2.5", Fraction(5, 2)),
    ("...56", 56),
    ("about 7th place", 7),
    ("H2O and x2", None),                         # digits inside a word are no number
    ("I don't know.", None),
    ("", None),
])
def test_final_number_by_hand(text, number):
    assert final_number(text) == number


def test_as_number_of_gold_answers():
    assert as_number(56) == 56 and as_number(-3) == -3
    assert as_number("1,234") == 1234 and as_number(" -7 ") == -7
    assert as_number(0.1) == Fraction(1, 10)      # as written, not the nearest binary fraction
    for bad in (True, "56 or 57", "abc", float("nan"), None):
        with pytest.raises(ValueError, match="gold answer"):
            as_number(bad)


def test_exact_match_scores_one_or_zero_against_each_record():
    completions = ["7 × 8 = 56", "The answer is -5.", "It is 1,234.", "56.5", "No idea.", "12 then 13"]
    records = [{"answer": 56}, {"answer": -5}, {"answer": "1234"}, {"answer": 56}, {"answer": 0}, {"answer": 12}]
    assert exact_match(None, completions, records) == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match=r"no 'answer' \(it has: \['gold'\]\); .*data.keep_columns: \[answer\]"):
        exact_match(None, ["56"], [{"gold": 56}])
    with pytest.raises(ValueError):  # one record per completion, or it is misaligned
        exact_match(None, ["56", "57"], [{"answer": 56}])


# ----------------------------------------------------------------------------- the sample

QUESTION = re.compile(r"What is (\d+) ([-+×]) (\d+)\? Answer with just the number\.")


def _key(row: dict) -> tuple:
    """The question without its operand order: 7 + 8 and 8 + 7 are one question."""
    a, op, b = QUESTION.fullmatch(row["messages"][0]["content"]).groups()
    return op, frozenset((int(a), int(b))) if op != "-" else (int(a), int(b))


def test_the_generator_is_seeded_and_the_bundled_files_are_its_output(tmp_path):
    assert arithmetic.make_splits(7) == arithmetic.make_splits(7)
    assert arithmetic.make_splits(7) != arithmetic.make_splits(8)
    arithmetic.write(tmp_path)  # the default seed, as `python -m tiller.data.arithmetic` writes the sample
    for split in ("train", "validation"):
        assert (tmp_path / f"{split}.jsonl").read_bytes() == sample_path(split, "arithmetic").read_bytes(), split


def test_the_splits_are_disjoint_stratified_and_the_gold_answers_right():
    splits = arithmetic.make_splits()
    train, validation = splits["train"], splits["validation"]
    # every pair once: 19 * 20 / 2 sums (2..20, with squares), 19 * 18 / 2 differences (a > b),
    # 11 * 12 / 2 products (2..12); validation 200 of the 427, each operation by its share
    # (190, 171, 66 x 200 / 427 = 88.99, 80.09, 30.91 -> 89, 80, 31)
    assert (len(train), len(validation)) == (227, 200)
    count = {name: {op: sum(r["domain"] == op for r in rows) for op in ("addition", "subtraction", "multiplication")}
             for name, rows in splits.items()}
    assert count["validation"] == {"addition": 89, "subtraction": 80, "multiplication": 31}
    assert count["train"] == {"addition": 190 - 89, "subtraction": 171 - 80, "multiplication": 66 - 31}
    train_keys, validation_keys = {_key(r) for r in train}, {_key(r) for r in validation}
    assert len(train_keys) == 227 and len(validation_keys) == 200  # no question twice
    assert not train_keys & validation_keys  # and none on both sides, whatever its operand order
    for row in train + validation:
        a, op, b = QUESTION.fullmatch(row["messages"][0]["content"]).groups()
        a, b = int(a), int(b)
        assert row["answer"] == {"+": a + b, "-": a - b, "×": a * b}[op] and row["answer"] > 0
        assert row["messages"][1] == {"role": "assistant", "content": str(row["answer"])}
        assert row["domain"] == {"+": "addition", "-": "subtraction", "×": "multiplication"}[op]
    swapped = [r for r in train + validation if r["domain"] != "subtraction" and _order(r) == "ascending"]
    assert 0 < len(swapped) < 256  # the operand order is drawn, not always the larger first


def _order(row: dict) -> str:
    a, _, b = QUESTION.fullmatch(row["messages"][0]["content"]).groups()
    return "ascending" if int(a) < int(b) else "other"


def test_the_data_stage_reads_the_sample_with_the_gold_answer_as_each_prompts_record(tokenizer):
    cfg = DataConfig(format="messages", source="sample", sample="arithmetic", languages=[], keep_columns=["answer"])
    out = data_stage.prepare_split(cfg, "validation", tokenizer)
    first = json.loads(sample_path("validation", "arithmetic").read_text().splitlines()[0])
    assert len(out.prompts) == 200 and len(out.conversations) == 200 and not out.pairs
    assert out.prompts[0].messages == first["messages"][:1] and out.prompts[0].extra == {"answer": first["answer"]}
    assert all(set(p.extra) == {"answer"} for p in out.prompts)


def test_config_keys_of_the_verifiable_demo():
    cfg = config_from_dict({"data": {"source": "sample", "sample": "arithmetic", "format": "messages"},
                            "eval": {"verifier": "tiller.rewards.exact_match:exact_match"}})
    assert cfg.data.sample == "arithmetic" and cfg.eval.verifier == "tiller.rewards.exact_match:exact_match"
    with pytest.raises(ConfigError, match="'eval.verifier': expected 'package.module:function'"):
        config_from_dict({"eval": {"verifier": "exact_match"}})
    with pytest.raises(ConfigError, match="data.sample"):
        config_from_dict({"data": {"sample": "gsm8k"}})


# ----------------------------------------------------------------------------- the evaluation's figures


def test_verified_accuracy_by_hand():
    # policy right on questions 1, 2, 3; reference on 3, 4: gained 2 (1, 2), lost 1 (4)
    x = verified_accuracy([1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0])
    assert (x["n"], x["policy_correct"], x["reference_correct"], x["gained"], x["lost"]) == (4, 3, 2, 2, 1)
    assert (x["policy_accuracy"], x["reference_accuracy"]) == (0.75, 0.5)
    # Wilson, z = 1.96, n = 4: center (p + z^2/8) / (1 + z^2/4), half z sqrt(p(1-p)/4 + z^2/64) / (1 + z^2/4)
    # p = 0.75: 0.627525 -/+ 0.326889; p = 0.5: 0.5 -/+ 0.349964
    assert (x["policy_ci_low"], x["policy_ci_high"]) == pytest.approx((0.300636, 0.954414), abs=1e-6)
    assert (x["reference_ci_low"], x["reference_ci_high"]) == pytest.approx((0.150036, 0.849964), abs=1e-6)
    # differences 1, 1, 0, -1: mean 0.25, sd sqrt(2.75 / 3) = 0.957427, half 1.96 * 0.957427 / 2 = 0.938279
    assert x["difference"] == 0.25
    assert (x["difference_ci_low"], x["difference_ci_high"]) == pytest.approx((-0.688279, 1.188279), abs=1e-6)
    with pytest.raises(ValueError, match=r"1.0 \(right\) or 0.0 \(wrong\); got \[0.5\]"):
        verified_accuracy([1.0, 0.5], [0.0, 0.0])


def test_format_summary_prints_the_exact_match_lines():
    s = {"label": "rloo", "n": 4, "judge": "verifier m:f", "reference": "ref", "win_rate": 0.625, "ci_low": 0.3,
         "ci_high": 0.9, "wins": 2, "ties": 1, "losses": 1, "reward_policy_mean": 0.75, "reward_reference_mean": 0.5,
         "reward_improvement": 0.25, "length_ratio": 1.0, "policy_mean_length": 5.0, "reference_mean_length": 5.0,
         "truncated_policy": 0.0, "truncated_reference": 0.0, "kl_mean": 0.1, "seconds": 3.0,
         "exact_match": verified_accuracy([1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0])}
    text = format_summary(s)
    assert ("  exact-match accuracy    policy 0.750 (95% CI 0.301-0.954; 3 of 4) | reference 0.500 "
            "(95% CI 0.150-0.850; 2 of 4)") in text
    assert "  accuracy gain           +0.250  (paired 95% CI -0.688 to +1.188; 2 questions gained, 1 lost)" in text
    del s["exact_match"]
    assert "exact-match" not in format_summary(s)  # a judge-model evaluation has no such line
