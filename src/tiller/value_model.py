"""PPO's value model beside its policy, as one module.

`PolicyWithValue` holds the policy (a causal LM, peft-wrapped under LoRA) and the value model:
a second copy of the starting model (with its own LoRA adapter under LoRA) whose decoder's last
hidden state feeds a Linear(hidden, 1) head, one value per token. One module, so that one
optimizer, one DDP wrapper and one checkpoint hold both, and one forward gives the policy's
logits and the values: DDP needs every trained parameter reached inside its forward.

The head starts at zero weight and bias: the first values are 0, the first advantages come from
the rewards alone, and the value model learns from the returns. A copy costs a second set of
base weights; one base with two adapters ("policy", "value") would not, and is not built yet.
"""

from __future__ import annotations

import torch

from tiller import losses
from tiller.batching import mask_positions
from tiller.models import base_hf_model


class PolicyWithValue(torch.nn.Module):
    def __init__(self, policy: torch.nn.Module, value_model: torch.nn.Module):
        super().__init__()
        self.policy = policy
        self.value_model = value_model
        hf = base_hf_model(value_model)
        weight = next(hf.parameters())
        self.value_head = torch.nn.Linear(hf.config.hidden_size, 1, dtype=weight.dtype, device=weight.device)
        torch.nn.init.zeros_(self.value_head.weight)
        torch.nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids, attention_mask, keep: int):
        """(logits, values) at the last `keep` positions."""
        positions = mask_positions(attention_mask)
        logits = self.policy(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                             logits_to_keep=keep, use_cache=False).logits
        hf = base_hf_model(self.value_model)
        body = getattr(hf, hf.base_model_prefix)  # the decoder without the LM head (LoRA layers stay in it)
        hidden = body(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                      use_cache=False).last_hidden_state[:, -keep:]
        return logits, self.value_head(hidden).squeeze(-1)


def completion_logprobs_and_values(model, input_ids, attention_mask, prompt_len: int, temperature: float,
                                   with_entropy: bool = False):
    """Per completion token [B, T]: the policy's log-prob of the sampled token, the value of the
    state before it (read at the same position as the logits that predict it), and optionally
    the entropy. Rows are [left-padded prompt | right-padded completion] (`build_batch`)."""
    completion_len = input_ids.shape[1] - prompt_len
    logits, values = model(input_ids, attention_mask, completion_len + 1)
    logits, values = logits[:, :-1], values[:, :-1]
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature  # the sampling distribution is the tempered one
    logps = losses.token_logprobs(logits, input_ids[:, prompt_len:])
    entropy = losses.token_entropy(logits.detach()) if with_entropy else None
    return logps, values.float(), entropy
