"""SFT stage: supervised fine-tuning on conversations, loss on the assistant's turns.

    tiller sft --config FILE [--resume]      trains <run_dir>/sft/model

Read top to bottom: render each conversation with the model's own chat template and mark the
tokens of every assistant turn (its content and end-of-turn token) by rendering the
conversation prefix by prefix (`tiller.chat`: an answer without reasoning learns no empty
Qwen3 think block, whatever `model.enable_thinking` says; docs/thinking.md); shift the targets inside each conversation, so a conversation
never predicts a token of another one; then a plain loop like the reward stage's. A step takes
`pairs_per_step` conversations (the field is shared with the pair stages: here it counts
examples), each process its share, in micro-batches of `micro_batch_per_device`. The loss is
the summed token cross-entropy divided by the number of loss tokens of the whole optimizer
step, counted over all micro-batches and processes, so every token weighs the same however
the step is split.

Packing (`sft.packing: true`) concatenates the conversations of a micro-batch into as few rows
of at most `max_length` tokens as fit, with `position_ids` restarting at 0 for each
conversation and no 2-D attention mask. transformers (masking_utils.find_packed_sequence_indices,
since 4.53) then builds a block-diagonal causal mask for sdpa / eager / flex attention, and
flash attention uses the same position ids for its variable-length kernel (one row only: it
detects packing only for batch size 1, so under flash attention a micro-batch is one row).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from tiller import losses
from tiller.chat import IGNORE, assistant_token_mask, shifted_labels
from tiller.checkpoint import save_checkpoint
from tiller.config import Config, to_yaml
from tiller.data.run_files import load_conversations, load_pairs
from tiller.logprobs import describe_logprob_path, label_logprobs
from tiller.model_card import CardInfo
from tiller.models import describe_origin, load_policy, load_tokenizer, policy_start, write_origin
from tiller.tracking import Tracker
from tiller.training import (
    Runtime,
    gradient_accumulation,
    prepare_for_training,
    rank_batches,
    resume_latest,
    save_trained_model,
    seed_per_rank,
    setup_runtime,
    show_progress,
    step_indices,
    trainable_parameter_count,
    use_gradient_checkpointing,
)


# ----------------------------------------------------------------------------- examples


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]  # next-token targets, -100 where no loss

    @property
    def num_loss_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def conversations_for(cfg: Config, split: str) -> list[list[dict]]:
    """`messages`: the data stage's conversations; `chosen`: prompt + chosen answer of each pair."""
    if cfg.sft.source == "messages":
        return [c.messages for c in load_conversations(cfg.run_dir, split)]
    return [p.prompt + [{"role": "assistant", "content": p.chosen}] for p in load_pairs(cfg.run_dir, split)]


def encode_conversations(conversations: list[list[dict]], tokenizer, max_length: int, truncation: str,
                         assistant_only: bool = True, enable_thinking=None) -> tuple[list[Example], dict[str, int]]:
    """Examples, and the number dropped per reason (too long, or no token to learn from)."""
    examples, dropped = [], {"too_long": 0, "no_loss_tokens": 0}
    for messages in conversations:
        ids, mask = assistant_token_mask(tokenizer, messages, enable_thinking)
        if not assistant_only:
            mask = [1] * len(ids)
        if len(ids) > max_length:
            if truncation == "drop":
                dropped["too_long"] += 1
                continue
            ids, mask = ids[-max_length:], mask[-max_length:]  # cut from the left: the prompt's start goes first
        example = Example(ids, shifted_labels(ids, mask))
        if example.num_loss_tokens == 0:
            dropped["no_loss_tokens"] += 1
            continue
        examples.append(example)
    return examples, dropped


def pack(lengths: list[int], capacity: int | None) -> list[list[int]]:
    """Group example indices into rows of at most `capacity` tokens (first fit, in order);
    None puts everything in one row."""
    rows: list[list[int]] = []
    used: list[int] = []
    for i, n in enumerate(lengths):
        for r in range(len(rows)):
            if capacity is None or used[r] + n <= capacity:
                rows[r].append(i)
                used[r] += n
                break
        else:
            rows.append([i])
            used.append(n)
    return rows


def build_batch(examples: list[Example], pad_id: int, packing: bool = False, capacity: int | None = None) -> dict:
    """Model inputs for a micro-batch.

    Unpacked: one example per row, right-padded, with a 2-D attention mask.
    Packed: examples concatenated into rows (see `pack`), `position_ids` restarting at 0 for
    each example and for the padding at a row's end, and attention_mask None, so transformers
    keeps every example's attention inside the example."""
    if packing:
        rows = [[examples[i] for i in row] for row in pack([len(e.input_ids) for e in examples], capacity)]
    else:
        rows = [[e] for e in examples]
    longest = max(sum(len(e.input_ids) for e in row) for row in rows)
    input_ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), longest), IGNORE, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), longest), dtype=torch.long)
    position_ids = torch.zeros((len(rows), longest), dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for e in row:
            n = len(e.input_ids)
            input_ids[r, at:at + n] = torch.tensor(e.input_ids)
            labels[r, at:at + n] = torch.tensor(e.labels)
            attention_mask[r, at:at + n] = 1
            position_ids[r, at:at + n] = torch.arange(n)
            at += n
        position_ids[r, at:] = torch.arange(longest - at)  # the padding is a sequence of its own
    if packing:
        return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids, "attention_mask": None}
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask, "position_ids": None}


def loss_sum(model, batch: dict, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed token cross-entropy, number of loss tokens) of one micro-batch."""
    kwargs = {k: v.to(device) for k, v in batch.items() if v is not None and k != "labels"}
    labels = batch["labels"].to(device)
    return losses.nll_sum(label_logprobs(model, labels, **kwargs), labels != IGNORE)


def pack_capacity(model, max_length: int) -> int | None:
    """Row length for packing. Flash attention finds packed sequences only in a single row."""
    impl = getattr(getattr(model, "config", None), "_attn_implementation", "") or ""
    return None if impl.startswith("flash") else max_length


@torch.no_grad()
def evaluate_loss(model, examples: list[Example], rt: Runtime, pad_id: int, batch_size: int,
                  packing: bool, capacity: int | None) -> dict:
    """Token-level cross-entropy on held-out examples, over all processes."""
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=rt.device)
    for ids in rank_batches(len(examples), batch_size, rt.rank, rt.world_size):
        batch = build_batch([examples[i] for i in (ids or [0])], pad_id, packing, capacity)
        s, n = loss_sum(model, batch, rt.device)
        if ids:
            total += torch.stack([s.double(), n.double()])
    model.train(was_training)
    if rt.world_size > 1:
        total = rt.accelerator.reduce(total, reduction="sum")
    return {"loss": float(total[0] / total[1]) if total[1] > 0 else 0.0, "tokens": int(total[1]), "n": len(examples)}


# ----------------------------------------------------------------------------- run


def _build_model(cfg: Config, name: str, device: torch.device):
    """(model, origin). A saved adapter folder is merged, and training continues from the merged model."""
    return load_policy(name, cfg.model, cfg.sft.lora, device, adapter="merge",
                       gradient_checkpointing=use_gradient_checkpointing(cfg.model, device))


def run(cfg: Config, resume: bool = False, stop_after: int | None = None, accept_config_changes: bool = False) -> Path:
    """Fine-tune on conversations; `stop_after` ends the loop early without finishing (tests
    use it to simulate a killed run)."""
    s, t = cfg.sft, cfg.sft.train
    rt = setup_runtime(cfg.seed, cfg.model.mixed_precision)
    out = Path(cfg.run_dir) / "sft"
    name, chosen_by = policy_start(cfg, "sft")
    if rt.is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(to_yaml(cfg))

    # ---- data and batch arithmetic
    tokenizer = load_tokenizer(name, cfg.model)
    encode = dict(tokenizer=tokenizer, max_length=t.max_length, truncation=t.truncation,
                  assistant_only=s.assistant_only_loss, enable_thinking=cfg.model.enable_thinking)
    train, dropped = encode_conversations(conversations_for(cfg, "train"), **encode)
    try:
        val, dropped_val = encode_conversations(conversations_for(cfg, "validation"), **encode)
    except FileNotFoundError:
        val, dropped_val = [], {}
    accum = gradient_accumulation(t.pairs_per_step, t.micro_batch_per_device, rt.world_size, "examples")
    steps_per_epoch = len(train) // t.pairs_per_step
    if steps_per_epoch == 0:
        hint = " (sft.source is 'chosen': the data stage wrote no pairs; use sft.source: messages)" \
            if not train and s.source == "chosen" else ""
        raise ValueError(f"{len(train)} training conversations are fewer than sft.train.pairs_per_step={t.pairs_per_step}{hint}")
    total_steps = t.max_steps or int(math.ceil(t.epochs * steps_per_epoch))

    def kept(n: int, d: dict) -> str:
        return f"{n} ({d.get('too_long', 0)} dropped > {t.max_length} tokens, {d.get('no_loss_tokens', 0)} without loss tokens)"

    rt.print(
        f"[sft] model {name} | conversations ({s.source}): train {kept(len(train), dropped)}, validation "
        f"{kept(len(val), dropped_val)} | loss on {'assistant turns' if s.assistant_only_loss else 'all tokens'}"
        f"{', packed' if s.packing else ''}\n"
        f"[sft] {t.pairs_per_step} examples/step (sft.train.pairs_per_step counts conversations here) = "
        f"{t.micro_batch_per_device} per micro-batch x {accum} accumulation x {rt.world_size} process(es); "
        f"{steps_per_epoch} steps/epoch, {total_steps} steps"
        f"{' of examples of similar length' if t.group_by_length else ''}; loss = token sum / loss tokens of the whole step"
    )

    model, origin = _build_model(cfg, name, rt.device)
    rt.print(f"[sft] {describe_origin(origin, chosen_by)}")
    if rt.is_main:
        write_origin(out, origin, chosen_by)
    trainable, total = trainable_parameter_count(model)
    rt.print(f"[sft] trainable parameters {trainable:,} of {total:,} ({'LoRA' if s.lora.enabled else 'full'})")
    capacity = pack_capacity(model, t.max_length)
    model, unwrapped, optimizer, scheduler, updates = prepare_for_training(rt, model, s.optim, total_steps, accum,
                                                                          t.micro_batch_per_device, "sft")
    rt.print(f"[sft] {describe_logprob_path(model)}")

    seed_per_rank(rt, cfg.seed)  # every model is built: from here each process draws its own dropout stream
    start_step, state = 0, {"stage": "sft"}
    ckpt_root = out / "checkpoints"
    if resume:
        saved = resume_latest(rt, ckpt_root, model, optimizer, scheduler, "sft", cfg, "sft",
                              total_steps, accept_config_changes)
        start_step = saved["step"]
        updates.start = start_step
        if start_step:
            state["loss_before"] = saved.get("loss_before")

    tracker = Tracker(out, cfg.tracking, enabled=rt.is_main, run_config={"stage": "sft"})
    pad_id = tokenizer.pad_token_id
    mb = t.micro_batch_per_device

    def evaluate() -> dict:
        return evaluate_loss(unwrapped, val, rt, pad_id, mb, s.packing, capacity)

    if val and start_step == 0:
        before = evaluate()
        state["loss_before"] = before["loss"]
        tracker.log({"eval/loss": before["loss"]}, 0)
        rt.print(f"[sft] validation loss before training {before['loss']:.4f} ({before['tokens']} tokens)")

    lengths = [len(e.input_ids) for e in train] if t.group_by_length else None
    from tqdm.auto import tqdm

    bar = tqdm(total=total_steps, initial=start_step, desc="sft", disable=not (rt.is_main and show_progress()))
    started = time.time()
    model.train()
    for step in range(start_step, total_steps):
        if stop_after is not None and step >= stop_after:
            break
        t0 = time.perf_counter()
        mine = [train[i] for i in step_indices(len(train), t.pairs_per_step, step, cfg.seed, rt.rank, rt.world_size, lengths)]
        # Normalizer: loss tokens of the whole step, over all micro-batches and processes.
        local_tokens = torch.tensor(float(sum(e.num_loss_tokens for e in mine)), device=rt.device)
        global_tokens = rt.accelerator.reduce(local_tokens.clone(), reduction="sum") if rt.world_size > 1 else local_tokens
        summed = torch.zeros((), device=rt.device)
        for micro in range(accum):
            batch = build_batch(mine[micro * mb:(micro + 1) * mb], pad_id, s.packing, capacity)
            with updates.micro_batch(micro):
                total_nll, _ = loss_sum(model, batch, rt.device)
                updates.backward(total_nll / global_tokens)  # this micro-batch's share of global sum / global tokens
            summed += total_nll.detach()
        grad_norm = updates.step()
        if rt.world_size > 1:
            summed = rt.accelerator.reduce(summed, reduction="sum")
        done = step + 1
        elapsed = time.perf_counter() - t0
        step_metrics = {
            "loss/sft": summed / global_tokens,
            "train/loss_tokens": global_tokens,
            "train/grad_norm": float(grad_norm),
            "guard/skipped_updates": updates.skipped,
            "train/lr": scheduler.get_last_lr()[0],
            "train/epoch": done / steps_per_epoch,
            "time/step": elapsed,
        }
        logged = tracker.log(step_metrics, done) if done % t.log_every == 0 else {}
        if logged:
            bar.set_postfix(loss=f"{logged['loss/sft']:.3f}")
        bar.update(1)
        if val and t.eval_every and done % t.eval_every == 0 and done < total_steps:
            report = evaluate()
            tracker.log({"eval/loss": report["loss"]}, done)
            if rt.is_main:
                bar.write(f"[sft] step {done}: validation loss {report['loss']:.4f}")
        if t.save_every and done % t.save_every == 0 and done < total_steps:
            save_checkpoint(ckpt_root, done, model, optimizer, scheduler, state, t.keep_checkpoints, rt,
                            config_yaml=to_yaml(cfg))
    bar.close()
    if stop_after is not None and stop_after < total_steps:
        tracker.close()
        return out

    train_seconds = time.time() - started
    report = {"n": len(val), "train_examples": len(train), "steps": total_steps, "train_seconds": train_seconds}
    if val:
        after = evaluate()
        tracker.log({"eval/loss": after["loss"]}, total_steps)
        report.update({"loss_before": state.get("loss_before"), "loss_after": after["loss"], "tokens": after["tokens"]})
        before = state.get("loss_before")
        rt.print(f"[sft] validation loss {'?' if before is None else f'{before:.4f}'} -> {after['loss']:.4f} "
                 f"on {len(val)} conversations")
    if rt.is_main:
        print(f"[sft] trained in {train_seconds:.0f} s", flush=True)
        print(f"[sft] {updates.describe()}", flush=True)
    save_trained_model(rt, model, unwrapped, tokenizer, out / "model", s.lora.merge_on_save,
                       rebuild=lambda: _build_model(cfg, name, torch.device("cpu"))[0],
                       card=CardInfo(cfg, "sft", name, report))
    if rt.is_main:
        (out / "eval.json").write_text(json.dumps(report, indent=1))
        (out / "DONE").write_text(f"{total_steps} steps\n")
        print(f"[sft] saved {out / 'model'}", flush=True)
    tracker.close()
    rt.barrier()
    return out
