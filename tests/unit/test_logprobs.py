"""Completion log-probs: the prompt-once layout (rloo.shared_prompt) against padded rows."""

from __future__ import annotations

import pytest
import torch

from tiller import losses
from tiller.batching import mask_positions, pad_batch
from tiller.chat import IGNORE
from tiller.config import LoraConfig
from tiller.frozen_prefix import FrozenPrefix
from tiller.logprobs import build_batch, completion_logprobs, label_logprobs, prompt_once_rows
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


def _saved_for_backward(model, run) -> list[int]:
    """The sizes of what autograd saves for backward while `run()` runs (the memory held at a
    training forward's peak), the model's own weights left out."""
    weights = {p.data_ptr() for p in model.parameters()}
    saved = []

    def pack(t):
        if t.data_ptr() not in weights:
            saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return saved


def test_no_tensor_of_every_token_by_the_vocabulary_is_kept_for_backward(adapted_model):
    """What autograd saves for the backward of a training forward (the memory held at its peak):
    with the output layer computing log-probs, nothing of [completion tokens, vocabulary] size
    besides the model's own weights; the logits path keeps the logits (it did before the change,
    for both layouts)."""
    model = adapted_model
    vocab = model.get_output_embeddings().weight.shape[0]
    ids, mask, cmask, plen = build_batch(ROW_PROMPTS, COMPLETIONS, 1, 0)
    once = prompt_once_rows(ROW_PROMPTS, COMPLETIONS, 4, 0, torch.float32, "cpu")
    for name, run in (("padded", lambda: completion_logprobs(model, ids, mask, plen, 0.7)),
                      ("prompt once", lambda: completion_logprobs(model, None, None, None, 0.7, once=once))):
        saved = _saved_for_backward(model, run)
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


# SFT's and DPO's rows: prompt + answer, the answer's tokens labelled (-100 on the prompt and the
# padding; `logits[:, t]` predicts `labels[:, t]`), right-padded, of different lengths: 78 labelled
# tokens of 132 positions. (At a few dozen tokens in all, the logits path's [positions, vocabulary]
# product and the output layer's [labelled tokens, vocabulary] one take different matrix-product
# kernels on this CPU, and the gradients differ in the last bits, 5e-7 at most: hence this size.)
def _labelled_rows():
    generator = torch.Generator().manual_seed(0)
    prompt_lengths, answer_lengths = [3, 8, 5, 6], [30, 23, 16, 9]
    sequences = [torch.randint(3, 500, (p + a,), generator=generator).tolist()
                 for p, a in zip(prompt_lengths, answer_lengths)]
    ids, mask = pad_batch(sequences, 0)
    labels = torch.full_like(ids, IGNORE)
    for row, (seq, n) in enumerate(zip(sequences, prompt_lengths)):
        labels[row, n - 1:len(seq) - 1] = torch.tensor(seq[n:])
    return ids, mask, labels


def test_label_log_probs_give_the_bits_of_the_log_softmax_over_every_position(adapted_model, monkeypatch):
    """`label_logprobs` (SFT, DPO) against what SFT and DPO computed before it, the model's logits at
    every position then `losses.token_logprobs`: the same log-probs and adapter gradients to the
    bit, through the output layer (which computes them at the labelled positions only) and
    through the logits path (which picks those positions' logits first)."""
    model = adapted_model
    trained = [p for p in model.parameters() if p.requires_grad]
    ids, mask, labels = _labelled_rows()
    before = losses.token_logprobs(model(input_ids=ids, attention_mask=mask, use_cache=False).logits, labels)
    before_grads = torch.autograd.grad(before.sum(), trained)

    def compute():
        logps = label_logprobs(model, labels, input_ids=ids, attention_mask=mask)
        return logps, torch.autograd.grad(logps.sum(), trained)

    for logps, grads in _both_heads(monkeypatch, compute):
        assert torch.equal(logps, before) and (logps[labels == IGNORE] == 0).all() and before.abs().sum() > 1
        assert all(torch.equal(a, b) for a, b in zip(grads, before_grads))


def test_sft_and_dpo_losses_keep_their_values(adapted_model):
    """SFT's loss sum (padded and packed rows) and DPO's summed answer log-probs (padded rows; the
    prompt once to float rounding, 1e-6 relative) equal the formulas they had over the whole logits."""
    from tiller.preference_logprobs import EncodedPreference, concatenated_logps, pair_batch, shared_prompt_logps
    from tiller.recipes import sft

    model = adapted_model
    ids, mask, labels = _labelled_rows()
    examples = [sft.Example(row[m.bool()].tolist(), lab[m.bool()].tolist()) for row, m, lab in zip(ids, mask, labels)]
    with torch.no_grad():
        for packing in (False, True):
            batch = sft.build_batch(examples, 0, packing, 64)
            inputs = {k: v for k, v in batch.items() if v is not None and k != "labels"}
            old = losses.sft_loss_sum(model(**inputs, use_cache=False).logits, batch["labels"], batch["labels"] != IGNORE)
            new = sft.loss_sum(model, batch, "cpu")
            assert torch.equal(new[0], old[0]) and torch.equal(new[1], old[1]) and old[1] == (labels != IGNORE).sum()
        # Two pairs whose answers share their prompt (rows 0 and 1's), the other rows' answers rejected.
        real = [int(m.sum()) for m in mask]
        prompt = [int((lab == IGNORE)[:n].sum()) + 1 for lab, n in zip(labels, real)]  # prompt tokens per row

        def side(row, answer_row):
            answer = ids[answer_row, prompt[answer_row]:real[answer_row]].tolist()
            seq = ids[row, :prompt[row]].tolist() + answer
            return seq, [IGNORE] * (prompt[row] - 1) + answer + [IGNORE]

        pairs = [EncodedPreference(*side(0, 0), *side(0, 2)), EncodedPreference(*side(1, 1), *side(1, 3))]
        chosen, rejected = concatenated_logps(model, pairs, 0, "cpu")
        rows, row_mask, row_labels = pair_batch(pairs, 0)
        old = losses.token_logprobs(model(input_ids=rows, attention_mask=row_mask, use_cache=False).logits,
                                    row_labels).sum(-1)
        assert torch.equal(torch.cat([chosen, rejected]), old)
        torch.testing.assert_close(torch.cat(shared_prompt_logps(model, pairs, 0, "cpu")), old, rtol=1e-6, atol=1e-5)


def test_label_log_probs_keep_no_tensor_of_every_position_by_the_vocabulary(adapted_model):
    """For backward the output layer path saves nothing of [labelled tokens, vocabulary] size (the
    logits of every position were saved before); with no labelled token it gives zeros."""
    model = adapted_model
    vocab = model.get_output_embeddings().weight.shape[0]
    ids, mask, labels = _labelled_rows()
    saved = _saved_for_backward(model, lambda: label_logprobs(model, labels, input_ids=ids, attention_mask=mask))
    assert saved and max(saved) < int((labels != IGNORE).sum()) * vocab
    none = label_logprobs(model, torch.full_like(labels, IGNORE), input_ids=ids, attention_mask=mask)
    assert none.shape == labels.shape and not none.any()
