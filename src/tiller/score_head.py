"""Reading a sequence classifier's score at the last real token.

transformers' sequence classifiers find the last token by searching for the pad id, which is
wrong when the pad token also appears inside the text (SmolLM2's pad is its end-of-turn token).
`ScoreHead` runs the model body and reads the score head at the last position the attention
mask marks as real, for right and left padding alike. It is an nn.Module so DDP and FSDP wrap
it and see its forward.
"""

from __future__ import annotations

import torch

from tiller.batching import (
    floating_dtype,
    layout_tolerance,
    mask_positions,
    pack_sequences,
    pad_batch,
    shared_prefix_rows,
    shortcut_matches,
)
from tiller.models import base_hf_model


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last 1 in each row of a [B, T] mask (right or left padded)."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (positions * attention_mask.long()).argmax(dim=1)


class ScoreHead(torch.nn.Module):
    """Wraps a (possibly peft) *ForSequenceClassification model: ids, mask -> one score per row.

    Packed input (one row, `position_ids` restarting per sequence, no attention mask, `ends` the
    last token of each sequence) does no work on padding: transformers (>= 4.53) turns restarting
    position ids into a block-diagonal causal mask for sdpa and eager attention. Callers check
    packed against padded scores once before relying on it (`packing_is_exact`)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, ends: torch.Tensor | None = None,
                rows: torch.Tensor | None = None, inputs_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """`inputs_embeds` instead of `input_ids`: the output of frozen leading layers, with the
        decoder cut to the layers after them (`FrozenPrefix.tail_only`)."""
        hf = base_hf_model(self.model)
        body = getattr(hf, hf.base_model_prefix)
        if ends is not None:  # a packed row; or rows of sequences sharing a prefix, with their 4D mask
            hidden = body(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                          position_ids=position_ids, use_cache=False).last_hidden_state
            return _scores(hf.score(hidden[torch.zeros_like(ends) if rows is None else rows, ends]))
        hidden = body(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                      position_ids=mask_positions(attention_mask), use_cache=False).last_hidden_state
        last = last_token_index(attention_mask)
        picked = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return _scores(hf.score(picked))


def _scores(head_output: torch.Tensor) -> torch.Tensor:
    """[n, 1] -> [n] as a tensor of its own, not a view: FSDP2 hooks the backward of what a
    wrapped module returns, and a view of it can lose that hook to an in-place op (torch warns on
    every forward)."""
    return head_output.squeeze(-1).clone()


def score_sequences(scorer: torch.nn.Module, sequences: list[list[int]], pad_id: int, device, packed: bool,
                    frozen=None) -> torch.Tensor:
    """One score per sequence, padded rows or one packed row. `frozen` (a
    `tiller.frozen_prefix.ReusablePrefix` of the scorer's model) runs the frozen leading layers
    through its store of outputs, then the rest."""
    if packed:
        ids, positions, ends = pack_sequences(sequences)
        return _score(scorer, frozen, ids.to(device), None, positions=positions.to(device), ends=ends.to(device))
    ids, mask = pad_batch(sequences, pad_id)
    return _score(scorer, frozen, ids.to(device), mask.to(device))


def score_groups(scorer: torch.nn.Module, groups: list[list[list[int]]], pad_id: int, device,
                 frozen=None) -> torch.Tensor:
    """The score of every sequence of `groups`, in order, each group in one row with the prefix
    its sequences share computed once (`tiller.batching.shared_prefix_rows`); `frozen` as in
    `score_sequences`."""
    ids, positions, mask, rows, ends = shared_prefix_rows(groups, pad_id, floating_dtype(scorer))
    return _score(scorer, frozen, ids.to(device), mask.to(device), positions.to(device), ends.to(device),
                  rows.to(device))


def _score(scorer, frozen, ids, mask, positions=None, ends=None, rows=None) -> torch.Tensor:
    if frozen is None:
        return scorer(ids, mask, position_ids=positions, ends=ends, rows=rows)
    # The same operations as the full forward, in the same order: the same scores to the bit.
    hidden = frozen.hidden(ids, mask, mask_positions(mask) if positions is None else positions)
    with frozen.tail_only():
        return scorer(None, mask, position_ids=positions, ends=ends, rows=rows, inputs_embeds=hidden)


def scores_tolerance(scorer) -> float:
    """How far a shortcut's scores may sit from the padded forward's (`layout_tolerance`)."""
    return layout_tolerance(floating_dtype(scorer))


def packing_is_exact(scorer: torch.nn.Module, sequences: list[list[int]], pad_id: int, device, tol: float = 1e-3) -> bool:
    """Whether packed scoring equals padded scoring for this model (attention kept per sequence)."""
    return _same_as_padded(scorer, sequences, pad_id, device, tol,
                           lambda: score_sequences(scorer, sequences, pad_id, device, packed=True))


def shared_prefix_is_exact(scorer: torch.nn.Module, groups: list[list[list[int]]], pad_id: int, device,
                           tol: float = 1e-3) -> bool:
    """Whether scoring groups with their shared prefix once equals padded scoring for this model
    (an attention implementation that ignores a 4D mask would not)."""
    return _same_as_padded(scorer, [s for group in groups for s in group], pad_id, device, tol,
                           lambda: score_groups(scorer, groups, pad_id, device))


def _same_as_padded(scorer: torch.nn.Module, sequences: list[list[int]], pad_id: int, device, tol: float,
                    other) -> bool:
    return shortcut_matches(scorer, lambda: score_sequences(scorer, sequences, pad_id, device, packed=False), other, tol)
