"""Token sequences into model batches: padding, packing into one row, and batches of similar length.

Left or right padding with an attention mask (`pad_batch`) and the position ids that count real
tokens only (`mask_positions`); all sequences in one row without padding (`pack_sequences`);
running work in batches of similar length with the results put back in the callers' order
(`run_in_length_batches`), which generation, evaluation KL, classifier scoring and reward-pair
validation all use; and a training epoch's shuffled items regrouped into steps of similar length
(`length_grouped_order`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import torch

T = TypeVar("T")

# A training step's items of similar length are cut from windows of this many steps of a shuffled
# epoch (Hugging Face's LengthGroupedSampler takes 50 batches too): wide enough that a step pads
# little, narrow enough that a large dataset's steps still draw from all over it.
LENGTH_GROUP_STEPS = 50


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


def pack_sequences(sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All sequences in one row with no padding: (input_ids [1, N], position_ids [1, N] restarting
    at 0 for each sequence, index of each sequence's last token [n])."""
    ids = torch.tensor([t for s in sequences for t in s], dtype=torch.long)[None]
    positions = torch.tensor([i for s in sequences for i in range(len(s))], dtype=torch.long)[None]
    ends = torch.tensor([len(s) for s in sequences]).cumsum(0) - 1
    return ids, positions, ends


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


def length_grouped_order(order: list[int], lengths: list[int], per_step: int, rng) -> list[int]:
    """A shuffled epoch (`order`, a whole number of steps of `per_step` items) regrouped so that
    each step holds items of similar length: windows of `LENGTH_GROUP_STEPS` steps are sorted by
    `lengths` (longest first), cut into steps, and the steps shuffled with `rng`, so that the run
    does not go from long items to short ones. Same items, each once; only the grouping changes."""
    if len(order) % per_step:
        raise ValueError(f"{len(order)} items are not a whole number of steps of {per_step}")
    window = per_step * LENGTH_GROUP_STEPS
    steps = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i], reverse=True)
        steps += [chunk[s:s + per_step] for s in range(0, len(chunk), per_step)]
    rng.shuffle(steps)
    return [i for step in steps for i in step]
