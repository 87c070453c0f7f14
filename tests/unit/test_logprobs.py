"""Completion log-probs: the prompt-once layout (rloo.shared_prompt) against padded rows."""

from __future__ import annotations

import pytest
import torch

from tiller.config import LoraConfig
from tiller.frozen_prefix import FrozenPrefix
from tiller.logprobs import build_batch, completion_logprobs, prompt_once_rows
from tiller.models import apply_lora, load_causal_lm
from tiller.tiny import build_tiny_model

# Two prompt groups of k=4: completions that share their first tokens (the shared prefix then
# runs into them), an empty one, and different lengths.
PROMPTS = [[5, 6, 7], [8, 9, 10, 11, 12]]
COMPLETIONS = [[20, 21, 22, 2], [20, 23], [30], [], [40, 41, 42, 43, 44], [40, 41], [7, 7, 7], [9]]
ROW_PROMPTS = [p for p in PROMPTS for _ in range(4)]


def test_the_layout_puts_the_prompt_once_and_reads_each_token_after_its_predecessor():
    """Worked by hand on two groups of two: [prompt | rest of each sequence after the common prefix]."""
    once = prompt_once_rows([[1, 2], [1, 2], [3], [3]], [[4, 5], [6], [7], []], 2, pad_id=0, dtype=torch.float32,
                            device="cpu", suffixes=[[9], [9], [], []])
    # row 0: sequences 1 2 4 5 9 and 1 2 6 9 -> [1 2 | 4 5 9 | 6 9]; row 1: 3 7 and 3 -> [3 | 7], padded
    assert once.input_ids.tolist() == [[1, 2, 4, 5, 9, 6, 9], [3, 7, 0, 0, 0, 0, 0]]
    assert once.position_ids.tolist()[0] == [0, 1, 2, 3, 4, 2, 3]
    # token 4 is predicted at column 1 (token 2), 5 at 2 (token 4), 6 at 1, 7 at column 0 of row 1
    picks = list(zip(once.pick_row.tolist(), once.keep[once.pick_keep].tolist(), once.targets.tolist(),
                     once.out_row.tolist(), once.out_col.tolist()))
    assert picks == [(0, 1, 4, 0, 0), (0, 2, 5, 0, 1), (0, 1, 6, 1, 0), (1, 0, 7, 2, 0)]
    assert once.keep.tolist() == [0, 1, 2] and (once.completions, once.width) == (4, 2)
    # a reward model reads each sequence at its last token: the suffix's, or the prompt's when empty
    assert list(zip(once.rows.tolist(), once.ends.tolist())) == [(0, 4), (0, 6), (1, 1), (1, 0)]
    # the second sequence of row 0 sees the prompt and itself, not the first one's tokens
    allowed = once.attention_mask[0, 0] == 0
    assert allowed[5].tolist() == [True, True, False, False, False, True, False]
    with pytest.raises(ValueError, match="not whole groups"):
        prompt_once_rows([[1]] * 3, [[2]] * 3, 2, 0, torch.float32, "cpu")


@pytest.fixture(scope="module", params=["llama", "qwen3"])
def adapted_model(request, tmp_path_factory):
    torch.manual_seed(0)
    folder = build_tiny_model(tmp_path_factory.mktemp("lp") / request.param, arch=request.param, num_layers=4)
    model = apply_lora(load_causal_lm(str(folder)), LoraConfig(r=4, alpha=8, dropout=0.0, last_n_layers=2), "CAUSAL_LM")
    for name, p in model.named_parameters():  # a non-zero adapter, so the tail differs from the base
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    return model


@pytest.mark.parametrize("through_frozen_prefix", [False, True], ids=["full forward", "frozen prefix"])
def test_prompt_once_gives_the_padded_rows_log_probs_entropy_and_gradients(adapted_model, through_frozen_prefix):
    """Tolerance 1e-5 on log-probs and entropies (float32 rounding of another attention layout),
    the adapter's gradients to 1e-4 of each tensor's largest element; reward suffixes change none
    of them."""
    model = adapted_model
    ids, mask, cmask, plen = build_batch(ROW_PROMPTS, COMPLETIONS, 1, 0)
    padded, entropy = completion_logprobs(model, ids, mask, plen, 0.7, True)
    prefix = FrozenPrefix.of(model) if through_frozen_prefix else None
    for suffixes in (None, [[2, 3]] * len(COMPLETIONS)):
        once = prompt_once_rows(ROW_PROMPTS, COMPLETIONS, 4, 0, torch.float32, "cpu", suffixes)
        hidden = prefix.hidden(once.input_ids, once.attention_mask, once.position_ids) if prefix else None
        logps, once_entropy = completion_logprobs(model, None, None, None, 0.7, True, prefix, hidden, once)
        assert logps.shape == padded.shape == cmask.shape
        assert torch.equal(logps == 0, (cmask == 0) | (padded == 0))  # nothing written outside completions
        torch.testing.assert_close(logps, padded * cmask, rtol=0, atol=1e-5)
        torch.testing.assert_close(once_entropy * cmask, entropy * cmask, rtol=0, atol=1e-5)
    trained = [p for p in model.parameters() if p.requires_grad]
    expected = torch.autograd.grad((completion_logprobs(model, ids, mask, plen, 0.7)[0] * cmask).sum(), trained)
    got = torch.autograd.grad(completion_logprobs(model, None, None, None, 0.7, False, prefix, hidden, once)[0].sum(),
                              trained)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4 * float(b.abs().max()))
