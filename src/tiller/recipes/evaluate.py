"""Policy evaluation: the trained policy against its starting model, scored by a judge.

    tiller eval policy --config FILE
    tiller eval curve --config FILE [--stage rloo|ppo|dpo]

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
reported beside the judge's, and a gap between the two is over-optimization. When both are LoRA
adapters of one base they are loaded as one base with two adapters and score each answer
together (`_scorers`, `tiller.rewards.shared_base.ScoresOnOneBase`); otherwise one after the
other, one model in memory at a time.

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

Questions with one right answer (the arithmetic sample) need no judge model: `eval.verifier`
names a function that scores an answer 1.0 when right and 0.0 when wrong, given each prompt's
record (data.keep_columns), e.g. `tiller.rewards.exact_match:exact_match`. It is then the judge
(eval.judge is not used), so the judge reward of each model is its accuracy, and the summary adds
`exact_match`: each model's accuracy with its Wilson 95% interval, the paired 95% interval of
the difference (`verified_accuracy`), and the questions the policy got right where the
reference did not (gained) and the other way round (lost).

The pipeline's eval stage (`run_policies`) evaluates every policy stage the run holds side by
side: against one reference (the run's start: what the first policy stage started from, or
eval.reference), with the reference's answers generated and scored once, each policy's figures
by `compare` as above; eval/<stage>.json for each and eval/policies.json for all, printed as one
table with a column per stage. With eval.seeds (sampled answers) every model answers once per
seed and the summaries add each figure's spread over the seeds.

The over-optimization curve (`tiller eval curve`, `run_curve`) evaluates a policy stage's
starting model (step 0), each checkpoint it kept and its final model in the same way (`compare`
computes the figures of every row, and of `tiller eval policy`), with the reference's answers
generated and scored once for all of them. A checkpoint holds the trained tensors only, so it is
loaded into the starting model built with the stage's LoRA settings
(`checkpoint.load_model_weights`); a ppo checkpoint holds the value model too, so it is loaded
into the policy-and-value bundle built as ppo builds it (`value_model.build_policy_with_value`),
and the policy part answers. One row per model goes to eval/curve.jsonl; the report plots
the judge's and the optimized reward model's gains and the judge's win rate against KL and step.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from pathlib import Path

import torch

from tiller import degeneration, length_control, losses
from tiller.batching import layout_tolerance, run_in_length_batches
from tiller.checkpoint import list_checkpoints, load_model_weights, verify_checkpoint
from tiller.config import Config, RewardBackendConfig, get_key
from tiller.eval_inputs import eval_prompts, reference_for  # shared with `tiller playground`
from tiller.frozen_prefix import equal_leading_layers
from tiller.logprobs import build_batch, completion_kl, completion_logits
from tiller.model_card import add_policy_evaluation
from tiller.models import STARTED_FROM, adapter_base, load_frozen, load_policy, load_tokenizer, policy_start, read_origin
from tiller.report_data import POLICIES_FILE
from tiller.rewards import make_reward_backend
from tiller.rewards.classifier import ClassifierReward
from tiller.rewards.shared_base import ScoresOnOneBase, load_adapters_on_one_base, why_not_one_base
from tiller.rollout import Sampling, make_engine
from tiller.training import show_progress
from tiller.value_model import POLICY_ADAPTER, build_policy_with_value, use_adapter


def default_judge_path(run_dir: Path) -> Path:
    judge = run_dir / "judge" / "model"
    if judge.exists():
        return judge
    print(f"[eval] warning: no held-out judge at {judge}; judging with the RLOO reward model, so "
          "over-optimization cannot show (add the 'judge' stage to the pipeline)", flush=True)
    return run_dir / "reward" / "model"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def generate_answers(model, tokenizer, prompt_ids: list[list[int]], sampling: Sampling, batch_size: int, seed: int,
                     engine_name: str = "transformers", rollout_cfg=None, model_cfg=None, engine=None):
    """One answer per prompt with `engine_name` (eval.engine), in the prompts' order. Prompt i is
    sampled with seed + i whatever the batching; batches hold prompts of similar length (left
    padding is prefilled like real tokens: 12,480 prompt tokens in prompt order against 8,400
    sorted on the demo's 96 prompts). vLLM schedules its own batches, so it gets every prompt at
    once, and its engine is closed afterwards so the next model's engine has the memory.
    `engine`, an engine made by the caller for `model`, is synced and used but not closed: the
    curve reuses one across checkpoints loaded into the same model (one vLLM start, not one each)."""
    owned = engine is None
    if owned:
        engine = make_engine(engine_name, model, tokenizer, rollout_cfg, model_cfg)
    engine.sync_weights(model)
    step = len(prompt_ids) if engine_name == "vllm" else batch_size

    def answer_batch(batch: list[int]) -> list[tuple[list[int], bool]]:
        gen = engine.generate([prompt_ids[i] for i in batch], 1, sampling, [seed + i for i in batch])
        return list(zip(gen.completions, gen.has_eos))

    try:
        answers = run_in_length_batches([len(p) for p in prompt_ids], max(step, 1), answer_batch)
    finally:
        if owned and hasattr(engine, "close"):
            engine.close()
    return [completion for completion, _ in answers], [ended for _, ended in answers]


@torch.no_grad()
def policy_kl(policy, reference, prompt_ids, completions, pad_id: int, batch_size: int, device) -> list[float]:
    """KL(policy || reference) along each of the policy's answers: the exact KL of the two
    next-token distributions (whole vocabulary) at every answer position, summed over the answer.

    A sampled estimate (sum of log pi - log pi_ref over the answer's tokens) is unbiased only
    for answers sampled from the policy; on greedy answers it is biased and can be negative.
    The exact per-position KL is >= 0 on any answer and costs no extra forward.

    Where the two models hold their leading layers bit for bit alike (a policy with LoRA on its
    last layers, merged, and its base), those layers run once per batch for both
    (`equal_leading_layers`), checked against the full forwards on the first two answers."""
    shared = _shared_kl_layers(policy, reference, prompt_ids, completions, pad_id, device)

    def kl_batch(batch: list[int]) -> list[float]:
        ids, mask, completion_mask, prompt_len = build_batch([prompt_ids[i] for i in batch],
                                                             [completions[i] for i in batch], 1, pad_id)
        ids, mask, completion_mask = ids.to(device), mask.to(device), completion_mask.to(device).float()
        hidden = None if shared is None else shared[1].hidden(ids, mask)
        per_token = completion_kl(policy, reference, ids, mask, prompt_len, shared, hidden)
        return losses.masked_sum(per_token, completion_mask, dim=-1).cpu().tolist()

    # Two [rows, answer length, vocabulary] logits tensors alive at once where an output layer is
    # not a plain linear layer (completion_kl); else their last hidden states only.
    rows = min(batch_size, 8)
    # Rows of similar prompt length together: prompts are left-padded to the batch's longest.
    return run_in_length_batches([len(p) for p in prompt_ids], rows, kl_batch)


def _kl_logits(policy, reference, ids, mask, prompt_len: int, shared) -> tuple[torch.Tensor, torch.Tensor]:
    """The policy's and the reference's logits on the answers' positions: two full forwards, or
    with `shared` (a prefix of each, `equal_leading_layers`) the shared layers once and two tails."""
    if shared is None:
        return (completion_logits(policy, ids, mask, prompt_len), completion_logits(reference, ids, mask, prompt_len))
    policy_prefix, reference_prefix = shared
    hidden = reference_prefix.hidden(ids, mask)
    return (completion_logits(policy, ids, mask, prompt_len, policy_prefix, hidden),
            completion_logits(reference, ids, mask, prompt_len, reference_prefix, hidden))


def _shared_kl_layers(policy, reference, prompt_ids, completions, pad_id: int, device):
    """`equal_leading_layers(policy, reference)` where it gives both full forwards' logits on the
    first two answers; else None (printed either way when there are shared layers)."""
    shared = equal_leading_layers(policy, reference)
    if shared is None or not prompt_ids:
        return None
    ids, mask, _, prompt_len = build_batch(prompt_ids[:2], completions[:2], 1, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    full = _kl_logits(policy, reference, ids, mask, prompt_len, None)
    diff = max(float((f - s).abs().max()) for f, s in zip(full, _kl_logits(policy, reference, ids, mask, prompt_len, shared)))
    layers = shared[0].layers
    if diff > layout_tolerance(full[0].dtype) * max(1.0, float(full[0].abs().max())):
        print(f"[eval] KL: the first {layers} layers are the same in the policy and the reference, but computing them "
              f"once gave other logits (max diff {diff:.1e}): two full forwards", flush=True)
        return None
    print(f"[eval] KL: the first {layers} layers are the same in the policy and the reference: computed once per batch "
          f"for both (checked equal to the full forwards, max diff {diff:.1e})", flush=True)
    return shared


@dataclasses.dataclass
class Answers:
    """One model's answers to the evaluation prompts, in the prompts' order, and their scores:
    the judge's, and the optimized reward model's when it is not the judge."""

    tokens: list[list[int]]
    has_eos: list[bool]
    texts: list[str]
    scores: list[float] = dataclasses.field(default_factory=list)
    rm_scores: list[float] | None = None

    @functools.cached_property
    def repetition(self) -> list[dict]:
        """tiller.degeneration's measures of each answer (computed once)."""
        return [degeneration.measure(t) for t in self.texts]

    @property
    def degenerate(self) -> list[bool]:
        return [m["degenerate"] for m in self.repetition]


def compare(policy: Answers, reference: Answers, kl: list[float]) -> dict:
    """The figures of the policy's scored answers against the reference's on the same prompts,
    and the policy's KL to the reference along each of its answers: win rate (ties half, Wilson
    95% interval), length-controlled and guarded win rates, judge rewards and their paired
    improvement, lengths, answers cut at the limit, degenerate answers, mean KL, and the optimized
    reward model's view when both sides carry its scores. No model here: `tiller eval policy`
    reports these for one policy, `tiller eval curve` for each checkpoint of a stage."""
    n = len(policy.texts)
    wr = losses.win_rate(policy.scores, reference.scores)
    lc = length_control.length_controlled_win_rate(policy.scores, reference.scores, [len(c) for c in policy.tokens],
                                                   [len(c) for c in reference.tokens])
    guarded = degeneration.guarded_win_rate(policy.scores, reference.scores, policy.degenerate, reference.degenerate)
    improvement, improvement_low, improvement_high = losses.paired_mean_interval(policy.scores, reference.scores)
    policy_len = sum(len(c) for c in policy.tokens) / n
    reference_len = sum(len(c) for c in reference.tokens) / n
    figures = {
        "n": n, "win_rate": wr["win_rate"], "ci_low": wr["ci_low"], "ci_high": wr["ci_high"],
        "wins": wr["wins"], "ties": wr["ties"], "losses": wr["losses"],
        "lc_win_rate": lc["win_rate"], "lc_ci_low": lc["ci_low"], "lc_ci_high": lc["ci_high"],
        "lc_slope": lc["slope"], "lc_length_sd": lc["length_sd"],
        "guarded_win_rate": guarded["win_rate"], "guarded_ci_low": guarded["ci_low"],
        "guarded_ci_high": guarded["ci_high"], "guarded_wins": guarded["wins"], "guarded_ties": guarded["ties"],
        "guarded_losses": guarded["losses"], "guarded_overruled": guarded["overruled"],
        "degenerate_policy": sum(policy.degenerate), "degenerate_reference": sum(reference.degenerate),
        "degenerate_rule": degeneration.DEGENERATE_RULE,
        "reward_policy_mean": sum(policy.scores) / n, "reward_reference_mean": sum(reference.scores) / n,
        "reward_improvement": improvement,
        "reward_improvement_ci_low": improvement_low, "reward_improvement_ci_high": improvement_high,
        "length_ratio": policy_len / max(reference_len, 1e-9),
        "policy_mean_length": policy_len, "reference_mean_length": reference_len,
        "truncated_policy": sum(not x for x in policy.has_eos) / n,
        "truncated_reference": sum(not x for x in reference.has_eos) / n,
        "kl_mean": sum(kl) / n,
    }
    if policy.rm_scores is not None and reference.rm_scores is not None:
        figures.update({
            "optimized_rm_policy_mean": sum(policy.rm_scores) / n,
            "optimized_rm_reference_mean": sum(reference.rm_scores) / n,
            "optimized_rm_win_rate": losses.win_rate(policy.rm_scores, reference.rm_scores)["win_rate"],
        })
    return figures


def verified_accuracy(policy_scores: list[float], reference_scores: list[float]) -> dict:
    """Exact-match figures of a verifier's scores (1.0 right, 0.0 wrong) of both models' answers
    to the same questions: each model's accuracy with its Wilson 95% interval, and the paired
    95% interval of the difference (policy - reference, a mean of per-question differences in
    {-1, 0, 1}), with the questions gained (only the policy right) and lost (only the reference)."""
    if any(v not in (0.0, 1.0) for v in [*policy_scores, *reference_scores]):
        raise ValueError("eval.verifier must score every answer 1.0 (right) or 0.0 (wrong); got "
                         f"{sorted({v for v in [*policy_scores, *reference_scores] if v not in (0.0, 1.0)})[:5]}")
    n = len(policy_scores)
    right, reference_right = sum(policy_scores), sum(reference_scores)
    low, high = losses.accuracy_interval(right, n)
    reference_low, reference_high = losses.accuracy_interval(reference_right, n)
    difference, difference_low, difference_high = losses.paired_mean_interval(policy_scores, reference_scores)
    return {
        "n": n, "policy_correct": int(right), "reference_correct": int(reference_right),
        "policy_accuracy": right / n, "policy_ci_low": low, "policy_ci_high": high,
        "reference_accuracy": reference_right / n, "reference_ci_low": reference_low, "reference_ci_high": reference_high,
        "difference": difference, "difference_ci_low": difference_low, "difference_ci_high": difference_high,
        "gained": sum(p > r for p, r in zip(policy_scores, reference_scores)),
        "lost": sum(p < r for p, r in zip(policy_scores, reference_scores)),
    }


def _sampling(e) -> Sampling:
    return Sampling(max_new_tokens=e.max_new_tokens, temperature=0.0 if e.greedy else e.temperature)


def _answer(model, tokenizer, prompt_ids, cfg: Config, model_cfg, engine=None) -> Answers:
    e = cfg.eval
    tokens, eos = generate_answers(model, tokenizer, prompt_ids, _sampling(e), e.batch_size, cfg.seed, e.engine,
                                   cfg.rloo.rollout, model_cfg, engine=engine)
    return Answers(tokens, eos, tokenizer.batch_decode(tokens, skip_special_tokens=True))


def _judge_path(cfg: Config) -> str | Path | None:
    judge_cfg = cfg.eval.judge
    if cfg.eval.verifier:  # the verifier is the judge: no judge model
        return None
    return judge_cfg.path or (default_judge_path(Path(cfg.run_dir)) if judge_cfg.backend == "classifier" else None)


def _make_judge(cfg: Config, judge_path: str | Path | None, device: str):
    """eval.verifier as a callable reward when set (it gets each prompt's record), else eval.judge."""
    if cfg.eval.verifier:
        return make_reward_backend(RewardBackendConfig(backend="callable", function=cfg.eval.verifier))
    return make_reward_backend(cfg.eval.judge, default_path=judge_path, device=device)


def _judge_name(cfg: Config, judge_path: str | Path | None) -> str:
    e = cfg.eval
    return f"verifier {e.verifier}" if e.verifier else str(judge_path or e.judge.url or e.judge.function)


def _optimized_rm(cfg: Config, judge_path: Path | None, device: str):
    """The reward model RLOO optimized against (the reward stage's), when it is present and is
    not the judge: its view of the same answers; None otherwise."""
    judge_cfg = cfg.eval.judge
    train_rm = Path(cfg.run_dir) / "reward" / "model"
    if judge_cfg.backend == "classifier" and train_rm.exists() and Path(str(judge_path)).resolve() != train_rm.resolve():
        return make_reward_backend(_optimized_rm_config(cfg), train_rm, device)
    return None


def _optimized_rm_config(cfg: Config) -> RewardBackendConfig:
    """The optimized reward model reads answers as the judge does."""
    judge = cfg.eval.judge
    return RewardBackendConfig(backend="classifier", max_length=judge.max_length, shared_prompt=judge.shared_prompt)


def _judge_and_rm_on_one_base(cfg: Config, judge_path: str | Path | None, device: str) -> ScoresOnOneBase | None:
    """The judge and the optimized reward model as two adapters of one base, scored together
    (`tiller.rewards.shared_base.ScoresOnOneBase`), when both are LoRA adapters of the same base
    (as the flagship recipe and the demo train them) and eval.judge.share_base is on; else None,
    with the reason printed where there is an optimized reward model to share with."""
    judge_cfg = cfg.eval.judge
    train_rm = Path(cfg.run_dir) / "reward" / "model"
    if (cfg.eval.verifier or judge_cfg.backend != "classifier" or not train_rm.exists()
            or Path(str(judge_path)).resolve() == train_rm.resolve()):
        return None
    reason = why_not_one_base([judge_path, train_rm]) if judge_cfg.share_base else "eval.judge.share_base: false"
    if reason is not None:
        print(f"[eval] the judge and the optimized reward model load one after the other ({reason})", flush=True)
        return None
    judge_head, rm_head = load_adapters_on_one_base([judge_path, train_rm], device)
    print(f"[eval] the judge and the optimized reward model: LoRA adapters of one base ({adapter_base(train_rm)}), "
          "loaded once and scored together", flush=True)
    return ScoresOnOneBase([ClassifierReward(str(judge_path), judge_cfg, device, scorer=judge_head),
                            ClassifierReward(str(train_rm), _optimized_rm_config(cfg), device, scorer=rm_head)])


def _scorers(cfg: Config, judge_path: str | Path | None, device: str, messages: list[list[dict]],
             answer_texts: list[list[str]]):
    """The scorers of the evaluation's answers, in turn, each loaded when its turn comes and
    closed after it (one model in memory at a time): yields (fields, scorer, judge) with the
    `Answers` fields its scores go to (`_assign`), the scorer, and the judge's view when this
    scorer holds it (the judge alone scores the constant answers), else None. First the judge,
    then the optimized reward model when there is one; or both at once, one tuple of scores per
    answer, when they are adapters of one base (`_judge_and_rm_on_one_base`). A reward model
    scores all its answers up front (`answer_texts`, one list per model, each in the order of
    `messages`; the judge also the constant answers), so that each prompt's answers share one
    row (`_Prefilled`)."""
    constants = list(constant_answers(messages).values())
    together = _judge_and_rm_on_one_base(cfg, judge_path, device)
    if together is not None:
        scorer = _prefilled(together, messages, [*answer_texts, *constants])
        yield ("scores", "rm_scores"), scorer, _FirstOf(scorer)
        together.close()
        return
    judge = _make_judge(cfg, judge_path, device)
    scorer = _prefilled(judge, messages, [*answer_texts, *constants])
    yield ("scores",), scorer, scorer
    judge.close()
    rm = _optimized_rm(cfg, judge_path, device)
    if rm is not None:
        yield ("rm_scores",), _prefilled(rm, messages, answer_texts), None
        rm.close()


def _prefilled(scorer, messages: list[list[dict]], texts_lists: list[list[str]]):
    """`scorer` with every answer of `texts_lists` scored in one call (`_Prefilled`) where it
    scores a prompt's answers in one row (a classifier with shared_prompt); else `scorer` itself."""
    first = scorer.backends[0] if isinstance(scorer, ScoresOnOneBase) else scorer
    if not (isinstance(first, ClassifierReward) and first.cfg.shared_prompt):
        return scorer
    return _Prefilled(scorer, messages, texts_lists)


class _Prefilled:
    """A model scorer (which ignores records) whose answers were all scored in one call, so that
    the answers to one prompt (the reference's, each policy's, the constant answers) share one
    row; `score` reads them back, and scores what it was not given up front. One score per
    (prompt, answer text), as `_score_both` has it: the same text, the same score."""

    def __init__(self, scorer, messages: list[list[dict]], texts_lists: list[list[str]]):
        self.scorer = scorer
        todo: dict[tuple[str, str], tuple[list[dict], str]] = {}
        for texts in texts_lists:
            for prompt, text in zip(messages, texts):
                todo.setdefault(self._key(prompt, text), (prompt, text))
        items = list(todo.values())
        scores = scorer.score([p for p, _ in items], [t for _, t in items]) if items else []
        self.cache = dict(zip(todo, scores))

    @staticmethod
    def _key(prompt: list[dict], text: str) -> tuple[str, str]:
        return json.dumps(prompt, sort_keys=True), text

    def score(self, prompts: list[list[dict]], completions: list[str], group_size: int = 1,
              records: list[dict] | None = None) -> list:
        keys = [self._key(p, c) for p, c in zip(prompts, completions)]
        missing = list(dict.fromkeys(k for k in keys if k not in self.cache))
        if missing:
            by_key = dict(zip(keys, zip(prompts, completions)))
            scored = self.scorer.score([by_key[k][0] for k in missing], [by_key[k][1] for k in missing])
            self.cache.update(zip(missing, scored))
        return [self.cache[k] for k in keys]


class _FirstOf:
    """The judge's view of a scorer that gives (judge, reward model) tuples: the first of each."""

    def __init__(self, scorer):
        self.scorer = scorer

    def score(self, prompts, completions, group_size: int = 1, records=None) -> list[float]:
        return [scores[0] for scores in self.scorer.score(prompts, completions, group_size, records)]


def _assign(answers: Answers, fields: tuple[str, ...], scores: list) -> None:
    """A scorer's scores into `answers`: a list of floats for one field, of tuples for several."""
    if len(fields) == 1:
        setattr(answers, fields[0], list(scores))
        return
    for field, column in zip(fields, zip(*scores) if scores else [()] * len(fields)):
        setattr(answers, field, list(column))


def _scores_of(answers: Answers, fields: tuple[str, ...]) -> list:
    """What `_assign` put into `answers` for `fields`, as the scorer gave it."""
    if len(fields) == 1:
        return getattr(answers, fields[0])
    return list(zip(*(getattr(answers, field) for field in fields)))


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
    messages, prompt_ids, dropped, records = eval_prompts(cfg, tokenizer)
    print(f"[eval] {label}: policy {policy_path} vs reference {reference_path} ({reference_source})\n"
          f"[eval] {len(prompt_ids)} {e.split} prompts "
          f"({dropped} dropped as too long); {'greedy' if e.greedy else f'temperature {e.temperature}'}, "
          f"up to {e.max_new_tokens} new tokens", flush=True)

    policy = load_frozen(policy_path, cfg.model, device)
    reference = load_frozen(reference_path, reference_model_cfg, device)
    ours = _answer(policy, tokenizer, prompt_ids, cfg, cfg.model)
    theirs = _answer(reference, tokenizer, prompt_ids, cfg, reference_model_cfg)
    kl = policy_kl(policy, reference, prompt_ids, ours.tokens, tokenizer.pad_token_id, e.batch_size, device)
    del policy, reference

    judge_path = _judge_path(cfg)
    for fields, scorer, judge in _scorers(cfg, judge_path, device, messages, [ours.texts, theirs.texts]):
        policy_scores, reference_scores = _score_both(scorer, messages, ours.texts, theirs.texts, records)
        _assign(ours, fields, policy_scores)
        _assign(theirs, fields, reference_scores)
        if judge is not None:
            constant_scores = _score_constant_answers(judge, messages, theirs.texts, theirs.scores, records)

    summary = {
        "label": label, "policy": str(policy_path), "reference": str(reference_path), "reference_source": reference_source,
        "judge": _judge_name(cfg, judge_path), **compare(ours, theirs, kl),
        "constant_answers": _constant_figures(constant_scores, theirs.scores), "seconds": time.time() - started,
    }
    if e.verifier:
        summary["exact_match"] = verified_accuracy(ours.scores, theirs.scores)
    _write_evaluation(run_dir / "eval", summary, messages, ours, theirs, kl, constant_scores, records)
    print(format_summary(summary), flush=True)
    return summary


def _constant_figures(constant_scores: dict[str, list[float]], reference_scores: list[float]) -> dict:
    """Per constant answer: its text, the judge's mean score and its win rate against the reference's answers."""
    constant = {}
    for kind, scores in constant_scores.items():
        cwr = losses.win_rate(scores, reference_scores)
        constant[kind] = {"text": CONSTANT_ANSWER_TEXT[kind], "mean_score": sum(scores) / len(scores),
                          "win_rate": cwr["win_rate"], "ci_low": cwr["ci_low"], "ci_high": cwr["ci_high"]}
    return constant


def _write_evaluation(out: Path, summary: dict, messages, ours: Answers, theirs: Answers, kl: list[float],
                      constant_scores: dict[str, list[float]], records: list[dict]) -> None:
    """eval/<label>.json, eval/<label>_samples.jsonl (every answer beside the reference's, with
    scores, KL and degeneration measures) and the figures on the policy's model card."""
    label, policy_path = summary["label"], summary["policy"]
    out.mkdir(parents=True, exist_ok=True)
    rows = [json.dumps({
        "prompt": m, "policy": pt, "reference": rt_, "policy_score": ps, "reference_score": rs,
        "policy_tokens": len(pa), "reference_tokens": len(ra), "policy_has_eos": pe, "reference_has_eos": re_, "kl": k_,
        "policy_degenerate": pm["degenerate"], "reference_degenerate": rm_["degenerate"],
        "policy_repetition": pm, "reference_repetition": rm_,
        "constant_scores": {kind: scores[i] for kind, scores in constant_scores.items()}, "record": records[i],
    }) for i, (m, pt, rt_, ps, rs, pa, ra, pe, re_, k_, pm, rm_) in enumerate(zip(
        messages, ours.texts, theirs.texts, ours.scores, theirs.scores, ours.tokens, theirs.tokens,
        ours.has_eos, theirs.has_eos, kl, ours.repetition, theirs.repetition))]
    _atomic_write(out / f"{label}_samples.jsonl", "\n".join(rows) + "\n")
    _atomic_write(out / f"{label}.json", json.dumps(summary, indent=1))
    if add_policy_evaluation(policy_path, summary):  # the policy's tiller model card gets the figures
        print(f"[eval] added the win rate to the model card {Path(policy_path) / 'README.md'}", flush=True)


def _pick(records: list[dict] | None, indices: list[int]) -> list[dict] | None:
    return None if records is None else [records[i] for i in indices]


def _score_both(scorer, messages, policy_texts: list[str], reference_texts: list[str],
                records: list[dict] | None = None) -> tuple[list[float], list[float]]:
    """Scores of both models' answers. Where the two answers are the same text, the reference's
    answer is not scored again but given the policy's score: the judge is a function of the text,
    and scoring it twice in differently padded batches can differ in the last bits (measured: 4e-7),
    which would turn a tie into a win or a loss."""
    policy_scores = scorer.score(messages, policy_texts, records=records)
    differ = [i for i, (p, r) in enumerate(zip(policy_texts, reference_texts)) if p != r]
    reference_scores = list(policy_scores)
    if differ:
        scored = scorer.score([messages[i] for i in differ], [reference_texts[i] for i in differ],
                              records=_pick(records, differ))
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


def _score_constant_answers(scorer, messages, reference_texts: list[str], reference_scores: list[float],
                            records: list[dict] | None = None) -> dict[str, list[float]]:
    """The judge's score of each constant answer on each prompt, all in one call to `scorer`
    (the one that scored the policy's answers). A constant answer that is the reference's own
    answer gets the reference's score, a tie by construction as in `_score_both`."""
    answers = constant_answers(messages)
    todo = [(kind, i) for kind, texts in answers.items() for i, text in enumerate(texts) if text != reference_texts[i]]
    scored = scorer.score([messages[i] for _, i in todo], [answers[kind][i] for kind, i in todo],
                          records=_pick(records, [i for _, i in todo])) if todo else []
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
    if "exact_match" in s:
        x = s["exact_match"]
        lines += [
            f"  exact-match accuracy    policy {x['policy_accuracy']:.3f} (95% CI {x['policy_ci_low']:.3f}-"
            f"{x['policy_ci_high']:.3f}; {x['policy_correct']} of {x['n']}) | reference {x['reference_accuracy']:.3f} "
            f"(95% CI {x['reference_ci_low']:.3f}-{x['reference_ci_high']:.3f}; {x['reference_correct']} of {x['n']})",
            f"  accuracy gain           {x['difference']:+.3f}  (paired 95% CI {x['difference_ci_low']:+.3f} to "
            f"{x['difference_ci_high']:+.3f}; {x['gained']} questions gained, {x['lost']} lost)",
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


# ----------------------------------------------------------------------------- every policy stage side by side


def common_reference(cfg: Config, stages: list[str]) -> tuple[str, str | None, str]:
    """(reference, its revision, where that choice comes from) for evaluating `stages` side by
    side: eval.reference when set; else what the first of them started from (its started_from.json:
    the run's starting model, since the stages after it start from it or from its output)."""
    if cfg.eval.reference:
        return cfg.eval.reference, cfg.model.revision, "eval.reference"
    first = Path(cfg.run_dir) / stages[0]
    origin = read_origin(first)
    return origin["model"], origin.get("revision"), f"what {stages[0]}, the first policy stage, started from ({first / STARTED_FROM})"


def run_policies(cfg: Config, stages: list[str]) -> dict:
    """The pipeline's eval stage: every policy stage of `stages` (in that order) against ONE
    reference (`common_reference`), on the same prompts with the same judge, so their figures
    stand side by side; a dpo that started from sft's output is measured against the run's
    start, like sft itself (each stage's own start is in the table). The reference's answers
    are generated, scored and scored against the constant answers once; each policy's answers
    are generated with their KL to the reference, then scored. Every figure is `compare`'s, as
    in `tiller eval policy`, so each stage's eval/<stage>.json is what `tiller eval policy` writes
    with eval.policy=<stage>/model and eval.reference set to the same reference. Writes those,
    and eval/policies.json with every stage's summary.

    With eval.seeds, every model answers once per seed (the reference too: a verdict compares
    answers sampled with the same seed per prompt); the first seed's figures are the summary as
    above, and each stage's summary adds the figures of every seed and their spread (`seed_spread`)."""
    e = cfg.eval
    run_dir = Path(cfg.run_dir)
    if not stages:
        raise FileNotFoundError(f"no trained policy stage in {run_dir} (a stage folder with model/ and {STARTED_FROM})")
    seeds = list(e.seeds) or [cfg.seed]
    seeded = {seed: dataclasses.replace(cfg, seed=seed) for seed in seeds}  # _answer samples prompt i with seed + i
    paths = {s: str(run_dir / s / "model") for s in stages}
    reference_path, reference_revision, reference_source = common_reference(cfg, stages)
    reference_cfg = dataclasses.replace(cfg.model, revision=reference_revision)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.time()

    tokenizer = load_tokenizer(paths[stages[0]], cfg.model)
    messages, prompt_ids, dropped, records = eval_prompts(cfg, tokenizer)
    print(f"[eval] {', '.join(stages)} side by side against {reference_path} ({reference_source})\n"
          f"[eval] {len(prompt_ids)} {e.split} prompts ({dropped} dropped as too long); "
          f"{'greedy' if e.greedy else f'temperature {e.temperature}'}, up to {e.max_new_tokens} new tokens"
          + (f"; seeds {seeds}" if e.seeds else ""), flush=True)
    reference = load_frozen(reference_path, reference_cfg, device)
    theirs = {seed: _answer(reference, tokenizer, prompt_ids, seeded[seed], reference_cfg) for seed in seeds}
    seconds = {"reference": time.time() - started}
    answered: dict[str, dict[int, tuple[Answers, list[float]]]] = {}
    for stage in stages:  # one policy in memory at a time, beside the reference
        t0 = time.time()
        policy = load_frozen(paths[stage], cfg.model, device)
        answered[stage] = {seed: _answer_with_kl(policy, reference, tokenizer, prompt_ids, seeded[seed], cfg.model, device)
                           for seed in seeds}
        del policy
        seconds[stage] = time.time() - t0
    del reference

    # Scores after every model is freed, as in the curve: the judge and the reward model need the memory.
    judge_path = _judge_path(cfg)
    everyone = [theirs[seed].texts for seed in seeds] + [ours.texts for by_seed in answered.values()
                                                          for ours, _ in by_seed.values()]
    t0 = time.time()
    for fields, scorer, judge in _scorers(cfg, judge_path, device, messages, everyone):
        # A model scorer scored every answer as it was made (`_Prefilled`): that counts as the reference's time.
        for seed in seeds:
            _assign(theirs[seed], fields, scorer.score(messages, theirs[seed].texts, records=records))
        if judge is not None:
            constant_scores = _score_constant_answers(judge, messages, theirs[seeds[0]].texts, theirs[seeds[0]].scores,
                                                      records)
        seconds["reference"] += time.time() - t0
        for stage, by_seed in answered.items():
            t0 = time.time()
            for seed, (ours, _) in by_seed.items():
                _assign(ours, fields, _score_against(scorer, messages, ours.texts, theirs[seed].texts,
                                                     _scores_of(theirs[seed], fields), records))
            seconds[stage] += time.time() - t0
        t0 = time.time()  # the next scorer's loading and scoring counts as the reference's

    first = seeds[0]
    constant = _constant_figures(constant_scores, theirs[first].scores)
    summaries = {}
    for stage, by_seed in answered.items():
        origin = read_origin(run_dir / stage)
        ours, kl = by_seed[first]
        summary = {
            "label": stage, "policy": paths[stage], "reference": str(reference_path),
            "reference_source": reference_source, "started_from": origin["model"],
            "started_from_label": _start_label(origin["model"], paths, str(reference_path)),
            "started_from_chosen_by": origin.get("chosen_by"), "judge": _judge_name(cfg, judge_path),
            **compare(ours, theirs[first], kl), "constant_answers": constant, "seconds": seconds[stage],
        }
        if e.verifier:
            summary["exact_match"] = verified_accuracy(ours.scores, theirs[first].scores)
        if e.seeds:
            per_seed = [{"seed": seed, **compare(by_seed[seed][0], theirs[seed], by_seed[seed][1])} for seed in seeds]
            summary["seeds"] = {"per_seed": per_seed, "spread": seed_spread(per_seed)}
        _write_evaluation(run_dir / "eval", summary, messages, ours, theirs[first], kl, constant_scores, records)
        summaries[stage] = summary
    side_by_side = {"stages": list(stages), "reference": str(reference_path), "reference_source": reference_source,
                    "judge": _judge_name(cfg, judge_path), "n": len(prompt_ids), "split": e.split, "seeds": seeds,
                    "reference_seconds": seconds["reference"], "seconds": time.time() - started, "policies": summaries}
    _atomic_write(run_dir / "eval" / POLICIES_FILE, json.dumps(side_by_side, indent=1))
    print(format_side_by_side(side_by_side), flush=True)
    print(f"[eval] wrote {run_dir / 'eval' / POLICIES_FILE} and eval/<stage>.json for each", flush=True)
    return side_by_side


SPREAD_KEYS = ("win_rate", "guarded_win_rate", "lc_win_rate", "reward_improvement", "kl_mean", "length_ratio",
               "degenerate_policy")


def seed_spread(rows: list[dict], keys: tuple[str, ...] = SPREAD_KEYS) -> dict:
    """Per figure, its mean, sample standard deviation (n - 1; 0.0 for one row), min and max over
    `rows` (one `compare` result per sampling seed): how much of a difference between two
    policies the sampling alone can make."""
    out = {}
    for key in keys:
        values = [float(r[key]) for r in rows]
        mean = sum(values) / len(values)
        sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else 0.0
        out[key] = {"mean": mean, "sd": sd, "min": min(values), "max": max(values)}
    return out


def _start_label(start: str, paths: dict[str, str], reference: str) -> str:
    """A short name for what a stage started from: the stage whose output it is, "reference", or the model."""
    stage = next((s for s, path in paths.items() if Path(path).resolve() == Path(start).resolve()), None)
    return f"{stage} output" if stage else "reference" if start == reference else start


def format_side_by_side(s: dict) -> str:
    """eval/policies.json as a table, one column per policy stage."""
    stages = s["stages"]
    p = s["policies"]

    def ci(value: float, low: float, high: float, fmt: str = ".3f") -> str:
        return f"{value:{fmt}} [{low:{fmt}}, {high:{fmt}}]"

    rows = [
        ("started from", [str(p[x].get("started_from_label", p[x]["started_from"])) for x in stages]),
        ("win rate [95% CI]", [ci(p[x]["win_rate"], p[x]["ci_low"], p[x]["ci_high"]) for x in stages]),
        ("guarded win rate [95% CI]", [ci(p[x]["guarded_win_rate"], p[x]["guarded_ci_low"], p[x]["guarded_ci_high"])
                                       for x in stages]),
        ("length-controlled win rate", [f"{p[x]['lc_win_rate']:.3f}" for x in stages]),
        ("judge improvement [95% CI]", [ci(p[x]["reward_improvement"], p[x]["reward_improvement_ci_low"],
                                           p[x]["reward_improvement_ci_high"], "+.3f") for x in stages]),
        ("KL (nats per answer)", [f"{p[x]['kl_mean']:.3f}" for x in stages]),
        ("length ratio", [f"{p[x]['length_ratio']:.2f}" for x in stages]),
        ("degenerate policy / reference", [f"{p[x]['degenerate_policy']} / {p[x]['degenerate_reference']}"
                                           for x in stages]),
        ("time (s)", [f"{p[x]['seconds']:.0f}" for x in stages]),
    ]
    if all("exact_match" in p[x] for x in stages):
        rows.insert(1, ("exact-match accuracy", [f"{p[x]['exact_match']['policy_accuracy']:.3f}" for x in stages]))
    if all("seeds" in p[x] for x in stages):
        def spread(x: str, key: str, fmt: str) -> str:
            v = p[x]["seeds"]["spread"][key]
            return f"{v['mean']:{fmt}} ± {v['sd']:.3f} [{v['min']:{fmt}}, {v['max']:{fmt}}]"

        k = len(s["seeds"])
        rows += [(f"win rate, {k} seeds: mean ± sd [min, max]", [spread(x, "win_rate", ".3f") for x in stages]),
                 (f"guarded win rate, {k} seeds", [spread(x, "guarded_win_rate", ".3f") for x in stages]),
                 (f"judge improvement, {k} seeds", [spread(x, "reward_improvement", "+.3f") for x in stages])]
    width = [max(len(x), *(len(cells[i]) for _, cells in rows)) for i, x in enumerate(stages)]
    label_width = max(len(name) for name, _ in rows)
    lines = [f"policies side by side on {s['n']} held-out prompts against {s['reference']} ({s['reference_source']}; "
             f"judge: {s['judge']}; reference answered and scored in {s['reference_seconds']:.0f} s"
             + (f"; seed {s['seeds'][0]}, then the spread over seeds {s['seeds']}" if len(s.get("seeds", [])) > 1 else "")
             + ")",
             f"  {'':<{label_width}}  " + "  ".join(f"{x:>{w}}" for x, w in zip(stages, width))]
    lines += [f"  {name:<{label_width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cells, width)) for name, cells in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the over-optimization curve

CURVE_FILE = "curve.jsonl"  # in <run_dir>/eval/: one row per evaluated model of each policy stage
POLICY_STAGES = ("rloo", "ppo", "dpo")  # cli.py lists them too (`eval curve --stage`)
# Where each policy stage sets its save cadence and how many checkpoints it keeps (it deletes the
# older ones as it trains): the curve can only use the checkpoints kept.
CHECKPOINT_KEYS = {"rloo": ("rloo.save_every", "rloo.keep_checkpoints"),
                   "ppo": ("ppo.save_every", "ppo.keep_checkpoints"),
                   "dpo": ("dpo.train.save_every", "dpo.train.keep_checkpoints")}


def _score_against(scorer, messages, texts: list[str], reference_texts: list[str],
                   reference_scores: list[float], records: list[dict] | None = None) -> list[float]:
    """Scores of one model's answers against reference answers that were scored once already:
    an answer that is the reference's own text gets the reference's score (a tie, as in
    `_score_both`), the others are scored in one call."""
    scores = list(reference_scores)
    differ = [i for i, (t, r) in enumerate(zip(texts, reference_texts)) if t != r]
    if differ:
        for i, value in zip(differ, scorer.score([messages[i] for i in differ], [texts[i] for i in differ],
                                                 records=_pick(records, differ))):
            scores[i] = value
    return scores


def _answer_with_kl(model, reference, tokenizer, prompt_ids, cfg: Config, model_cfg, device,
                    engine=None) -> tuple[Answers, list[float]]:
    answers = _answer(model, tokenizer, prompt_ids, cfg, model_cfg, engine)
    kl = policy_kl(model, reference, prompt_ids, answers.tokens, tokenizer.pad_token_id, cfg.eval.batch_size, device)
    return answers, kl


def _model_for_checkpoints(cfg: Config, stage: str, start: str, start_cfg,
                           device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(the model `stage`'s checkpoints load into, the policy in it that answers), in eval mode: no
    dropout in the answers or the KL forwards. A ppo checkpoint holds the policy and the value
    model as one module, so the whole bundle is built as ppo built it (the same trained tensor
    names) and its policy answers; the other stages' checkpoints hold the policy alone."""
    if stage != "ppo":
        policy, _ = load_policy(start, start_cfg, getattr(cfg, stage).lora, device, adapter="merge")
        return policy.eval(), policy
    bundle, _ = build_policy_with_value(start, start_cfg, cfg.ppo, device)
    if bundle.shared:
        # The policy's own adapter answers and is the one compared with the reference, not "value"
        # (active already: only the bundle's value forward switches, and the curve never runs it).
        use_adapter(bundle.policy, POLICY_ADAPTER)
    return bundle.eval(), bundle.policy


def _final_step(stage_dir: Path) -> int | None:
    """The step count the stage wrote in its DONE marker ("24 steps"); None without one."""
    try:
        return int((stage_dir / "DONE").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def run_curve(cfg: Config, stage: str | None = None, stages: tuple[str, ...] = POLICY_STAGES) -> list[dict]:
    """`tiller eval curve`: the over-optimization curve of `stage`, or of every stage of `stages`
    that left a saved model or checkpoints in the run folder. Each stage's rows replace its
    earlier rows in <run_dir>/eval/curve.jsonl (other stages' rows stay); returns the new rows."""
    run_dir = Path(cfg.run_dir)
    if stage is not None and stage not in POLICY_STAGES:
        raise ValueError(f"--stage {stage}: the curve evaluates the checkpoints of a policy stage, one of {POLICY_STAGES}")
    chosen = [stage] if stage else [s for s in stages if (run_dir / s / "model").exists()
                                    or list_checkpoints(run_dir / s / "checkpoints")]
    if not chosen:
        raise FileNotFoundError(f"no policy stage to curve in {run_dir}: no saved model or checkpoint of "
                                f"{' or '.join(stages) or 'a policy stage (none is in pipeline.stages)'} (train one first)")
    rows = []
    for name in chosen:
        stage_rows = _stage_curve(cfg, name)
        _write_curve_rows(run_dir / "eval" / CURVE_FILE, name, stage_rows)
        print(format_curve(stage_rows), flush=True)
        rows += stage_rows
    print(f"[curve] wrote {run_dir / 'eval' / CURVE_FILE}", flush=True)
    return rows


def _stage_curve(cfg: Config, stage: str) -> list[dict]:
    """Rows of one stage's curve: its starting model (step 0), each intact checkpoint, and the
    final model, each evaluated as `tiller eval policy` evaluates a policy: the same prompts,
    reference, judge and optimized reward model. The reference's answers and their scores are
    computed once and reused for every row."""
    from tqdm.auto import tqdm

    e = cfg.eval
    run_dir = Path(cfg.run_dir)
    stage_dir = run_dir / stage
    final = stage_dir / "model"
    checkpoints = []
    for path in list_checkpoints(stage_dir / "checkpoints"):
        problems = verify_checkpoint(path)
        if problems:
            print(f"[curve] {path} is damaged, left out:\n  " + "\n  ".join(problems), flush=True)
        else:
            checkpoints.append(path)
    if not checkpoints and not final.exists():
        raise FileNotFoundError(f"nothing to curve in {stage_dir}: no intact checkpoint and no saved model "
                                f"(run tiller {stage} first)")
    # The checkpoints hold what the stage trained (a LoRA adapter or every weight): they load into
    # the model the stage started from, built with the stage's LoRA settings.
    origin = read_origin(stage_dir)
    if origin is not None:
        start, start_cfg = origin["model"], dataclasses.replace(cfg.model, revision=origin.get("revision"))
    else:
        start, start_cfg = policy_start(cfg, stage)[0], cfg.model
    reference_path, reference_revision, reference_source = reference_for(cfg, str(final))
    reference_cfg = dataclasses.replace(cfg.model, revision=reference_revision)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.time()

    tokenizer = load_tokenizer(str(final) if final.exists() else start, cfg.model)
    messages, prompt_ids, dropped, records = eval_prompts(cfg, tokenizer)
    every_key, keep_key = CHECKPOINT_KEYS[stage]
    steps = ", ".join(p.name for p in checkpoints) or "none"
    print(f"[curve] {stage}: the start {start}, checkpoints {steps}"
          f"{', the final model ' + str(final) if final.exists() else ' (no final model yet)'}\n"
          f"[curve] reference {reference_path} ({reference_source}); {len(prompt_ids)} {e.split} prompts "
          f"({dropped} dropped as too long); {'greedy' if e.greedy else f'temperature {e.temperature}'}, "
          f"up to {e.max_new_tokens} new tokens", flush=True)
    every = get_key(cfg, every_key)
    if checkpoints and every and int(checkpoints[0].name.split("-")[1]) > every:
        print(f"[curve] the earliest checkpoint kept is {checkpoints[0].name} but {every_key} is {every}: the stage "
              f"deleted the earlier ones as it trained ({keep_key} = {get_key(cfg, keep_key)} keeps the newest); set "
              f"{keep_key} higher before training to curve over more", flush=True)

    reference = load_frozen(reference_path, reference_cfg, device)
    theirs = _answer(reference, tokenizer, prompt_ids, cfg, reference_cfg)
    points: list[tuple[int | None, str, str, Answers, list[float]]] = []  # (step, which, model, answers, KL)
    bar = tqdm(total=1 + len(checkpoints) + final.exists(), desc=f"curve {stage}", disable=not show_progress())
    if start == reference_path and start_cfg.revision == reference_revision:
        # The starting model is the reference: its answers are the reference's (greedy, or seeded
        # per prompt alike), its KL to itself is 0 and every verdict a tie; nothing to generate again.
        points.append((0, "start", start, Answers(theirs.tokens, theirs.has_eos, theirs.texts), [0.0] * len(prompt_ids)))
    else:  # eval.reference names another model: the start is evaluated like the others
        model = load_frozen(start, start_cfg, device)
        points.append((0, "start", start, *_answer_with_kl(model, reference, tokenizer, prompt_ids, cfg, start_cfg, device)))
        del model
    bar.update(1)
    if checkpoints:
        loaded, policy = _model_for_checkpoints(cfg, stage, start, start_cfg, device)
        # One vLLM engine for every checkpoint: each is loaded into the same model and synced.
        engine = make_engine(e.engine, policy, tokenizer, cfg.rloo.rollout, start_cfg) if e.engine == "vllm" else None
        try:
            for path in checkpoints:
                step = int(load_model_weights(path, loaded)["step"])
                points.append((step, path.name, str(path), *_answer_with_kl(policy, reference, tokenizer, prompt_ids, cfg,
                                                                            start_cfg, device, engine)))
                bar.update(1)
        finally:
            if engine is not None:
                engine.close()
        del loaded, policy
    if final.exists():
        model = load_frozen(str(final), cfg.model, device)
        points.append((_final_step(stage_dir), "final", str(final),
                       *_answer_with_kl(model, reference, tokenizer, prompt_ids, cfg, cfg.model, device)))
        del model
        bar.update(1)
    bar.close()
    del reference

    # Scores after every model is freed: the judge and the reward model need the memory.
    judge_path = _judge_path(cfg)
    for fields, scorer, _ in _scorers(cfg, judge_path, device, messages,
                                      [theirs.texts] + [answers.texts for _, _, _, answers, _ in points]):
        _assign(theirs, fields, scorer.score(messages, theirs.texts, records=records))
        for _, _, _, answers, _ in points:
            _assign(answers, fields, _score_against(scorer, messages, answers.texts, theirs.texts,
                                                    _scores_of(theirs, fields), records))
    judge = _judge_name(cfg, judge_path)
    seconds = time.time() - started
    print(f"[curve] {stage}: {len(points)} models evaluated in {seconds:.0f} s", flush=True)
    return [{"stage": stage, "step": step, "checkpoint": which, "model": model, "reference": str(reference_path),
             "judge": judge, **compare(answers, theirs, kl)} for step, which, model, answers, kl in points]


def _write_curve_rows(path: Path, stage: str, rows: list[dict]) -> None:
    """Replace `stage`'s rows of the curve file with `rows`, keeping the other stages' rows."""
    kept = []
    if path.is_file():
        kept = [row for row in (json.loads(line) for line in path.read_text().splitlines() if line.strip())
                if row.get("stage") != stage]
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, "".join(json.dumps(row) + "\n" for row in kept + rows))


def format_curve(rows: list[dict]) -> str:
    """The curve of one stage as a table: per model, its KL to the reference, the judge's and the
    optimized reward model's mean reward (gain over the reference's answers in parentheses), the
    judge's win rate with its interval, the guarded win rate, mean length and degenerate answers."""
    if not rows:
        return "over-optimization curve: no rows"
    first = rows[0]
    lines = [f"over-optimization curve of '{first['stage']}' on {first['n']} held-out prompts (judge: {first['judge']}; "
             f"reference: {first['reference']})",
             f"  {'step':>5}  {'model':<12} {'KL':>7}  {'judge reward (gain)':<20} {'optimized RM (gain)':<20} "
             f"{'win rate [95% CI]':<21} {'guarded':>7}  {'length':>6}  {'degenerate':>10}"]
    for r in rows:
        step = "-" if r.get("step") is None else str(r["step"])
        judge = f"{r['reward_policy_mean']:+.3f} ({r['reward_policy_mean'] - r['reward_reference_mean']:+.3f})"
        rm = "-"
        if "optimized_rm_policy_mean" in r:
            rm = f"{r['optimized_rm_policy_mean']:+.3f} ({r['optimized_rm_policy_mean'] - r['optimized_rm_reference_mean']:+.3f})"
        wr = f"{r['win_rate']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
        lines.append(f"  {step:>5}  {r['checkpoint']:<12} {r['kl_mean']:>7.3f}  {judge:<20} {rm:<20} {wr:<21} "
                     f"{r['guarded_win_rate']:>7.3f}  {r['policy_mean_length']:>6.1f}  {r['degenerate_policy']:>10}")
    return "\n".join(lines)
