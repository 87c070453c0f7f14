"""A trained sequence-classifier reward model (the output of `tiller reward`).

Completions are decoded text; they are re-rendered with the reward model's own tokenizer and
chat template, so a reward model with another tokenizer than the policy works as it is.
"""

from __future__ import annotations

import json

import torch

from tiller.config import ModelConfig, RewardBackendConfig
from tiller.batching import prompt_group_batches, run_in_length_batches
from tiller.chat import render_conversation
from tiller.models import load_reward_model, load_tokenizer
from tiller.rewards import strip_thinking
from tiller.score_head import ScoreHead, score_groups, score_sequences, scores_tolerance


class ClassifierReward:
    """`scorer` (ids, mask -> scores) replaces the model loaded from `path`: a reward adapter on
    the policy's own base (`tiller.rewards.shared_base`); the tokenizer still comes from `path`."""

    def __init__(self, path: str, cfg: RewardBackendConfig, device: str = "cpu", model_cfg: ModelConfig | None = None,
                 scorer=None):
        self.cfg = cfg
        self.device = device
        self.tokenizer = load_tokenizer(path, model_cfg)
        if scorer is None:
            model = load_reward_model(path, model_cfg, device=device, pad_token_id=self.tokenizer.pad_token_id)
            model.eval()
            scorer = ScoreHead(model)
        self.scorer = scorer
        self.path = path
        self.skipped_too_long = 0
        self.grouped: bool | None = None  # one row per prompt (cfg.shared_prompt): None until checked
        # Padded batches: packing into one row was measured no faster here (bench/README.md).
        self.packed = False

    def encode(self, prompt: list[dict], completion: str) -> list[int]:
        text = strip_thinking(completion) if self.cfg.strip_thinking else completion
        _, full = render_conversation(self.tokenizer, prompt, text)
        ids = self.tokenizer(full, add_special_tokens=False)["input_ids"]
        if len(ids) > self.cfg.max_length:
            # Keep the end (the answer and the end of turn the score is read at); count it.
            self.skipped_too_long += 1
            ids = ids[-self.cfg.max_length:]
        return ids

    @torch.no_grad()
    def score(self, prompts: list[list[dict]], completions: list[str], group_size: int = 1,
              records: list[dict] | None = None) -> list[float]:
        encoded = [self.encode(p, c) for p, c in zip(prompts, completions)]
        keys = [json.dumps(p, sort_keys=True) for p in prompts]
        if self.cfg.shared_prompt and self.grouped is not False and len(set(keys)) < len(keys):
            return self._score_grouped(encoded, keys)

        def score_batch(batch: list[int]) -> list[float]:
            out = score_sequences(self.scorer, [encoded[i] for i in batch], self.tokenizer.pad_token_id, self.device,
                                  self.packed)
            return out.float().cpu().tolist()

        # Batches of similar length: in the demo's evaluation, batches in prompt order were a third
        # padding (16,560 tokens for 9,968 real ones); sorted, 11,104.
        return run_in_length_batches([len(ids) for ids in encoded], self.cfg.batch_size, score_batch)

    def _score_grouped(self, encoded: list[list[int]], keys: list[str]) -> list[float]:
        """The answers to one prompt in one row, the prompt's tokens once (`score_groups`); the
        first batch is also scored padded, and grouping is kept only if the two agree."""
        results: list[float] = [0.0] * len(encoded)
        pad = self.tokenizer.pad_token_id
        for batch in prompt_group_batches(keys, [len(ids) for ids in encoded], self.cfg.batch_size):
            flat = [encoded[i] for group in batch for i in group]
            if self.grouped is False:
                scores = score_sequences(self.scorer, flat, pad, self.device, False).float().cpu()
            else:
                try:
                    scores = score_groups(self.scorer, [[encoded[i] for i in group] for group in batch], pad,
                                          self.device).float().cpu()
                except (RuntimeError, ValueError):  # an attention implementation that refuses a 4D mask
                    if self.grouped:
                        raise
                    scores = torch.full((len(flat),), float("inf"))  # fails the check below
                if self.grouped is None:
                    padded = score_sequences(self.scorer, flat, pad, self.device, False).float().cpu()
                    diff = float((scores - padded).abs().max())
                    self.grouped = diff <= scores_tolerance(self.scorer) * max(1.0, float(padded.abs().max()))
                    print(f"[tiller] reward model {self.path}: " + (
                        f"the answers to one prompt scored in one row, the prompt once (checked equal to padded "
                        f"scoring, max diff {diff:.1e})" if self.grouped else
                        f"rows of one prompt's answers give other scores than padding (max diff {diff:.1e}): padded"),
                        flush=True)
                    if not self.grouped:
                        scores = padded
            for i, value in zip([i for group in batch for i in group], scores.tolist()):
                results[i] = value
        return results

    def close(self) -> None:
        """A reward adapter on the policy's base leaves it (the policy is saved without it); a
        model of its own is let go, so that the next model can have its memory."""
        if hasattr(self.scorer, "detach_adapter"):
            self.scorer.detach_adapter()
        self.scorer = None
