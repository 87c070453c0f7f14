"""Generation with the training model itself (no weight copy, no sync), KV-cached.

A plain decoding loop rather than `model.generate`, for three reasons that were measured or
required:
- each prompt is prefilled once and its KV cache repeated for its n samples;
- finished rows leave the batch (their cache rows are dropped), so no work is spent on padding
  after EOS;
- every completion samples from its own seeded generator, so results do not depend on how
  prompts are split over batches and processes (the 1-vs-2-process test relies on this);
- the KV cache is written into buffers sized for the whole completion (`ReservedKVLayer`), not
  grown by a concatenation per token and layer (measured in bench/README.md).
"""

from __future__ import annotations

import functools
import inspect
import time

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from tiller.batching import mask_positions, pad_batch
from tiller.rollout import Generation, Sampling, cut_at_eos


def eos_token_ids(model, tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif gen_eos:
        ids.update(gen_eos)
    return ids


def filter_logits(logits: torch.Tensor, sampling: Sampling, eos_ids: list[int]) -> torch.Tensor:
    """Temperature, top-k and top-p applied to [B, V] logits (returns new tensor, float32)."""
    logits = logits.float()
    if sampling.suppress_eos and eos_ids:
        logits[:, eos_ids] = float("-inf")
    if sampling.temperature > 0:
        logits = logits / sampling.temperature
    if sampling.top_k > 0:
        kth = torch.topk(logits, min(sampling.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        # Drop a token when the mass before it already reaches top_p (the first always stays).
        drop_sorted = (cumulative - torch.softmax(sorted_logits, dim=-1)) >= sampling.top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_next(logits: torch.Tensor, sampling: Sampling, generators: list[torch.Generator], eos_ids: list[int]) -> torch.Tensor:
    logits = filter_logits(logits, sampling, eos_ids)
    if sampling.temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits, dim=-1, dtype=torch.float64)
    # Inverse-CDF sampling with one uniform draw per row from the row's own generator: the
    # distribution torch.multinomial samples, at one random number per row instead of one per
    # vocabulary entry (Gumbel/exponential race: 49k draws a row, 15% of decoding for SmolLM2).
    # float64 keeps the cumulative sum's rounding far below the smallest probability that matters.
    u = torch.cat([torch.rand(1, dtype=torch.float64, generator=g, device=probs.device) for g in generators])
    cdf = probs.cumsum(dim=-1)
    picked = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True).squeeze(1)
    # u * total can round up to the total (index V, or a zero-probability tail): such rare rows
    # take the last token with positive probability instead.
    vocab = probs.shape[-1]
    picked = picked.clamp(max=vocab - 1)
    bad = probs.gather(1, picked[:, None]).squeeze(1) == 0
    if bad.any():
        picked[bad] = vocab - 1 - (probs[bad] > 0).flip(-1).long().argmax(-1)
    return picked


class ReservedKVLayer(DynamicLayer):
    """A full-attention cache layer whose keys/values live in a buffer with room for `reserve`
    more tokens than the prompt: a decode step writes one column in place instead of copying the
    whole cache (DynamicLayer's torch.cat), and attention reads a view of the filled part.
    Dropping or repeating batch rows copies the buffer once, as DynamicLayer does."""

    def __init__(self, reserve: int):
        super().__init__()
        self.reserve = reserve
        self.length = 0
        self._key_buffer: torch.Tensor | None = None
        self._value_buffer: torch.Tensor | None = None

    def _expose(self) -> None:
        self.keys = self._key_buffer[:, :, :self.length]
        self.values = self._value_buffer[:, :, :self.length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        new = key_states.shape[-2]
        if self._key_buffer is None or self.length + new > self._key_buffer.shape[-2]:
            capacity = self.length + new + self.reserve
            old_keys, old_values = self.keys, self.values
            self._key_buffer = key_states.new_empty((*key_states.shape[:2], capacity, key_states.shape[-1]))
            self._value_buffer = value_states.new_empty((*value_states.shape[:2], capacity, value_states.shape[-1]))
            if self.length:
                self._key_buffer[:, :, :self.length] = old_keys
                self._value_buffer[:, :, :self.length] = old_values
            self.dtype, self.device, self.is_initialized = key_states.dtype, key_states.device, True
        self._key_buffer[:, :, self.length:self.length + new] = key_states
        self._value_buffer[:, :, self.length:self.length + new] = value_states
        self.length += new
        self._expose()
        return self.keys, self.values

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.length:
            self._key_buffer = self._key_buffer.repeat_interleave(repeats, dim=0)
            self._value_buffer = self._value_buffer.repeat_interleave(repeats, dim=0)
            self._expose()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.length:
            self._key_buffer = self._key_buffer[indices]
            self._value_buffer = self._value_buffer[indices]
            self._expose()

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("ReservedKVLayer is only used by TransformersEngine's decode loop")


def reserved_cache(model, reserve: int) -> DynamicCache:
    """The model's default DynamicCache with its full-attention layers replaced by
    ReservedKVLayer (sliding-window or other special layers stay as transformers builds them)."""
    cache = DynamicCache(config=model.config)
    if not cache.layers:  # no layer types known: one plain layer per decoder layer
        cache.layers = [DynamicLayer() for _ in range(model.config.get_text_config(decoder=True).num_hidden_layers)]
    cache.layers = [ReservedKVLayer(reserve) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


def cache_keyword(model) -> str:
    """The keyword the model's forward takes its KV cache by: `cache` from the transformers
    versions that renamed it (there `past_key_values` is a deprecated alias that warns on every
    call and is to be removed in 5.40), `past_key_values` in the versions before."""
    from transformers import PreTrainedModel

    # The first Hugging Face model inside any wrapper (peft, FSDP2's in-place subclass, DDP).
    hf_model = next((m for m in model.modules() if isinstance(m, PreTrainedModel)), None)
    if hf_model is None:
        return "past_key_values"
    return _cache_keyword_of(type(hf_model))


@functools.cache
def _cache_keyword_of(model_class: type) -> str:
    # inspect.signature follows the deprecation decorator's __wrapped__ to the real parameters.
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


class TransformersEngine:
    def __init__(self, model, tokenizer):
        self.model = model
        self.tokenizer = tokenizer
        self.eos_ids = sorted(eos_token_ids(model, tokenizer))
        self.pad_id = tokenizer.pad_token_id
        # Under FSDP / ZeRO-3 every decoder forward is a collective: `lockstep(local_flag)` (True
        # on every process if true on any) keeps all processes decoding until the last row of
        # any process is done; a process whose rows are all done decodes a placeholder row.
        self.lockstep = None

    def sync_weights(self, model) -> None:
        self.model = model  # generation runs on the live training weights

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], n: int, sampling: Sampling, seeds: list[int]) -> Generation:
        model = self.model
        was_training = model.training
        model.eval()  # no dropout while sampling
        started = time.perf_counter()
        try:
            tokens = self._decode(model, prompts, n, sampling, seeds)
        finally:
            model.train(was_training)
        eos = set(self.eos_ids)
        completions, has_eos = [], []
        for row in tokens:
            cut, ended = cut_at_eos(row, eos)
            completions.append(cut)
            has_eos.append(ended)
        return Generation(completions, has_eos, {"generate": time.perf_counter() - started})

    def _decode(self, model, prompts, n, sampling, seeds) -> list[list[int]]:
        device = next(model.parameters()).device
        ids, mask = pad_batch(prompts, self.pad_id, left=True)
        ids, mask = ids.to(device), mask.to(device)
        positions = mask_positions(mask)
        cache = reserved_cache(model, sampling.max_new_tokens)
        with_cache = {cache_keyword(model): cache}
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, **with_cache, use_cache=True,
                    logits_to_keep=1)
        if n > 1:
            cache.batch_repeat_interleave(n)
        logits = out.logits[:, -1].repeat_interleave(n, dim=0)
        mask = mask.repeat_interleave(n, dim=0)
        next_pos = positions[:, -1:].repeat_interleave(n, dim=0) + 1
        generators = []
        for seed in seeds:
            for j in range(n):
                g = torch.Generator(device=device)
                g.manual_seed(int(seed) * 1_000_003 + j)
                generators.append(g)
        active = torch.arange(len(prompts) * n, device=device)
        tokens: list[list[int]] = [[] for _ in range(len(prompts) * n)]
        eos = torch.tensor(self.eos_ids, device=device)
        placeholder = False  # only a finished row kept to join the other processes' forwards
        for t in range(sampling.max_new_tokens):
            nxt = sample_next(logits, sampling, [generators[r] for r in active.tolist()], self.eos_ids)
            if not placeholder:
                for row, tok in zip(active.tolist(), nxt.tolist()):
                    tokens[row].append(tok)
            if t == sampling.max_new_tokens - 1:
                break
            keep = ~torch.isin(nxt, eos) if not sampling.suppress_eos else torch.ones_like(nxt, dtype=torch.bool)
            if placeholder:
                keep = torch.zeros_like(keep)
            local_more = bool(keep.any())
            if not (self.lockstep(local_more) if self.lockstep else local_more):
                break
            if not local_more:  # done here, not elsewhere: decode one throwaway row along
                placeholder = True
                keep[0] = True
            if not keep.all():
                index = keep.nonzero().squeeze(1)
                cache.batch_select_indices(index)
                active, nxt, mask, next_pos = active[index], nxt[index], mask[index], next_pos[index]
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=next_pos, **with_cache, use_cache=True)
            next_pos = next_pos + 1
            logits = out.logits[:, -1]
        return tokens
