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
