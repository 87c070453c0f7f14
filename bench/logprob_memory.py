"""RLOO's (or DPO's: `--stage dpo`) training forward + backward at Qwen3's vocabulary: the
log-probs computed by the output layer a chunk of tokens at a time (`tiller.logprobs`, what
`tiller rloo`, `ppo`, `dpo` and `sft` do for Llama, Mistral, Qwen2 and Qwen3) against whole logits
followed by the chunked log-softmax (RLOO: tiller's logits path, what it did before and still
does for architectures that change their logits after the output layer; DPO: what `tiller dpo`
computed before, the logits of every position, the prompt's included).

The model is built from a config (random weights, nothing downloaded): Qwen3 with the real
vocabulary (151,936 tokens, tied embeddings), hidden size 256, 2 layers, LoRA r=16 on every
projection; one micro-batch of `--rows` completions of `--completion` tokens after a 64-token
prompt, padded rows, temperature 0.7, with the entropies RLOO logs; with `--stage dpo`, `--rows`
pairs whose two answers of `--completion` tokens follow a 64-token prompt, padded rows, DPO's loss
on the summed answer log-probs (beta 0.1, reference log-probs 0); with `--stage kl`, `tiller eval`'s
exact KL along `--rows` answers of `--completion` tokens (two forwards, no backward: the policy a
perturbed copy of the model), from the two output layers against the two models' logits. Each side runs in its own
process (a peak RSS only grows), `--reps` times alternated; each process does one warm-up and
three measured forward + backward passes and reports its peak RSS above what it held after
loading, and the median pass time.

    HF_HUB_OFFLINE=1 PYTHONPATH=src python bench/logprob_memory.py [--stage rloo|dpo|kl] [--rows 8] [--completion 256] [--reps 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIDES = ("output layer", "logits")


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def worker(stage: str, side: str, folder: str, rows: int, completion: int) -> dict:
    import torch

    import tiller.logprobs as logprobs
    from tiller.config import LoraConfig
    from tiller.models import apply_lora, load_causal_lm

    if side == "logits":
        logprobs._plain_output_layer = lambda model: None  # the path an unsupported architecture takes
    torch.manual_seed(0)
    model = apply_lora(load_causal_lm(folder), LoraConfig(r=16, alpha=32, dropout=0.0), "CAUSAL_LM")
    vocab = model.get_output_embeddings().out_features
    generator = torch.Generator().manual_seed(1)
    prompts = torch.randint(10, vocab, (rows, 64), generator=generator).tolist()
    completions = torch.randint(10, vocab, (rows, completion), generator=generator).tolist()
    if stage == "kl":
        step, tokens = _kl_step(folder, prompts, completions)
    elif stage == "dpo":
        rejected = torch.randint(10, vocab, (rows, completion), generator=generator).tolist()
        step, tokens = _dpo_step(model, side, prompts, completions, rejected)
    else:
        ids, mask, cmask, plen = logprobs.build_batch(prompts, completions, 1, 0)
        tokens = int(cmask.numel())

        def step():
            logps, entropy = logprobs.completion_logprobs(model, ids, mask, plen, 0.7, True)
            ((logps * cmask).sum() / cmask.sum()).backward()

    loaded = _rss_mb("VmRSS")
    times = []
    for rep in range(4):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    line = logprobs.describe_logprob_path(model) if side == "output layer" else "the logits path, forced"
    if stage == "kl" and side == "output layer":
        line = "the KL from the two models' output layers, a chunk of tokens at a time"
    return {"side": side, "line": line, "pass_s": statistics.median(times[1:]),
            "peak_above_load_mb": _rss_mb("VmHWM") - loaded, "tokens": tokens, "vocab": vocab}


def _dpo_step(model, side: str, prompts, chosen, rejected):
    """One DPO micro-batch's forward + backward (padded rows), and the positions it runs."""
    import torch
    import torch.nn.functional as F

    from tiller import losses
    from tiller.chat import IGNORE
    from tiller.preference_logprobs import EncodedPreference, concatenated_logps, pair_batch

    def encoded(prompt, answer):
        ids = prompt + answer
        return ids, [IGNORE] * (len(prompt) - 1) + answer + [IGNORE]

    pairs = [EncodedPreference(*encoded(p, c), *encoded(p, r)) for p, c, r in zip(prompts, chosen, rejected)]
    input_ids, attention_mask, labels = pair_batch(pairs, 0)

    def summed_logps():
        if side == "output layer":
            return concatenated_logps(model, pairs, 0, "cpu")
        # what `tiller dpo` computed before: the logits of every position, the prompt's included
        logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
        logps = losses.token_logprobs(logits, labels).sum(-1)
        return logps[:len(pairs)], logps[len(pairs):]

    def step():
        chosen_logps, rejected_logps = summed_logps()
        (-F.logsigmoid(0.1 * (chosen_logps - rejected_logps)).mean()).backward()

    return step, int(input_ids.numel())


def _kl_step(folder: str, prompts, completions):
    """`tiller eval`'s exact KL along answers (`policy_kl`, rows of 8 as it batches them): the
    policy a perturbed copy of the model (every weight moved, so no layer is shared)."""
    import torch

    from tiller.models import load_causal_lm
    from tiller.recipes.evaluate import policy_kl

    reference, policy = load_causal_lm(folder).eval(), load_causal_lm(folder).eval()
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.02 * torch.randn_like(p))

    def step():
        policy_kl(policy, reference, prompts, completions, 0, len(prompts), "cpu")

    return step, len(prompts) * (64 + len(completions[0]))


def build_model(folder: Path) -> None:
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=151_936, hidden_size=256, intermediate_size=768, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=64, tie_word_embeddings=True,
                         pad_token_id=0, max_position_embeddings=4096)
    Qwen3ForCausalLM(config).save_pretrained(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=("rloo", "dpo", "kl"), default="rloo")
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--completion", type=int, default=256)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.stage, args.worker[0], args.worker[1], args.rows, args.completion)))
        return
    with tempfile.TemporaryDirectory(prefix="logprob-memory-") as tmp:
        build_model(Path(tmp))
        results = {side: [] for side in SIDES}
        for rep in range(args.reps):
            for side in SIDES:
                out = subprocess.run([sys.executable, __file__, "--stage", args.stage, "--rows", str(args.rows), "--completion",
                                      str(args.completion), "--worker", side, tmp],
                                     capture_output=True, text=True, check=True)
                result = json.loads(out.stdout.strip().splitlines()[-1])
                results[side].append(result)
                print(f"[bench] rep {rep} {side}: {result['pass_s']:.2f} s a pass, peak "
                      f"{result['peak_above_load_mb']:,.0f} MB above the loaded model ({result['line']})", flush=True)
    first = results[SIDES[0]][0]
    what = "pairs x 2 answers" if args.stage == "dpo" else "rows"
    print(f"\n{args.stage}: {args.rows} {what} x {args.completion} tokens after a 64-token prompt ({first['tokens']:,} positions), vocabulary "
          f"{first['vocab']:,}; medians over {args.reps} process(es) per side")
    summary = {}
    for side in SIDES:
        summary[side] = (statistics.median(r["pass_s"] for r in results[side]),
                         statistics.median(r["peak_above_load_mb"] for r in results[side]))
        work = "forwards" if args.stage == "kl" else "forward+backward"
        print(f"{side:<14} {work} {summary[side][0]:6.2f} s   peak above load {summary[side][1]:8,.0f} MB")
    (ours_s, ours_mb), (peer_s, peer_mb) = summary["output layer"], summary["logits"]
    print(f"ratio output layer / logits: time x{ours_s / peer_s:.2f}, peak memory above load x{ours_mb / peer_mb:.2f}")


if __name__ == "__main__":
    main()
