"""Log-probabilities of a chosen and a rejected answer under a causal LM: what DPO trains on and
what the reward evaluation's likelihood baseline compares.

Each side is encoded as prompt + answer with the model's chat template; the answer's tokens
(content and end-of-turn) are the targets, marked the way SFT marks an assistant turn, so a
side's log-prob is the sum over its answer tokens only. Both sides go through one forward: padded
rows, or each pair in one row with the prompt they share once (`shared_prompt_logps`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tiller.batching import (
    floating_dtype,
    layout_tolerance,
    pad_batch,
    shared_prefix_columns,
    shared_prefix_rows,
    shortcut_matches,
)
from tiller.chat import IGNORE, assistant_token_mask, shifted_labels
from tiller.logprobs import label_logprobs, logprobs_at


@dataclass
class EncodedPreference:
    chosen_ids: list[int]
    chosen_labels: list[int]  # next-token targets on the answer, -100 elsewhere
    rejected_ids: list[int]
    rejected_labels: list[int]


def encode_preferences(pairs, tokenizer, max_length: int, truncation: str,
                       enable_thinking=None) -> tuple[list[EncodedPreference], int]:
    """Token ids and answer targets of prompt+chosen and prompt+rejected; returns (encoded,
    number dropped as too long)."""
    encoded, dropped = [], 0
    for pair in pairs:
        sides = []
        for answer in (pair.chosen, pair.rejected):
            ids, mask = assistant_token_mask(tokenizer, pair.prompt + [{"role": "assistant", "content": answer}],
                                             enable_thinking, last_turn_only=True)
            sides.append((ids, mask))
        if max(len(ids) for ids, _ in sides) > max_length:
            if truncation == "drop":
                dropped += 1
                continue
            sides = [(ids[-max_length:], mask[-max_length:]) for ids, mask in sides]  # the prompt's start goes first
        (c_ids, c_mask), (r_ids, r_mask) = sides
        encoded.append(EncodedPreference(c_ids, shifted_labels(c_ids, c_mask), r_ids, shifted_labels(r_ids, r_mask)))
    return encoded, dropped


def pair_batch(batch: list[EncodedPreference], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rows [0, n) chosen, [n, 2n) rejected, right-padded: (input_ids, attention_mask, labels)."""
    ids = [p.chosen_ids for p in batch] + [p.rejected_ids for p in batch]
    labels = [p.chosen_labels for p in batch] + [p.rejected_labels for p in batch]
    input_ids, attention_mask = pad_batch(ids, pad_id)
    label_tensor = torch.full_like(input_ids, IGNORE)
    for i, row in enumerate(labels):
        label_tensor[i, :len(row)] = torch.tensor(row)
    return input_ids, attention_mask, label_tensor


def concatenated_logps(model, batch: list[EncodedPreference], pad_id: int, device,
                       shared_prompt: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed answer-token log-probs of chosen and rejected, from one forward over both: 2n padded
    rows, or (`shared_prompt`) n rows, each pair's prompt once (`shared_prompt_logps`)."""
    if shared_prompt:
        return shared_prompt_logps(model, batch, pad_id, device)
    input_ids, attention_mask, labels = (x.to(device) for x in pair_batch(batch, pad_id))
    logps = label_logprobs(model, labels, input_ids=input_ids, attention_mask=attention_mask).sum(-1)  # 0 at -100
    return logps[: len(batch)], logps[len(batch):]


def shared_prompt_logps(model, batch: list[EncodedPreference], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """`concatenated_logps` with each pair in one row, [prompt | rest of chosen | rest of
    rejected], the tokens the two sides share computed once and a 4D attention mask keeping the
    answers apart (`tiller.batching.shared_prefix_rows`). The logits at the last shared token
    predict the first token of both answers, so each side's targets are read at its own tokens'
    columns rather than from one label row."""
    groups = [[p.chosen_ids, p.rejected_ids] for p in batch]
    input_ids, position_ids, mask, _, _ = shared_prefix_rows(groups, pad_id, floating_dtype(model))
    rows, columns, targets, owners = [], [], [], []
    for n, (pair, group_columns) in enumerate(zip(batch, map(shared_prefix_columns, groups))):
        for side, (labels, cols) in enumerate(zip((pair.chosen_labels, pair.rejected_labels), group_columns)):
            for column, target in zip(cols, labels):
                if target != IGNORE:
                    rows.append(n)
                    columns.append(column)
                    targets.append(target)
                    owners.append(side * len(batch) + n)  # chosen sides first, as pair_batch orders them
    where = (torch.tensor(rows, device=device), torch.tensor(columns, device=device))
    logps, _ = logprobs_at(model, where, torch.tensor(targets, device=device), input_ids=input_ids.to(device),
                           attention_mask=mask.to(device), position_ids=position_ids.to(device))
    sums = torch.zeros(2 * len(batch), dtype=logps.dtype, device=logps.device)
    sums = sums.index_add(0, torch.tensor(owners, device=logps.device), logps)
    return sums[: len(batch)], sums[len(batch):]


def shared_prompt_is_exact(model, batch: list[EncodedPreference], pad_id: int, device) -> bool:
    """Whether `shared_prompt_logps` gives this model's padded log-probs on `batch` (real pairs):
    an attention implementation that ignores or refuses a 4D mask would not (tolerance:
    `tiller.batching.layout_tolerance`)."""
    if not batch:
        return False
    return shortcut_matches(model, lambda: torch.stack(concatenated_logps(model, batch, pad_id, device)),
                            lambda: torch.stack(shared_prompt_logps(model, batch, pad_id, device)),
                            layout_tolerance(floating_dtype(model)))


def answer_token_counts(pair: EncodedPreference) -> tuple[int, int]:
    """How many answer tokens (targets) the chosen and the rejected side have."""
    return (sum(t != IGNORE for t in pair.chosen_labels), sum(t != IGNORE for t in pair.rejected_labels))
