"""A trained sequence-classifier reward model (the output of `tiller reward`).

Completions are decoded text; they are re-rendered with the reward model's own tokenizer and
chat template, so a reward model with another tokenizer than the policy works as it is.
"""

from __future__ import annotations

import torch

from tiller.config import ModelConfig, RewardBackendConfig
from tiller.batching import run_in_length_batches
from tiller.chat import render_conversation
from tiller.models import load_reward_model, load_tokenizer
from tiller.rewards import strip_thinking
from tiller.score_head import ScoreHead, score_sequences


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
        self.skipped_too_long = 0
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

        def score_batch(batch: list[int]) -> list[float]:
            out = score_sequences(self.scorer, [encoded[i] for i in batch], self.tokenizer.pad_token_id, self.device,
                                  self.packed)
            return out.float().cpu().tolist()

        # Batches of similar length: in the demo's evaluation, batches in prompt order were a third
        # padding (16,560 tokens for 9,968 real ones); sorted, 11,104.
        return run_in_length_batches([len(ids) for ids in encoded], self.cfg.batch_size, score_batch)

    def close(self) -> None:
        """A reward adapter on the policy's base leaves it (the policy is saved without it); a
        model of its own is let go, so that the next model can have its memory."""
        if hasattr(self.scorer, "detach_adapter"):
            self.scorer.detach_adapter()
        self.scorer = None
