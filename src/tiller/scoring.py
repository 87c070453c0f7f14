"""Reading a sequence classifier's score at the last real token.

transformers' sequence classifiers find the last token by searching for the pad id, which is
wrong when the pad token also appears inside the text (SmolLM2's pad is its end-of-turn token).
`ScoreHead` runs the model body and reads the score head at the last position the attention
mask marks as real, for right and left padding alike. It is an nn.Module so DDP and FSDP wrap
it and see its forward.
"""

from __future__ import annotations

import torch


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last 1 in each row of a [B, T] mask (right or left padded)."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (positions * attention_mask.long()).argmax(dim=1)


def pad_batch(sequences: list[list[int]], pad_id: int, left: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.long)
    for i, s in enumerate(sequences):
        if left:
            ids[i, longest - len(s):] = torch.tensor(s)
            mask[i, longest - len(s):] = 1
        else:
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
    return ids, mask


def _hf_model(model: torch.nn.Module) -> torch.nn.Module:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class ScoreHead(torch.nn.Module):
    """Wraps a (possibly peft) *ForSequenceClassification model: ids, mask -> one score per row."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hf = _hf_model(self.model)
        body = getattr(hf, hf.base_model_prefix)
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        hidden = body(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state
        last = last_token_index(attention_mask)
        picked = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return hf.score(picked).squeeze(-1)
