"""Reward model stage on the tiny model: it learns, scores at the last real token, resumes
exactly, and 2 processes give the same model as 1."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from tests.conftest import accelerate_launch, toy_pairs, write_pairs
from tests.helpers.metrics import assert_same_metrics
from tests.helpers.saved import saved_weights
from tiller.config_loading import config_from_dict
from tiller.frozen_prefix import FrozenOutputs
from tiller.models import load_frozen, load_reward_model, load_tokenizer
from tiller.preference_logprobs import concatenated_logps, encode_preferences
from tiller.recipes import reward
from tiller.batching import pad_batch
from tiller.score_head import ScoreHead, last_token_index, score_sequences
from tiller.tracking import read_metrics
from tiller.training import setup_runtime


def reward_config(run_dir: Path, model: Path, **train) -> dict:
    loop = {"epochs": 3, "pairs_per_step": 8, "micro_batch_per_device": 4, "max_length": 128,
            "eval_every": 0, "save_every": 0}
    loop.update(train)
    return {
        "run_dir": str(run_dir), "model": {"name": str(model)}, "tracking": {"tensorboard": False},
        "reward": {"lora": {"enabled": False}, "optim": {"lr": 3e-3, "scheduler": "cosine", "warmup_ratio": 0.1},
                   "train": loop, "train_subset": "first_half"},
    }


def test_last_token_index_left_and_right_padding():
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    assert last_token_index(right).tolist() == [2, 4, 0]
    assert last_token_index(left).tolist() == [4, 4, 4]


def test_score_is_read_at_last_real_token_whatever_the_padding(tiny_llama):
    model = load_reward_model(str(tiny_llama), pad_token_id=0).eval()
    scorer = ScoreHead(model)
    # The pad id (0) also occurs inside the text: transformers' own pooling would stop there.
    seqs = [[5, 0, 7, 8, 9], [11, 12, 13]]
    with torch.no_grad():
        alone = [scorer(torch.tensor([s]), torch.ones(1, len(s), dtype=torch.long)).item() for s in seqs]
        for left in (False, True):
            ids, mask = pad_batch(seqs, 0, left=left)
            batched = scorer(ids, mask).tolist()
            assert batched == pytest.approx(alone, abs=1e-5), left


def test_evaluate_pairs_scores_each_pair_as_alone_and_keeps_their_order(tiny_llama):
    scorer = ScoreHead(load_reward_model(str(tiny_llama), pad_token_id=0).eval())
    lengths = [9, 3, 12, 5, 7]  # batches of 2 are formed by length, not in this order
    pairs = [reward.EncodedPair(list(range(5, 5 + n)), list(range(40, 40 + n - 1)), 2.0, "general",
                                [{"role": "user", "content": f"q{i}"}], f"c{i}", f"r{i}") for i, n in enumerate(lengths)]
    report = reward.evaluate_pairs(scorer, pairs, pad_id=0, rt=setup_runtime(0), batch_size=2, num_samples=5)
    with torch.no_grad():
        alone = [(scorer(torch.tensor([p.chosen]), torch.ones(1, len(p.chosen), dtype=torch.long)).item(),
                  scorer(torch.tensor([p.rejected]), torch.ones(1, len(p.rejected), dtype=torch.long)).item()) for p in pairs]
    assert [s["prompt"] for s in report["samples"]] == [f"q{i}" for i in range(5)]
    for sample, (chosen, rejected) in zip(report["samples"], alone):
        assert sample["chosen_score"] == pytest.approx(chosen, abs=1e-5)
        assert sample["rejected_score"] == pytest.approx(rejected, abs=1e-5)
    assert report["accuracy"] == pytest.approx(sum((c > r) + 0.5 * (c == r) for c, r in alone) / 5)


def test_degenerate_check_by_hand():
    # chosen above, tied with, below and tied with its rewrite: (1 + 0.5 + 0 + 0.5) / 4
    check = reward.degenerate_check(torch.tensor([1.0, 2.0, 3.0, 0.5]), torch.tensor([0.0, 2.0, 4.0, 0.5]))
    assert check["n"] == 4 and check["accuracy"] == 0.5 and check["mean_margin"] == 0.0
    low, high = check["accuracy_ci95"]
    assert 0.1 < low < 0.5 < high < 0.9


@pytest.mark.parametrize("layout", ["padded", "shared_prompt"])
def test_the_degenerate_check_scores_each_rewrite_in_its_pairs_forward_as_alone(tiny_llama, layout):
    """evaluate_pairs with a rewrite per pair: the chosen, rejected and rewrite scores are each
    sequence's score alone (1e-5), in a padded batch and in one row per pair (shared prompt), and
    the degenerate check is computed from them."""
    scorer = ScoreHead(load_reward_model(str(tiny_llama), pad_token_id=0).eval())
    prompt = [5, 6, 7, 8]
    pairs = [reward.EncodedPair(prompt + [20 + i] * (n + 1), prompt + [40 + i] * n, 2.0, "general",
                                [{"role": "user", "content": f"q{i}"}], f"c{i}", f"r{i}") for i, n in enumerate([3, 1, 6])]
    rewrites = [prompt + [1, 1, 1, 1, 1], prompt[:2] + [9, 9], [3] * 7]  # the last shares no prompt
    report = reward.evaluate_pairs(scorer, pairs, pad_id=0, rt=setup_runtime(0), batch_size=2, num_samples=3,
                                   layout=layout, rewrites=rewrites)
    with torch.no_grad():
        def alone(seq):
            return scorer(torch.tensor([seq]), torch.ones(1, len(seq), dtype=torch.long)).item()

        chosen = [alone(p.chosen) for p in pairs]
        rejected = [alone(p.rejected) for p in pairs]
        rewritten = [alone(r) for r in rewrites]
    for sample, c, r in zip(report["samples"], chosen, rejected):
        assert sample["chosen_score"] == pytest.approx(c, abs=1e-5)
        assert sample["rejected_score"] == pytest.approx(r, abs=1e-5)
    expected = reward.degenerate_check(torch.tensor(chosen), torch.tensor(rewritten))
    assert report["degenerate_check"]["mean_margin"] == pytest.approx(expected["mean_margin"], abs=1e-5)
    assert report["degenerate_check"]["accuracy"] == expected["accuracy"]


def test_reward_model_learns_and_is_saved_in_hf_format(tmp_path, tiny_llama):
    write_pairs(tmp_path, toy_pairs(64), toy_pairs(16, offset=500))
    out = reward.run(config_from_dict(reward_config(tmp_path, tiny_llama)))
    report = json.loads((out / "eval.json").read_text())
    assert report["n"] == 16 and report["accuracy"] >= 0.9, report
    assert set(report["by_strength"]) <= {"1", "2", "3"} and report["by_domain"]
    rows = read_metrics(out / "metrics.jsonl")
    assert rows[-1]["loss/bt"] < rows[0]["loss/bt"]
    # plain transformers loads the saved model
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(out / "model")
    assert model.config.num_labels == 1
    cfg = config_from_dict(reward_config(tmp_path, tiny_llama))
    again = reward.run_eval(cfg)
    assert again["accuracy"] == pytest.approx(report["accuracy"])
    # Baselines on the same 16 pairs: every chosen answer is the longer one.
    baselines = again["baselines"]
    assert baselines["longer answer wins"]["accuracy"] == 1.0 and baselines["shorter answer wins"]["accuracy"] == 0.0
    # The starting model's likelihood preference, against one pair at a time through the tiny model.
    tokenizer, base = load_tokenizer(str(tiny_llama)), load_frozen(str(tiny_llama), cfg.model)
    pairs = [SimpleNamespace(prompt=p["prompt"], chosen=p["chosen"], rejected=p["rejected"]) for p in toy_pairs(16, offset=500)]
    encoded, _ = encode_preferences(pairs, tokenizer, 128, "left")
    one_by_one = [[x.item() for x in concatenated_logps(base, [e], tokenizer.pad_token_id, "cpu")] for e in encoded]
    expected = sum((c > r) + 0.5 * (c == r) for c, r in one_by_one) / 16
    assert baselines["starting model: higher log-likelihood (sum)"]["accuracy"] == pytest.approx(expected)
    assert baselines["starting model: higher log-likelihood (sum)"]["n"] == 16


def test_judge_trains_on_the_other_half(tmp_path, tiny_llama):
    write_pairs(tmp_path, toy_pairs(32), toy_pairs(8, offset=500))
    cfg = config_from_dict(reward_config(tmp_path, tiny_llama, max_steps=1))
    out = reward.run(cfg, stage="judge")
    assert json.loads((out / "eval.json").read_text())["subset"] == "second_half"
    with pytest.raises(ValueError, match="never saw"):
        reward.judge_subset("all")


@pytest.mark.parametrize("shared_prompt", [False, True], ids=["padded", "shared_prompt"])
def test_the_judge_reuses_the_reward_models_frozen_layers_and_scores_as_alone(tmp_path, tiny_llama, shared_prompt,
                                                                                capsys):
    write_pairs(tmp_path, toy_pairs(32), toy_pairs(8, offset=500))
    raw = reward_config(tmp_path, tiny_llama, max_steps=2)
    raw["reward"]["lora"] = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "last_n_layers": 1}
    raw["reward"]["shared_prompt"] = shared_prompt
    cfg = config_from_dict(raw)
    alone = json.loads((reward.run(cfg, stage="judge") / "eval.json").read_text())  # no store: its own layers

    outputs = FrozenOutputs()
    reward.run(cfg, stage="reward", frozen_outputs=outputs)
    assert outputs.reused == 0 and len(outputs.stored) == 2  # 8 validation pairs, 4 per batch
    capsys.readouterr()
    reused = json.loads((reward.run(cfg, stage="judge", frozen_outputs=outputs) / "eval.json").read_text())
    assert outputs.reused == 2
    assert "reused from the previous reward model on the same base for 2 of 2 batches" in capsys.readouterr().out
    for key in ("accuracy", "mean_margin", "by_domain", "by_strength", "samples", "degenerate_check"):
        assert reused[key] == alone[key], key  # the same scores to the bit


@pytest.mark.parametrize("variant", ["plain", "group_by_length", "shared_prompt"])
def test_reward_resume_gives_identical_losses(tmp_path, tiny_llama, variant, capsys):
    """A killed run resumes to the uninterrupted run's losses, with plain steps, with steps of
    pairs of similar length (train.group_by_length), and with each pair's prompt computed once
    (reward.shared_prompt); each still learns the toy preference."""
    full, killed = tmp_path / "full", tmp_path / "killed"
    for run_dir in (full, killed):
        write_pairs(run_dir, toy_pairs(48), toy_pairs(8, offset=500))

    def cfg(run_dir: Path):
        settings = reward_config(run_dir, tiny_llama, epochs=2, save_every=2, group_by_length=variant == "group_by_length")
        settings["reward"]["shared_prompt"] = variant == "shared_prompt"
        return config_from_dict(settings)

    reward.run(cfg(full))
    out = capsys.readouterr().out
    assert ("each of pairs of similar length" in out) == (variant == "group_by_length")
    assert ("each pair in one row, the prompt its answers share computed once (checked exact)" in out) == (
        variant == "shared_prompt")
    assert json.loads((full / "reward" / "eval.json").read_text())["accuracy"] >= 0.9
    reward.run(cfg(killed), stop_after=3)
    assert not (killed / "reward" / "model").exists()
    reward.run(cfg(killed), resume=True)
    a = read_metrics(full / "reward" / "metrics.jsonl")
    b = read_metrics(killed / "reward" / "metrics.jsonl")
    assert [r["loss/bt"] for r in a] == [r["loss/bt"] for r in b]
    assert [r["train/lr"] for r in a] == [r["train/lr"] for r in b]


def _launch(run_dir: Path, model: Path, processes: int, shared_prompt: bool) -> None:
    write_pairs(run_dir, toy_pairs(32), toy_pairs(8, offset=500))
    cfg = reward_config(run_dir, model, max_steps=2, pairs_per_step=8, micro_batch_per_device=2)
    cfg["reward"]["lora"] = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0}
    cfg["reward"]["shared_prompt"] = shared_prompt
    # update ~ lr x gradient (see test_rloo): a wrong normalization cannot hide behind Adam's sign step
    cfg["reward"]["optim"] = {"lr": 1.0, "scheduler": "constant", "adam_eps": 1.0, "max_grad_norm": 0.0}
    path = run_dir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = accelerate_launch(["reward", "--config", str(path)], processes)
    assert f"x {processes} process(es)" in result.stdout, result.stdout[-2000:]
    layout = "each pair in one row, the prompt its answers share computed once (checked exact)"
    assert (layout in result.stdout) == shared_prompt, result.stdout[-2000:]


@pytest.mark.distributed
@pytest.mark.parametrize("shared_prompt", [False, True], ids=["padded", "shared_prompt"])
def test_reward_two_processes_match_one(tmp_path, tiny_llama, shared_prompt):
    """DDP: 2 processes x 2 micro-batches give 1 process x 4's weights and metrics, with padded
    pairs and with each pair in one row, its prompt once (reward.shared_prompt, the demo's and
    the flagship's layout)."""
    _launch(tmp_path / "one", tiny_llama, 1, shared_prompt)
    _launch(tmp_path / "two", tiny_llama, 2, shared_prompt)
    a, b = saved_weights(tmp_path / "one" / "reward" / "model"), saved_weights(tmp_path / "two" / "reward" / "model")
    for n in a:
        torch.testing.assert_close(a[n], b[n], rtol=1e-4, atol=1e-6)
    compared = assert_same_metrics(tmp_path / "one" / "reward" / "metrics.jsonl", tmp_path / "two" / "reward" / "metrics.jsonl")
    assert {"loss/bt", "reward/accuracy", "train/grad_norm", "eval/accuracy"} <= set(compared)


@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_qwen3"])
def test_pairs_sharing_their_prompt_in_one_row_score_and_train_as_padded_pairs(arch, request):
    """A pair's chosen and rejected answers in one row with their prompt once: each scores as it
    does alone (1e-5: float rounding), and the Bradley-Terry loss's gradients equal the padded
    forward's (1e-4 relative)."""
    from tiller.losses import bradley_terry_loss
    from tiller.score_head import score_groups, shared_prefix_is_exact

    path = request.getfixturevalue(arch)
    torch.manual_seed(0)
    scorer = ScoreHead(load_reward_model(str(path), pad_token_id=0))
    prompt = [5, 6, 7, 8, 9, 10, 11]
    pairs = [SimpleNamespace(chosen=prompt + [20, 21, 22], rejected=prompt + [30]),
             SimpleNamespace(chosen=[12, 13, 40], rejected=[12, 13, 41, 42, 43, 44]),
             SimpleNamespace(chosen=[50, 51], rejected=[60, 61, 62])]  # nothing shared
    with torch.no_grad():
        grouped = score_groups(scorer, [[p.chosen, p.rejected] for p in pairs], 0, "cpu")
        alone = torch.cat([score_sequences(scorer, [s], 0, "cpu", packed=False) for p in pairs
                           for s in (p.chosen, p.rejected)])
    torch.testing.assert_close(grouped, alone, rtol=1e-5, atol=1e-5)
    assert shared_prefix_is_exact(scorer, [[p.chosen, p.rejected] for p in pairs], 0, "cpu")

    def gradients(layout: str) -> dict[str, torch.Tensor]:
        scorer.zero_grad()
        chosen, rejected = reward.score_pairs(scorer, pairs, 0, "cpu", layout)
        loss, _ = bradley_terry_loss(chosen, rejected, torch.ones(3), 0.0, 0.0)
        loss.backward()
        return {n: p.grad.clone() for n, p in scorer.named_parameters() if p.grad is not None}

    padded, shared = gradients("padded"), gradients("shared_prompt")
    assert padded.keys() == shared.keys() and len(padded) > 10
    for name in padded:
        torch.testing.assert_close(shared[name], padded[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_qwen3"])
def test_packed_scores_equal_padded_scores(arch, request):
    """One packed row with restarting position ids gives each sequence the score it gets alone."""
    from tiller.score_head import packing_is_exact, score_sequences

    path = request.getfixturevalue(arch)
    scorer = ScoreHead(load_reward_model(str(path), pad_token_id=0).eval())
    seqs = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15, 0, 16]]
    with torch.no_grad():
        packed = score_sequences(scorer, seqs, 0, "cpu", packed=True)
        alone = torch.cat([score_sequences(scorer, [s], 0, "cpu", packed=False) for s in seqs])
    torch.testing.assert_close(packed, alone, rtol=1e-4, atol=1e-5)
    assert packing_is_exact(scorer, seqs, 0, "cpu")


def test_degenerate_negatives_go_to_the_reward_model_only_and_teach_it(tmp_path, tiny_llama):
    """reward.degenerate_negatives adds chosen-vs-degenerate-rewrite pairs to the reward stage's
    training set (not the judge's); the degenerate check then ranks more chosen answers above
    their rewrites than the same training without them."""
    from tiller.data.records import PreferencePair
    from tiller.degeneration import is_degenerate

    pairs = [PreferencePair.from_dict(p) for p in toy_pairs(20)]
    added = reward.degenerate_pairs(pairs, 0.5, seed=3)
    assert len(added) == 10 and added == reward.degenerate_pairs(pairs, 0.5, seed=3)
    by_prompt = {p.prompt[0]["content"]: p for p in pairs}
    for a in added:
        assert a.chosen == by_prompt[a.prompt[0]["content"]].chosen and is_degenerate(a.rejected) and a.margin == 3.0

    checks = {}
    for share in (0.0, 1.0):
        run_dir = tmp_path / f"share-{share}"
        write_pairs(run_dir, toy_pairs(64), toy_pairs(16, offset=500))
        cfg = reward_config(run_dir, tiny_llama, epochs=2, max_length=320)
        cfg["reward"]["degenerate_negatives"] = share
        report = json.loads((reward.run(config_from_dict(cfg)) / "eval.json").read_text())
        assert report["degenerate_negatives"] == round(share * 32) and report["train_pairs"] == 32 + round(share * 32)
        assert report["degenerate_check"]["n"] == 16
        checks[share] = report["degenerate_check"]
        if share:
            judge = json.loads((reward.run(config_from_dict(cfg), stage="judge") / "eval.json").read_text())
            assert judge["degenerate_negatives"] == 0 and judge["train_pairs"] == 32
    assert checks[1.0]["mean_margin"] > checks[0.0]["mean_margin"] + 0.5, checks
    assert checks[1.0]["accuracy"] == 1.0, checks
