"""Chat rendering: conversations into the text a model reads, with the model's own chat template,
and which of its tokens are the assistant's to learn.

Every stage renders with the tokenizer's template, never a tiller format: prompts end where the
assistant's answer begins (`render_prompt`, `encode_prompts`), a scored conversation is the
prompt followed by the answer and the end of turn (`render_conversation`), and the supervised
stages mark the tokens an assistant turn must produce (`assistant_token_mask`, `shifted_labels`).

Thinking mode (`model.enable_thinking`, for templates that take it, such as Qwen3's; null leaves
the template's default, which for Qwen3 is thinking on). What it means per stage
(docs/thinking.md):
- RLOO and evaluation generate: the setting picks the generation prompt the policy answers
  from. Qwen3 with thinking off ends the prompt with an empty `<think>\\n\\n</think>\\n\\n` block
  and the model answers directly; with thinking on the prompt stops at `<|im_start|>assistant\\n`
  and the model writes its reasoning first, which the reward backends strip before scoring
  (`strip_thinking`).
- SFT and DPO learn answers written in the data, so the answer decides its mode, not the
  setting: an answer with a `<think>` block is a thinking answer and its reasoning is learned;
  an answer without one is a direct answer, and the empty think block the template writes
  before it belongs to the prompt (it is what the thinking-off generation prompt ends with), so
  it is never a target. Otherwise every answer would teach the model to open and close an
  empty think block, which is what thinking mode then produces.
- Reward models score the template's rendering of prompt + answer. For an answer without
  reasoning it is the same text in every mode (Qwen3 writes the empty block before the last
  answer either way), so a reward model trained and used in different modes sees one format.
"""

from __future__ import annotations

from tiller.losses import IGNORE_INDEX

IGNORE = IGNORE_INDEX  # the label of a position without loss


def _thinking(enable_thinking: bool | None) -> dict:
    return {} if enable_thinking is None else {"enable_thinking": enable_thinking}


def render_prompt(tokenizer, messages: list[dict], enable_thinking: bool | None = None) -> str:
    """Prompt text ending where the assistant's answer begins, with the model's own template."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **_thinking(enable_thinking))


def render_conversation(tokenizer, messages: list[dict], response: str, enable_thinking: bool | None = None) -> tuple[str, str]:
    """(prompt text, full text) for a prompt plus an assistant response.

    The full text is the prompt rendering followed by the response and the template's end of
    turn, so the prompt is always an exact prefix (some templates rewrite earlier turns)."""
    prompt = render_prompt(tokenizer, messages, enable_thinking)
    full = tokenizer.apply_chat_template(
        messages + [{"role": "assistant", "content": response}], tokenize=False, **_thinking(enable_thinking)
    )
    if not full.startswith(prompt):
        # Templates that drop or rewrite content (Qwen3 strips <think> of earlier turns) do not
        # give a prefix; fall back to prompt + response + eos so the scored text is well defined.
        full = prompt + response + (tokenizer.eos_token or "")
    return prompt, full


def encode_prompts(prompts, tokenizer, max_tokens: int, enable_thinking=None) -> tuple[list[tuple[list[dict], list[int]]], int]:
    """(messages, prompt ids) for prompts that fit in max_tokens; returns the number dropped."""
    texts = [render_prompt(tokenizer, p.messages, enable_thinking) for p in prompts]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    kept = [(p.messages, x) for p, x in zip(prompts, ids) if len(x) <= max_tokens]
    return kept, len(prompts) - len(kept)


def encoded_extras(prompts, encoded: list[tuple[list[dict], list[int]]]) -> list[dict]:
    """The `extra` of each prompt `encode_prompts` kept, in its order: the record a reward that
    checks an answer receives. encode_prompts keeps each prompt's own messages list, which
    identifies it (two prompts with equal text are still two lists)."""
    extra_of = {id(p.messages): p.extra for p in prompts}
    return [extra_of[id(messages)] for messages, _ in encoded]


# ----------------------------------------------------------------------------- assistant masks


def _render(tokenizer, messages: list[dict], add_generation_prompt: bool, enable_thinking=None) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                         **_thinking(enable_thinking))


def _takes_thinking(tokenizer) -> bool:
    template = tokenizer.chat_template
    return isinstance(template, str) and "enable_thinking" in template


def _answer_prompts(tokenizer, messages: list[dict], enable_thinking=None) -> list[str]:
    """The generation prompts an assistant turn after `messages` may follow, in the order they
    are tried: the thinking-off one first (its empty think block is then prompt, not answer),
    then the configured mode's, then the template default's. One, for a template without modes."""
    if not _takes_thinking(tokenizer):
        return [_render(tokenizer, messages, True, enable_thinking)]
    prompts: list[str] = []
    for mode in (False, enable_thinking, None):
        text = _render(tokenizer, messages, True, mode)
        if text not in prompts:
            prompts.append(text)
    return prompts


def assistant_spans(tokenizer, messages: list[dict], enable_thinking=None) -> tuple[str, list[tuple[int, int]]]:
    """(rendered conversation, [character span of each assistant turn]).

    A turn's span runs from where the template's generation prompt ends (render messages[:i]
    with add_generation_prompt) to where the turn ends (render messages[:i+1]), minus the
    whitespace the template puts between turns: the content and the end-of-turn token, which
    is what the model must learn to produce. Of a template's thinking modes, the span starts
    after the thinking-off generation prompt when the turn continues it (an answer without
    reasoning: the template's empty think block is prompt), else after the configured mode's
    (module docstring). Templates that rewrite earlier turns (Qwen3 drops the think block of
    past turns) give no prefix; for those turns the content is found in the full text and
    extended over the end-of-turn (eos) token that follows it."""
    text = _render(tokenizer, messages, False, enable_thinking)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        try:
            prompts = _answer_prompts(tokenizer, messages[:i], enable_thinking) if i else []
            through = _render(tokenizer, messages[: i + 1], False, enable_thinking)
        except Exception:  # some templates refuse a conversation that starts or ends oddly
            prompts, through = [], None
        before = next((p for p in prompts if through is not None and through.startswith(p)), None)
        if before is not None and len(through) > len(before) >= cursor and text.startswith(through):
            start, end = len(before), len(through)
            while end > start and text[end - 1].isspace():
                end -= 1
        else:
            content = message["content"]
            start = text.find(content, cursor) if content else -1
            if start < 0:
                raise ValueError(f"assistant turn {i} is not found in the rendered conversation: the chat template "
                                 "rewrites it; cannot build the assistant mask")
            end = start + len(content)
            eot = tokenizer.eos_token or ""
            if eot and text.startswith(eot, end):
                end += len(eot)
        spans.append((start, end))
        cursor = end
    return text, spans


def assistant_token_mask(tokenizer, messages: list[dict], enable_thinking=None,
                         last_turn_only: bool = False) -> tuple[list[int], list[int]]:
    """(input ids of the rendered conversation, mask with 1 on the assistant turns' tokens).

    A token counts when its characters overlap an assistant span (a token straddling the
    boundary is predicted from the prompt, so it belongs to the answer). `last_turn_only`
    marks the final assistant turn only (DPO: the answer, not the earlier turns of its
    prompt)."""
    text, spans = assistant_spans(tokenizer, messages, enable_thinking)
    if last_turn_only:
        spans = spans[-1:]
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        mask = [int(any(a < end and b > start for start, end in spans)) for a, b in offsets]
        return ids, mask
    # Slow tokenizers have no offsets: count the tokens of each span's prefix.
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    mask = [0] * len(ids)
    for start, end in spans:
        lo = len(tokenizer(text[:start], add_special_tokens=False)["input_ids"])
        hi = len(tokenizer(text[:end], add_special_tokens=False)["input_ids"])
        for j in range(lo, min(hi, len(ids))):
            mask[j] = 1
    return ids, mask


def shifted_labels(input_ids: list[int], mask: list[int]) -> list[int]:
    """labels[t] = input_ids[t + 1] where that token is in the mask, else -100; the last is
    -100. The shift happens inside one conversation, so once conversations are packed into a
    row none of them predicts the first token of the next."""
    return [x if m else IGNORE for x, m in zip(input_ids[1:], mask[1:])] + [IGNORE]
