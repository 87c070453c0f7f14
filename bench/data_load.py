"""Data loading benchmark: tiller's data stage against `datasets` doing the same conversion.

Writes N (default 40,000) HelpSteer3-shaped rows to a temporary JSONL file, by resampling the
rows of the bundled sample. Each row's last user turn gets a unique suffix so that no two prompts
are identical: otherwise the resampled duplicates would be tokenized once and flatter tiller.
Then times, on the same file and with the same tokenizer (the embedded SmolLM2 one):

  tiller   `tiller.recipes.data.prepare_split`: read JSONL, adapt (validating every field),
           language filter, chat-template rendering + batched prompt-length tokenization,
           pairs, conversations, deduplicated RL prompts, stats;
  datasets `datasets.load_dataset("json", ...)` (fresh cache) + one batched `.map` doing the
           same conversion: english filter, tie drop, chosen/rejected by sign, margin, rendering
           + batched tokenization, prompt-length filter.

Both must keep the same number of pairs; the script checks it.

    HF_HUB_OFFLINE=1 PYTHONPATH=src python bench/data_load.py [--rows 40000] [--max-prompt-tokens 1024] [--prompt-chars 0]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def make_rows(n: int, seed: int = 0, prompt_chars: int = 0) -> list[dict]:
    from tiller.data.sources import sample_path

    path = sample_path("train")
    if not path.is_file():
        raise SystemExit(f"the bundled sample {path} is missing; this benchmark resamples its rows")
    base = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        row = dict(rng.choice(base))
        context = [dict(m) for m in row["context"]]
        # --prompt-chars: grow the last user turn with text of other sample rows, to time
        # prompts as long as real HelpSteer3 ones (the sample's are short).
        while sum(len(m["content"]) for m in context) < prompt_chars:
            context[-1]["content"] += "\n" + rng.choice(base)["response1"]
        context[-1]["content"] += f" (#{i})"  # unique prompts: see the module docstring
        row["context"] = context
        rows.append(row)
    return rows


def run_tiller(path: Path, tokenizer, max_prompt_tokens: int):
    from tiller.config import DataConfig
    from tiller.recipes.data import prepare_split

    cfg = DataConfig(source="local", files={"train": str(path)}, splits=["train"], max_prompt_tokens=max_prompt_tokens)
    t0, c0 = time.perf_counter(), time.process_time()
    out = prepare_split(cfg, "train", tokenizer)
    return time.perf_counter() - t0, time.process_time() - c0, out.stats.pairs_kept, out


def run_datasets(path: Path, tokenizer, max_prompt_tokens: int, cache_dir: str):
    import datasets

    datasets.disable_progress_bars()

    def convert(batch: dict) -> dict:
        out = {k: [] for k in ("prompt", "chosen", "rejected", "margin", "domain", "language")}
        keep = []
        for i, pref in enumerate(batch["overall_preference"]):
            if (batch["language"][i] or "").lower() != "english" or pref == 0:
                continue
            keep.append(i)
        texts = [tokenizer.apply_chat_template(batch["context"][i], tokenize=False, add_generation_prompt=True) for i in keep]
        lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]] if texts else []
        for i, n in zip(keep, lengths):
            if n > max_prompt_tokens:
                continue
            pref = batch["overall_preference"][i]
            r1, r2 = batch["response1"][i], batch["response2"][i]
            out["prompt"].append([{"role": m["role"], "content": m["content"]} for m in batch["context"][i]])
            out["chosen"].append(r1 if pref < 0 else r2)
            out["rejected"].append(r2 if pref < 0 else r1)
            out["margin"].append(float(abs(pref)))
            out["domain"].append(batch["domain"][i])
            out["language"].append(batch["language"][i])
        return out

    t0, c0 = time.perf_counter(), time.process_time()
    ds = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=cache_dir)
    pairs = ds.map(convert, batched=True, batch_size=1000, remove_columns=ds.column_names)
    return time.perf_counter() - t0, time.process_time() - c0, len(pairs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=40_000)
    ap.add_argument("--max-prompt-tokens", type=int, default=1024)
    ap.add_argument("--prompt-chars", type=int, default=0, help="pad each prompt to at least this many characters")
    args = ap.parse_args()

    from tiller.models import load_tokenizer

    tokenizer = load_tokenizer("embedded")
    rows = make_rows(args.rows, prompt_chars=args.prompt_chars)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "helpsteer3-synthetic.jsonl"
        with open(path, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        size_mb = path.stat().st_size / 1e6
        t_tiller, cpu_tiller, n_tiller, out = run_tiller(path, tokenizer, args.max_prompt_tokens)
        t_ds, cpu_ds, n_ds = run_datasets(path, tokenizer, args.max_prompt_tokens, cache_dir=os.path.join(tmp, "hf-cache"))
    if n_tiller != n_ds:
        raise SystemExit(f"the two sides disagree: tiller kept {n_tiller} pairs, datasets {n_ds}")

    s = out.stats
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}; python {platform.python_version()}; load average {load}")
    print(
        f"input: {args.rows} HelpSteer3-shaped rows, {size_mb:.1f} MB JSONL; prompt_chars>={args.prompt_chars}; "
        f"max_prompt_tokens={args.max_prompt_tokens}"
    )
    print(f"kept: {n_tiller} pairs, {s.prompts_kept} RL prompts; dropped: {dict(s.dropped)}")
    # CPU seconds (all threads of this process) next to wall seconds: on a shared machine the
    # wall time depends on the other load, the CPU time much less.
    print(f"{'':<28}{'wall s':>9}{'rows/s':>10}{'CPU s':>9}")
    print(f"{'tiller prepare_split':<28}{t_tiller:>9.2f}{args.rows / t_tiller:>10.0f}{cpu_tiller:>9.2f}")
    print(f"{'datasets load_dataset+map':<28}{t_ds:>9.2f}{args.rows / t_ds:>10.0f}{cpu_ds:>9.2f}")
    print(f"ratio datasets / tiller: wall {t_ds / t_tiller:.2f}x, CPU {cpu_ds / cpu_tiller:.2f}x")


if __name__ == "__main__":
    main()
