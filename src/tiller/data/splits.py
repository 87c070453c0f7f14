"""Two disjoint halves of the training data, split by prompt.

The reward model trains on one half and the judge of `tiller eval policy` on the other, so the
judge is held out. A split by position would put a prompt that appears twice (two answer pairs
to one question) in both halves. Here a prompt's half depends on the prompt alone: the parity
of the SHA-256 of its messages as canonical JSON (sorted keys, no whitespace, raw UTF-8).

Why the messages' JSON and not the rendered prompt: the rendering depends on the tokenizer's
chat template, so a reward model, a judge and a policy built on different bases would split the
same data differently; the messages are what the data stage wrote, the same for every model, and
SHA-256 (unlike Python's `hash`) is the same in every process and every run. Because the half
depends on nothing else, a prompt lands in the same half of the pairs file and of the prompts
file, and the halves stay the same when rows are added, removed or reordered. The halves are
equal in size only on average (each prompt is a fair coin): the stages print their counts.
"""

from __future__ import annotations

import hashlib
import json

SUBSETS = ("all", "first_half", "second_half")


def prompt_messages(item) -> list[dict]:
    """The prompt of a preference pair (`prompt`) or an RL prompt (`messages`)."""
    if hasattr(item, "prompt"):
        return item.prompt
    if hasattr(item, "messages"):
        return item.messages
    raise TypeError(f"cannot split a {type(item).__name__}: expected a PreferencePair or a Prompt")


def prompt_key(messages: list[dict]) -> str:
    """The stable identity of a prompt: its messages as canonical JSON."""
    return json.dumps(messages, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def prompt_half(messages: list[dict]) -> str:
    """`first_half` or `second_half`: the parity of the SHA-256 of the prompt's key."""
    digest = hashlib.sha256(prompt_key(messages).encode("utf-8")).digest()
    return "first_half" if digest[-1] % 2 == 0 else "second_half"


def subset(items: list, which: str) -> list:
    """`all`, or the items whose prompt falls in `first_half` / `second_half`, in their order.

    The two halves are disjoint in prompts (not only in rows) and together hold every item."""
    if which not in SUBSETS:
        raise ValueError(f"unknown subset {which!r}: use one of {', '.join(SUBSETS)}")
    if which == "all":
        return items
    return [item for item in items if prompt_half(prompt_messages(item)) == which]


def held_out_score(messages: list[dict], seed: int = 0) -> float:
    """A number in [0, 1) fixed by the prompt and the seed: the first 8 bytes of the SHA-256 of
    `"held_out:<seed>:"` + the prompt's key, read as an integer over 2**64.

    The data stage holds a prompt out of train (into validation) when its score is below
    `data.validation_fraction`: all rows of one prompt land on one side, the same in every run and
    whatever the order or number of the other rows, and raising the fraction only moves prompts from
    train to validation, never back. The salt makes the score independent of `prompt_half` (the
    parity of the unsalted hash), so validation takes prompts from both halves alike and the two
    halves of what stays in train remain equal in size on average."""
    salted = f"held_out:{seed}:{prompt_key(messages)}"
    return int.from_bytes(hashlib.sha256(salted.encode("utf-8")).digest()[:8], "big") / 2**64


def is_held_out(messages: list[dict], fraction: float, seed: int = 0) -> bool:
    """Whether a prompt falls in the held-out part (a `fraction` of all prompts, on average)."""
    return held_out_score(messages, seed) < fraction
