"""Completion log-probs: the prompt-once layout (rloo.shared_prompt) against padded rows."""

from __future__ import annotations

import pytest
import torch

from tiller.batching import mask_positions
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


def _both_heads(monkeypatch, compute):
    """`compute()` with the output layer computing log-probs (the default for these
    architectures), then with it returning logits for `losses.token_logprobs` (the plain path)."""
    fused = compute()
    with monkeypatch.context() as patch:
        patch.setattr("tiller.logprobs._plain_output_layer", lambda model: None)
        plain = compute()
    return fused, plain


@pytest.mark.parametrize("layout", ["padded", "padded, frozen prefix", "prompt once", "prompt once, frozen prefix"])
def test_the_output_layer_computing_log_probs_gives_the_logits_path_results(adapted_model, monkeypatch, layout):
    """At temperature 0.7: in padded rows the same bits (log-probs, entropies, the adapter's
    gradients: each chunk runs that path's operations on its rows); in the prompt-once layout,
    where a column predicting several completions' first tokens sums their gradients in the
    hidden size instead of the vocabulary, log-probs and entropies to 1e-5 and gradients to 1e-4
    of each tensor's largest element."""
    model = adapted_model
    trained = [p for p in model.parameters() if p.requires_grad]
    ids, mask, cmask, plen = build_batch(ROW_PROMPTS, COMPLETIONS, 1, 0)
    prefix = FrozenPrefix.of(model) if "frozen" in layout else None
    once = prompt_once_rows(ROW_PROMPTS, COMPLETIONS, 4, 0, torch.float32, "cpu") if "once" in layout else None
    hidden = None
    if prefix is not None:
        hidden = (prefix.hidden(once.input_ids, once.attention_mask, once.position_ids) if once
                  else prefix.hidden(ids, mask, mask_positions(mask)))

    def compute():
        logps, entropy = (completion_logprobs(model, None, None, None, 0.7, True, prefix, hidden, once) if once
                          else completion_logprobs(model, ids, mask, plen, 0.7, True, prefix, hidden))
        return logps * cmask, entropy * cmask, torch.autograd.grad((logps * cmask).sum(), trained)

    fused, plain = _both_heads(monkeypatch, compute)
    if once is None:
        assert torch.equal(fused[0], plain[0]) and torch.equal(fused[1], plain[1])
        assert all(torch.equal(a, b) for a, b in zip(fused[2], plain[2]))
    torch.testing.assert_close(fused[0], plain[0], rtol=0, atol=1e-5)
    torch.testing.assert_close(fused[1], plain[1], rtol=0, atol=1e-5)
    assert fused[0].abs().sum() > 1 and not fused[1].requires_grad
    for a, b in zip(fused[2], plain[2]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4 * float(b.abs().max()))


def test_a_trained_tied_output_layer_gets_the_logits_path_gradient(tmp_path, monkeypatch):
    """Full fine-tuning with the output layer tied to the embeddings: the shared weight's gradient
    (from both uses) and every other one, to 1e-4 of each tensor's largest element."""
    model = load_causal_lm(str(build_tiny_model(tmp_path / "m", num_layers=2)))
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    ids, mask, cmask, plen = build_batch(ROW_PROMPTS, COMPLETIONS, 1, 0)
    params = list(model.parameters())

    def compute():
        return torch.autograd.grad((completion_logprobs(model, ids, mask, plen, 1.0)[0] * cmask).sum(), params)

    fused, plain = _both_heads(monkeypatch, compute)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-4 * float(b.abs().max()))


def test_no_tensor_of_every_token_by_the_vocabulary_is_kept_for_backward(adapted_model):
    """What autograd saves for the backward of a training forward (the memory held at its peak):
    with the output layer computing log-probs, nothing of [completion tokens, vocabulary] size
    besides the model's own weights; the logits path keeps the logits (it did before the change,
    for both layouts)."""
    model = adapted_model
    weights = {p.data_ptr() for p in model.parameters()}
    vocab = model.get_output_embeddings().weight.shape[0]
    ids, mask, cmask, plen = build_batch(ROW_PROMPTS, COMPLETIONS, 1, 0)
    once = prompt_once_rows(ROW_PROMPTS, COMPLETIONS, 4, 0, torch.float32, "cpu")
    for name, run in (("padded", lambda: completion_logprobs(model, ids, mask, plen, 0.7)),
                      ("prompt once", lambda: completion_logprobs(model, None, None, None, 0.7, once=once))):
        saved = []
        def pack(t):
            if t.data_ptr() not in weights:
                saved.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            run()
        tokens = int(cmask.sum()) if name == "prompt once" else cmask.numel()
        assert saved and max(saved) < tokens * vocab, name


def test_an_architecture_that_changes_its_logits_keeps_the_logits_path(tmp_path):
    """Gemma 2 soft-caps its logits after the output layer: the log-probs are those of the capped
    logits (the output layer is left alone)."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    model = Gemma2ForCausalLM(Gemma2Config(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                           final_logit_softcapping=0.5, pad_token_id=0))
    ids, mask, cmask, plen = build_batch(ROW_PROMPTS, COMPLETIONS, 1, 0)
    with torch.no_grad():
        logps, _ = completion_logprobs(model, ids, mask, plen, 1.0)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, plen - 1:-1]
    assert float(logits.abs().max()) <= 0.5  # capped
    expected = torch.log_softmax(logits, -1).gather(-1, ids[:, plen:, None]).squeeze(-1)
    torch.testing.assert_close(logps * cmask, expected * cmask, rtol=0, atol=1e-5)
