#!/usr/bin/env python3
"""GPU check: the flagship RLOO path on a Qwen3-8B-shaped model with random weights, measured.

    python scripts/gpu_check.py [--out gpu-check.json] [--set KEY=VALUE ...]   (make gpu-check)
    python scripts/gpu_check.py --tiny      # the same flow on CPU with a tiny model: checks this script

Offline (nothing is downloaded), in phases, each in its own process so that memory is measured per
phase and a crash or hang ends only that phase:
  build   a model with Qwen/Qwen3-8B's dimensions (tiller.plan's table) and random bf16 weights,
          made on the GPU, and a tokenizer trained locally (tiller.tiny), saved as a Hugging Face
          folder (vLLM loads from a folder); prompts and toy preference pairs as `tiller data` writes them;
  rloo    tiller's RLOO recipe on configs/qwen3-8b-helpsteer3.yaml (LoRA, vLLM colocated, 4 prompts
          x 4 completions, 1024 + 1024 tokens) for 3 steps, with a Python-callable reward instead
          of a second 8B model. Prompts are ~1000 tokens and a random model almost never samples
          EOS, so every completion is full length: the worst case `tiller plan` assumes;
  reward  tiller's reward recipe (Bradley-Terry, LoRA) for 2 steps on the same base;
  fsdp2, zero3   with several GPUs: the reward stage under `accelerate launch` with
          configs/accelerate/{fsdp2,zero3}.yaml on every GPU (pass/fail, time, memory per process).
Printed as it goes (partial output is useful if the run is killed): per phase and part the time,
torch's peak allocated memory and the device's peak used memory (as nvidia-smi shows it, sampled
every 0.1 s: it also counts vLLM's own pool and the CUDA context); per RLOO step the time split and
completions/s from <run_dir>/rloo/metrics.jsonl; `tiller plan`'s estimate for the same config next
to the measured figures. The JSON summary (--out) is rewritten after every phase.
Exit status: 0 all phases passed, 1 a phase failed, 2 cannot run here (what is missing is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # tiller from this working tree, installed or not
GIB = 1024**3
TINY_DIMS = dict(hidden_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                 intermediate_size=512, vocab_size=151936, tie_word_embeddings=False)  # Qwen3's real vocab
WORDS = ("the quick brown fox jumps over lazy dog water boils at one hundred degrees please explain how plants turn "
         "light into sugar and oxygen what is capital of france thank you for question here short answer with key "
         "steps first second third finally sorry cannot help silly sure happy write polite email report friday").split()
# lora-sync before reward: it answers issue 21, item 8, and the reward phase is the cheaper one to lose
PHASES = ("build", "rloo", "lora-sync", "reward", "fsdp2", "zero3")
# seconds, per phase
BUDGET_CAPS = {"build": 240, "rloo": 420, "reward": 180, "lora-sync": 360, "fsdp2": 180, "zero3": 180}


def toy_reward(prompts, completions):
    """The RLOO reward (`rloo.reward.function`): cheap and deterministic, no second model on the GPU."""
    return [len(set(c)) / 10.0 for c in completions]


def log(msg: str) -> None:
    print(f"[gpu-check] {msg}", flush=True)


# ----------------------------------------------------------------------------- measuring (in each phase process)


class Watch:
    """Time and peak memory per labelled part of a phase. Labels are set by thin wrappers around the
    recipe's own functions (they observe, never change behaviour); a part repeated over steps sums its
    time and keeps its highest peak."""

    def __init__(self, name: str):
        import torch

        self.torch, self.name, self.cuda = torch, name, torch.cuda.is_available()
        self.device = int(os.environ.get("LOCAL_RANK", 0)) if self.cuda else None
        self.parts: dict[str, dict] = {}
        self.notes: dict = {}
        self.label, self.t0 = None, time.perf_counter()
        self.quiet = int(os.environ.get("RANK", 0)) != 0  # under accelerate launch, rank 0 speaks for all
        self.on_change = None  # called at every new part: the phase's JSON so far survives a kill
        self.since = self.t0
        self._stop = threading.Event()
        if self.cuda:
            torch.cuda.set_device(self.device)
            # NVML (as nvidia-smi) first: it never touches CUDA streams, whereas a cudaMemGetInfo from
            # this thread while vLLM captures its CUDA graphs at start-up could make the capture fail.
            try:
                torch.cuda.device_memory_used(self.device)
                self.nvml = True
            except Exception:  # noqa: BLE001 - no nvidia-ml-py, or an older torch
                self.nvml = False
            self.notes["device memory read with"] = "NVML" if self.nvml else "cudaMemGetInfo (not during engine start)"
            self.notes["device used at start GiB"] = round(self._used(), 2)
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()

    def _used(self) -> float:
        if self.nvml:
            return self.torch.cuda.device_memory_used(self.device) / GIB
        free, total = self.torch.cuda.mem_get_info(self.device)
        return (total - free) / GIB

    def _part(self, label):
        return self.parts.setdefault(label, {"seconds": 0.0, "times": 0, "torch_peak_gib": 0.0, "device_peak_gib": 0.0})

    def _sample(self) -> None:
        while not self._stop.is_set():
            if self.label is not None and (self.nvml or self.label != "engine start"):
                part = self._part(self.label)
                try:
                    part["device_peak_gib"] = max(part["device_peak_gib"], round(self._used(), 2))
                except Exception:  # noqa: BLE001 - a failed read ends the sampling, not the phase
                    return
            self._stop.wait(0.1)

    def enter(self, label: str | None) -> None:
        if label == self.label:
            return
        now = time.perf_counter()
        if self.label is not None:
            part = self._part(self.label)
            part["seconds"] = round(part["seconds"] + now - self.since, 2)
            part["times"] += 1
            if self.cuda:
                peak = self.torch.cuda.max_memory_allocated(self.device) / GIB
                part["torch_peak_gib"] = round(max(part["torch_peak_gib"], peak), 2)
            else:  # CPU: the process's peak resident memory so far (Linux reports KiB)
                import resource

                part["rss_peak_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 2)
        if self.cuda:
            self.torch.cuda.reset_peak_memory_stats(self.device)
        if label is not None:
            self._part(label)  # made here, so the sampler thread only ever updates values
            if not self.quiet:
                log(f"{self.name} +{now - self.t0:6.1f} s  {label}")
        self.label, self.since = label, now
        if self.on_change:
            self.on_change()

    def close(self) -> None:
        self.enter(None)
        self._stop.set()


def phase_build(spec: dict, cfg, watch: Watch) -> dict:
    """The model folder (random weights made where they will run, saved once) and the data files."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from tiller.plan import KNOWN_CONFIGS
    from tiller.tiny import build_tokenizer

    tiny = spec["tiny"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    dims = {k: v for k, v in (TINY_DIMS if tiny else KNOWN_CONFIGS["Qwen/Qwen3-8B"]).items() if k != "model_type"}
    watch.enter("tokenizer")
    tokenizer = build_tokenizer()
    assert len(tokenizer) <= dims["vocab_size"]  # every token id the tokenizer makes has an embedding
    watch.enter("init weights")
    config = Qwen3Config(**dims, max_position_embeddings=2048 if tiny else 40960, rope_theta=1_000_000.0,
                         rms_norm_eps=1e-6, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # made directly in bf16 on the GPU: no fp32 copy, no CPU init of 8B weights
    try:
        with torch.device(device):
            model = Qwen3ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    n_params = sum(p.numel() for p in model.parameters())
    log(f"build: Qwen3-shaped model, {n_params / 1e9:.2f} B parameters in {dtype} on {device}")
    watch.enter("save")
    folder = Path(cfg.model.name)
    model.save_pretrained(folder, safe_serialization=True, max_shard_size="5GB")
    tokenizer.save_pretrained(folder)
    del model
    watch.enter("data")
    write_data(tokenizer, cfg, tiny)
    gpu = {}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        gpu = {"name": props.name, "count": torch.cuda.device_count(), "total_gib": round(props.total_memory / GIB, 1)}
    return {"parameters": n_params, "dims": dims, "gpu": gpu, "tokenizer_size": len(tokenizer)}


def write_data(tokenizer, cfg, tiny: bool) -> None:
    """Prompts and preference pairs as `tiller data` writes them, as long as the config allows (the
    lengths `tiller plan` assumes); texts are random words, cut to fit after the chat template."""
    from tiller.chat import render_conversation, render_prompt

    def filler(n_tokens: int, seed: int, lead: str) -> str:
        rng = random.Random(seed)
        text = lead + " ".join(rng.choice(WORDS) for _ in range(n_tokens))  # >= n_tokens tokens
        return tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"][:n_tokens])

    def fit(make, limit: int, count) -> str:
        """The longest text from `make(n)` whose rendered length stays within `limit` tokens."""
        n = limit
        while n > 8:
            text = make(n)
            over = count(text) - limit
            if over <= 0:
                return text
            n -= over + 2
        raise ValueError(f"cannot fit a text in {limit} tokens")

    def n_tok(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    data = Path(cfg.run_dir) / "data"
    data.mkdir(parents=True, exist_ok=True)
    prompt_limit = 64 if tiny else cfg.rloo.max_prompt_tokens - 8  # full-length prompts: plan's worst case
    with open(data / "train.prompts.jsonl", "w") as f:
        for i in range(max(16, cfg.rloo.prompts_per_step)):
            text = fit(lambda n: filler(n, i, f"Question {i}: "), prompt_limit,
                       lambda t: n_tok(render_prompt(tokenizer, [{"role": "user", "content": t}])))
            f.write(json.dumps({"messages": [{"role": "user", "content": text}], "domain": "general",
                                "language": "english", "source_row": i + 1}) + "\n")
    length = 96 if tiny else cfg.reward.train.max_length - 16
    for split, rows in (("train", range(96)), ("validation", range(96, 112))):
        with open(data / f"{split}.pairs.jsonl", "w") as f:
            for i in rows:
                prompt = [{"role": "user", "content": filler(length * 11 // 20, i, f"Tell me about {i}: ")}]
                answers = [fit(lambda n: filler(n, seed, lead), length,
                               lambda t: n_tok(render_conversation(tokenizer, prompt, t)[1]))
                           for seed, lead in ((1000 + i, "Thank you for asking! "), (2000 + i, "No. "))]
                f.write(json.dumps({"prompt": prompt, "chosen": answers[0], "rejected": answers[1], "margin": 1.0,
                                    "domain": "general", "language": "english", "source_row": i + 1}) + "\n")
    (data / "DONE").write_text("done\n")


def observe(obj, name: str, watch: Watch, before=None, after=None, when=None, then=None) -> None:
    """Wrap obj.name so that the watch starts part `before` when it is called (if `when()`), and part
    `after` when it returns; `then(result)` sees its result. A name the recipe no longer has leaves
    its part unlabelled (noted in the output) rather than failing the check."""
    fn = getattr(obj, name, None)
    if fn is None:
        watch.notes.setdefault("could not label", []).append(name)
        return

    def wrapped(*a, **k):
        if before and (when is None or when()):
            watch.enter(before)
        out = fn(*a, **k)
        if then:
            then(out)
        if after:
            watch.enter(after)
        return out

    setattr(obj, name, wrapped)


def phase_rloo(cfg, watch: Watch) -> dict:
    import torch

    from tiller.recipes import rloo

    def engine_made(engine) -> None:
        watch.notes["engine"] = type(engine).__name__
        observe(engine, "sync_weights", watch, before="generate")  # the recipe counts the sync in time/generate
        observe(engine, "generate", watch, after="reward")

    observe(rloo, "make_engine", watch, before="engine start", after="setup", then=engine_made)
    observe(rloo, "reference_logprobs", watch, before="reference")
    # the forward that carries the gradient is the update (reference and checks run without gradients)
    observe(rloo, "completion_logprobs", watch, before="train", when=torch.is_grad_enabled)
    observe(rloo, "save_trained_model", watch, before="save")
    watch.enter("load policy")
    rloo.run(cfg)
    return {}


def phase_reward(cfg, watch: Watch) -> dict:
    from tiller.recipes import reward

    observe(reward, "prepare_for_training", watch, after="train")
    observe(reward, "evaluate_pairs", watch, before="eval")
    observe(reward, "save_trained_model", watch, before="save")
    watch.enter("load model")
    reward.run(cfg)
    return {}


def phase_lora_sync(cfg, watch: Watch, reps: int, max_new_tokens: int) -> dict:
    """Issue 21, item 8: the LoRA policy's two ways into vLLM, one after the other on the same
    policy and prompts. `adapter` (tiller's default): only the adapter travels, vLLM generates
    through its LoRA kernels. `merged`: vLLM without LoRA, every weight reloaded in place with the
    adapter merged in (what peers do). Each `reps` times: the adapter changes (as after an
    update), then one timed sync and one timed generation of the RLOO step's completions."""
    import dataclasses

    import torch

    from tiller.chat import render_prompt
    from tiller.models import load_policy, load_tokenizer
    from tiller.rollout import Sampling
    from tiller.rollout.vllm_engine import VllmEngine

    r = cfg.rloo
    cuda = torch.cuda.is_available()
    watch.enter("load policy")
    tokenizer = load_tokenizer(cfg.model.name, cfg.model)
    model, _ = load_policy(cfg.model.name, cfg.model, r.lora, "cuda" if cuda else "cpu")
    rows = [json.loads(line) for line in (Path(cfg.run_dir) / "data" / "train.prompts.jsonl").read_text().splitlines()]
    prompts = tokenizer([render_prompt(tokenizer, row["messages"]) for row in rows[:r.prompts_per_step]],
                        add_special_tokens=False)["input_ids"]
    k = r.completions_per_prompt
    sampling = Sampling(max_new_tokens, r.rollout.temperature, r.rollout.top_p, r.rollout.top_k)
    lora_b = [p for name, p in model.named_parameters() if "lora_B" in name]
    generator = torch.Generator(device=lora_b[0].device).manual_seed(0)
    sync = lambda: torch.cuda.synchronize() if cuda else None  # noqa: E731
    out = {"reps": reps, "prompts": len(prompts), "completions_per_prompt": k, "max_new_tokens": max_new_tokens,
           "sleep_between_steps": r.rollout.vllm_sleep_between_steps, "modes": {}}
    for mode in ("adapter", "merged"):
        watch.enter(f"{mode}: engine start")
        engine = VllmEngine(model, tokenizer, dataclasses.replace(r.rollout, vllm_lora_sync=mode), model_cfg=cfg.model)
        steps = []
        for rep in range(reps):
            with torch.no_grad():  # a new adapter each time, as after an update (B starts at zero)
                for p in lora_b:
                    p.add_(torch.randn(p.shape, generator=generator, device=p.device, dtype=p.dtype) * 1e-3)
            watch.enter(f"{mode}: sync")
            sync()
            t0 = time.perf_counter()
            engine.sync_weights(model)
            sync()
            t1 = time.perf_counter()
            watch.enter(f"{mode}: generate")
            gen = engine.generate(prompts, k, sampling, list(range(rep * len(prompts), (rep + 1) * len(prompts))))
            sync()
            t2 = time.perf_counter()
            tokens = sum(len(c) for c in gen.completions)
            steps.append({"sync_s": round(t1 - t0, 3), "generate_s": round(t2 - t1, 3),
                          "completions": len(gen.completions), "tokens": tokens})
            log(f"lora-sync {mode} {rep + 1}/{reps}: sync {t1 - t0:.2f} s, generate {t2 - t1:.2f} s "
                f"({len(gen.completions) / (t2 - t1):.2f} completions/s, {tokens} tokens)")
        watch.enter(f"{mode}: close")
        engine.close()
        steady = steps[1:] or steps  # the first also pays one-time costs (first adapter load, warm-up)
        out["modes"][mode] = {"steps": steps,
                              "sync_s": round(statistics.median(s["sync_s"] for s in steady), 3),
                              "completions_per_s": round(sum(s["completions"] for s in steady)
                                                         / sum(s["generate_s"] for s in steady), 3)}
    return {"lora_sync": out}


def child(args) -> None:
    """One phase, in its own process (or one rank of an `accelerate launch`); writes its result JSON."""
    from tiller.config_loading import load_config

    work = Path(args.work)
    spec = json.loads((work / "check.json").read_text())
    rank = int(os.environ.get("RANK", 0))
    name = args.tag or args.phase
    path = work / f"phase-{name}-rank{rank}.json"
    result: dict = {"ok": False, "rank": rank}
    started = time.perf_counter()
    watch = None
    try:
        watch = Watch(name if "WORLD_SIZE" not in os.environ else f"{name}[rank {rank}]")
        watch.on_change = lambda: path.write_text(json.dumps({**result, "parts": watch.parts, "notes": watch.notes,
                                                              "seconds": round(time.perf_counter() - started, 1)}))
        cfg = load_config(spec["config"], spec["overrides"] + args.overrides)
        phase = {"build": lambda: phase_build(spec, cfg, watch), "rloo": lambda: phase_rloo(cfg, watch),
                 "reward": lambda: phase_reward(cfg, watch),
                 "lora-sync": lambda: phase_lora_sync(cfg, watch, spec["sync_reps"], spec["sync_tokens"])}[args.phase]
        result.update(phase())
        if args.tag in ("fsdp2", "zero3"):  # a launch that silently fell back to plain processes tests nothing
            from accelerate.state import AcceleratorState

            state = AcceleratorState()
            ran = f"{state.distributed_type.value} x {state.num_processes}"
            watch.notes["ran as"] = ran
            if state.distributed_type.value != {"fsdp2": "FSDP", "zero3": "DEEPSPEED"}[args.tag]:
                raise RuntimeError(f"the {args.tag} launch ran as {ran}, not {args.tag}")
        result["ok"] = True
    except BaseException:  # noqa: BLE001 - reported in the JSON and printed; the parent goes on
        result["error"] = traceback.format_exc()
        print(result["error"], file=sys.stderr, flush=True)
    finally:
        if watch is not None:
            watch.on_change = None
            watch.close()
            result.update(parts=watch.parts, notes=watch.notes)
        result["seconds"] = round(time.perf_counter() - started, 1)
        path.write_text(json.dumps(result, indent=1))
        sys.stdout.flush()
        sys.stderr.flush()
        # Skip interpreter teardown: vLLM and NCCL can hang at exit, and the result is written.
        os._exit(0 if result["ok"] else 1)


# ----------------------------------------------------------------------------- the orchestrating process (no CUDA)


def preflight(args) -> tuple[dict, list[str]]:
    """What this machine has, and what it misses for this check (printed)."""
    import importlib
    import importlib.util

    missing, env = [], {"python": sys.executable, "python_version": platform.python_version()}
    for module, hint in (("torch", "torch"), ("transformers", "transformers>=4.56 (Qwen3)"), ("peft", "peft"),
                         ("accelerate", "accelerate"), ("safetensors", "safetensors"), ("tokenizers", "tokenizers"),
                         ("yaml", "pyyaml"), ("tqdm", "tqdm")):
        try:
            env[module] = getattr(importlib.import_module(module), "__version__", "?")
        except Exception as e:  # noqa: BLE001 - a broken install counts as missing
            missing.append(f"{hint}: {type(e).__name__}: {e}")
    if "transformers" in env and not hasattr(sys.modules["transformers"], "Qwen3ForCausalLM"):
        missing.append(f"transformers with Qwen3 (>= 4.51; tiller wants >= 4.56): this is {env['transformers']}")
    gpus = 0
    if "torch" in env:
        import torch

        env["torch_cuda"] = torch.version.cuda
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0  # creates no CUDA context
        if not args.tiny and not gpus:
            missing.append(f"torch with CUDA and a visible GPU: this torch is {torch.__version__} "
                           f"({'built for CUDA ' + torch.version.cuda if torch.version.cuda else 'a CPU-only build'}), "
                           f"torch.cuda.is_available() is {torch.cuda.is_available()}")
    env["gpus"] = 0 if args.tiny else gpus
    try:
        import vllm

        env["vllm"] = vllm.__version__
    except Exception as e:  # noqa: BLE001
        env["vllm_error"] = f"{type(e).__name__}: {e}"
        if args.engine == "vllm" and not args.tiny:
            missing.append(f"vllm (rollout.engine vllm): {env['vllm_error']}; or run with --engine transformers")
    env["deepspeed"] = importlib.util.find_spec("deepspeed") is not None  # only the ZeRO-3 launch needs it
    if "yaml" in env:
        try:
            import tiller.recipes.reward  # noqa: F401
            import tiller.recipes.rloo  # noqa: F401
        except Exception as e:  # noqa: BLE001
            missing.append(f"tiller from {ROOT / 'src'}: {type(e).__name__}: {e}")
    log(f"python {env['python_version']} ({sys.executable}); " + ", ".join(
        f"{k} {env[k]}" for k in ("torch", "transformers", "peft", "accelerate", "vllm") if k in env)
        + f"; CUDA {env.get('torch_cuda')}; {env['gpus']} GPU(s); deepspeed {'yes' if env['deepspeed'] else 'no'}")
    if missing:
        log("cannot run here; missing:\n  - " + "\n  - ".join(missing) + "\n"
            "  Install them (with network: pip install -e '.[gpu]'), or point at a Python that has them:\n"
            "  make gpu-check GPU_CHECK_PYTHON=/path/to/python   (or --tiny for the CPU dry run)")
    return env, missing


def workdir(args) -> Path | None:
    """A fresh folder for the model, data and run. /dev/shm when it has room: writing and re-reading
    16 GB of weights from RAM takes seconds, from disk possibly minutes."""
    need = 2 if args.tiny else 24
    for base in ([args.workdir] if args.workdir else ["/dev/shm", tempfile.gettempdir()]):
        Path(base).mkdir(parents=True, exist_ok=True)
        if shutil.disk_usage(base).free / GIB >= need:
            return Path(tempfile.mkdtemp(prefix="tiller-gpu-check-", dir=base))
    return None


def run_phase(cmd: list[str], env: dict, timeout: float) -> int | None:
    """Run a phase process (its own process group, so a hung phase is ended with all it started)."""
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None
    except BaseException:  # Ctrl-C or SIGTERM of this process: its phase goes too
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def collect(work: Path, name: str, rc: int | None, timeout: float) -> dict:
    """Merge the phase's JSON (one per rank): ok only if every rank and the process said so."""
    ranks = [json.loads(p.read_text()) for p in sorted(work.glob(f"phase-{name}-rank*.json"))]
    if not ranks:
        why = f"timed out after {timeout:.0f} s" if rc is None else f"exited with status {rc} before writing its result"
        return {"ok": False, "error": why}
    out = dict(ranks[0])
    out["ok"] = rc == 0 and all(r["ok"] for r in ranks)
    if rc is None:
        out["error"] = f"timed out after {timeout:.0f} s"
    elif rc != 0 and not out.get("error") and not out.get("errors"):
        out["error"] = f"exited with status {rc}"
    if len(ranks) > 1:
        out["processes"] = len(ranks)
        out["seconds"] = max(r["seconds"] for r in ranks)
        for r in ranks[1:]:
            for label, part in r.get("parts", {}).items():
                mine = out["parts"].setdefault(label, part)
                for key in ("torch_peak_gib", "device_peak_gib", "seconds"):
                    mine[key] = max(mine.get(key, 0.0), part.get(key, 0.0))
        out["errors"] = [r["error"] for r in ranks if r.get("error")]
    return out


def show_phase(name: str, res: dict) -> None:
    many = f" ({res['processes']} processes; memory: the highest of any)" if res.get("processes") else ""
    log(f"{name}: {'ok' if res['ok'] else 'FAILED'} in {res.get('seconds', '?')} s{many}")
    parts = res.get("parts") or {}
    if parts:
        cpu = any("rss_peak_gib" in p for p in parts.values())
        head = "process peak RSS GiB" if cpu else "torch peak GiB  device peak GiB"
        print(f"    {'part':<24}{'seconds':>9}  {head}", flush=True)
        for label, p in parts.items():
            mem = (f"{p.get('rss_peak_gib', 0):>20.2f}" if cpu
                   else f"{p['torch_peak_gib']:>14.2f}  {p['device_peak_gib']:>15.2f}")
            print(f"    {label:<24}{p['seconds']:>9.1f}  {mem}", flush=True)
    for key, value in (res.get("notes") or {}).items():
        print(f"    {key}: {value}", flush=True)
    if not res["ok"]:
        error = res.get("error") or "\n".join(res.get("errors", [])) or "see the output above"
        print("    " + error.strip().splitlines()[-1], flush=True)


def show_steps(run_dir: Path) -> dict:
    """Per RLOO step: the recipe's own time split and completions/s (metrics.jsonl)."""
    from tiller.tracking import read_metrics

    rows = read_metrics(run_dir / "rloo" / "metrics.jsonl")
    if not rows:
        return {}
    keys = ("generate", "reward", "reference", "train")
    # weight sync s: the part of generate s spent giving vLLM the policy's weights
    print(f"    {'step':<6}" + "".join(f"{k + ' s':>13}" for k in keys) + f"{'weight sync s':>15}{'step s':>10}"
          f"{'completions/s':>15}{'length':>8}", flush=True)
    for r in rows:
        print(f"    {r['step']:<6}" + "".join(f"{r.get('time/' + k, 0):>13.2f}" for k in keys)
              + f"{r.get('time/weight_sync', 0):>15.2f}{r['time/step']:>10.2f}{r['time/completions_per_second']:>15.2f}"
              f"{r['completions/mean_length']:>8.0f}", flush=True)
    steady = rows[1:] or rows  # the first step also pays one-time costs (first adapter load, kernel warm-up)
    total = sum(r["time/step"] for r in steady)
    split = {k: round(sum(r.get(f"time/{k}", 0) for r in steady) / total, 3) for k in keys}
    per_s = sum(r["time/completions_per_second"] * r["time/step"] for r in steady) / total
    print(f"    steps {steady[0]['step']}-{steady[-1]['step']}: {per_s:.2f} completions/s; time split "
          + ", ".join(f"{k} {v:.0%}" for k, v in split.items()), flush=True)
    return {"steps": rows, "completions_per_second": round(per_s, 3), "time_split": split}


def show_lora_sync(res: dict) -> None:
    """The two LoRA syncs side by side: time per sync, completions/s, peak memory while syncing."""
    sync = res["lora_sync"]
    parts = res.get("parts") or {}
    cpu = any("rss_peak_gib" in p for p in parts.values())
    memory = "process RSS GiB" if cpu else "device peak GiB (sync / generate)"
    key = "rss_peak_gib" if cpu else "device_peak_gib"
    log(f"LoRA into vLLM, {sync['prompts']} prompts x {sync['completions_per_prompt']} completions x "
        f"{sync['max_new_tokens']} tokens, {sync['reps']} syncs each (figures without the first; "
        f"sleep between steps {'on' if sync['sleep_between_steps'] else 'off'}):")
    print(f"    {'mode':<9}{'s per sync':>12}{'completions/s':>15}  {memory}", flush=True)
    for mode, m in sync["modes"].items():
        sync_mem, gen_mem = (parts.get(f"{mode}: {part}", {}).get(key) for part in ("sync", "generate"))
        print(f"    {mode:<9}{m['sync_s']:>12.2f}{m['completions_per_s']:>15.2f}  {sync_mem} / {gen_mem}", flush=True)


def plan_estimate(cfg, dims: dict, gpu_gib: float | None) -> dict:
    from tiller import plan

    # The card size of tiller plan's two (80 GB, 141 GB) nearest to this GPU's.
    gpu = min(plan.GPU_CAPACITY_GIB, key=lambda k: abs(plan.GPU_CAPACITY_GIB[k] - (gpu_gib or 140.4)))
    e = plan.estimate(cfg, "single", 1, gpu, policy=plan.dims_from_config({"model_type": "qwen3", **dims}))
    g = lambda n: round(n / GIB, 2)  # noqa: E731
    train = sum(e.train_peak.values())
    out = {"gpu": gpu, "parts": {k: g(v) for k, v in e.parts.items()},
           "train_peak": {k: g(v) for k, v in e.train_peak.items()},
           "resident_gib": g(e.resident), "vllm_share_gib": g(e.vllm_share), "vllm_needs_gib": g(e.vllm_needs),
           "while_generating_gib": g(e.resident + e.vllm_share),
           "while_training_gib": g(e.resident + train + (0 if e.sleeps else e.vllm_share)),
           "peak_gib": g(e.peak), "fits": e.fits, "notes": e.notes}
    log(f"tiller plan, rloo stage on 1 x {gpu} GPU for this config (GiB):")
    for k, v in {**out["parts"], **{"+ " + k: v for k, v in out["train_peak"].items()}}.items():
        print(f"    {k:<46}{v:>8.2f}", flush=True)
    for k in ("vllm_share_gib", "vllm_needs_gib", "peak_gib"):
        print(f"    {k:<46}{out[k]:>8.2f}", flush=True)
    for note in e.notes:
        print(f"    note: {note}", flush=True)
    return out


def compare(plan: dict, rloo: dict) -> dict:
    parts = rloo.get("parts") or {}
    if not parts or all("rss_peak_gib" in p for p in parts.values()):
        return {}
    peak = lambda label: parts.get(label, {}).get("device_peak_gib")  # noqa: E731
    rows = {"while generating": (plan["while_generating_gib"], peak("generate")),
            "while training": (plan["while_training_gib"], peak("train")),
            "peak of the RLOO phase": (plan["peak_gib"], max(p["device_peak_gib"] for p in parts.values()))}
    log("GPU memory, tiller plan against measured (device used, as nvidia-smi shows it; GiB):")
    for k, (est, got) in rows.items():
        print(f"    {k:<26} plan {est:>7.2f}   measured {got if got is not None else float('nan'):>7.2f}", flush=True)
    train = parts.get("train", {}).get("torch_peak_gib")
    print(f"    training side, torch's peak allocated: measured {train} (plan, without its "
          f"{plan['parts'].get('runtime overhead (assumed)', 0)} GiB runtime overhead: "
          f"{plan['while_training_gib'] - plan['parts'].get('runtime overhead (assumed)', 0):.2f})", flush=True)
    return {k: {"plan_gib": est, "measured_gib": got} for k, (est, got) in rows.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tiny", action="store_true", help="tiny model on CPU: checks this script in about a minute")
    p.add_argument("--config", default=str(ROOT / "configs" / "qwen3-8b-helpsteer3.yaml"))
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. --set rloo.rollout.max_new_tokens=256 (repeatable)")
    p.add_argument("--steps", type=int, default=3, help="RLOO steps")
    p.add_argument("--reward-steps", type=int, default=2, help="reward-model steps")
    p.add_argument("--engine", choices=["vllm", "transformers"], default="vllm",
                   help="RLOO rollout engine (--tiny uses vllm only where it imports)")
    p.add_argument("--budget", type=float, default=540, help="seconds for all phases; phases beyond it are skipped")
    p.add_argument("--phases", default=",".join(PHASES),
                   help=f"which phases, comma-separated; they run in this order: {','.join(PHASES)} (default: all; "
                        "build always runs; fsdp2 and zero3 only with several GPUs)")
    p.add_argument("--sync-reps", type=int, default=3, help="lora-sync: syncs and generations per mode")
    p.add_argument("--sync-tokens", type=int, default=256, help="lora-sync: tokens per completion")
    p.add_argument("--out", default="gpu-check.json", help="JSON summary, rewritten after every phase")
    p.add_argument("--workdir", help="where to put the model and run (default: /dev/shm if roomy, else the temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the work folder (model, run) afterwards")
    p.add_argument("--phase", choices=PHASES[:4], help=argparse.SUPPRESS)  # a phase's own process
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--tag", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase:
        child(args)
    unknown = sorted(set(args.phases.split(",")) - set(PHASES))
    if unknown:
        p.error(f"--phases: unknown {', '.join(unknown)} (known: {', '.join(PHASES)})")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that run_phase ends the running phase

    started = time.perf_counter()
    out_path = Path(args.out)
    env_info, missing = preflight(args)
    work = None if missing else workdir(args)
    if work is None and not missing:
        missing = [f"a folder with {2 if args.tiny else 24} GiB free for the model and run (tried "
                   f"{args.workdir or '/dev/shm and ' + tempfile.gettempdir()}): pass --workdir"]
        log(f"cannot run here: no {missing[0]}")
    if missing:
        out_path.write_text(json.dumps({"ok": False, "missing": missing, "env": env_info}, indent=1))
        return 2
    try:
        return check(args, env_info, work, out_path, started)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def check(args, env_info: dict, work: Path, out_path: Path, started: float) -> int:
    engine = "vllm" if args.engine == "vllm" and "vllm" in env_info else "transformers"
    run_dir = work / "run"
    overrides = [f"run_dir={run_dir}", f"model.name={work / 'model'}", "tracking.tensorboard=false",
                 f"rloo.max_steps={args.steps}", f"rloo.rollout.engine={engine}", "rloo.reward.backend=callable",
                 "rloo.reward.function=__main__:toy_reward", "rloo.save_every=0", "rloo.lora.merge_on_save=false",
                 f"reward.train.max_steps={args.reward_steps}", "reward.train.eval_every=0",
                 "reward.train.save_every=0", "reward.lora.merge_on_save=false"]
    if args.tiny:
        overrides += ["rloo.rollout.max_new_tokens=16"]
    overrides += args.overrides
    from tiller.config import ConfigError
    from tiller.config_loading import load_config

    try:
        cfg = load_config(args.config, overrides)  # a config error stops here, before any GPU time
    except ConfigError as e:
        log(f"config error: {e}")
        out_path.write_text(json.dumps({"ok": False, "config_error": str(e), "env": env_info}, indent=1))
        return 2
    sync_tokens = min(args.sync_tokens, 16) if args.tiny else args.sync_tokens
    (work / "check.json").write_text(json.dumps({"config": args.config, "overrides": overrides, "tiny": args.tiny,
                                                 "sync_reps": args.sync_reps, "sync_tokens": sync_tokens}))
    summary = {"mode": "tiny (CPU)" if args.tiny else "gpu", "env": env_info, "workdir": str(work),
               "config": args.config, "overrides": overrides, "phases": {}}

    def save() -> None:
        summary["seconds"] = round(time.perf_counter() - started, 1)
        out_path.write_text(json.dumps(summary, indent=1))

    log(f"work folder {work}; config {args.config} with {' '.join('--set ' + o for o in overrides)}")
    path = os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path,
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "TILLER_PROGRESS": "0"}
    if args.tiny:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the dry run stays on CPU even on a GPU machine
    me = [sys.executable, str(Path(__file__).resolve())]
    wanted = set(args.phases.split(",")) | {"build"}
    phases = [(name, me + ["--phase", name]) for name in PHASES[:4] if name in wanted]
    n = env_info["gpus"]
    for strategy in [s for s in ("fsdp2", "zero3") if s in wanted] if n > 1 else ():
        (work / f"run-{strategy}").mkdir()  # its own run folder (outputs, metrics), the same data
        (work / f"run-{strategy}" / "data").symlink_to(run_dir / "data")
        sets = ["--set", f"run_dir={work / f'run-{strategy}'}", "--set", "reward.train.micro_batch_per_device=2",
                "--set", f"reward.train.pairs_per_step={2 * n}"]
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                  str(ROOT / "configs" / "accelerate" / f"{strategy}.yaml"), "--num_processes", str(n),
                  "--main_process_port", str(free_port()), str(Path(__file__).resolve())]
        phases.append((strategy, launch + ["--phase", "reward", "--tag", strategy] + sets))
    if n <= 1 and wanted & {"fsdp2", "zero3"}:
        summary["phases"]["fsdp2/zero3"] = {"ok": None, "skipped": f"{n} GPU visible: needs several"}
        log(f"fsdp2, zero3: skipped ({n} GPU visible: they need several)")
    plan = None
    for name, cmd in phases:
        left = args.budget - (time.perf_counter() - started)
        if name == "zero3" and not env_info["deepspeed"]:
            summary["phases"][name] = {"ok": None, "skipped": "deepspeed is not installed"}
            log(f"{name}: skipped (deepspeed is not installed)")
            continue
        if name == "lora-sync" and "vllm" not in env_info:  # --engine transformers does not matter here
            summary["phases"][name] = {"ok": None, "skipped": "needs vllm (it compares vLLM's two LoRA syncs)"}
            log(f"{name}: skipped (vllm does not import here: it compares vLLM's two LoRA syncs)")
            continue
        if left < 30:
            summary["phases"][name] = {"ok": None, "skipped": f"budget of {args.budget:.0f} s spent"}
            log(f"{name}: skipped (budget of {args.budget:.0f} s spent; raise --budget)")
            continue
        timeout = min(BUDGET_CAPS[name], left)
        log(f"{name}: starting (timeout {timeout:.0f} s; {left:.0f} s of the budget left)")
        res = collect(work, name, run_phase(cmd + ["--work", str(work)], env, timeout), timeout)
        summary["phases"][name] = res
        show_phase(name, res)
        if name == "build":
            if not res["ok"]:
                save()
                log("FAIL: the model could not be built; nothing else can run")
                return 1
            gpu_gib = (res.get("gpu") or {}).get("total_gib")
            plan = summary["plan"] = plan_estimate(cfg, res["dims"], gpu_gib)
        if name == "lora-sync" and res.get("lora_sync"):
            show_lora_sync(res)
        if name == "rloo":
            res.update(show_steps(run_dir))
            if plan:
                summary["plan_vs_measured"] = compare(plan, res)
        save()
    failed = [k for k, v in summary["phases"].items() if v.get("ok") is False]
    skipped = [k for k, v in summary["phases"].items() if v.get("ok") is None]
    summary["ok"] = not failed
    save()
    log(f"{'PASS' if not failed else 'FAIL: ' + ', '.join(failed)}"
        + (f" (skipped: {', '.join(skipped)})" if skipped else "")
        + f" in {summary['seconds']:.0f} s; summary in {out_path}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
