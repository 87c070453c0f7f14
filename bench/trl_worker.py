"""TRL side of bench/rloo_step.py: RLOOTrainer (trl==1.16.0) on the same workload.

Runs in bench/.venv-trl (no tiller import). Called as
    bench/.venv-trl/bin/python bench/trl_worker.py --worker trl --spec SPEC.json --out RESULT.json

Batch units (TRL): per_device_train_batch_size counts completions per forward; one optimizer
step = per_device_train_batch_size * gradient_accumulation_steps completions, generated in one
go (steps_per_generation = gradient_accumulation_steps); num_generations = k.
Time split, by wrapping the trainer's own methods: generate = `_generate` (tokenize + generate),
reward = `_calculate_rewards`, reference = every no-grad `_get_per_token_logps_and_entropies`
(old-policy and reference log-probs), train = the rest of the step (loss forward/backward, optimizer).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return -1.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker")
    ap.add_argument("--spec", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    spec = json.loads(Path(args.spec).read_text())

    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback
    from trl import RLOOConfig, RLOOTrainer

    torch.manual_seed(spec["seed"])
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[spec["dtype"]]
    prompts = [json.loads(x)["messages"] for x in Path(spec["prompts_file"]).read_text().splitlines() if x.strip()]
    dataset = Dataset.from_list([{"prompt": p} for p in prompts])
    tokenizer = AutoTokenizer.from_pretrained(spec["policy_dir"], padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    policy = AutoModelForCausalLM.from_pretrained(spec["policy_dir"], dtype=dtype)
    reward_tok = AutoTokenizer.from_pretrained(spec["reward_dir"])
    reward = AutoModelForSequenceClassification.from_pretrained(spec["reward_dir"], num_labels=1, dtype=dtype)
    reward.config.pad_token_id = reward_tok.pad_token_id

    completions = spec["prompts"] * spec["k"]
    micro = spec["micro_batch"]
    accum = completions // micro
    steps = spec["warmup"] + spec["measured"]
    config = RLOOConfig(
        output_dir=str(Path(spec["run_dir"]) / "trl"),
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=accum,
        num_generations=spec["k"],
        max_completion_length=spec["max_new_tokens"],
        generation_kwargs={"min_new_tokens": spec["max_new_tokens"]},  # EOS suppressed: fixed length
        temperature=spec["temperature"],
        learning_rate=spec["lr"],
        lr_scheduler_type="constant",
        weight_decay=0.0,
        beta=spec["beta"],
        num_iterations=1,
        max_steps=steps,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=spec["dtype"] == "bfloat16",
        gradient_checkpointing=False,
        disable_tqdm=True,
        seed=spec["seed"],
        dataloader_num_workers=0,
        log_completions=False,
    )
    peft_config = None
    if spec["lora"]:
        from peft import LoraConfig

        lo = spec["lora"]
        peft_config = LoraConfig(r=lo["r"], lora_alpha=lo["alpha"], lora_dropout=lo["dropout"],
                                 target_modules=lo["targets"], task_type="CAUSAL_LM")

    clock = {"generate": 0.0, "reward": 0.0, "reference": 0.0}
    stamps: list[float] = []
    cpu: list[float] = []
    per_step: list[dict] = []

    class Timed(RLOOTrainer):
        def _generate(self, prompts):
            t0 = time.perf_counter()
            try:
                return super()._generate(prompts)
            finally:
                clock["generate"] += time.perf_counter() - t0

        def _calculate_rewards(self, *a, **kw):
            t0 = time.perf_counter()
            try:
                return super()._calculate_rewards(*a, **kw)
            finally:
                clock["reward"] += time.perf_counter() - t0

        def _get_per_token_logps_and_entropies(self, *a, **kw):
            if torch.is_grad_enabled():
                return super()._get_per_token_logps_and_entropies(*a, **kw)
            t0 = time.perf_counter()
            try:
                return super()._get_per_token_logps_and_entropies(*a, **kw)
            finally:
                clock["reference"] += time.perf_counter() - t0

    tokens_seen: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if not stamps:
                stamps.append(time.perf_counter())
                cpu.append(time.process_time())

        def on_step_end(self, args, state, control, **kw):
            now = time.perf_counter()
            step = now - stamps[-1]
            stamps.append(now)
            cpu.append(time.process_time())
            split = dict(clock)
            split["train"] = step - sum(split.values())
            per_step.append({"step_s": step, "cpu_s": cpu[-1] - cpu[-2], **split,
                             "tokens": float(completions * spec["max_new_tokens"])})
            for key in clock:
                clock[key] = 0.0

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                tokens_seen.append(logs["completions/mean_length"])

    trainer = Timed(model=policy, reward_funcs=reward, args=config, train_dataset=dataset,
                    processing_class=tokenizer, reward_processing_classes=reward_tok, peft_config=peft_config,
                    callbacks=[StepClock()])
    trainer.train()
    # tokens per step from TRL's own logged mean completion length (fixed length: max_new_tokens)
    for row, mean_len in zip(per_step, tokens_seen):
        row["tokens"] = completions * mean_len
    result = {"spec": spec, "steps": per_step[spec["warmup"]:], "warmup_steps": per_step[:spec["warmup"]],
              "peak_rss_mb": peak_rss_mb(), "torch_threads": torch.get_num_threads()}
    Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
