"""Where tiller's decoding time goes: one benchmark workload's generation, timed and profiled.

    python bench/profile_decode.py                       # SmolLM2 + LoRA, 8 prompts x 4 x 64 tokens
    python bench/profile_decode.py --cache dynamic       # transformers' DynamicCache instead of reserved buffers
    python bench/profile_decode.py --no-lora --profile   # plain model, with a torch.profiler table
    python bench/profile_decode.py --workload tiny       # tiny Qwen3, 64 prompts x 4 x 64 tokens

Uses the prompts and models `bench/rloo_step.py` prepared under bench/.work (run it once first).
Prints wall and CPU seconds of each repetition and a digest of the sampled tokens (equal
digests = the same completions).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", choices=["smollm2", "tiny"], default="smollm2")
    ap.add_argument("--cache", choices=["reserved", "dynamic"], default="reserved")
    ap.add_argument("--no-lora", action="store_true")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()

    from transformers.cache_utils import DynamicCache

    from tiller.config import LoraConfig, ModelConfig
    from tiller.chat import render_prompt
    from tiller.models import apply_lora, embedded_model_dir, load_causal_lm, load_tokenizer
    from tiller.rollout import Sampling
    from tiller.rollout import transformers_engine as te

    work = BENCH / ".work" / args.workload
    if not (work / "prompts.jsonl").is_file():
        raise SystemExit(f"{work / 'prompts.jsonl'} is missing: run `python bench/rloo_step.py --workloads {args.workload}` once")
    folder = str(embedded_model_dir()) if args.workload == "smollm2" else str(work / "policy")
    mcfg = ModelConfig(name=folder, dtype="float32", gradient_checkpointing="off")
    tokenizer = load_tokenizer(folder, mcfg)
    model = load_causal_lm(folder, mcfg)
    if args.workload == "smollm2" and not args.no_lora:
        model = apply_lora(model, LoraConfig(r=16, alpha=32, dropout=0.0, target_modules=LORA_TARGETS), "CAUSAL_LM")
    rows = [json.loads(line)["messages"] for line in (work / "prompts.jsonl").read_text().splitlines() if line.strip()]
    prompts = tokenizer([render_prompt(tokenizer, m) for m in rows], add_special_tokens=False)["input_ids"]
    if args.cache == "dynamic":
        te.reserved_cache = lambda m, reserve: DynamicCache(config=m.config)
    engine = te.TransformersEngine(model, tokenizer)
    sampling = Sampling(64, 1.0, suppress_eos=True)
    seeds = list(range(len(prompts)))
    print(f"{args.workload}, {len(prompts)} prompts x 4 x 64 tokens, cache {args.cache}, "
          f"{'no LoRA' if args.no_lora or args.workload == 'tiny' else 'LoRA r=16 on all projections'}, "
          f"{torch.get_num_threads()} threads")
    for rep in range(args.reps):
        wall, cpu = time.perf_counter(), time.process_time()
        gen = engine.generate(prompts, 4, sampling, seeds)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        digest = hashlib.sha256(json.dumps(gen.completions).encode()).hexdigest()[:12]
        print(f"rep {rep}: {wall:.2f} s wall, {cpu:.2f} CPU-s, tokens {digest}", flush=True)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            engine.generate(prompts, 4, sampling, seeds)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
