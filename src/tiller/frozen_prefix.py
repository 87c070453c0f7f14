"""Run the frozen leading layers of a partly-trained decoder once, and the rest from their output.

With LoRA on the last N layers (`lora.last_n_layers`), the first L - N decoder layers carry no
adapter and no trainable parameter: the policy and its reference (the same base with the adapter
disabled) compute exactly the same hidden states up to layer L - N. RLOO needs both on the same
sequences (reference log-probs, then the policy forward with gradients), so the shared part is
computed once, without gradients, and each model only runs its tail from there:

    hidden = prefix.hidden(input_ids, attention_mask)                   # layers 0 .. n-1, no grad
    with prefix.tail_only():
        out = model(inputs_embeds=hidden, attention_mask=..., position_ids=...)  # layers n .. L-1

`tail_only` swaps the decoder's layer list for its tail for the duration of the call, so the
model's own forward (rotary embeddings, masks, final norm, LM head) runs unchanged; that is why
it goes through the possibly DDP-wrapped model. It assumes the decoder feeds `inputs_embeds`
straight into the first layer, which holds for Llama-style models (Llama, Mistral, Qwen2/3,
SmolLM2) but not, for example, for Gemma (it rescales the embeddings): callers check the result
against the full forward once before relying on it (the RLOO recipe does, on its first batch).
"""

from __future__ import annotations

import contextlib
import hashlib

import torch

from tiller.batching import mask_positions
from tiller.models import base_hf_model
from tiller.score_head import last_token_index


def _decoder(model: torch.nn.Module) -> torch.nn.Module | None:
    """The decoder stack (with its `layers` list) of a plain or peft-wrapped, not DDP-wrapped, model."""
    hf = base_hf_model(model)
    decoder = getattr(hf, getattr(hf, "base_model_prefix", "model"), None)
    if decoder is None or not isinstance(getattr(decoder, "layers", None), torch.nn.ModuleList):
        return None
    return decoder


def frozen_layer_count(model: torch.nn.Module) -> int:
    """Leading decoder layers (embeddings included) with no trainable parameter and no adapter."""
    decoder = _decoder(model)
    if decoder is None:
        return 0
    embeddings = decoder.get_input_embeddings() if hasattr(decoder, "get_input_embeddings") else None
    if embeddings is not None and any(p.requires_grad for p in embeddings.parameters()):
        return 0
    count = 0
    for layer in decoder.layers:
        named = list(layer.named_parameters())
        if any(p.requires_grad for _, p in named) or any("lora_" in name for name, _ in named):
            break
        count += 1
    return count


class FrozenPrefix:
    def __init__(self, decoder: torch.nn.Module, layers: int):
        if not 0 < layers < len(decoder.layers):
            raise ValueError(f"a frozen prefix needs 1 to {len(decoder.layers) - 1} layers, got {layers}")
        self.decoder = decoder
        self.layers = layers

    @classmethod
    def of(cls, model: torch.nn.Module) -> "FrozenPrefix | None":
        """The model's frozen prefix, or None when it has none worth sharing (or an unknown layout)."""
        decoder = _decoder(model)
        n = frozen_layer_count(model)
        if decoder is None or n == 0 or n >= len(decoder.layers) or not hasattr(decoder, "norm"):
            return None
        return cls(decoder, n)

    @contextlib.contextmanager
    def _swapped(self, layers: torch.nn.ModuleList, norm: torch.nn.Module | None = None):
        decoder = self.decoder
        full_layers, full_norm = decoder.layers, decoder.norm
        decoder.layers = layers
        if norm is not None:
            decoder.norm = norm
        try:
            yield
        finally:
            decoder.layers = full_layers
            decoder.norm = full_norm

    @torch.no_grad()
    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Output of the frozen layers (what the first trainable layer receives). `position_ids`
        go with a 4D mask (`tiller.batching.shared_prefix_rows`); by default the mask's count."""
        positions = mask_positions(attention_mask) if position_ids is None else position_ids
        with self._swapped(torch.nn.ModuleList(self.decoder.layers[:self.layers]), norm=torch.nn.Identity()):
            return self.decoder(input_ids=input_ids, attention_mask=attention_mask,
                                position_ids=positions, use_cache=False).last_hidden_state

    def tail_only(self):
        """Inside: the model's forward runs only the layers after the prefix (pass `inputs_embeds`)."""
        return self._swapped(torch.nn.ModuleList(self.decoder.layers[self.layers:]))


class FrozenOutputs:
    """The frozen layers' output for inputs met before, kept in memory for the next model on the
    same base in this process: the pipeline's reward and judge stages (LoRA adapters of one base
    on the same last layers) score the same validation pairs, so the judge's frozen layers read
    what the reward model's computed. An entry is found only for the same `base` (what names the
    weights: `base_identity`), the same number of layers and the exact same input tensors; at
    most `max_bytes` are kept (later inputs are computed as usual, not stored)."""

    def __init__(self, max_bytes: int = 1 << 30):
        self.max_bytes = max_bytes
        self.stored: dict[str, torch.Tensor] = {}
        self.bytes = 0
        self.reused = 0

    def hidden(self, prefix: FrozenPrefix, base: str, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
               position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """`prefix.hidden(...)`, or what it gave for these inputs before."""
        key = _inputs_key(base, prefix.layers, input_ids, attention_mask, position_ids)
        if key in self.stored:
            self.reused += 1
            return self.stored[key]
        hidden = prefix.hidden(input_ids, attention_mask, position_ids)
        size = hidden.numel() * hidden.element_size()
        if self.bytes + size <= self.max_bytes:
            self.stored[key] = hidden
            self.bytes += size
        return hidden

    def clear(self) -> None:
        self.stored.clear()
        self.bytes = 0


def _inputs_key(base: str, layers: int, *tensors: torch.Tensor | None) -> str:
    digest = hashlib.sha256(f"{base}|{layers}".encode())
    for t in tensors:
        if t is None:
            digest.update(b"|none")
            continue
        digest.update(f"|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


class ReusablePrefix:
    """A model's frozen prefix whose output goes through a `FrozenOutputs` store under `base`:
    what the scoring functions of `tiller.score_head` take as `frozen`."""

    def __init__(self, prefix: FrozenPrefix, outputs: FrozenOutputs, base: str):
        self.prefix, self.outputs, self.base = prefix, outputs, base

    def hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
               position_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.outputs.hidden(self.prefix, self.base, input_ids, attention_mask, position_ids)

    def tail_only(self):
        return self.prefix.tail_only()


def equal_leading_layers(a: torch.nn.Module, b: torch.nn.Module) -> tuple[FrozenPrefix, FrozenPrefix] | None:
    """For two separate models, one prefix of each over the leading decoder layers that both
    hold bit for bit (embeddings included): a policy whose LoRA on the last layers was merged
    and the base it started from, as the evaluation loads them. The prefix of either computes
    the hidden states both tails then start from. None when the embeddings differ, no layer or
    every layer is equal, or the layouts differ; callers check the shared path once against
    the full forward, as with `FrozenPrefix.of`."""
    decoders = _decoder(a), _decoder(b)
    if (None in decoders or type(decoders[0]) is not type(decoders[1])
            or len(decoders[0].layers) != len(decoders[1].layers) or not all(hasattr(d, "norm") for d in decoders)):
        return None
    embeddings = [d.get_input_embeddings() if hasattr(d, "get_input_embeddings") else None for d in decoders]
    if None in embeddings or not _same_parameters(*embeddings):
        return None
    count = 0
    for layer_a, layer_b in zip(decoders[0].layers, decoders[1].layers):
        if not _same_parameters(layer_a, layer_b):
            break
        count += 1
    if not 0 < count < len(decoders[0].layers):
        return None
    return FrozenPrefix(decoders[0], count), FrozenPrefix(decoders[1], count)


def _same_parameters(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    named_a, named_b = list(a.named_parameters()), list(b.named_parameters())
    return ([name for name, _ in named_a] == [name for name, _ in named_b]
            and all(x.shape == y.shape and x.dtype == y.dtype and torch.equal(x, y)
                    for (_, x), (_, y) in zip(named_a, named_b)))


# ---- the reward model's pass over the same frozen layers -----------------------------------------
#
# A reward adapter on the policy's base (tiller.rewards.shared_base) on the last layers too sees,
# below them, the same frozen layers. Its token ids are the policy's row (prompt + completion)
# re-rendered through the chat template: usually the same ids followed by a few more (the end of
# turn). Causal attention makes the frozen layers' output at a position depend only on the tokens
# up to it, so one frozen pass over the rows extended by those suffixes serves all three: the
# policy and the reference read its first columns, the reward adapter all of it.


def reward_suffix(policy_row: list[int], reward_row: list[int]) -> list[int] | None:
    """The reward row's tokens after the policy row when the policy row is a prefix of it; None
    when it is not (a sampled token sequence that re-tokenizes differently, a cut prompt, a
    stripped thinking block): then that row needs the reward model's own pass."""
    if len(reward_row) < len(policy_row) or reward_row[:len(policy_row)] != policy_row:
        return None
    return reward_row[len(policy_row):]


def extend_rows(input_ids: torch.Tensor, attention_mask: torch.Tensor, suffixes: list[list[int]],
                pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch with each row's suffix written right after its last real token (columns added
    on the right as needed) and unmasked. Every real token of the original batch keeps its column
    and position, so a causal model's output there is unchanged; the original mask still marks
    exactly the policy's tokens."""
    extra = max((len(s) for s in suffixes), default=0)
    ids = torch.nn.functional.pad(input_ids, (0, extra), value=pad_id)
    mask = torch.nn.functional.pad(attention_mask, (0, extra), value=0)
    ends = last_token_index(attention_mask) + 1  # one past each row's last real token
    for row, suffix in enumerate(suffixes):
        if suffix:
            end = int(ends[row])
            ids[row, end:end + len(suffix)] = torch.tensor(suffix, dtype=ids.dtype, device=ids.device)
            mask[row, end:end + len(suffix)] = 1
    return ids, mask
