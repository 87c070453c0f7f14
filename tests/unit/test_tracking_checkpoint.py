"""Tracking (JSONL, TensorBoard, W&B offline) and checkpoints (atomic, exact state round trip)."""

from __future__ import annotations

import json
import random

import pytest
import torch

from tiller.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_model_weights,
    save_checkpoint,
)
from tiller.config import TrackingConfig
from tiller.tracking import Tracker, read_metrics


def test_jsonl_and_tensorboard(tmp_path):
    tracker = Tracker(tmp_path, TrackingConfig(tensorboard=True))
    tracker.log({"loss": torch.tensor(0.5), "acc": 0.75, "skip": "text"}, step=1)
    tracker.log({"loss": 0.25}, step=2)
    tracker.log_text("samples/completion", "hello", step=2)
    tracker.close()
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert [(r["step"], r["loss"]) for r in rows] == [(1, 0.5), (2, 0.25)] and rows[0]["acc"] == 0.75
    assert "skip" not in rows[0]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((tmp_path / "samples.jsonl").read_text())["text"] == "hello"


def test_resumed_run_relogs_steps_last_one_wins(tmp_path):
    for values in ([1.0, 2.0, 3.0], [2.5, 3.5]):  # a resumed run repeats step 2 onwards
        tracker = Tracker(tmp_path, TrackingConfig(tensorboard=False))
        for i, v in enumerate(values):
            tracker.log({"x": v}, step=i + 1 if len(values) == 3 else i + 2)
        tracker.close()
    assert [(r["step"], r["x"]) for r in read_metrics(tmp_path / "metrics.jsonl")] == [(1, 1.0), (2, 2.5), (3, 3.5)]


def test_wandb_offline_needs_no_network(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is an optional extra: pip install wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    tracker = Tracker(tmp_path, TrackingConfig(tensorboard=False, wandb=True, wandb_mode="offline"), run_config={"a": 1})
    tracker.log({"loss": 1.0}, step=1)
    tracker.close()
    assert list((tmp_path / "wandb").glob("offline-run-*"))


def _tiny_training_state():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 1))
    model[0].weight.requires_grad_(False)  # frozen weights are not saved
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    return model, opt, sched


def _train_step(model, opt, sched):
    loss = model(torch.randn(8, 4)).pow(2).mean()
    loss.backward()
    opt.step()
    sched.step()
    opt.zero_grad()
    return loss.item()


def test_checkpoint_round_trip_continues_identically(tmp_path):
    model, opt, sched = _tiny_training_state()
    for _ in range(2):
        _train_step(model, opt, sched)
    path = save_checkpoint(tmp_path, 2, model, opt, sched, {"position": 16}, keep=2)
    random.random()
    expected = [_train_step(model, opt, sched) for _ in range(3)]

    model2, opt2, sched2 = _tiny_training_state()
    state = load_checkpoint(path, model2, opt2, sched2)
    assert state["step"] == 2 and state["position"] == 16
    assert [_train_step(model2, opt2, sched2) for _ in range(3)] == expected
    saved = json.loads((path / "state.json").read_text())
    assert saved["world_size"] == 1


def test_keeps_the_newest_and_ignores_unfinished(tmp_path):
    model, opt, sched = _tiny_training_state()
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, model, opt, sched, {}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-2", "step-3"]
    (tmp_path / ".tmp-step-4").mkdir()  # a save killed half way is never picked
    assert latest_checkpoint(tmp_path).name == "step-3"
    assert latest_checkpoint(tmp_path / "none") is None


def test_model_weights_of_a_checkpoint_load_alone(tmp_path):
    """`tiller eval curve` loads only the model part: the trained weights come back exactly, the
    frozen ones (never saved) stay as the freshly built model has them, the optimizer is not read."""
    model, opt, sched = _tiny_training_state()
    for _ in range(2):
        _train_step(model, opt, sched)
    path = save_checkpoint(tmp_path, 2, model, opt, sched, {"stage": "rloo"}, keep=2)
    fresh, _, _ = _tiny_training_state()
    assert not torch.equal(fresh[2].weight, model[2].weight)
    assert load_model_weights(path, fresh)["step"] == 2
    for name, p in model.named_parameters():
        assert torch.equal(dict(fresh.named_parameters())[name], p), name

    # A model built otherwise (here: a wider last layer) is an error naming the folder and the tensor.
    wrong = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 2))
    wrong[0].weight.requires_grad_(False)
    with pytest.raises(CheckpointError, match=r"model_optim: does not fit this model \(ValueError: Size mismatch.*2\.weight"):
        load_model_weights(path, wrong)
    # One that trains a weight the stage froze (full fine-tuning against a LoRA checkpoint, say).
    with pytest.raises(CheckpointError, match="Missing key in checkpoint state_dict: model.0.weight"):
        load_model_weights(path, torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 1)))
    frozen = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 1)).requires_grad_(False)
    with pytest.raises(CheckpointError, match="has no trainable weights"):
        load_model_weights(path, frozen)
    state = json.loads((path / "state.json").read_text())
    (path / "state.json").write_text(json.dumps({**state, "strategy": "deepspeed"}))
    with pytest.raises(CheckpointError, match="saved under DeepSpeed"):
        load_model_weights(path, fresh)


def _tied_lora_state(seed: int = 0):
    """A tiny causal LM whose LM head is tied to its input embedding (as SmolLM2's is), with LoRA:
    the embedding matrix is most of its bytes and frozen."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tiller.config import LoraConfig
    from tiller.models import apply_lora

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=2048, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64, tie_word_embeddings=True)
    model = apply_lora(LlamaForCausalLM(cfg), LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=["q_proj", "v_proj"]),
                       "CAUSAL_LM")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    return model, opt, sched


def _lm_step(model, opt, sched):
    ids = torch.randint(0, 2048, (2, 8))
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    sched.step()
    opt.zero_grad()
    return loss.item()


def _saved_model_keys(path):
    from torch.distributed.checkpoint import FileSystemReader

    keys = FileSystemReader(str(path / "model_optim")).read_metadata().state_dict_metadata
    return {k.removeprefix("model.") for k in keys if k.startswith("model.")}


def _folder_bytes(path):
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_frozen_tied_lm_head_is_not_saved_and_resume_is_exact(tmp_path, monkeypatch):
    """torch's ignore_frozen_params drops a tied tensor under one of its names only: the frozen
    embedding used to be saved again as lm_head.weight. Now the checkpoint holds the trainable
    tensors alone, resume and `eval curve` load it, and a checkpoint that still holds the tied
    weight (written before the fix) loads too."""
    import tiller.checkpoint as ckpt

    model, opt, sched = _tied_lora_state()
    embed = model.get_input_embeddings().weight
    assert model.get_output_embeddings().weight is embed and not embed.requires_grad
    for _ in range(2):
        _lm_step(model, opt, sched)
    path = save_checkpoint(tmp_path / "new", 2, model, opt, sched, {"stage": "rloo"})
    at_save = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert _saved_model_keys(path) == trainable
    # The same save as torch alone makes it (the old behaviour) holds the embedding matrix as lm_head.
    with monkeypatch.context() as m:
        m.setattr(ckpt, "_drop_frozen_aliases", lambda model, state: state)
        old = save_checkpoint(tmp_path / "old", 2, model, opt, sched, {"stage": "rloo"})
    assert _saved_model_keys(old) - trainable == {"base_model.model.lm_head.weight"}
    embed_bytes = embed.numel() * embed.element_size()
    new_bytes, old_bytes = _folder_bytes(path / "model_optim"), _folder_bytes(old / "model_optim")
    assert new_bytes < embed_bytes < old_bytes and old_bytes - new_bytes >= embed_bytes

    torch.manual_seed(7)
    expected = [_lm_step(model, opt, sched) for _ in range(2)]
    trained = {n: p.detach().clone() for n, p in model.named_parameters()}
    for saved in (path, old):
        model2, opt2, sched2 = _tied_lora_state()
        _scramble_trainable(model2)  # resume must overwrite every trainable weight
        assert load_checkpoint(saved, model2, opt2, sched2)["step"] == 2
        torch.manual_seed(7)
        assert [_lm_step(model2, opt2, sched2) for _ in range(2)] == expected
        for n, p in model2.named_parameters():
            assert torch.equal(p, trained[n]), n
        assert model2.get_output_embeddings().weight is model2.get_input_embeddings().weight

    # `tiller eval curve`'s path: the model part alone, into a model built as the stage built it.
    for saved in (path, old):
        fresh, _, _ = _tied_lora_state()
        _scramble_trainable(fresh)
        assert load_model_weights(saved, fresh)["step"] == 2
        for n, p in fresh.named_parameters():
            assert torch.equal(p, at_save[n]), n

    # A trainable tensor the checkpoint lacks is still an error: here the tied embedding trained in full.
    full, _, _ = _tied_lora_state()
    full.get_input_embeddings().weight.requires_grad_(True)
    with pytest.raises(CheckpointError, match="Missing key in checkpoint state_dict: model.base_model.model.model.embed_tokens.weight"):
        load_model_weights(path, full)


def _scramble_trainable(model):
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_()
