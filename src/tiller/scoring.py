"""Reading a sequence classifier's score at the last real token.

transformers' sequence classifiers find the last token by searching for the pad id, which is
wrong when the pad token also appears inside the text (SmolLM2's pad is its end-of-turn token).
`ScoreHead` runs the model body and reads the score head at the last position the attention
mask marks as real, for right and left padding alike. It is an nn.Module so DDP and FSDP wrap
it and see its forward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

T = TypeVar("T")


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last 1 in each row of a [B, T] mask (right or left padded)."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (positions * attention_mask.long()).argmax(dim=1)


def mask_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens only (left padding sits at position 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def pad_batch(sequences: list[list[int]], pad_id: int, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for i, s in enumerate(sequences):
        if left:
            ids[i, longest - len(s):] = torch.tensor(s)
            mask[i, longest - len(s):] = 1
        else:
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
    return ids, mask


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices into `lengths` in batches of at most `batch_size`, shortest first, so that each
    padded batch pads little. Callers put results back in the original order by these indices."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def run_in_length_batches(lengths: list[int], batch_size: int, run_batch: Callable[[list[int]], Sequence[T]]) -> list[T]:
    """`run_batch(indices)` on the `length_sorted_batches`, one result per index; the results
    come back in the original order."""
    results: list[T | None] = [None] * len(lengths)
    for batch in length_sorted_batches(lengths, batch_size):
        for i, result in zip(batch, run_batch(batch), strict=True):
            results[i] = result
    return results  # type: ignore[return-value]  # every index is in exactly one batch


def base_hf_model(model: torch.nn.Module) -> torch.nn.Module:
    """The Hugging Face model under a peft wrapper (the model itself when there is none)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def pack_sequences(sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All sequences in one row with no padding: (input_ids [1, N], position_ids [1, N] restarting
    at 0 for each sequence, index of each sequence's last token [n])."""
    ids = torch.tensor([t for s in sequences for t in s], dtype=torch.long)[None]
    positions = torch.tensor([i for s in sequences for i in range(len(s))], dtype=torch.long)[None]
    ends = torch.tensor([len(s) for s in sequences]).cumsum(0) - 1
    return ids, positions, ends


class ScoreHead(torch.nn.Module):
    """Wraps a (possibly peft) *ForSequenceClassification model: ids, mask -> one score per row.

    Packed input (one row, `position_ids` restarting per sequence, no attention mask, `ends` the
    last token of each sequence) does no work on padding: transformers (>= 4.53) turns restarting
    position ids into a block-diagonal causal mask for sdpa and eager attention. Callers check
    packed against padded scores once before relying on it (`packing_is_exact`)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, ends: torch.Tensor | None = None) -> torch.Tensor:
        hf = base_hf_model(self.model)
        body = getattr(hf, hf.base_model_prefix)
        if ends is not None:  # packed row
            hidden = body(input_ids=input_ids, position_ids=position_ids, use_cache=False).last_hidden_state
            return hf.score(hidden[0, ends]).squeeze(-1)
        hidden = body(input_ids=input_ids, attention_mask=attention_mask, position_ids=mask_positions(attention_mask),
                      use_cache=False).last_hidden_state
        last = last_token_index(attention_mask)
        picked = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return hf.score(picked).squeeze(-1)


def score_sequences(scorer: torch.nn.Module, sequences: list[list[int]], pad_id: int, device, packed: bool) -> torch.Tensor:
    if packed:
        ids, positions, ends = pack_sequences(sequences)
        return scorer(ids.to(device), position_ids=positions.to(device), ends=ends.to(device))
    ids, mask = pad_batch(sequences, pad_id)
    return scorer(ids.to(device), mask.to(device))


@torch.no_grad()
def packing_is_exact(scorer: torch.nn.Module, sequences: list[list[int]], pad_id: int, device, tol: float = 1e-3) -> bool:
    """Whether packed scoring equals padded scoring for this model (attention kept per sequence)."""
    was_training = scorer.training
    scorer.eval()
    try:
        padded = score_sequences(scorer, sequences, pad_id, device, packed=False).float()
        packed = score_sequences(scorer, sequences, pad_id, device, packed=True).float()
    finally:
        scorer.train(was_training)
    return bool(torch.allclose(packed, padded, atol=tol, rtol=tol))
