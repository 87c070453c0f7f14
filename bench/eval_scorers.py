"""The evaluation's scoring: the judge and the optimized reward model as two models loaded one
after the other, against one base holding both adapters (`eval.judge.share_base`), and with
each prompt's answers in one row (`eval.judge.shared_prompt`), side by side.

The demo trains both reward models with LoRA on the last 8 layers of the same base, so the
evaluation can load that base once and run the 22 frozen layers below the adapters once for
both (`tiller.rewards.shared_base.ScoresOnOneBase`); and the reference's, the policy's and the
three constant answers to a prompt can share one row with the prompt's tokens once
(`tiller.batching.shared_prefix_rows`). This times the eval stage's scoring each way on a
finished run's answers (RUN_DIR/eval/<stage>_samples.jsonl: the prompts and both
models' answers), with the run's config (`configs/demo.yaml` by default):

    HF_HUB_OFFLINE=1 PYTHONPATH=src python bench/eval_scorers.py RUN_DIR [--stage rloo] [--reps 2]

Each way scores as the eval stage does: the reference's answers with both models, the policy's
where they differ from the reference's, the constant answers with the judge; timed from loading
the first model to letting go of the last. Alternating (each way in turn, `reps` times), it
prints the seconds of each, its speed against two merged models scoring padded rows (the way
before these shortcuts), and the largest difference from that way's scores (float rounding
only: an adapter adds B·A·x where the merged model holds W + B·A; a 4D mask against padding).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a finished run: judge/model, reward/model and eval/<stage>_samples.jsonl")
    parser.add_argument("--stage", default="rloo", help="whose answers (eval/<stage>_samples.jsonl)")
    parser.add_argument("--config", default=str(ROOT / "configs" / "demo.yaml"))
    parser.add_argument("--reps", type=int, default=2, help="alternations (each way in turn)")
    args = parser.parse_args()

    from tiller.config_loading import load_config
    from tiller.recipes import evaluate

    cfg = load_config(args.config, [f"run_dir={args.run_dir}"])
    rows = [json.loads(line) for line in (Path(args.run_dir) / "eval" / f"{args.stage}_samples.jsonl").open()]
    messages = [r["prompt"] for r in rows]
    print(f"{len(rows)} prompts from {args.run_dir}/eval/{args.stage}_samples.jsonl "
          f"({sum(r['policy'] != r['reference'] for r in rows)} policy answers differ from the reference's); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)

    def score(share_base: bool, shared_prompt: bool) -> tuple[float, list[float]]:
        cfg.eval.judge.share_base, cfg.eval.judge.shared_prompt = share_base, shared_prompt
        theirs = evaluate.Answers([], [], [r["reference"] for r in rows])
        ours = evaluate.Answers([], [], [r["policy"] for r in rows])
        started = time.perf_counter()
        for fields, scorer, judge in evaluate._scorers(cfg, evaluate._judge_path(cfg), "cpu", messages,
                                                       [theirs.texts, ours.texts]):
            evaluate._assign(theirs, fields, scorer.score(messages, theirs.texts))
            if judge is not None:
                constant = evaluate._score_constant_answers(judge, messages, theirs.texts, theirs.scores, None)
            evaluate._assign(ours, fields, evaluate._score_against(scorer, messages, ours.texts, theirs.texts,
                                                                   evaluate._scores_of(theirs, fields)))
        seconds = time.perf_counter() - started
        if ours.rm_scores is None:
            raise SystemExit(f"{args.run_dir} has no optimized reward model beside the judge: nothing to share")
        flat = [*theirs.scores, *ours.scores, *theirs.rm_scores, *ours.rm_scores]
        return seconds, flat + [s for kind in sorted(constant) for s in constant[kind]]

    variants = {"apart, padded": (False, False), "one base, padded": (True, False),
                "one base, a row per prompt": (True, True)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    scores: dict[str, list[float]] = {}
    for rep in range(args.reps):
        for name, (share_base, shared_prompt) in variants.items():
            seconds, scores[name] = score(share_base, shared_prompt)
            times[name].append(seconds)
            print(f"  alternation {rep + 1}, {name}: {seconds:.1f} s", flush=True)
    apart = statistics.median(times["apart, padded"])
    for name in variants:
        diff = max(abs(a - b) for a, b in zip(scores["apart, padded"], scores[name]))
        print(f"{name}: median {statistics.median(times[name]):.1f} s, x{apart / statistics.median(times[name]):.2f} "
              f"the speed of apart, padded (largest score difference {diff:.1e} over {len(scores[name])} scores)")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    main()
