"""The policy evaluation's KL: exact per-position KL along the policy's answers."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM

from tiller.recipes.evaluate import policy_kl


def test_policy_kl_is_the_exact_kl_summed_over_each_answer(tiny_llama):
    reference = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    policy = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    prompts = [[5, 6, 7], [8, 9]]
    answers = [[10, 11, 12, 13], [14]]  # different lengths: padding must not count
    kl = policy_kl(policy, reference, prompts, answers, pad_id=0, batch_size=2, device="cpu")

    expected = []
    with torch.no_grad():
        for prompt, answer in zip(prompts, answers):
            ids = torch.tensor([prompt + answer])
            log_p = torch.log_softmax(policy(ids).logits[0], -1)
            log_q = torch.log_softmax(reference(ids).logits[0], -1)
            # positions len(prompt) - 1 .. end - 1 predict the answer's tokens
            rows = slice(len(prompt) - 1, len(prompt) + len(answer) - 1)
            expected.append(float((log_p.exp() * (log_p - log_q)).sum(-1)[rows].sum()))
    torch.testing.assert_close(torch.tensor(kl), torch.tensor(expected), atol=1e-4, rtol=1e-4)
    assert all(v > 0 for v in kl)
    assert policy_kl(reference, reference, prompts, answers, 0, 2, "cpu") == [0.0, 0.0]
