"""DPO training steps: chosen and rejected in padded rows of their own, against each pair in one
row with the prompt its two answers share computed once (`dpo.shared_prompt`).

A DPO step needs the summed answer log-probs of both sides of every pair twice: under the
reference (no gradient; the base with the LoRA adapter disabled) and under the policy (forward and
backward). Padded, a micro-batch is 2n rows as long as its longest sequence; with the prompt once
(`tiller.preference_logprobs.shared_prompt_logps`) it is n rows of [prompt | rest of chosen | rest
of rejected] with a 4D attention mask keeping the answers apart. This times the same training
steps both ways, side by side, on the demo's DPO pairs (the data stage on the bundled sample, the
first half, as `configs/demo.yaml` has them), with the demo's model and DPO settings (the
embedded SmolLM2-135M, LoRA r=16 on the last 8 layers, 8 pairs per step and per micro-batch, max
length 320):

    HF_HUB_OFFLINE=1 PYTHONPATH=src python bench/dpo_batches.py [--steps N] [--reps 1]

Each of `reps` alternations runs the epoch's steps each way in turn (one policy, reference
log-probs + forward + backward + AdamW step) after one warm-up step, and prints seconds per step,
real and padded tokens, the speed against padded rows, and the largest difference between the two
ways' log-probs on the first step. By default every step of the epoch is timed (`--steps N`: the
first N).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch
from demo_pairs import demo_config_and_pairs, step_arguments

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    args = step_arguments(__doc__, "padded, shared prompt")

    from tiller import losses
    from tiller.batching import common_prefix_length
    from tiller.data.splits import subset
    from tiller.models import load_tokenizer
    from tiller.preference_logprobs import concatenated_logps, encode_preferences
    from tiller.recipes import dpo as dpo_stage
    from tiller.training import step_indices

    cfg, pairs = demo_config_and_pairs()
    d, t = cfg.dpo, cfg.dpo.train
    pairs = subset(pairs, d.train_subset)
    tokenizer = load_tokenizer(cfg.model.name, cfg.model)
    pad_id = tokenizer.pad_token_id
    train, _ = encode_preferences(pairs, tokenizer, t.max_length, t.truncation, cfg.model.enable_thinking)
    epoch = len(train) // t.pairs_per_step
    steps = min(args.steps, epoch) if args.steps else epoch
    torch.manual_seed(0)
    policy, _ = dpo_stage._build_policy(cfg, cfg.model.name, torch.device("cpu"))
    policy.train()
    reference = {layout: dpo_stage.Reference(policy, shared_prompt=layout == "shared_prompt")
                 for layout in ("padded", "shared_prompt")}
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=d.optim.lr)
    print(f"{len(train)} pairs, {t.pairs_per_step} per step (micro-batch {t.micro_batch_per_device}), "
          f"max length {t.max_length}; {steps} measured steps per way after 1 warm-up, {args.reps} alternation(s); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}",
          flush=True)

    first = [train[i] for i in step_indices(len(train), t.pairs_per_step, 0, cfg.seed, 0, 1)][:t.micro_batch_per_device]
    with torch.no_grad():
        policy.eval()
        padded = torch.stack(concatenated_logps(policy, first, pad_id, "cpu"))
        shared = torch.stack(concatenated_logps(policy, first, pad_id, "cpu", shared_prompt=True))
        policy.train()
    print(f"largest log-prob difference on the first micro-batch: {(padded - shared).abs().max():.1e} "
          f"(sums of {padded.abs().mean():.1f} nats on average)", flush=True)

    def row_tokens(batch, layout: str) -> tuple[int, int]:
        """(real, padded) tokens of one forward: a row per side, or per pair with its prompt once."""
        if layout == "shared_prompt":
            lengths = [len(p.chosen_ids) + len(p.rejected_ids) - common_prefix_length([p.chosen_ids, p.rejected_ids])
                       for p in batch]
            return sum(lengths), len(batch) * max(lengths)
        return (sum(len(p.chosen_ids) + len(p.rejected_ids) for p in batch),
                2 * len(batch) * max(max(len(p.chosen_ids), len(p.rejected_ids)) for p in batch))

    def run(layout: str) -> tuple[list[float], int, int]:
        shared_prompt = layout == "shared_prompt"
        times, real, padded_tokens = [], 0, 0
        for step in [epoch] + list(range(steps)):  # a step of the next epoch warms up
            mine = step_indices(len(train), t.pairs_per_step, step, cfg.seed, 0, 1)
            started = time.perf_counter()
            for start in range(0, len(mine), t.micro_batch_per_device):
                batch = [train[i] for i in mine[start:start + t.micro_batch_per_device]]
                ref_chosen, ref_rejected = reference[layout].logps(batch, pad_id, "cpu")
                chosen, rejected = concatenated_logps(policy, batch, pad_id, "cpu", shared_prompt)
                loss, _ = losses.dpo_loss(chosen, rejected, ref_chosen, ref_rejected, d.beta, d.label_smoothing,
                                          d.loss_type)
                (loss * len(batch) / t.pairs_per_step).backward()
                if step < epoch:
                    r, p = row_tokens(batch, layout)
                    real, padded_tokens = real + r, padded_tokens + p
            optimizer.step()
            optimizer.zero_grad()
            if step < epoch:
                times.append(time.perf_counter() - started)
        return times, real, padded_tokens

    names = {"padded": "a row per side, padded", "shared_prompt": "a row per pair, prompt once"}
    results: dict[str, list[float]] = {layout: [] for layout in names}
    tokens = {}
    for rep in range(args.reps):
        for layout, name in names.items():
            times, real, padded_tokens = run(layout)
            results[layout] += times
            tokens[layout] = (real, padded_tokens)
            print(f"  alternation {rep + 1}, {name}: median {statistics.median(times):.2f} s/step "
                  f"({min(times):.2f}-{max(times):.2f})", flush=True)
    for layout, name in names.items():
        real, padded_tokens = tokens[layout]
        print(f"{name}: {sum(results[layout]) / args.reps:.1f} s per {steps} steps, median "
              f"{statistics.median(results[layout]):.2f} s/step; {padded_tokens:,} tokens in padded rows for "
              f"{real:,} real ({padded_tokens / real:.2f}x)")
    same = " (the whole epoch: the same pairs)" if steps == epoch else ""
    print(f"headline: the prompt once at x{sum(results['padded']) / sum(results['shared_prompt']):.2f} the speed of "
          f"padded rows ({steps} steps{same}, side by side; the policy trains on through both ways)")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
