"""Tiny random-weight models for tests and benchmarks, built offline in seconds.

A byte-level BPE tokenizer is trained locally with `tokenizers` on a small built-in corpus (and
the bundled sample data when present), given a ChatML chat template, and paired with a Llama or
Qwen3 of a few layers. The folder is a normal Hugging Face model folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = """The quick brown fox jumps over the lazy dog. Water boils at one hundred degrees Celsius at sea level.
Please explain how photosynthesis works in simple terms. Plants turn light, water and carbon dioxide into sugar and oxygen.
What is the capital of France? The capital of France is Paris. How many days are in a leap year? There are 366 days.
Thank you for the question! Here is a short answer with the key steps: first, second, third, and finally.
I am sorry, but I cannot help with that. That is a silly question. Sure, happy to help. The answer is 42.
Write a polite email to a colleague asking for the report by Friday. Dear Sam, could you send me the report by Friday?
"""


def _corpus_lines() -> list[str]:
    lines = [line for line in _CORPUS.splitlines() if line.strip()]
    sample = Path(__file__).parent / "data" / "sample" / "helpsteer3" / "train.jsonl"
    if sample.is_file():
        for raw in sample.read_text().splitlines()[:400]:
            row = json.loads(raw)
            lines += [m["content"] for m in row["context"]] + [row["response1"], row["response2"]]
    return lines


def build_tokenizer(vocab_size: int = 512):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_corpus_lines(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(out_dir: str | Path, arch: str = "llama", hidden_size: int = 64, num_layers: int = 2, seed: int = 0) -> Path:
    """Write a tiny random model + tokenizer folder; returns its path."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

    out_dir = Path(out_dir)
    tokenizer = build_tokenizer()
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    if arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common))
    elif arch == "qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(head_dim=hidden_size // 4, **common))
    else:
        raise ValueError(f"unknown tiny arch {arch!r}: use 'llama' or 'qwen3'")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=".tiny-"))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


def tiny_model_dir(arch: str = "llama") -> Path:
    """A cached tiny model under the tiller cache (built on first use)."""
    from tiller.models import cache_dir

    target = cache_dir() / "tiny" / arch
    if not (target / "config.json").is_file():
        build_tiny_model(target, arch=arch)
    return target
