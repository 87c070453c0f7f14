"""SFT and DPO on a tiny random model: they learn, resume exactly, packing changes nothing,
precomputed reference log-probs equal the live reference, and 2 processes match 1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.conftest import ROOT
from tests.helpers.metrics import assert_same_metrics
from tests.helpers.saved import saved_weights
from tiller import losses
from tiller.config_loading import config_from_dict
from tiller.recipes import dpo, sft
from tiller.tracking import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")


# (question, short answer): train and validation prompts never overlap.
TRAIN_QA = [
    ("What is the capital of France?", "Paris"), ("Name a primary color.", "Red"),
    ("How many legs does a spider have?", "Eight"), ("Give me a synonym for happy.", "Glad"),
    ("What is two plus two?", "Four"), ("Why is the sky blue?", "Scattered light"),
    ("Suggest a name for a cat.", "Milo"), ("What do bees make?", "Honey"),
    ("How do I boil an egg?", "Ten minutes in water"), ("What is the largest ocean?", "The Pacific"),
    ("Write a haiku about rain.", "Soft rain on the roof"), ("What is the opposite of cold?", "Hot"),
    ("Which planet is red?", "Mars"), ("How many days are in a week?", "Seven"),
    ("What language is spoken in Brazil?", "Portuguese"), ("What is ice made of?", "Water"),
]
VAL_QA = [
    ("What color is grass?", "Green"), ("How many hours are in a day?", "Twenty four"),
    ("What animal says moo?", "A cow"), ("Where do fish live?", "In water"),
    ("What is the boiling point of water?", "One hundred degrees"), ("Name a fruit.", "An apple"),
    ("What do plants need to grow?", "Light and water"), ("Which month follows May?", "June"),
]


def chosen_answer(answer: str) -> str:
    return f"Sure, happy to help! The answer is {answer}. Thank you for the question!"


def rejected_answer(answer: str) -> str:
    return f"That is a silly question. {answer}? I cannot help with that."


def write_run_folder(run_dir: Path) -> None:
    """A data-stage output as `tiller data` writes it: pairs for both splits, conversations
    (multi-turn, with a system turn) for training."""
    folder = run_dir / "data"
    folder.mkdir(parents=True, exist_ok=True)
    for split, qa in (("train", TRAIN_QA), ("validation", VAL_QA)):
        with open(folder / f"{split}.pairs.jsonl", "w") as f:
            for i, (q, a) in enumerate(qa):
                f.write(json.dumps({"prompt": [{"role": "user", "content": q}], "chosen": chosen_answer(a),
                                    "rejected": rejected_answer(a), "margin": 2.0, "domain": "general",
                                    "language": "english", "source_row": i + 1}) + "\n")
    with open(folder / "train.conversations.jsonl", "w") as f:
        for i, (q, a) in enumerate(TRAIN_QA):
            q2, a2 = TRAIN_QA[(i + 1) % len(TRAIN_QA)]
            messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": q},
                        {"role": "assistant", "content": chosen_answer(a)}, {"role": "user", "content": q2},
                        {"role": "assistant", "content": a2}]
            f.write(json.dumps({"messages": messages, "source_row": i + 1, "domain": "general",
                                "language": "english"}) + "\n")
    (folder / "DONE").write_text("done\n")


def stage_config(run_dir: Path, model: Path, stage: str, **overrides) -> dict:
    train = {"pairs_per_step": 4, "micro_batch_per_device": 2, "max_length": 128, "max_steps": 8,
             "eval_every": 0, "save_every": 0}
    train.update(overrides.pop("train", {}))
    section = {"lora": {"enabled": False}, "optim": {"lr": 3e-3, "scheduler": "constant", "warmup_ratio": 0.0},
               "train": train}
    section.update(overrides)
    return {"run_dir": str(run_dir), "model": {"name": str(model)}, "tracking": {"tensorboard": False}, stage: section}


def metric(run_dir: Path, stage: str, key: str) -> list[float]:
    return [row[key] for row in read_metrics(run_dir / stage / "metrics.jsonl") if key in row and row["step"] > 0]


# ----------------------------------------------------------------------------- SFT


def test_sft_loss_goes_down(tmp_path, tiny_llama):
    write_run_folder(tmp_path)
    out = sft.run(config_from_dict(stage_config(tmp_path, tiny_llama, "sft", train={"max_steps": 12})))
    curve = metric(tmp_path, "sft", "loss/sft")
    assert len(curve) == 12
    assert sum(curve[-3:]) / 3 < 0.7 * sum(curve[:3]) / 3, curve
    report = json.loads((out / "eval.json").read_text())
    assert report["n"] == len(VAL_QA) and report["loss_after"] < report["loss_before"]
    for name in ("config.yaml", "metrics.jsonl", "DONE", "model/config.json", "model/model.safetensors",
                 "model/tokenizer_config.json"):
        assert (out / name).is_file(), name


@pytest.mark.parametrize("grouped", [False, True], ids=["plain", "group_by_length"])
def test_sft_resume_gives_identical_losses(tmp_path, tiny_llama, grouped):
    """Multi-turn conversations, LoRA with dropout (RNG state matters) and packing; plain steps
    and steps of examples of similar length (train.group_by_length)."""
    full, killed = tmp_path / "full", tmp_path / "killed"
    overrides = dict(source="messages", packing=True, lora={"enabled": True, "r": 4, "alpha": 8, "dropout": 0.1},
                     optim={"lr": 1e-2, "scheduler": "linear", "warmup_ratio": 0.2},
                     train={"max_steps": 6, "save_every": 2, "group_by_length": grouped})
    for run_dir in (full, killed):
        write_run_folder(run_dir)
    sft.run(config_from_dict(stage_config(full, tiny_llama, "sft", **overrides)))
    sft.run(config_from_dict(stage_config(killed, tiny_llama, "sft", **overrides)), stop_after=3)
    assert not (killed / "sft" / "model").exists() and not (killed / "sft" / "DONE").exists()
    sft.run(config_from_dict(stage_config(killed, tiny_llama, "sft", **overrides)), resume=True)
    for key in ("loss/sft", "train/loss_tokens", "train/lr", "train/grad_norm"):
        assert metric(killed, "sft", key) == metric(full, "sft", key), key
    a, b = saved_weights(full / "sft" / "model"), saved_weights(killed / "sft" / "model")
    assert all(torch.equal(a[n], b[n]) for n in a)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_row_gives_the_same_per_token_losses(tiny_llama, attn):
    """Several conversations in one row, position ids restarting at 0, no 2-D mask: every token's
    loss equals the one computed on the conversation alone (no attention across samples)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, attn_implementation=attn).eval()
    conversations = [[{"role": "user", "content": q}, {"role": "assistant", "content": chosen_answer(a)}]
                     for q, a in TRAIN_QA[:5]]
    examples, _ = sft.encode_conversations(conversations, tokenizer, 512, "drop", assistant_only=False)
    pad = tokenizer.pad_token_id

    def per_token(batch):
        kwargs = {k: v for k, v in batch.items() if v is not None and k != "labels"}
        with torch.no_grad():
            logits = model(**kwargs, use_cache=False).logits
        return -losses.token_logprobs(logits, batch["labels"])

    separate = [per_token(sft.build_batch([e], pad))[0] for e in examples]
    # room for about 2.5 conversations per row: rows of several, and a padded row
    capacity = int(2.5 * max(len(e.input_ids) for e in examples))
    rows = sft.pack([len(e.input_ids) for e in examples], capacity)
    assert max(len(row) for row in rows) >= 2 and len(rows) >= 2
    batch = sft.build_batch(examples, pad, packing=True, capacity=capacity)
    assert batch["attention_mask"] is None and batch["input_ids"].shape[0] == len(rows)
    packed = per_token(batch)
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            n = len(examples[i].input_ids)
            torch.testing.assert_close(packed[r, at:at + n], separate[i], rtol=1e-4, atol=1e-5)
            at += n
        assert torch.all(packed[r, at:] == 0)  # padding carries no loss
    # The summed loss and the token count do not depend on the packing either.
    total_sep = sum(float(s.sum()) for s in separate)
    assert abs(float(packed.sum()) - total_sep) < 1e-3 * total_sep
    # Control: the same rows with ordinary positions and an all-ones mask let the second
    # conversation of a row attend to the first, and its losses change.
    leaky = per_token({**batch, "position_ids": None, "attention_mask": torch.ones_like(batch["input_ids"])})
    r = next(r for r, row in enumerate(rows) if len(row) >= 2)
    at, n = len(examples[rows[r][0]].input_ids), len(examples[rows[r][1]].input_ids)
    assert not torch.allclose(leaky[r, at:at + n], separate[rows[r][1]], rtol=1e-3, atol=1e-3)


# ----------------------------------------------------------------------------- DPO


SHARED_LAYOUT = "each pair in one row, the prompt its answers share computed once (checked exact)"


@pytest.mark.parametrize("variant", ["plain", "group_by_length", "shared_prompt"])
def test_dpo_raises_heldout_preference_accuracy(tmp_path, tiny_llama, variant, capsys):
    write_run_folder(tmp_path)
    cfg = stage_config(tmp_path, tiny_llama, "dpo", beta=0.1, lora={"enabled": True, "r": 8, "alpha": 16, "dropout": 0.0},
                       optim={"lr": 1e-2, "scheduler": "constant", "warmup_ratio": 0.0},
                       train={"max_steps": 6, "eval_every": 3, "group_by_length": variant == "group_by_length"},
                       shared_prompt=variant == "shared_prompt")
    out = dpo.run(config_from_dict(cfg))
    assert (SHARED_LAYOUT in capsys.readouterr().out) == (variant == "shared_prompt")
    report = json.loads((out / "eval.json").read_text())
    assert report["n"] == len(VAL_QA)
    # At step 0 the policy is the reference: every implicit reward is 0, all ties.
    assert report["accuracy_before"] == 0.5
    assert report["accuracy_after"] >= 0.875, report
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows if "eval/rewards_accuracy" in r] == [0, 3, 6]
    for key in ("loss/dpo", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert key in rows[1], key
    assert rows[-1]["rewards/margins"] > rows[1]["rewards/margins"]
    saved = out / "model"  # lora.merge_on_save false (the default): the adapter and a pointer to its base
    assert (saved / "adapter_model.safetensors").is_file() and not (saved / "model.safetensors").exists()
    assert (out / "DONE").is_file()


@pytest.mark.parametrize("variant", ["plain", "group_by_length", "shared_prompt"])
def test_dpo_resume_gives_identical_losses(tmp_path, tiny_llama, variant):
    full, killed = tmp_path / "full", tmp_path / "killed"
    overrides = dict(lora={"enabled": True, "r": 4, "alpha": 8, "dropout": 0.1},
                     optim={"lr": 1e-2, "scheduler": "cosine", "warmup_ratio": 0.2},
                     train={"max_steps": 6, "save_every": 2, "epochs": 1, "group_by_length": variant == "group_by_length"},
                     shared_prompt=variant == "shared_prompt")
    for run_dir in (full, killed):
        write_run_folder(run_dir)
    dpo.run(config_from_dict(stage_config(full, tiny_llama, "dpo", **overrides)))
    dpo.run(config_from_dict(stage_config(killed, tiny_llama, "dpo", **overrides)), stop_after=3)
    assert not (killed / "dpo" / "model").exists()
    dpo.run(config_from_dict(stage_config(killed, tiny_llama, "dpo", **overrides)), resume=True)
    for key in ("loss/dpo", "rewards/margins", "rewards/accuracies", "train/lr"):
        assert metric(killed, "dpo", key) == metric(full, "dpo", key), key
    a = json.loads((full / "dpo" / "eval.json").read_text())
    b = json.loads((killed / "dpo" / "eval.json").read_text())
    assert (a["accuracy_before"], a["accuracy_after"]) == (b["accuracy_before"], b["accuracy_after"])
    a, b = saved_weights(full / "dpo" / "model"), saved_weights(killed / "dpo" / "model")
    assert all(torch.equal(a[n], b[n]) for n in a)


@pytest.mark.parametrize("arch", ["tiny_llama", "tiny_qwen3"])
def test_dpo_log_probs_with_the_prompt_once_equal_padded_rows(arch, request):
    """Each pair in one row with its prompt once (`shared_prompt_logps`): every side's summed
    answer log-prob equals the padded forward's (1e-5: float rounding) and the DPO loss's
    gradients equal the padded forward's (1e-4 relative), for pairs whose answers share their
    first tokens, share nothing with each other, are identical, or share no prompt at all."""
    from tiller.preference_logprobs import EncodedPreference, concatenated_logps, shared_prompt_is_exact
    from tiller.models import load_causal_lm

    torch.manual_seed(0)
    model = load_causal_lm(str(request.getfixturevalue(arch)))
    ignore = losses.IGNORE_INDEX

    def side(prompt: list[int], answer: list[int]) -> tuple[list[int], list[int]]:
        ids = prompt + answer  # targets: the answer's tokens, each read from the token before it
        return ids, [ignore] * (len(prompt) - 1) + answer + [ignore]

    prompt = [5, 6, 7, 8, 9, 10, 11]
    sides = [(side(prompt, [20, 21, 22, 23]), side(prompt, [30, 31])),
             (side(prompt[:3], [40, 41, 42]), side(prompt[:3], [40, 41, 50, 51, 52])),  # answers share 2 tokens
             (side(prompt[:4], [60, 61]), side(prompt[:4], [60, 61])),                 # identical answers
             (side([70, 71], [72]), side([80, 81, 82], [83, 84]))]                    # no common prompt
    batch = [EncodedPreference(c_ids, c_labels, r_ids, r_labels) for (c_ids, c_labels), (r_ids, r_labels) in sides]
    with torch.no_grad():
        padded = torch.stack(concatenated_logps(model, batch, 0, "cpu"))
        shared = torch.stack(concatenated_logps(model, batch, 0, "cpu", shared_prompt=True))
        alone = torch.tensor([[concatenated_logps(model, [p], 0, "cpu")[i].item() for p in batch] for i in (0, 1)])
    torch.testing.assert_close(shared, padded, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(shared, alone, rtol=1e-5, atol=1e-5)
    assert bool((shared < 0).all()) and torch.equal(shared[:, 2], shared[:, 2].flip(0))  # identical sides
    assert shared_prompt_is_exact(model, batch, 0, "cpu")

    def gradients(shared_prompt: bool) -> dict[str, torch.Tensor]:
        model.zero_grad()
        chosen, rejected = concatenated_logps(model, batch, 0, "cpu", shared_prompt)
        loss, _ = losses.dpo_loss(chosen, rejected, chosen.detach() - 0.3, rejected.detach() + 0.2, 0.5, 0.0, "sigmoid")
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    padded_grads, shared_grads = gradients(False), gradients(True)
    assert padded_grads.keys() == shared_grads.keys() and len(padded_grads) > 10
    for name in padded_grads:
        torch.testing.assert_close(shared_grads[name], padded_grads[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("lora", [True, False])
def test_precomputed_reference_gives_the_live_first_step(tmp_path, tiny_llama, lora):
    """Same first-step loss with reference log-probs cached before training as with the live
    reference (adapter disabled under LoRA, a frozen copy otherwise); resume reuses the cache."""
    first = {}
    for precompute in (False, True):
        run_dir = tmp_path / f"precompute-{precompute}"
        write_run_folder(run_dir)
        cfg = stage_config(run_dir, tiny_llama, "dpo", precompute_ref_logps=precompute, label_smoothing=0.1,
                           lora={"enabled": lora, "r": 4, "alpha": 8, "dropout": 0.0}, train={"max_steps": 2})
        dpo.run(config_from_dict(cfg), stop_after=1)
        first[precompute] = read_metrics(run_dir / "dpo" / "metrics.jsonl")[1]
    assert first[True]["step"] == 1
    assert first[True]["loss/dpo"] == pytest.approx(first[False]["loss/dpo"], rel=1e-5)
    cache = run_dir / "dpo" / "ref_logps.pt"
    saved = torch.load(cache, weights_only=True)
    assert saved["train_chosen"].shape == (len(TRAIN_QA),) and saved["val_chosen"].shape == (len(VAL_QA),)
    assert bool((saved["train_chosen"] < 0).all())
    stamp = cache.stat().st_mtime_ns
    dpo.run(config_from_dict(cfg), resume=True)  # no checkpoint yet: starts over, but reuses the cache
    assert cache.stat().st_mtime_ns == stamp
    assert (run_dir / "dpo" / "DONE").is_file()


# ----------------------------------------------------------------------------- 2 processes


LAUNCHED = """import sys
from tiller.cli import main
for stage in ("sft", "dpo"):
    if main([stage, "--config", sys.argv[1]]):
        sys.exit(1)
"""


def sft_then_dpo_config(run_dir: Path, model: Path, shared_prompt: bool = False) -> dict:
    """SFT on multi-turn conversations (packed), then DPO starting from the SFT output."""
    # adam_eps 1 makes the update nearly plain SGD (lr * gradient) and max_grad_norm 0 turns
    # clipping off, so the weights show any error in the gradient's scale or weighting (with the
    # default eps, Adam's first step is sign(gradient), which hides both).
    optim = {"lr": 0.5, "scheduler": "constant", "adam_eps": 1.0, "max_grad_norm": 0.0}
    # merged saves: the check below compares full weights with the start's (DPO's is the SFT output)
    common = dict(optim=optim, lora={"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "merge_on_save": True},
                  train={"max_steps": 2, "pairs_per_step": 4, "micro_batch_per_device": 2})
    cfg = stage_config(run_dir, model, "sft", source="messages", packing=True, **common)
    cfg["dpo"] = {**stage_config(run_dir, model, "dpo", beta=0.5, **common)["dpo"], "model": str(run_dir / "sft" / "model"),
                  "shared_prompt": shared_prompt}
    return cfg


@pytest.mark.distributed
@pytest.mark.parametrize("shared_prompt", [False, True], ids=["padded", "shared_prompt"])
def test_two_processes_match_one(tmp_path, tiny_llama, shared_prompt):
    """1 process x 2 accumulation steps and 2 processes (accelerate launch, through the CLI) x 1
    give the same updates: the SFT loss is normalized by the global token count, the DPO loss by
    the global pair count; DPO with padded pairs and with each pair in one row (dpo.shared_prompt)."""
    one, two = tmp_path / "one", tmp_path / "two"
    write_run_folder(one)
    sft.run(config_from_dict(sft_then_dpo_config(one, tiny_llama, shared_prompt)))
    dpo.run(config_from_dict(sft_then_dpo_config(one, tiny_llama, shared_prompt)))

    write_run_folder(two)
    (two / "config.yaml").write_text(yaml.safe_dump(sft_then_dpo_config(two, tiny_llama, shared_prompt)))
    (two / "launched.py").write_text(LAUNCHED)
    # `--cpu --num_processes 2` starts ONE process with accelerate 1.x (its simple launcher);
    # `--multi_gpu` goes through torchrun, and with no visible GPU the processes join over gloo.
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(two / "launched.py"), str(two / "config.yaml")]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # really two processes (both stages), each with one micro-batch per step
    assert result.stdout.count("x 1 accumulation x 2 process(es)") == 2, result.stdout[-3000:]
    assert (SHARED_LAYOUT in result.stdout) == shared_prompt, result.stdout[-3000:]

    start = load_file(str(tiny_llama / "model.safetensors"))
    for stage, key in (("sft", "loss/sft"), ("dpo", "loss/dpo")):
        a = load_file(str(one / stage / "model" / "model.safetensors"))
        b = load_file(str(two / stage / "model" / "model.safetensors"))
        assert max((a[n] - start[n]).abs().max().item() for n in a) > 1e-4, stage  # the update is real
        for n in a:  # the updates are ~1e-2; a wrongly weighted token or pair moves them by >1e-5
            torch.testing.assert_close(a[n], b[n], rtol=1e-5, atol=1e-6)
        assert key in assert_same_metrics(one / stage / "metrics.jsonl", two / stage / "metrics.jsonl", rel=1e-5)
        start = a  # DPO starts from the SFT output
