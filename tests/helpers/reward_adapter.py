"""A reward stage's output as the flagship recipe saves it, for the RL stages' shared-base tests."""

from __future__ import annotations

from pathlib import Path

import torch


def reward_adapter_folder(folder: Path, base: Path, last_n_layers: int = 0, seed: int = 0) -> Path:
    """A reward stage's output as the flagship recipe saves it: a LoRA adapter with its trained
    score head on the policy's base (random non-zero B and head, drawn from `seed`, standing in
    for training)."""
    from tiller.config import LoraConfig
    from tiller.models import apply_lora, load_reward_model, load_tokenizer, save_model

    torch.manual_seed(seed)
    model = apply_lora(load_reward_model(str(base), pad_token_id=0),
                       LoraConfig(r=4, alpha=8, dropout=0.0, last_n_layers=last_n_layers), "SEQ_CLS")
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n or "score" in n:
                p.normal_(0.0, 0.3)
    return save_model(model, load_tokenizer(str(base)), folder, merge_lora=False)
