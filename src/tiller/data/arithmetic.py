"""The arithmetic sample: questions with gold answers, for RL with a verifiable reward.

    python -m tiller.data.arithmetic [--seed N] [--out DIR]

writes `train.jsonl` and `validation.jsonl` (default: the bundled `sample/arithmetic/`, which
`data.source: sample` with `data.sample: arithmetic` reads). The output depends only on the seed:
the same seed gives byte-identical files.

The questions are every `a + b` and `a - b` with a, b in 2..20 (a > b for subtraction, so no
answer is negative) and every `a × b` with a, b in 2..12, once per unordered pair of operands
(7 + 8 and 8 + 7 are one question, its operand order drawn by the seed): 190 additions, 171
subtractions and 66 products, 427 questions. The seed shuffles them and VALIDATION_SIZE of them,
drawn from each operation in proportion, are the validation split: no question is on both
sides, not even with its operands swapped.

Why this difficulty: in a one-off greedy probe of SmolLM2-135M-Instruct (questions of each kind
drawn at random, this prompt, 48 new tokens, scored by the last number of the answer) it got 9
of 32 sums, 5 of 32 differences and 17 of 32 products in these ranges right, against 3 of 24
sums of two two-digit numbers and 2 of 32 sums of a two-digit and a one-digit number: right
often enough for most groups of RL samples to hold a signal, wrong often enough to leave room.
The starting model's accuracy on the whole validation split is what `tiller eval policy` with
eval.verifier reports for the reference (README, "Verifiable rewards").

The bundled preference sample (scripts/make_sample_data.py) has seeded arithmetic too, but it is
a script outside the package, and its products of two two-digit numbers are the kind this model
almost never gets right.

Rows are in the `messages` format: the question as the user's turn, the gold answer alone as the
assistant's (so the same file serves SFT), plus `answer` (the gold answer, an int: keep it with
data.keep_columns: [answer] for tiller.rewards.exact_match) and `domain` (the operation).
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

SEED = 20250517  # the bundled preference sample's seed
VALIDATION_SIZE = 200
PROMPT = "What is {a} {op} {b}? Answer with just the number."
ADD_SUB_RANGE = range(2, 21)
MUL_RANGE = range(2, 13)
OPERATIONS = {"+": "addition", "-": "subtraction", "×": "multiplication"}


def questions() -> list[tuple[str, int, int]]:
    """Every question once, as (op, larger operand, smaller operand), in a fixed order."""
    out = [("+", a, b) for a in ADD_SUB_RANGE for b in ADD_SUB_RANGE if a >= b]
    out += [("-", a, b) for a in ADD_SUB_RANGE for b in ADD_SUB_RANGE if a > b]
    out += [("×", a, b) for a in MUL_RANGE for b in MUL_RANGE if a >= b]
    return out


def answer(op: str, a: int, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def row(op: str, a: int, b: int, swap: bool) -> dict:
    """One data row; `swap` writes a commutative question with its smaller operand first."""
    first, second = (b, a) if swap and op != "-" else (a, b)
    gold = answer(op, a, b)
    return {
        "messages": [{"role": "user", "content": PROMPT.format(a=first, op=op, b=second)},
                     {"role": "assistant", "content": str(gold)}],
        "answer": gold,
        "domain": OPERATIONS[op],
    }


def make_splits(seed: int = SEED, validation_size: int = VALIDATION_SIZE) -> dict[str, list[dict]]:
    """{"train": rows, "validation": rows}: the questions shuffled by `seed`; of each operation the
    first ones, in proportion to its share of all questions, are held out. Stratified, because a
    plain cut gave validation 41 of the 66 products, the easiest kind, and train 25."""
    pool = questions()
    if not 0 < validation_size < len(pool):
        raise ValueError(f"validation_size must be in 1..{len(pool) - 1}, got {validation_size}")
    rng = random.Random(seed)
    rng.shuffle(pool)
    swaps = [rng.random() < 0.5 for _ in pool]
    sizes = Counter(op for op, _, _ in pool)
    quota = {op: round(n * validation_size / len(pool)) for op, n in sizes.items()}
    quota["×"] += validation_size - sum(quota.values())  # rounding: the total is exact
    train, validation = [], []
    for (op, a, b), swap in zip(pool, swaps):
        side = validation if quota[op] > 0 else train
        quota[op] -= side is validation
        side.append(row(op, a, b, swap))
    return {"train": train, "validation": validation}


def write(out_dir: str | Path, seed: int = SEED) -> dict[str, list[dict]]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = make_splits(seed)
    for name, rows in splits.items():
        with open(out_dir / f"{name}.jsonl", "w", encoding="utf-8", newline="\n") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return splits


def main(argv: list[str] | None = None) -> None:
    from tiller.data.sources import SAMPLE_DIR

    parser = argparse.ArgumentParser(description="Write the arithmetic sample (questions with gold answers).")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", default=str(SAMPLE_DIR / "arithmetic"))
    args = parser.parse_args(argv)
    splits = write(args.out, args.seed)
    print(f"seed {args.seed}; wrote {args.out}/train.jsonl and {args.out}/validation.jsonl")
    for name, rows in splits.items():
        counts = Counter(r["domain"] for r in rows)
        print(f"{name}: {len(rows)} questions ({', '.join(f'{op} {counts[op]}' for op in OPERATIONS.values())})")


if __name__ == "__main__":
    main()
