"""Row filters. Each one answers keep/drop; the caller counts every drop under a reason name, so
nothing disappears without a count:

- `language`        the row's language is not in data.languages (case-insensitive); a row with no
                    language is kept only when data.languages is empty (HelpSteer3 code rows hold
                    the programming language, so `english` keeps exactly general + stem);
- `domain`          the row's domain is not in data.domains (when that list is given);
- `prompt_too_long` the prompt, rendered with the policy's chat template, is longer than
                    data.max_prompt_tokens. Dropped, never truncated: a cut prompt is another
                    question, and the preference labels were given for the whole one;
- `duplicate_prompt` a prompt already in the RL prompt list (pairs keep their duplicates: two
                    different answer pairs to one prompt are two training signals).

Not a filter: `role_marker` finds text that looks like a turn of another transcript format
inside one message ("\n\nHuman:", "\n\nAssistant:", ChatML's "<|im_start|>" / "<|im_end|>").
Such rows are kept (the text may be legitimate) but counted, so a format mix-up shows in the table.
"""

from __future__ import annotations

import re
from typing import Iterable, Optional

from tiller.data.records import Conversation, PreferencePair, Prompt

ROLE_MARKER = re.compile(r"\n\n(?:Human|Assistant):|<\|im_(?:start|end)\|>")


def lowered(values: Iterable[str]) -> set[str]:
    return {v.lower() for v in values}


def language_ok(language: Optional[str], allowed: set[str]) -> bool:
    """`allowed` is lower-cased; empty keeps everything, even rows without a language."""
    if not allowed:
        return True
    return language is not None and language.lower() in allowed


def domain_ok(domain: Optional[str], allowed: set[str]) -> bool:
    if not allowed:
        return True
    return domain is not None and domain.lower() in allowed


def prompt_token_counts(
    tokenizer, prompts: list[list[dict]], enable_thinking: Optional[bool] = None, batch_size: int = 1024
) -> list[int]:
    """Token count of each prompt as the policy will see it: chat template with the generation
    prompt. Identical renderings are tokenized once, and the rest in batches, because the fast
    tokenizer encodes a list in parallel in Rust and one call per text is several times slower.
    `add_special_tokens=False` because the template already writes BOS and friends."""
    from tiller.chat import render_prompt  # imported here: tiller.chat pulls in torch (through tiller.losses)

    texts = [render_prompt(tokenizer, p, enable_thinking) for p in prompts]
    unique = list(dict.fromkeys(texts))
    # With a fast tokenizer, ask its Rust backend directly for the encodings without character
    # offsets (encode_batch_fast): the same ids, ~20% less work, and no conversion to Python
    # lists we would only take the length of. Other tokenizers go through the normal call.
    backend = getattr(tokenizer, "backend_tokenizer", None)
    encode_fast = getattr(backend, "encode_batch_fast", None)
    length: dict[str, int] = {}
    for start in range(0, len(unique), batch_size):
        batch = unique[start : start + batch_size]
        if encode_fast is not None:
            counts = [len(e) for e in encode_fast(batch, add_special_tokens=False)]
        else:
            counts = [len(ids) for ids in tokenizer(batch, add_special_tokens=False, return_attention_mask=False)["input_ids"]]
        length.update(zip(batch, counts))
    return [length[t] for t in texts]


def prompt_key(messages: list[dict]) -> tuple:
    return tuple((m["role"], m["content"]) for m in messages)


def dedupe_prompts(prompts: list[Prompt]) -> tuple[list[Prompt], int]:
    """Keep the first occurrence of each prompt (same roles and contents); return the kept list
    and how many were dropped as `duplicate_prompt`."""
    seen: set[tuple] = set()
    kept = []
    for p in prompts:
        key = prompt_key(p.messages)
        if key in seen:
            continue
        seen.add(key)
        kept.append(p)
    return kept, len(prompts) - len(kept)


def role_marker(record: PreferencePair | Prompt | Conversation) -> Optional[str]:
    """The first role marker in any message or answer of the record, or None."""
    if isinstance(record, PreferencePair):
        texts = [m["content"] for m in record.prompt] + [record.chosen, record.rejected]
    else:  # Prompt and Conversation both hold `messages`
        texts = [m["content"] for m in record.messages]
    for text in texts:
        found = ROLE_MARKER.search(text)
        if found:
            return found.group()
    return None
