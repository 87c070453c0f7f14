"""Reward-model training steps: a plain shuffle against steps of pairs of similar length, and
each pair's prompt computed once.

The reward stage trains on padded batches: a batch is as long as its longest sequence. With a
plain shuffle (`reward.train.group_by_length: false`, the default) short pairs share steps with
long ones; grouped (`true`: `tiller.batching.length_grouped_order`) each step holds pairs of
similar length. With `reward.shared_prompt` each pair is one row, its prompt once and its two
answers after it (`tiller.batching.shared_prefix_rows`). This times the same training steps
each way (plain, grouped, shared prompt, both), side by side, on the demo's reward
pairs (the data stage on the bundled sample, the first half plus the degenerate negatives, as
`configs/demo.yaml` has them), with the demo's model (the embedded SmolLM2-135M, LoRA r=16 on
the last 8 layers, score head), micro-batch and max length:

    HF_HUB_OFFLINE=1 PYTHONPATH=src python bench/reward_batches.py [--steps N] [--reps 1]

Each of `reps` alternations runs the epoch's steps each way in turn (one model, forward +
backward + AdamW step) after one warm-up step, and prints seconds per step, real and padded
tokens, and each way's speed against the plain one. By default every step of the epoch is
timed, so every way trains on exactly the same pairs; `--steps N` times the first N steps of
each (a quicker, noisier check: then the orderings see different pairs).
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
    args = step_arguments(__doc__, "plain, grouped, shared prompt, both")

    from tiller import losses
    from tiller.batching import common_prefix_length
    from tiller.data.splits import subset
    from tiller.models import load_tokenizer
    from tiller.recipes import reward as reward_stage
    from tiller.score_head import ScoreHead
    from tiller.training import step_indices

    cfg, pairs = demo_config_and_pairs()
    rcfg, t = cfg.reward, cfg.reward.train
    pairs = subset(pairs, rcfg.train_subset)
    pairs = pairs + reward_stage.degenerate_pairs(pairs, rcfg.degenerate_negatives, cfg.seed)
    tokenizer = load_tokenizer(cfg.model.name, cfg.model)
    train, _ = reward_stage.encode_pairs(pairs, tokenizer, t.max_length, t.truncation, cfg.model.enable_thinking)
    lengths = [max(len(p.chosen), len(p.rejected)) for p in train]
    epoch = len(train) // t.pairs_per_step
    steps = min(args.steps, epoch) if args.steps else epoch
    torch.manual_seed(0)
    scorer = ScoreHead(reward_stage._build_model(cfg, cfg.model.name, tokenizer, torch.device("cpu")))
    scorer.train()
    optimizer = torch.optim.AdamW([p for p in scorer.parameters() if p.requires_grad], lr=rcfg.optim.lr)
    print(f"{len(train)} pairs, {t.pairs_per_step} per step (micro-batch {t.micro_batch_per_device}), "
          f"max length {t.max_length}; {steps} measured steps per ordering after 1 warm-up, {args.reps} alternation(s); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}",
          flush=True)

    def row_tokens(batch, layout: str) -> tuple[int, int]:
        """(real, padded) tokens of one forward: a row per sequence, or per pair with its prompt once."""
        if layout == "shared_prompt":
            lengths_ = [len(p.chosen) + len(p.rejected) - common_prefix_length([p.chosen, p.rejected]) for p in batch]
            return sum(lengths_), len(batch) * max(lengths_)
        return (sum(len(p.chosen) + len(p.rejected) for p in batch),
                2 * len(batch) * max(max(len(p.chosen), len(p.rejected)) for p in batch))

    def run(grouped: bool, layout: str) -> tuple[list[float], int, int]:
        times, real, padded = [], 0, 0
        for step in [epoch] + list(range(steps)):  # a step of the next epoch warms up
            mine = step_indices(len(train), t.pairs_per_step, step, cfg.seed, 0, 1, lengths if grouped else None)
            started = time.perf_counter()
            for start in range(0, len(mine), t.micro_batch_per_device):
                batch = [train[i] for i in mine[start:start + t.micro_batch_per_device]]
                chosen, rejected = reward_stage.score_pairs(scorer, batch, tokenizer.pad_token_id, "cpu", layout)
                loss, _ = losses.bradley_terry_loss(chosen, rejected, torch.tensor([p.margin for p in batch]),
                                                  rcfg.margin_scale, rcfg.center_coef)
                (loss * len(batch) / t.pairs_per_step).backward()
                if step < epoch:
                    r, pd = row_tokens(batch, layout)
                    real, padded = real + r, padded + pd
            optimizer.step()
            optimizer.zero_grad()
            if step < epoch:
                times.append(time.perf_counter() - started)
        return times, real, padded

    variants = {"plain": (False, "padded"), "grouped": (True, "padded"), "shared prompt": (False, "shared_prompt"),
                "grouped + shared prompt": (True, "shared_prompt")}
    results: dict[str, list[float]] = {name: [] for name in variants}
    tokens = {}
    for rep in range(args.reps):
        for name, (grouped, layout) in variants.items():
            times, real, padded = run(grouped, layout)
            results[name] += times
            tokens[name] = (real, padded)
            print(f"  alternation {rep + 1}, {name}: median {statistics.median(times):.2f} s/step "
                  f"({min(times):.2f}-{max(times):.2f})", flush=True)
    for name in variants:
        real, padded = tokens[name]
        print(f"{name}: {sum(results[name]) / args.reps:.1f} s per {steps} steps, median "
              f"{statistics.median(results[name]):.2f} s/step; {padded:,} tokens in padded rows for {real:,} real "
              f"({padded / real:.2f}x)")
    plain = sum(results["plain"])
    same = " (the whole epoch: the same pairs)" if steps == epoch else ""
    for name in list(variants)[1:]:
        print(f"headline: {name} at x{plain / sum(results[name]):.2f} the speed of a plain shuffle, padded "
              f"({steps} steps{same}, side by side)")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
