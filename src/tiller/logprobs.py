"""Log-probabilities of completion tokens under a causal LM, the quantity RLOO trains on and
evaluation measures KL with; and of labelled tokens (`label_logprobs`, `logprobs_at`), what SFT
and DPO train on.

Rows are laid out as [left-padded prompt | right-padded completion] (`build_batch`), so every
completion starts at the same column and one `logits_to_keep` slice covers exactly the
completion tokens: the logits are computed for those positions only (`completion_logits`), and
the log-softmax is never materialized over the vocabulary (`completion_logprobs`).

With `rloo.shared_prompt` a micro-batch of whole prompt groups is instead laid out one row per
group, the prompt once and each completion after it ([prompt | completion 1 | ... | completion k],
a 4D mask keeping the completions apart: `PromptOnceRows`); the log-probs come back in the same
[completions, completion tokens] shape, so the loss code does not know which layout ran.

Where the architecture's logits are its output layer applied to the last hidden states and
nothing more (`OUTPUT_LAYER_LOGPROBS_ARCHITECTURES`), the output layer itself computes the log-probs for the duration of
the forward (`losses.linear_token_logprobs`, a chunk of tokens at a time): the [tokens, vocabulary]
logits and their gradient are never whole, the largest tensors of a step otherwise (Qwen3's
vocabulary: 0.6 MB a token each in float32). The swap happens inside the layer's own call, so
the hooks FSDP2 and DeepSpeed ZeRO-3 put on it still gather its weight around it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from accelerate.utils import extract_model_from_parallel

from tiller import losses
from tiller.batching import mask_positions, pad_batch, shared_prefix_columns, shared_prefix_rows
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


@dataclass
class PromptOnceRows:
    """Completions of whole prompt groups, one row per group with the prompt once (built by
    `prompt_once_rows`). Every row of `input_ids` / `position_ids` / `attention_mask` (additive,
    [groups, 1, T, T]) is what `tiller.batching.shared_prefix_rows` makes of the group's sequences;
    the logits are computed at the `keep` columns only, and each completion token's log-prob is read
    at its predecessor's column (`pick_row`, `pick_keep`) and written to (`out_row`, `out_col`) of a
    [completions, width] result, `width` the longest completion (at least 1), as `build_batch` pads."""

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    attention_mask: torch.Tensor
    keep: torch.Tensor
    pick_row: torch.Tensor
    pick_keep: torch.Tensor
    targets: torch.Tensor
    out_row: torch.Tensor
    out_col: torch.Tensor
    completions: int
    width: int
    # Each sequence's row and last column (a reward model's score is read there).
    rows: torch.Tensor
    ends: torch.Tensor


def prompt_once_rows(prompt_ids: list[list[int]], completions: list[list[int]], k: int, pad_id: int,
                     dtype: torch.dtype, device, suffixes: list[list[int]] | None = None) -> PromptOnceRows:
    """`PromptOnceRows` of consecutive groups of k rows sharing a prompt (`prompt_ids` per row,
    as the RLOO recipe repeats them). `suffixes` (per row, may be empty) are written after each
    completion in its own segment: a reward model's end-of-turn tokens, so that one forward of
    the frozen layers serves the policy and a reward adapter; the completion's own log-probs do
    not see them (causal)."""
    if len(completions) % k:
        raise ValueError(f"{len(completions)} completions are not whole groups of {k}")
    suffixes = suffixes or [[] for _ in completions]
    sequences = [p + c + x for p, c, x in zip(prompt_ids, completions, suffixes)]
    groups = [sequences[g:g + k] for g in range(0, len(sequences), k)]
    input_ids, position_ids, mask, rows, ends = shared_prefix_rows(groups, pad_id, dtype)
    picks = []  # (group row, column, target, completion, token)
    for g, group in enumerate(groups):
        for j, columns in enumerate(shared_prefix_columns(group)):
            n = g * k + j
            start = len(prompt_ids[n])
            for t, token in enumerate(completions[n]):
                picks.append((g, columns[start + t - 1], token, n, t))
    keep = sorted({column for _, column, _, _, _ in picks})
    where = {column: i for i, column in enumerate(keep)}

    def tensor(values):
        return torch.tensor(values, dtype=torch.long, device=device)

    return PromptOnceRows(
        input_ids=input_ids.to(device), position_ids=position_ids.to(device), attention_mask=mask.to(device),
        keep=tensor(keep), pick_row=tensor([p[0] for p in picks]), pick_keep=tensor([where[p[1]] for p in picks]),
        targets=tensor([p[2] for p in picks]), out_row=tensor([p[3] for p in picks]), out_col=tensor([p[4] for p in picks]),
        completions=len(completions), width=max([1] + [len(c) for c in completions]),
        rows=rows.to(device), ends=ends.to(device))


# Architectures whose forward returns `lm_head(last hidden states)` as the logits, unchanged (read
# in transformers 5.24's modeling code); others (Gemma 2's soft-capping, Cohere's logit scale,
# Granite's divisor, ...) keep the plain path.
OUTPUT_LAYER_LOGPROBS_ARCHITECTURES = frozenset({"llama", "mistral", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe"})


def _plain_output_layer(model) -> torch.nn.Linear | None:
    """The model's output layer when the fused log-probs reproduce its logits: a bias-free
    `nn.Linear` (not an adapter-wrapped one) of an architecture in `OUTPUT_LAYER_LOGPROBS_ARCHITECTURES`; else None."""
    inner = extract_model_from_parallel(model)
    config = getattr(inner, "config", None)
    if getattr(config, "model_type", None) not in OUTPUT_LAYER_LOGPROBS_ARCHITECTURES or not hasattr(inner, "get_output_embeddings"):
        return None
    head = inner.get_output_embeddings()
    return head if isinstance(head, torch.nn.Linear) and head.bias is None else None


def describe_logprob_path(model) -> str:
    """One line for a stage's start: how this model's completion log-probs are computed."""
    head = _plain_output_layer(model)
    if head is None:
        model_type = getattr(getattr(extract_model_from_parallel(model), "config", None), "model_type", None)
        return (f"log-probs from the model's logits ([tokens, vocabulary] per micro-batch): the output layer of "
                f"{model_type!r} is not a plain linear layer whose output is the logits")
    vocab = head.out_features  # not weight.shape: DeepSpeed ZeRO-3 leaves an empty tensor outside the forward
    return (f"log-probs computed by the output layer {losses.linear_token_rows(vocab)} tokens at a time (the "
            f"[tokens, {vocab:,}] logits are never whole)")


@contextlib.contextmanager
def _head_as_logprobs(head: torch.nn.Linear, select, labels: torch.Tensor, temperature: float, with_entropy: bool):
    """While open, `head` returns the log-probs of `labels` at the hidden states `select` picks
    from its input ([tokens, H]) instead of logits; the entropies land in the yielded dict."""
    found = {}

    def forward(hidden):
        logps, found["entropy"] = losses.linear_token_logprobs(select(hidden), head.weight, labels, temperature,
                                                               with_entropy)
        return logps

    head.forward = forward  # an instance attribute: the module's call and its hooks stay
    try:
        yield found
    finally:
        del head.forward


def _tempered(temperature: float) -> float:
    return temperature if temperature > 0 else 1.0  # 0 is greedy decoding: the untempered distribution


def _completion_forward(model, input_ids, attention_mask, prompt_len: int, prefix: FrozenPrefix | None,
                        hidden: torch.Tensor | None):
    """The model's output at every completion position and the one after (`logits_to_keep`)."""
    completion_len = input_ids.shape[1] - prompt_len
    positions = mask_positions(attention_mask)
    if hidden is not None:
        with prefix.tail_only():
            return model(inputs_embeds=hidden, attention_mask=attention_mask, position_ids=positions,
                         logits_to_keep=completion_len + 1, use_cache=False).logits
    return model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                 logits_to_keep=completion_len + 1, use_cache=False).logits


def completion_logits(model, input_ids, attention_mask, prompt_len: int,
                      prefix: FrozenPrefix | None = None, hidden: torch.Tensor | None = None) -> torch.Tensor:
    """Logits predicting each completion token (positions prompt_len - 1 .. end - 1), computed
    for those positions only. With `hidden` (the output of `prefix`'s frozen layers for these
    rows) only the layers after it run."""
    return _completion_forward(model, input_ids, attention_mask, prompt_len, prefix, hidden)[:, :-1]


def completion_logprobs(model, input_ids, attention_mask, prompt_len: int, temperature: float, with_entropy: bool = False,
                        prefix: FrozenPrefix | None = None, hidden: torch.Tensor | None = None,
                        once: PromptOnceRows | None = None):
    """Per-token log-probs of the completion tokens [rows, completion tokens] and, with
    `with_entropy`, the entropies of the same distributions (no gradient); the log-softmax is
    never materialized over the vocabulary, nor, where the output layer allows it, the logits
    (module docstring). With `once`, the same from the prompt-once layout (`hidden` then being
    the frozen layers' output for its rows)."""
    if once is not None:
        return _prompt_once_logprobs(model, once, temperature, with_entropy, prefix, hidden)
    labels = input_ids[:, prompt_len:]
    head = _plain_output_layer(model)
    if head is not None:
        rows, width = labels.shape

        def select(states):  # [rows, width + 1, H]: the last position predicts past the row
            return states[:, :-1].reshape(rows * width, states.shape[-1])

        with _head_as_logprobs(head, select, labels.reshape(-1), _tempered(temperature), with_entropy) as found:
            logps = _completion_forward(model, input_ids, attention_mask, prompt_len, prefix, hidden)
        entropy = found["entropy"].view(rows, width) if with_entropy else None
        return logps.view(rows, width), entropy
    return logprobs_from_logits(completion_logits(model, input_ids, attention_mask, prompt_len, prefix, hidden),
                                labels, temperature, with_entropy)


@contextlib.contextmanager
def _head_passing_hidden_states(head: torch.nn.Linear):
    """While open, `head` returns its input (the last hidden states) instead of logits."""
    head.forward = lambda hidden: hidden  # an instance attribute, as in _head_as_logprobs
    try:
        yield
    finally:
        del head.forward


def completion_kl(policy, reference, input_ids, attention_mask, prompt_len: int,
                  prefixes: tuple[FrozenPrefix, FrozenPrefix] | None = None, hidden: torch.Tensor | None = None):
    """The exact KL(policy || reference) of the two next-token distributions at each completion
    token (the whole vocabulary) -> [rows, completion tokens], for metrics (no gradient). Where
    both output layers allow it (`_plain_output_layer`), from their last hidden states, the two
    models' logits a chunk of tokens at a time (`losses.linear_token_kl`); else from the two
    [rows, completion tokens, vocabulary] logits (`losses.token_kl`). With `prefixes` (each
    model's frozen prefix) and `hidden` (their shared output for these rows) only the layers
    after it run."""
    prefixes = prefixes or (None, None)
    models = (policy, reference)
    heads = [_plain_output_layer(m) for m in models]
    if None in heads:
        return losses.token_kl(*(completion_logits(m, input_ids, attention_mask, prompt_len, prefix, hidden)
                                 for m, prefix in zip(models, prefixes)))
    states = []
    for model, head, prefix in zip(models, heads, prefixes):
        with _head_passing_hidden_states(head):
            states.append(completion_logits(model, input_ids, attention_mask, prompt_len, prefix, hidden))
    rows, width, size = states[0].shape
    kl = losses.linear_token_kl(states[0].reshape(-1, size), heads[0].weight, states[1].reshape(-1, size), heads[1].weight)
    return kl.view(rows, width)


def logprobs_at(model, where: tuple[torch.Tensor, torch.Tensor], targets: torch.Tensor, temperature: float = 1.0,
                with_entropy: bool = False, **inputs) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(log p(targets[n]) predicted at (row, column) `where[0][n], where[1][n]` of one forward of
    `model` on `inputs` -> [N] (float32 for half-precision models), under the tempered softmax;
    with `with_entropy`, the entropies of the same distributions, else None). Where the output
    layer allows it (`_plain_output_layer`) it computes them at those positions only, a chunk of
    tokens at a time: no logits at other positions (a prompt's), none whole. Else from the
    logits, picked at those positions first. Either way each token's value is its row's
    log-softmax, so where the logits path ran on every position before, the picked values are its
    bits (on CPU; checked in tests/unit/test_logprobs.py)."""
    head = _plain_output_layer(model)
    if head is not None:
        with _head_as_logprobs(head, lambda states: states[where], targets, _tempered(temperature),
                               with_entropy) as found:
            return model(**inputs, use_cache=False).logits, found["entropy"]
    logits = model(**inputs, use_cache=False).logits
    picked = logits[where][None]  # [1, N, V]: a copy, so the logits can go
    del logits
    if _tempered(temperature) != 1.0:
        picked = picked / temperature
    # All the picked tokens are one [N, V] block here (padded rows go row by row): chunks of a
    # row's size keep the float temporaries of the vocabulary-wide ops as small.
    chunk = 64
    logps = losses.token_logprobs(picked, targets[None], chunk_size=chunk)[0]
    entropy = losses.token_entropy(picked.detach(), chunk_size=chunk)[0] if with_entropy else None
    return logps, entropy


def label_logprobs(model, labels: torch.Tensor, **inputs) -> torch.Tensor:
    """Per-token log p(labels[b, t]) [B, T], 0 where `labels` is -100 (`logits[:, t]` predicts
    `labels[:, t]`: the caller shifted), from one forward of `model` on `inputs`
    (`logprobs_at` at the labelled positions): what `losses.token_logprobs` of the model's
    logits gives, without the logits of the unlabelled positions or the whole [B, T, V]."""
    where = (labels != losses.IGNORE_INDEX).nonzero(as_tuple=True)
    picked, _ = logprobs_at(model, where, labels[where], **inputs)
    return picked.new_zeros(labels.shape).index_put(where, picked)


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor, temperature: float, with_entropy: bool):
    """(log-probs of `labels`, entropies or None) under the tempered softmax of `logits` [B, T, V]:
    the logits path, chunked over the vocabulary (`losses.token_logprobs`)."""
    if _tempered(temperature) != 1.0:
        logits = logits / temperature  # the sampling distribution is the tempered one
    logps = losses.token_logprobs(logits, labels)
    entropy = losses.token_entropy(logits.detach()) if with_entropy else None
    return logps, entropy


def _prompt_once_logprobs(model, once: PromptOnceRows, temperature: float, with_entropy: bool,
                          prefix: FrozenPrefix | None, hidden: torch.Tensor | None):
    inputs = dict(input_ids=once.input_ids) if hidden is None else dict(inputs_embeds=hidden)
    with prefix.tail_only() if hidden is not None else contextlib.nullcontext():
        token_logps, token_entropy = logprobs_at(model, (once.pick_row, once.pick_keep), once.targets, temperature,
                                                 with_entropy, **inputs, attention_mask=once.attention_mask,
                                                 position_ids=once.position_ids, logits_to_keep=once.keep)
    shape = (once.completions, once.width)
    logps = token_logps.new_zeros(shape).index_put((once.out_row, once.out_col), token_logps)
    entropy = None
    if with_entropy:
        entropy = token_entropy.new_zeros(shape).index_put((once.out_row, once.out_col), token_entropy)
    return logps, entropy
