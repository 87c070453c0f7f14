"""Policy evaluation: the trained policy against its starting model, scored by a judge.

    tiller eval policy --config FILE

The reference is the model the policy actually started from, as its stage recorded it in
`<stage>/started_from.json` (the SFT model when the pipeline ran sft first), loaded the same way;
`eval.reference` names another, and without a record it is model.name (the table says which).
Both models answer the same held-out prompts (greedy by default, batched); the judge scores
both answers the same way. Reported: win rate of the policy (ties count half, Wilson 95%
interval), mean judge reward of each and the improvement (paired 95% interval), length ratio
(policy / reference, in tokens), the share of answers cut at the length limit without EOS, and
the KL of the policy to the reference along the policy's own answers (exact at each position,
so never negative). By default the judge is the reward model trained on the half of the pairs
the RLOO reward model never saw, so the win rate is not measured by the model that was
optimized against; when that reward model is present too, its scores are
reported beside the judge's, and a gap between the two is over-optimization.

Every answer of both models is also measured for degeneration (`tiller.degeneration`: repeated
word 4-grams, distinct-1/2, zlib compression ratio, longest run of one repeated unit) and
flagged by its rule; the counts for policy and reference, and a guarded win rate in which a
degenerate policy answer against a non-degenerate reference answer is a loss whatever the judge
scored, are reported beside the judge's win rate.

Two things show what can fool the judge. A length-controlled win rate (`tiller.length_control`):
a logistic regression of the verdict (win 1, tie 0.5, loss 0) on the policy's minus the
reference's answer length in tokens, divided by its standard deviation, read off at zero length
difference, with a bootstrap 95% interval over prompts; a judge that rewards length shows as a
raw win rate above it. And the judge's scores for answers that say nothing, on every prompt
(`constant_answers`): the empty answer, "I'm sorry, I can't help with that." and a restatement
of the question ("You asked: <last user message>"), each with its mean score and its win rate
against the reference's answers; a judge that such an answer can beat is not measuring quality.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path

import torch

from tiller import degeneration, length_control, losses
from tiller.batching import run_in_length_batches
from tiller.chat import encode_prompts
from tiller.config import Config, RewardBackendConfig
from tiller.data.run_files import load_prompts
from tiller.logprobs import build_batch, completion_logits
from tiller.model_card import add_policy_evaluation
from tiller.models import STARTED_FROM, load_frozen, load_tokenizer, read_origin
from tiller.rewards import make_reward_backend
from tiller.rollout import Sampling, make_engine


def default_judge_path(run_dir: Path) -> Path:
    judge = run_dir / "judge" / "model"
    if judge.exists():
        return judge
    print(f"[eval] warning: no held-out judge at {judge}; judging with the RLOO reward model, so "
          "over-optimization cannot show (add the 'judge' stage to the pipeline)", flush=True)
    return run_dir / "reward" / "model"


def reference_for(cfg: Config, policy_path: str) -> tuple[str, str | None, str]:
    """(reference model, its revision, where that choice comes from): eval.reference when set;
    else what the evaluated policy started from, read from its stage folder's started_from.json
    (the SFT model when the pipeline ran sft first); else model.name."""
    if cfg.eval.reference:
        return cfg.eval.reference, cfg.model.revision, "eval.reference"
    stage_dir = Path(policy_path).parent
    origin = read_origin(stage_dir)
    if origin is not None:
        return origin["model"], origin.get("revision"), f"what the policy started from, {stage_dir / STARTED_FROM}"
    return cfg.model.name, cfg.model.revision, f"model.name: no {STARTED_FROM} in {stage_dir}"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def generate_answers(model, tokenizer, prompt_ids: list[list[int]], sampling: Sampling, batch_size: int, seed: int,
                     engine_name: str = "transformers", rollout_cfg=None, model_cfg=None):
    """One answer per prompt with `engine_name` (eval.engine), in the prompts' order. Prompt i is
    sampled with seed + i whatever the batching; batches hold prompts of similar length (left
    padding is prefilled like real tokens: 12,480 prompt tokens in prompt order against 8,400
    sorted on the demo's 96 prompts). vLLM schedules its own batches, so it gets every prompt at
    once, and its engine is closed afterwards so the next model's engine has the memory."""
    engine = make_engine(engine_name, model, tokenizer, rollout_cfg, model_cfg)
    engine.sync_weights(model)
    step = len(prompt_ids) if engine_name == "vllm" else batch_size

    def answer_batch(batch: list[int]) -> list[tuple[list[int], bool]]:
        gen = engine.generate([prompt_ids[i] for i in batch], 1, sampling, [seed + i for i in batch])
        return list(zip(gen.completions, gen.has_eos))

    try:
        answers = run_in_length_batches([len(p) for p in prompt_ids], max(step, 1), answer_batch)
    finally:
        if hasattr(engine, "close"):
            engine.close()
    return [completion for completion, _ in answers], [ended for _, ended in answers]


@torch.no_grad()
def policy_kl(policy, reference, prompt_ids, completions, pad_id: int, batch_size: int, device) -> list[float]:
    """KL(policy || reference) along each of the policy's answers: the exact KL of the two
    next-token distributions (whole vocabulary) at every answer position, summed over the answer.

    A sampled estimate (sum of log pi - log pi_ref over the answer's tokens) is unbiased only
    for answers sampled from the policy; on greedy answers it is biased and can be negative.
    The exact per-position KL is >= 0 on any answer and costs no extra forward."""

    def kl_batch(batch: list[int]) -> list[float]:
        ids, mask, completion_mask, prompt_len = build_batch([prompt_ids[i] for i in batch],
                                                             [completions[i] for i in batch], 1, pad_id)
        ids, mask, completion_mask = ids.to(device), mask.to(device), completion_mask.to(device).float()
        # token_kl upcasts chunk by chunk: no full float32 copy of bf16 logits
        per_token = losses.token_kl(completion_logits(policy, ids, mask, prompt_len),
                                    completion_logits(reference, ids, mask, prompt_len))
        return losses.masked_sum(per_token, completion_mask, dim=-1).cpu().tolist()

    rows = min(batch_size, 8)  # two [rows, answer length, vocabulary] logits tensors alive at once
    # Rows of similar prompt length together: prompts are left-padded to the batch's longest.
    return run_in_length_batches([len(p) for p in prompt_ids], rows, kl_batch)


def run(cfg: Config, policy_path: str | None = None, label: str | None = None) -> dict:
    e = cfg.eval
    run_dir = Path(cfg.run_dir)
    policy_path = policy_path or e.policy or str(run_dir / "rloo" / "model")
    if label is None:
        parent = Path(policy_path).parent
        label = parent.name if parent.parent.resolve() == run_dir.resolve() else "policy"
    if not Path(policy_path).exists():
        raise FileNotFoundError(f"no policy at {policy_path}: train one first (tiller rloo / tiller dpo) or set eval.policy")
    reference_path, reference_revision, reference_source = reference_for(cfg, policy_path)
    reference_model_cfg = dataclasses.replace(cfg.model, revision=reference_revision)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.time()

    tokenizer = load_tokenizer(policy_path, cfg.model)
    prompts = load_prompts(run_dir, e.split)[: e.num_prompts]
    encoded, dropped = encode_prompts(prompts, tokenizer, cfg.rloo.max_prompt_tokens, cfg.model.enable_thinking)
    messages = [m for m, _ in encoded]
    prompt_ids = [ids for _, ids in encoded]
    print(f"[eval] {label}: policy {policy_path} vs reference {reference_path} ({reference_source})\n"
          f"[eval] {len(encoded)} {e.split} prompts "
          f"({dropped} dropped as too long); {'greedy' if e.greedy else f'temperature {e.temperature}'}, "
          f"up to {e.max_new_tokens} new tokens", flush=True)
    sampling = Sampling(max_new_tokens=e.max_new_tokens, temperature=0.0 if e.greedy else e.temperature)

    policy = load_frozen(policy_path, cfg.model, device)
    reference = load_frozen(reference_path, reference_model_cfg, device)
    policy_answers, policy_eos = generate_answers(policy, tokenizer, prompt_ids, sampling, e.batch_size, cfg.seed,
                                                  e.engine, cfg.rloo.rollout, cfg.model)
    reference_answers, reference_eos = generate_answers(reference, tokenizer, prompt_ids, sampling, e.batch_size, cfg.seed,
                                                        e.engine, cfg.rloo.rollout, reference_model_cfg)
    kl = policy_kl(policy, reference, prompt_ids, policy_answers, tokenizer.pad_token_id, e.batch_size, device)
    del policy, reference

    policy_texts = tokenizer.batch_decode(policy_answers, skip_special_tokens=True)
    reference_texts = tokenizer.batch_decode(reference_answers, skip_special_tokens=True)
    judge_cfg = e.judge
    judge_path = judge_cfg.path or (default_judge_path(run_dir) if judge_cfg.backend == "classifier" else None)
    judge = make_reward_backend(judge_cfg, default_path=judge_path, device=device)
    policy_scores, reference_scores = _score_both(judge, messages, policy_texts, reference_texts)
    constant_scores = _score_constant_answers(judge, messages, reference_texts, reference_scores)
    judge.close()

    # The reward model RLOO optimized against, when it is not the judge: its view of the same answers.
    train_rm = run_dir / "reward" / "model"
    optimized = {}
    if judge_cfg.backend == "classifier" and train_rm.exists() and Path(str(judge_path)).resolve() != train_rm.resolve():
        rm = make_reward_backend(RewardBackendConfig(backend="classifier", max_length=judge_cfg.max_length), train_rm, device)
        rm_policy, rm_reference = _score_both(rm, messages, policy_texts, reference_texts)
        optimized = {
            "optimized_rm_policy_mean": sum(rm_policy) / len(rm_policy),
            "optimized_rm_reference_mean": sum(rm_reference) / len(rm_reference),
            "optimized_rm_win_rate": losses.win_rate(rm_policy, rm_reference)["win_rate"],
        }

    wr = losses.win_rate(policy_scores, reference_scores)
    lc = length_control.length_controlled_win_rate(policy_scores, reference_scores, [len(c) for c in policy_answers],
                                                   [len(c) for c in reference_answers])
    constant = {}
    for kind, scores in constant_scores.items():
        cwr = losses.win_rate(scores, reference_scores)
        constant[kind] = {"text": CONSTANT_ANSWER_TEXT[kind], "mean_score": sum(scores) / len(scores),
                          "win_rate": cwr["win_rate"], "ci_low": cwr["ci_low"], "ci_high": cwr["ci_high"]}
    policy_rep = [degeneration.measure(t) for t in policy_texts]
    reference_rep = [degeneration.measure(t) for t in reference_texts]
    policy_bad = [m["degenerate"] for m in policy_rep]
    reference_bad = [m["degenerate"] for m in reference_rep]
    guarded = degeneration.guarded_win_rate(policy_scores, reference_scores, policy_bad, reference_bad)
    improvement, improvement_low, improvement_high = losses.paired_mean_interval(policy_scores, reference_scores)
    n = len(policy_texts)
    policy_len = sum(len(c) for c in policy_answers) / n
    reference_len = sum(len(c) for c in reference_answers) / n
    summary = {
        "label": label, "policy": str(policy_path), "reference": str(reference_path), "reference_source": reference_source,
        "judge": str(judge_path or judge_cfg.url or judge_cfg.function), "n": n,
        "win_rate": wr["win_rate"], "ci_low": wr["ci_low"], "ci_high": wr["ci_high"],
        "wins": wr["wins"], "ties": wr["ties"], "losses": wr["losses"],
        "lc_win_rate": lc["win_rate"], "lc_ci_low": lc["ci_low"], "lc_ci_high": lc["ci_high"],
        "lc_slope": lc["slope"], "lc_length_sd": lc["length_sd"],
        "constant_answers": constant,
        "guarded_win_rate": guarded["win_rate"], "guarded_ci_low": guarded["ci_low"],
        "guarded_ci_high": guarded["ci_high"], "guarded_wins": guarded["wins"], "guarded_ties": guarded["ties"],
        "guarded_losses": guarded["losses"], "guarded_overruled": guarded["overruled"],
        "degenerate_policy": sum(policy_bad), "degenerate_reference": sum(reference_bad),
        "degenerate_rule": degeneration.DEGENERATE_RULE,
        "reward_policy_mean": sum(policy_scores) / n, "reward_reference_mean": sum(reference_scores) / n,
        "reward_improvement": improvement,
        "reward_improvement_ci_low": improvement_low, "reward_improvement_ci_high": improvement_high,
        "length_ratio": policy_len / max(reference_len, 1e-9),
        "policy_mean_length": policy_len, "reference_mean_length": reference_len,
        "truncated_policy": sum(not x for x in policy_eos) / n,
        "truncated_reference": sum(not x for x in reference_eos) / n,
        "kl_mean": sum(kl) / n, **optimized,
        "seconds": time.time() - started,
    }
    out = run_dir / "eval"
    out.mkdir(parents=True, exist_ok=True)
    rows = [json.dumps({
        "prompt": m, "policy": pt, "reference": rt_, "policy_score": ps, "reference_score": rs,
        "policy_tokens": len(pa), "reference_tokens": len(ra), "policy_has_eos": pe, "reference_has_eos": re_, "kl": k_,
        "policy_degenerate": pm["degenerate"], "reference_degenerate": rm_["degenerate"],
        "policy_repetition": pm, "reference_repetition": rm_,
        "constant_scores": {kind: scores[i] for kind, scores in constant_scores.items()},
    }) for i, (m, pt, rt_, ps, rs, pa, ra, pe, re_, k_, pm, rm_) in enumerate(zip(
        messages, policy_texts, reference_texts, policy_scores, reference_scores, policy_answers, reference_answers,
        policy_eos, reference_eos, kl, policy_rep, reference_rep))]
    _atomic_write(out / f"{label}_samples.jsonl", "\n".join(rows) + "\n")
    _atomic_write(out / f"{label}.json", json.dumps(summary, indent=1))
    if add_policy_evaluation(policy_path, summary):  # the policy's tiller model card gets the figures
        print(f"[eval] added the win rate to the model card {Path(policy_path) / 'README.md'}", flush=True)
    print(format_summary(summary), flush=True)
    return summary


def _score_both(scorer, messages, policy_texts: list[str], reference_texts: list[str]) -> tuple[list[float], list[float]]:
    """Scores of both models' answers. Where the two answers are the same text, the reference's
    answer is not scored again but given the policy's score: the judge is a function of the text,
    and scoring it twice in differently padded batches can differ in the last bits (measured: 4e-7),
    which would turn a tie into a win or a loss."""
    policy_scores = scorer.score(messages, policy_texts)
    differ = [i for i, (p, r) in enumerate(zip(policy_texts, reference_texts)) if p != r]
    reference_scores = list(policy_scores)
    if differ:
        scored = scorer.score([messages[i] for i in differ], [reference_texts[i] for i in differ])
        for i, value in zip(differ, scored):
            reference_scores[i] = value
    return policy_scores, reference_scores


REFUSAL = "I'm sorry, I can't help with that."
RESTATEMENT = "You asked: {question}"
# The judge's sanity rows: answers that say nothing, scored on every prompt like the policy's.
CONSTANT_ANSWER_TEXT = {"empty": "", "refusal": REFUSAL, "restatement": RESTATEMENT.format(question="<last user message>")}


def constant_answers(messages: list[list[dict]]) -> dict[str, list[str]]:
    """For each prompt, answers that say nothing: the empty answer, a generic refusal and a
    restatement of the question ("You asked: " + the last user message)."""
    def question(conversation: list[dict]) -> str:
        return next((str(t.get("content") or "") for t in reversed(conversation) if t.get("role") == "user"), "")

    return {"empty": [""] * len(messages), "refusal": [REFUSAL] * len(messages),
            "restatement": [RESTATEMENT.format(question=question(m)) for m in messages]}


def _score_constant_answers(scorer, messages, reference_texts: list[str],
                            reference_scores: list[float]) -> dict[str, list[float]]:
    """The judge's score of each constant answer on each prompt, all in one call to `scorer`
    (the one that scored the policy's answers). A constant answer that is the reference's own
    answer gets the reference's score, a tie by construction as in `_score_both`."""
    answers = constant_answers(messages)
    todo = [(kind, i) for kind, texts in answers.items() for i, text in enumerate(texts) if text != reference_texts[i]]
    scored = scorer.score([messages[i] for _, i in todo], [answers[kind][i] for kind, i in todo]) if todo else []
    out = {kind: list(reference_scores) for kind in answers}
    for (kind, i), value in zip(todo, scored):
        out[kind][i] = float(value)
    return out


def _interval(s: dict) -> str:
    if "reward_improvement_ci_low" not in s:  # summaries written before the interval existed
        return ""
    return f" (95% CI {s['reward_improvement_ci_low']:+.3f} to {s['reward_improvement_ci_high']:+.3f})"


def format_summary(s: dict) -> str:
    lines = [
        f"evaluation of '{s['label']}' on {s['n']} held-out prompts (judge: {s['judge']})",
        f"  reference               {s['reference']}" + (f" ({s['reference_source']})" if "reference_source" in s else ""),
        f"  win rate vs reference   {s['win_rate']:.3f}  (95% CI {s['ci_low']:.3f}-{s['ci_high']:.3f}; "
        f"{s['wins']:g} wins, {s['ties']:g} ties, {s['losses']:g} losses)",
    ]
    if "lc_win_rate" in s:  # summaries written before the length control have none
        lines.append(f"  length-controlled       {s['lc_win_rate']:.3f}  (95% bootstrap CI {s['lc_ci_low']:.3f}-"
                     f"{s['lc_ci_high']:.3f}; win rate at zero length difference; slope {s['lc_slope']:+.2f} "
                     f"log-odds per sd of {s['lc_length_sd']:.1f} tokens)")
    if s.get("constant_answers"):
        c = s["constant_answers"]
        lines.append("  constant answers        vs reference: "
                     + " / ".join(f"{kind} {v['win_rate']:.2f}" for kind, v in c.items())
                     + "  (judge mean " + " / ".join(f"{v['mean_score']:+.3f}" for v in c.values()) + ")")
    if "guarded_win_rate" in s:  # summaries written before the degeneration measures have none
        lines += [
            f"  guarded win rate        {s['guarded_win_rate']:.3f}  (95% CI {s['guarded_ci_low']:.3f}-"
            f"{s['guarded_ci_high']:.3f}; {s['guarded_wins']:g} wins, {s['guarded_ties']:g} ties, "
            f"{s['guarded_losses']:g} losses; degenerate policy vs non-degenerate reference = loss, "
            f"{s['guarded_overruled']:g} judge verdicts overruled)",
            f"  degenerate answers      policy {s['degenerate_policy']} / reference {s['degenerate_reference']}  "
            f"(rule: tiller.degeneration)",
        ]
    lines += [
        f"  judge reward            policy {s['reward_policy_mean']:+.3f} | reference {s['reward_reference_mean']:+.3f} "
        f"| improvement {s['reward_improvement']:+.3f}" + _interval(s),
        f"  length ratio            {s['length_ratio']:.2f}  (policy {s['policy_mean_length']:.1f} / reference "
        f"{s['reference_mean_length']:.1f} tokens)",
        f"  cut at length limit     policy {s['truncated_policy']:.1%} | reference {s['truncated_reference']:.1%}",
        f"  KL(policy || reference) {s['kl_mean']:.3f} nats per answer (summed over its tokens)",
    ]
    if "optimized_rm_policy_mean" in s:
        lines.append(f"  optimized reward model  policy {s['optimized_rm_policy_mean']:+.3f} | reference "
                     f"{s['optimized_rm_reference_mean']:+.3f} | win rate {s['optimized_rm_win_rate']:.3f}")
    lines.append(f"  time                    {s['seconds']:.0f} s")
    return "\n".join(lines)
