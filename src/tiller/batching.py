"""Token sequences into model batches: padding, packing into one row, and batches of similar length.

Left or right padding with an attention mask (`pad_batch`) and the position ids that count real
tokens only (`mask_positions`); all sequences in one row without padding (`pack_sequences`);
sequences that share a prefix (a prompt and its answers) in one row with the prefix once
(`shared_prefix_rows`, each token's column in it from `shared_prefix_columns`);
running work in batches of similar length with the results put back in the callers' order
(`run_in_length_batches`), which generation, evaluation KL, classifier scoring and reward-pair
validation all use; a training epoch's shuffled items regrouped into steps of similar length
(`length_grouped_order`); and whether a layout that skips work gives the padded forward's outputs
on a model (`compare_layouts`; `shortcut_matches` within `layout_tolerance` of its `floating_dtype`).
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


def layout_tolerance(dtype: torch.dtype) -> float:
    """How far outputs computed in a shortcut layout (packed, a shared prefix once, shared frozen
    layers) may sit from the padded forward's, relative to their size: float rounding in float32;
    bf16 / fp16 keep about 3 significant digits."""
    return 1e-4 if dtype == torch.float32 else 2e-2


def floating_dtype(model) -> torch.dtype:
    """The dtype a model computes in, for its 4D masks and `layout_tolerance`: its own `dtype`
    where it names one (an AdapterScoreHead is not a module and says so itself), else that of its
    first floating-point parameter (a DDP / FSDP wrapper)."""
    return getattr(model, "dtype", None) or next(p.dtype for p in model.parameters() if p.is_floating_point())


@torch.no_grad()
def compare_layouts(model, padded: Callable[[], torch.Tensor],
                    shortcut: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None, str | None]:
    """`padded()` and `shortcut()` (a layout that skips work: packed rows, a shared prefix once,
    shared frozen layers) computed on the same rows with `model` in eval mode, as float32:
    (padded, shortcut, None), or (padded, None, "Error: message") where the shortcut raised (an
    attention implementation that refuses its layout). Each caller judges the difference."""
    was_training = model.training
    model.eval()
    try:
        reference = padded().float()
        try:
            return reference, shortcut().float(), None
        except (RuntimeError, ValueError) as error:
            return reference, None, f"{type(error).__name__}: {error}"
    finally:
        model.train(was_training)


def shortcut_matches(model, padded: Callable[[], torch.Tensor], shortcut: Callable[[], torch.Tensor], tol: float) -> bool:
    """Whether `shortcut()` gives what `padded()` gives (`compare_layouts`), within `tol` relative
    and absolute; False where the shortcut raises."""
    reference, result, _ = compare_layouts(model, padded, shortcut)
    return result is not None and bool(torch.allclose(result, reference, atol=tol, rtol=tol))


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


def shared_prefix_rows(groups: list[list[list[int]]], pad_id: int, dtype: torch.dtype = torch.float32
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each group of sequences in one row with their longest common prefix (a reward pair's
    prompt) once: [prefix | rest of the first | rest of the second | ...], right-padded to the
    longest row. Returns input_ids [B, T]; position_ids [B, T], each token at the position it has
    in its own sequence; an additive attention mask [B, 1, T, T] (0 where a token may attend, the
    dtype's minimum elsewhere) in which a token sees the prefix and the earlier tokens of its own
    sequence, and padding sees itself only; and, for every sequence in order, its row and the
    column of its last token (the prefix's last when the sequence is the prefix itself)."""
    rows_ids, rows_positions, rows_segments, rows, ends = [], [], [], [], []
    for row, group in enumerate(groups):
        prefix = common_prefix_length(group)
        ids, positions, segments = list(group[0][:prefix]), list(range(prefix)), [0] * prefix
        for k, sequence in enumerate(group, start=1):
            rest = sequence[prefix:]
            ids += rest
            positions += range(prefix, len(sequence))
            segments += [k] * len(rest)
            rows.append(row)
            ends.append(len(ids) - 1 if rest else prefix - 1)
        rows_ids.append(ids)
        rows_positions.append(positions)
        rows_segments.append(segments)
    longest = max(len(ids) for ids in rows_ids)
    input_ids = torch.full((len(groups), longest), pad_id, dtype=torch.long)
    position_ids = torch.zeros((len(groups), longest), dtype=torch.long)
    segment = torch.full((len(groups), longest), -1, dtype=torch.long)  # -1: padding
    for row, (ids, positions, segments) in enumerate(zip(rows_ids, rows_positions, rows_segments)):
        input_ids[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        position_ids[row, :len(ids)] = torch.tensor(positions, dtype=torch.long)
        segment[row, :len(ids)] = torch.tensor(segments, dtype=torch.long)
    query, key = segment[:, :, None], segment[:, None, :]
    causal = torch.ones(longest, longest, dtype=torch.bool).tril()
    allowed = causal & (query != -1) & ((key == 0) | (key == query))
    allowed |= torch.eye(longest, dtype=torch.bool) & (query == -1)
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)[:, None]
    return input_ids, position_ids, mask, torch.tensor(rows, dtype=torch.long), torch.tensor(ends, dtype=torch.long)


def common_prefix_length(group: list[list[int]]) -> int:
    """How many leading tokens all sequences of `group` share (what `shared_prefix_rows` puts once)."""
    prefix = 0
    while all(len(s) > prefix for s in group) and all(s[prefix] == group[0][prefix] for s in group[1:]):
        prefix += 1
    return prefix


def shared_prefix_columns(group: list[list[int]]) -> list[list[int]]:
    """For each sequence of `group`, the column of each of its tokens in the group's
    `shared_prefix_rows` row: the prefix's columns, then its own rest's."""
    prefix = common_prefix_length(group)
    columns, start = [], prefix
    for sequence in group:
        rest = len(sequence) - prefix
        columns.append(list(range(prefix)) + list(range(start, start + rest)))
        start += rest
    return columns


def first_and_last_groups(sizes: list[int]) -> list[int]:
    """Indices, among the items of consecutive groups of these sizes, of the first group's and
    the last group's items: what a one-time check of a shortcut looks at (batches sorted by
    length put the shortest and the longest there, so padding is checked too), or every item
    when there are at most two groups."""
    if len(sizes) <= 2:
        return list(range(sum(sizes)))
    last_start = sum(sizes[:-1])
    return list(range(sizes[0])) + list(range(last_start, last_start + sizes[-1]))


def prompt_group_batches(keys: list, lengths: list[int], max_items: int) -> list[list[list[int]]]:
    """Indices grouped by equal key (the answers to one prompt: one `shared_prefix_rows` row
    each), the groups of similar total length in batches of at most `max_items` indices (a
    larger group is a batch of its own). Each batch is a list of groups of indices."""
    by_key: dict = {}
    for i, key in enumerate(keys):
        by_key.setdefault(key, []).append(i)
    batches, current, count = [], [], 0
    for group in sorted(by_key.values(), key=lambda g: sum(lengths[i] for i in g)):
        if current and count + len(group) > max_items:
            batches.append(current)
            current, count = [], 0
        current.append(group)
        count += len(group)
    if current:
        batches.append(current)
    return batches


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
