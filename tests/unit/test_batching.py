"""Sequences that share a prefix in one row (`tiller.batching.shared_prefix_rows`, and each
token's column in it: `shared_prefix_columns`), by hand."""

from __future__ import annotations

import pytest
import torch

from tiller.batching import (
    common_prefix_length,
    compare_layouts,
    first_and_last_groups,
    shared_prefix_columns,
    shared_prefix_rows,
    shortcut_matches,
)


def test_shared_prefix_rows_by_hand():
    # Row 0: [1 2 | 3 4 | 5] (prefix 1 2 once); row 1: no common prefix, [7 8 | 9], padded;
    # row 2: the first sequence is the prefix itself, so its last token is the prefix's.
    groups = [[[1, 2, 3, 4], [1, 2, 5]], [[7, 8], [9]], [[1, 2], [1, 2, 3]]]
    ids, positions, mask, rows, ends = shared_prefix_rows(groups, pad_id=0)
    assert ids.tolist() == [[1, 2, 3, 4, 5], [7, 8, 9, 0, 0], [1, 2, 3, 0, 0]]
    assert positions.tolist() == [[0, 1, 2, 3, 2], [0, 1, 0, 0, 0], [0, 1, 2, 0, 0]]
    assert rows.tolist() == [0, 0, 1, 1, 2, 2] and ends.tolist() == [3, 4, 1, 2, 1, 2]
    assert mask.shape == (3, 1, 5, 5) and mask.dtype == torch.float32
    allowed = [
        [[1, 0, 0, 0, 0],   # prefix
         [1, 1, 0, 0, 0],
         [1, 1, 1, 0, 0],   # 3: the prefix and itself
         [1, 1, 1, 1, 0],   # 4: the prefix, 3 and itself
         [1, 1, 0, 0, 1]],  # 5: the prefix and itself, not 3 4
        [[1, 0, 0, 0, 0],
         [1, 1, 0, 0, 0],
         [0, 0, 1, 0, 0],   # 9 sees only itself: no shared prefix
         [0, 0, 0, 1, 0],   # padding sees itself
         [0, 0, 0, 0, 1]],
        [[1, 0, 0, 0, 0],
         [1, 1, 0, 0, 0],
         [1, 1, 1, 0, 0],
         [0, 0, 0, 1, 0],
         [0, 0, 0, 0, 1]],
    ]
    assert (mask[:, 0] == 0).int().tolist() == allowed
    assert set(mask[mask != 0].unique().tolist()) == {torch.finfo(torch.float32).min}
    assert shared_prefix_rows([[[4, 5]]], 0, torch.bfloat16)[2].dtype == torch.bfloat16


def test_shared_prefix_columns_by_hand():
    # The same groups as above: row 0 is [1 2 | 3 4 | 5], row 1 [7 8 | 9], row 2 [1 2 | 3].
    assert shared_prefix_columns([[1, 2, 3, 4], [1, 2, 5]]) == [[0, 1, 2, 3], [0, 1, 4]]
    assert shared_prefix_columns([[7, 8], [9]]) == [[0, 1], [2]]
    assert shared_prefix_columns([[1, 2], [1, 2, 3]]) == [[0, 1], [0, 1, 2]]
    assert shared_prefix_columns([[4, 5], [4, 5]]) == [[0, 1], [0, 1]]  # identical: all shared
    assert [common_prefix_length(g) for g in ([[1, 2, 3], [1, 2, 5]], [[7], [9]], [[4, 5], [4, 5]])] == [2, 0, 2]
    # every column points at the sequence's own token in the row shared_prefix_rows builds
    groups = [[[1, 2, 3, 4], [1, 2, 5]], [[7, 8], [9]], [[1, 2], [1, 2, 3]]]
    ids = shared_prefix_rows(groups, pad_id=0)[0]
    for row, group in enumerate(groups):
        for sequence, columns in zip(group, shared_prefix_columns(group)):
            assert ids[row, columns].tolist() == sequence


def test_first_and_last_groups_by_hand():
    assert first_and_last_groups([4, 4, 4, 4]) == [0, 1, 2, 3, 12, 13, 14, 15]
    assert first_and_last_groups([2, 3, 1]) == [0, 1, 5]  # groups of other sizes
    assert first_and_last_groups([4, 4]) == list(range(8))  # two groups or fewer: every item
    assert first_and_last_groups([3]) == [0, 1, 2]
    assert first_and_last_groups([]) == []


@pytest.mark.parametrize("training", [True, False])
def test_compare_layouts_runs_both_in_eval_mode_and_reports_a_refusing_shortcut(training):
    model = torch.nn.Dropout(0.5).train(training)
    modes = []

    def padded():
        modes.append(model.training)
        return torch.tensor([1.0, 2.0], dtype=torch.bfloat16)

    def shortcut():
        modes.append(model.training)
        return torch.tensor([1.0, 2.5], dtype=torch.float64)

    reference, result, error = compare_layouts(model, padded, shortcut)
    assert modes == [False, False] and model.training == training  # eval for both, the mode restored
    assert reference.dtype == result.dtype == torch.float32 and error is None
    assert result.tolist() == [1.0, 2.5]

    def refusing():
        raise RuntimeError("no 4D masks here")

    reference, result, error = compare_layouts(model, padded, refusing)
    assert result is None and error == "RuntimeError: no 4D masks here" and model.training == training
    assert reference.tolist() == [1.0, 2.0]
    # |2.5 - 2| = 0.5 against tol + tol * 2: within 0.2, not within 0.1; a refusing shortcut never matches
    assert shortcut_matches(model, padded, shortcut, 0.2) and not shortcut_matches(model, padded, shortcut, 0.1)
    assert not shortcut_matches(model, padded, refusing, 1.0)
