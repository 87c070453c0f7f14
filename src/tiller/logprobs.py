"""Log-probabilities of completion tokens under a causal LM, the quantity RLOO trains on and
evaluation measures KL with.

Rows are laid out as [left-padded prompt | right-padded completion] (`build_batch`), so every
completion starts at the same column and one `logits_to_keep` slice covers exactly the
completion tokens: the logits are computed for those positions only (`completion_logits`), and
the log-softmax is never materialized over the vocabulary (`completion_logprobs`).
"""

from __future__ import annotations

import torch

from tiller import losses
from tiller.batching import mask_positions, pad_batch
from tiller.frozen_prefix import FrozenPrefix


def build_batch(prompt_ids: list[list[int]], completions: list[list[int]], k: int, pad_id: int):
    """[left-padded prompt | right-padded completion] rows, so every completion starts at the same
    column and one `logits_to_keep` slice covers exactly the completion tokens. Each prompt is
    repeated k times (its k completions are consecutive). Returns (input_ids, attention_mask,
    completion_mask, prompt_len)."""
    prompts_rep = [p for p in prompt_ids for _ in range(k)]
    p_ids, p_mask = pad_batch(prompts_rep, pad_id, left=True)
    c_ids, c_mask = pad_batch([c if c else [pad_id] for c in completions], pad_id)
    for i, c in enumerate(completions):  # an empty completion keeps one masked pad token
        if not c:
            c_mask[i] = 0
    return torch.cat([p_ids, c_ids], 1), torch.cat([p_mask, c_mask], 1), c_mask, p_ids.shape[1]


def completion_logits(model, input_ids, attention_mask, prompt_len: int,
                      prefix: FrozenPrefix | None = None, hidden: torch.Tensor | None = None) -> torch.Tensor:
    """Logits predicting each completion token (positions prompt_len - 1 .. end - 1), computed
    for those positions only. With `hidden` (the output of `prefix`'s frozen layers for these
    rows) only the layers after it run."""
    completion_len = input_ids.shape[1] - prompt_len
    positions = mask_positions(attention_mask)
    if hidden is not None:
        with prefix.tail_only():
            out = model(inputs_embeds=hidden, attention_mask=attention_mask, position_ids=positions,
                        logits_to_keep=completion_len + 1, use_cache=False)
    else:
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                    logits_to_keep=completion_len + 1, use_cache=False)
    return out.logits[:, :-1]


def completion_logprobs(model, input_ids, attention_mask, prompt_len: int, temperature: float, with_entropy: bool = False,
                        prefix: FrozenPrefix | None = None, hidden: torch.Tensor | None = None):
    """Per-token log-probs of the completion tokens (`completion_logits`); the log-softmax is
    never materialized over the vocabulary."""
    logits = completion_logits(model, input_ids, attention_mask, prompt_len, prefix, hidden)
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature  # the sampling distribution is the tempered one
    logps = losses.token_logprobs(logits, input_ids[:, prompt_len:])
    entropy = losses.token_entropy(logits.detach()) if with_entropy else None
    return logps, entropy
