"""vLLM gets the model identity training used (revision, trust_remote_code), checked without
vLLM: a stand-in `vllm` module records what the engine passes to `LLM(...)`."""

from __future__ import annotations

import shutil
import sys
import types

import pytest

from tiller.config import ModelConfig
from tiller.models import load_causal_lm, load_tokenizer
from tiller.rollout import make_engine
from tiller.rollout.vllm_engine import VllmEngine, model_identity


def test_model_identity_pins_the_revision_of_a_hub_id():
    pinned = ModelConfig(revision="0a1b2c3", trust_remote_code=True)
    assert model_identity("Qwen/Qwen3-8B", pinned) == {
        "model": "Qwen/Qwen3-8B", "trust_remote_code": True, "revision": "0a1b2c3", "tokenizer_revision": "0a1b2c3"}
    assert model_identity("Qwen/Qwen3-8B", ModelConfig()) == {"model": "Qwen/Qwen3-8B", "trust_remote_code": False}


def test_a_local_folder_has_no_revision(tmp_path):
    assert model_identity(str(tmp_path), ModelConfig(revision="0a1b2c3")) == {"model": str(tmp_path), "trust_remote_code": False}


@pytest.fixture
def fake_vllm(monkeypatch):
    """A `vllm` module whose LLM records its keyword arguments; engine counters restored after."""
    calls: list[dict] = []

    class LLM:
        def __init__(self, **kwargs):
            calls.append(kwargs)

    module = types.ModuleType("vllm")
    module.LLM = LLM
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setattr(VllmEngine, "_live", VllmEngine._live)
    monkeypatch.setattr(VllmEngine, "_made_group", VllmEngine._made_group)
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    return calls


def test_the_engine_passes_revision_and_trust_remote_code_to_vllm(fake_vllm, tiny_llama):
    model = load_causal_lm(str(tiny_llama))
    model.config._name_or_path = "some-org/tiny-llama"  # as if loaded from the hub: vLLM reads the same id
    pinned = ModelConfig(revision="0a1b2c3", trust_remote_code=True)
    engine = make_engine("vllm", model, load_tokenizer(str(tiny_llama)), None, pinned)
    shutil.rmtree(engine._tmp, ignore_errors=True)
    (kwargs,) = fake_vllm
    assert kwargs["model"] == "some-org/tiny-llama"
    assert kwargs["revision"] == kwargs["tokenizer_revision"] == "0a1b2c3"
    assert kwargs["trust_remote_code"] is True
