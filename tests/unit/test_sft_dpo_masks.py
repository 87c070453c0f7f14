"""Assistant-token masks, labels and packing for SFT / DPO, checked by hand on the tiny
model's ChatML template."""

from __future__ import annotations

import copy
import inspect

import pytest
import torch

from tiller.chat import IGNORE, assistant_spans, assistant_token_mask, shifted_labels
from tiller.recipes.sft import Example, build_batch, encode_conversations, pack
from tiller.training import rank_batches

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Name a color."},
    {"role": "assistant", "content": "Blue is a color."},
]

# What the ChatML template renders, written out by hand.
RENDERED = (
    "<|im_start|>system\nBe brief.<|im_end|>\n"
    "<|im_start|>user\nHi there<|im_end|>\n"
    "<|im_start|>assistant\nHello!<|im_end|>\n"
    "<|im_start|>user\nName a color.<|im_end|>\n"
    "<|im_start|>assistant\nBlue is a color.<|im_end|>\n"
)


@pytest.fixture(scope="module")
def tokenizer(tiny_llama):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama)


def runs(mask: list[int]) -> list[tuple[int, int]]:
    """[start, end) index ranges of the 1s."""
    out, start = [], None
    for i, m in enumerate(mask + [0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            out.append((start, i))
            start = None
    return out


def test_assistant_spans_on_a_multi_turn_conversation(tokenizer):
    text, spans = assistant_spans(tokenizer, CONVERSATION)
    assert text == RENDERED
    # Counted by hand: the first answer starts after "...<|im_start|>assistant\n" at character 97
    # and ends with its <|im_end|> at 113; the second runs 177-203. The "\n" after each
    # <|im_end|> is the template's separator, not the model's to produce.
    assert spans == [(97, 113), (177, 203)]
    assert [text[a:b] for a, b in spans] == ["Hello!<|im_end|>", "Blue is a color.<|im_end|>"]


def test_assistant_token_mask_marks_content_and_end_of_turn(tokenizer):
    ids, mask = assistant_token_mask(tokenizer, CONVERSATION)
    assert ids == tokenizer(RENDERED, add_special_tokens=False)["input_ids"]
    assert len(mask) == len(ids)
    spans = runs(mask)
    assert len(spans) == 2  # two assistant turns, nothing else
    im_end, im_start = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|im_start|>"])
    for (a, b), content in zip(spans, ["Hello!", "Blue is a color."]):
        assert tokenizer.decode(ids[a:b]) == content + "<|im_end|>"
        assert ids[b - 1] == im_end  # the end-of-turn token is learned
        assert tokenizer.decode(ids[a - 1]) == "\n" and tokenizer.decode(ids[b]) == "\n"  # role line and separator are not
        assert im_start in ids[:a]
    # The last turn only (DPO's answer): the second span alone.
    _, last = assistant_token_mask(tokenizer, CONVERSATION, last_turn_only=True)
    assert runs(last) == spans[1:]


def test_labels_are_shifted_inside_the_conversation(tokenizer):
    ids, mask = assistant_token_mask(tokenizer, CONVERSATION)
    labels = shifted_labels(ids, mask)
    assert len(labels) == len(ids) and labels[-1] == IGNORE
    for t in range(len(ids) - 1):
        assert labels[t] == (ids[t + 1] if mask[t + 1] else IGNORE)
    (example,), dropped = encode_conversations([CONVERSATION], tokenizer, 512, "drop")
    answers = sum(len(tokenizer(x, add_special_tokens=False)["input_ids"])
                  for x in ("Hello!<|im_end|>", "Blue is a color.<|im_end|>"))
    assert example.labels == labels and example.num_loss_tokens == sum(mask) == answers
    assert dropped == {"too_long": 0, "no_loss_tokens": 0}


def test_all_tokens_mode(tokenizer):
    (example,), _ = encode_conversations([CONVERSATION], tokenizer, 512, "drop", assistant_only=False)
    ids = tokenizer(RENDERED, add_special_tokens=False)["input_ids"]
    assert example.input_ids == ids
    # every token but the first is a target (nothing comes before the first to predict it)
    assert example.labels == ids[1:] + [IGNORE]
    assert example.num_loss_tokens == len(ids) - 1


def test_truncation_drops_or_cuts_from_the_left(tokenizer):
    ids, mask = assistant_token_mask(tokenizer, CONVERSATION)
    kept, dropped = encode_conversations([CONVERSATION], tokenizer, 20, "drop")
    assert kept == [] and dropped["too_long"] == 1
    (cut,), _ = encode_conversations([CONVERSATION], tokenizer, 20, "left")
    assert cut.input_ids == ids[-20:] and cut.labels == shifted_labels(ids[-20:], mask[-20:])
    # An empty answer still teaches the end-of-turn token; no answer at all teaches nothing.
    empty = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""}]
    (kept,), _ = encode_conversations([empty], tokenizer, 512, "drop")
    assert kept.num_loss_tokens == 1
    kept, dropped = encode_conversations([[{"role": "user", "content": "Hi"}]], tokenizer, 512, "drop")
    assert kept == [] and dropped["no_loss_tokens"] == 1


def test_template_that_rewrites_earlier_turns(tokenizer):
    """Like Qwen3: only the last assistant turn gets a (<think>) block, so earlier prefixes are
    not prefixes of the full text; the span is then found from the content."""
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = (
        "{% for m in messages %}{{'<|im_start|>' + m['role'] + '\n'}}"
        "{% if m['role'] == 'assistant' and loop.last %}{{'<think></think>'}}{% endif %}"
        "{{m['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
        "{% if add_generation_prompt %}{{'<|im_start|>assistant\n<think></think>'}}{% endif %}"
    )
    text, spans = assistant_spans(tok, CONVERSATION)
    assert "<|im_start|>assistant\nHello!<|im_end|>" in text  # first turn: no think block
    assert [text[a:b] for a, b in spans] == ["Hello!<|im_end|>", "Blue is a color.<|im_end|>"]


def test_pack_first_fit_in_order():
    assert pack([5, 3, 4, 2], capacity=8) == [[0, 1], [2, 3]]
    assert pack([5, 5, 5], capacity=8) == [[0], [1], [2]]
    assert pack([6, 3, 2], capacity=8) == [[0, 2], [1]]
    assert pack([5, 5, 5], capacity=None) == [[0, 1, 2]]


def test_packed_batch_positions_labels_and_attention_blocks():
    from transformers import LlamaConfig
    from transformers.masking_utils import create_causal_mask, find_packed_sequence_indices

    a = Example([10, 11, 12], [11, 12, IGNORE])
    b = Example([20, 21], [IGNORE, IGNORE])
    c = Example([30, 31, 32, 33], [31, IGNORE, 33, IGNORE])
    batch = build_batch([a, b, c], pad_id=0, packing=True, capacity=5)  # rows [a, b] and [c] + 1 pad
    assert batch["attention_mask"] is None
    assert batch["input_ids"].tolist() == [[10, 11, 12, 20, 21], [30, 31, 32, 33, 0]]
    assert batch["labels"].tolist() == [[11, 12, IGNORE, IGNORE, IGNORE], [31, IGNORE, 33, IGNORE, IGNORE]]
    # positions restart at 0 for every conversation, and for the padding
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 3, 0]]
    assert find_packed_sequence_indices(batch["position_ids"]).tolist() == [[0, 0, 0, 1, 1], [0, 0, 0, 0, 1]]

    # The mask transformers builds from these position ids (attention_mask=None) is causal
    # inside each conversation and blocks attention across conversations.
    seq = [[0, 0, 0, 1, 1], [0, 0, 0, 0, 1]]
    expected = torch.tensor([[[q >= k and s[q] == s[k] for k in range(5)] for q in range(5)] for s in seq])
    # the cache's keyword: `cache` where transformers renamed `past_key_values` (which warns there)
    cache_name = "cache" if "cache" in inspect.signature(create_causal_mask).parameters else "past_key_values"
    for impl in ("sdpa", "eager"):
        config = LlamaConfig(hidden_size=8, num_attention_heads=2, num_hidden_layers=1, vocab_size=64)
        config._attn_implementation = impl
        no_cache = {cache_name: None}
        mask = create_causal_mask(config=config, inputs_embeds=torch.zeros(2, 5, 8), attention_mask=None,
                                  position_ids=batch["position_ids"], **no_cache)
        allowed = mask[:, 0] if mask.dtype == torch.bool else mask[:, 0] == 0  # eager: additive 0 / -inf
        assert torch.equal(allowed, expected), impl


def test_unpacked_batch_is_right_padded_with_a_mask():
    a = Example([10, 11, 12], [11, 12, IGNORE])
    b = Example([20, 21], [21, IGNORE])
    batch = build_batch([a, b], pad_id=0)
    assert batch["position_ids"] is None
    assert batch["input_ids"].tolist() == [[10, 11, 12], [20, 21, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[11, 12, IGNORE], [21, IGNORE, IGNORE]]


def test_rank_batches_give_every_process_the_same_number_of_forwards():
    world = [rank_batches(7, 2, r, 2) for r in range(2)]
    assert world[0] == [[0, 1], [4, 5]] and world[1] == [[2, 3], [6]]
    assert rank_batches(5, 2, 1, 2) == [[2, 3], []]  # nothing left: an empty batch, still a forward
    covered = sorted(i for r in range(3) for b in rank_batches(10, 3, r, 3) for i in b)
    assert covered == list(range(10))
