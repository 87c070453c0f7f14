"""Tests for tiller.losses: hand-computed numbers, properties, loops vs vectorized code."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tiller.losses import (
    linear_token_kl,
    linear_token_logprobs,
    accuracy_interval,
    advantages_for,
    bradley_terry_loss,
    dpo_loss,
    dr_grpo_advantages,
    grpo_advantages,
    kl_per_token,
    masked_mean,
    masked_sum,
    paired_mean_interval,
    pairwise_accuracy,
    policy_loss,
    reinforce_pp_advantages,
    rloo_advantages,
    rloo_rewards,
    sequence_kl,
    sft_loss,
    sft_loss_sum,
    token_entropy,
    token_kl,
    token_logprobs,
    win_rate,
)

ATOL = 1e-5


def close(actual, expected, atol: float = ATOL) -> bool:
    return torch.allclose(torch.as_tensor(actual, dtype=torch.float64),
                          torch.as_tensor(expected, dtype=torch.float64), atol=atol, rtol=0)


def assert_metrics_detached(metrics: dict) -> None:
    for name, value in metrics.items():
        assert isinstance(value, torch.Tensor), name
        assert value.dim() == 0, name
        assert not value.requires_grad, name


# ------------------------------------------------------------------------------------------
# masked aggregation
# ------------------------------------------------------------------------------------------


def test_masked_mean_and_sum_hand_computed():
    values = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]], dtype=torch.bool)
    # all dims: (1 + 2) / 2 = 1.5 ; per row: [1.5, 0 (empty row)]
    assert close(masked_sum(values, mask), 3.0)
    assert close(masked_mean(values, mask), 1.5)
    assert close(masked_sum(values, mask, dim=-1), [3.0, 0.0])
    assert close(masked_mean(values, mask, dim=-1), [1.5, 0.0])
    # float mask weights: (1*1 + 2*0.5) / 1.5 = 4/3
    fmask = torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.0, 0.0]])
    assert close(masked_mean(values, fmask), 2.0 / 1.5)


def test_masked_mean_empty_mask_is_zero_with_finite_grad():
    values = torch.tensor([[1.0, float("nan"), float("inf")]], requires_grad=True)
    mask = torch.zeros(1, 3)
    out = masked_mean(values, mask)
    assert out.item() == 0.0
    out.backward()
    assert torch.isfinite(values.grad).all()
    # NaN under the mask does not leak when other tokens are real either
    mask2 = torch.tensor([[1.0, 0.0, 0.0]])
    assert masked_mean(values.detach(), mask2).item() == 1.0


# ------------------------------------------------------------------------------------------
# token_logprobs / token_entropy
# ------------------------------------------------------------------------------------------


def test_token_logprobs_hand_computed():
    # logits [0, ln 2, ln 3, 0]: softmax denominator 1 + 2 + 3 + 1 = 7 -> p(2) = 3/7
    logits = torch.tensor([[[0.0, math.log(2), math.log(3), 0.0]]])
    assert close(token_logprobs(logits, torch.tensor([[2]])), [[math.log(3 / 7)]])
    assert close(token_logprobs(logits, torch.tensor([[-100]])), [[0.0]])


def reference_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Plain torch.log_softmax + gather, with -100 -> 0."""
    valid = labels != -100
    lp = torch.log_softmax(logits.double(), dim=-1)
    picked = lp.gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
    return torch.where(valid, picked, torch.zeros_like(picked))


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 4, 7, 15, 16, 1024])
@pytest.mark.parametrize("sliced", [False, True])
def test_token_logprobs_matches_log_softmax_and_grad(chunk_size, sliced):
    torch.manual_seed(0)
    B, T, V = 3, 5, 11  # B*T = 15: chunk sizes 2, 4, 7, 16 do not divide it
    full = torch.randn(B, T + 2, V, requires_grad=True)
    # sliced: a time slice (non-flattenable, walked row by row) as callers take completions
    logits = full[:, 1:-1] if sliced else full[:, 1:-1].contiguous()
    assert logits.is_contiguous() != sliced  # contiguous: one flat [B*T, V] view
    labels = torch.randint(0, V, (B, T))
    labels[0, 2] = -100
    labels[2, 4] = -100
    weights = torch.randn(B, T)  # a non-trivial upstream gradient

    ours = token_logprobs(logits, labels, chunk_size=chunk_size)
    assert ours.shape == (B, T)
    (ours * weights).sum().backward()
    grad_ours = full.grad.clone()

    full.grad = None
    ref = reference_logprobs(logits, labels)
    (ref * weights.double()).sum().backward()

    assert close(ours, ref.detach(), 1e-5)
    assert close(grad_ours, full.grad, 1e-5)
    assert (ours[labels == -100] == 0).all()


def test_token_logprobs_loop_and_bf16():
    torch.manual_seed(1)
    logits = torch.randn(2, 4, 9)
    labels = torch.randint(0, 9, (2, 4))
    ours = token_logprobs(logits, labels, chunk_size=3)
    # plain Python loop over tokens: logit[label] - log(sum(exp(logits)))
    for b in range(2):
        for t in range(4):
            row = logits[b, t].tolist()
            expected = row[labels[b, t]] - math.log(sum(math.exp(x) for x in row))
            assert abs(ours[b, t].item() - expected) < 1e-5
    # bf16 logits are upcast: result is float32 and close to the float32 answer
    ours_bf16 = token_logprobs(logits.bfloat16(), labels, chunk_size=3)
    assert ours_bf16.dtype == torch.float32
    assert close(ours_bf16, reference_logprobs(logits.bfloat16().float(), labels), 1e-5)


def test_token_logprobs_gradcheck():
    torch.manual_seed(2)
    logits = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([[0, 4, -100], [2, 2, 1]])
    assert torch.autograd.gradcheck(lambda x: token_logprobs(x, labels, chunk_size=4), (logits,))


@pytest.mark.parametrize("chunk_size", [1, 4, 1024])
def test_token_entropy(chunk_size):
    # uniform over 4 -> ln 4 ; one-hot-ish (one huge logit) -> ~0
    logits = torch.tensor([[[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]]])
    assert close(token_entropy(logits, chunk_size), [[math.log(4), 0.0]])
    torch.manual_seed(3)
    full = torch.randn(3, 7, 6)
    x = full[:, 1:-1]
    p = torch.softmax(x, -1)
    expected = -(p * torch.log_softmax(x, -1)).sum(-1)
    assert close(token_entropy(x, chunk_size), expected)


def test_linear_token_logprobs_hand_computed():
    # hidden (1, 0), rows of weight (1, 0), (0, 1), (0, 0): logits (1, 0, 0), denominator e + 2.
    # log p(0) = 1 - ln(e + 2) = -0.5514448; p = (e, 1, 1) / (e + 2) = (0.5761169, 0.2119416, 0.2119416)
    # entropy = ln(e + 2) - p . logits = 1.5514448 - 0.5761169 = 0.9753279
    # d log p(0) / d hidden = w_0 - sum_v p_v w_v = (1 - 0.5761169, -0.2119416)
    # at temperature 2: logits (0.5, 0, 0), log p(1) = -ln(e^0.5 + 2) = -ln 3.6487213 = -1.2943768, and
    # d / d hidden = (w_1 - sum p w) / 2 = (-e^0.5 / (e^0.5 + 2), 1 - 1 / (e^0.5 + 2)) / 2 = (-0.2259314, 0.3629657)
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    hidden = torch.tensor([[1.0, 0.0]], requires_grad=True)
    logps, entropy = linear_token_logprobs(hidden, weight, torch.tensor([0]), with_entropy=True)
    assert close(logps, [-0.5514448]) and close(entropy, [0.9753279]) and not entropy.requires_grad
    logps.sum().backward()
    assert close(hidden.grad, [[0.4238831, -0.2119416]])
    hidden.grad = None
    logps, entropy = linear_token_logprobs(hidden, weight, torch.tensor([1]), temperature=2.0)
    assert close(logps, [-1.2943768]) and entropy is None
    logps.sum().backward()
    assert close(hidden.grad, [[-0.2259314, 0.3629657]])


@pytest.mark.parametrize("chunk_size", [1, 3, 7, None])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_linear_token_logprobs_matches_the_output_layer_then_log_softmax(chunk_size, temperature):
    """Values, entropies and both gradients against F.linear + log_softmax in float64 (chunk sizes
    1, 3 and 7 do not divide the 10 tokens; None: the 32 MiB default, one chunk here)."""
    torch.manual_seed(4)
    hidden = torch.randn(10, 6, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(13, 6, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 13, (10,))
    upstream = torch.randn(10, dtype=torch.float64)
    logps, entropy = linear_token_logprobs(hidden, weight, labels, temperature, True, chunk_size)
    ours = torch.autograd.grad((logps * upstream).sum(), (hidden, weight))
    log_p = torch.log_softmax(F.linear(hidden, weight) / temperature, -1)
    expected = log_p.gather(-1, labels[:, None]).squeeze(-1)
    grads = torch.autograd.grad((expected * upstream).sum(), (hidden, weight))
    assert close(logps, expected, 1e-10) and close(entropy, -(log_p.exp() * log_p).sum(-1), 1e-10)
    assert close(ours[0], grads[0], 1e-10) and close(ours[1], grads[1], 1e-10)
    assert torch.autograd.gradcheck(lambda h, w: linear_token_logprobs(h, w, labels, temperature, False, chunk_size)[0],
                                    (hidden, weight))


def test_linear_token_logprobs_bf16_and_a_frozen_weight():
    """bf16 in, float32 out, within bf16 rounding of the float32 answer; a frozen weight gets no
    gradient and the hidden states' gradient comes back in their dtype."""
    torch.manual_seed(5)
    hidden, weight, labels = torch.randn(9, 16), torch.randn(40, 16) / 4, torch.randint(0, 40, (9,))
    expected = torch.log_softmax(F.linear(hidden, weight), -1).gather(-1, labels[:, None]).squeeze(-1)
    low = hidden.bfloat16().requires_grad_()
    logps, _ = linear_token_logprobs(low, weight.bfloat16(), labels, chunk_size=4)
    assert logps.dtype == torch.float32 and close(logps, expected, 0.1)
    logps.sum().backward()
    assert low.grad.dtype == torch.bfloat16 and low.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="expected hidden"):
        linear_token_logprobs(hidden, weight[:, :8], labels)


@pytest.mark.parametrize("chunk_size", [1, 4, 1024])
def test_token_kl_hand_computed(chunk_size):
    # p = softmax([ln 3, 0]) = (3/4, 1/4), q = (1/2, 1/2):
    # KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.3040988 - 0.1732868 = 0.1308120; equal rows -> 0
    policy = torch.tensor([[[math.log(3.0), 0.0], [1.0, 2.0]]])
    ref = torch.tensor([[[0.0, 0.0], [1.0, 2.0]]])
    assert close(token_kl(policy, ref, chunk_size), [[0.1308120, 0.0]])
    # against the definition on a time slice (walked row by row), and never negative
    torch.manual_seed(4)
    a, b = torch.randn(3, 7, 6)[:, 1:-1], torch.randn(3, 5, 6)
    expected = (torch.softmax(a, -1) * (torch.log_softmax(a, -1) - torch.log_softmax(b, -1))).sum(-1)
    assert close(token_kl(a, b, chunk_size), expected)
    assert (token_kl(b, a, chunk_size) >= 0).all()
    with pytest.raises(ValueError, match="one shape"):
        token_kl(a, b[:, :2])


@pytest.mark.parametrize("chunk_size", [1, 3, None])
def test_linear_token_kl_is_token_kl_of_the_two_output_layers(chunk_size):
    # hidden (1, 0) through rows (ln 3, 0) / (0, 0): the hand-computed case above, 0.1308120
    hidden = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    policy_weight = torch.tensor([[math.log(3.0), 1.0], [0.0, 2.0]])
    ref_weight = torch.tensor([[0.0, 1.0], [0.0, 2.0]])
    assert close(linear_token_kl(hidden, policy_weight, hidden, ref_weight, chunk_size), [0.1308120, 0.0])
    torch.manual_seed(5)
    h_p, h_q, w_p, w_q = torch.randn(7, 4), torch.randn(7, 4), torch.randn(11, 4), torch.randn(11, 4)
    expected = token_kl((h_p @ w_p.T)[None], (h_q @ w_q.T)[None])[0]
    assert close(linear_token_kl(h_p, w_p, h_q, w_q, chunk_size), expected)
    assert linear_token_kl(h_p[:0], w_p, h_q[:0], w_q, chunk_size).shape == (0,)
    with pytest.raises(ValueError, match="one shape each"):
        linear_token_kl(h_p, w_p, h_q[:3], w_q)


# ------------------------------------------------------------------------------------------
# SFT
# ------------------------------------------------------------------------------------------


def test_sft_loss_hand_computed():
    # uniform logits over V=4: every token's NLL is ln 4
    logits = torch.zeros(1, 3, 4)
    labels = torch.tensor([[1, 2, -100]])
    mask = torch.tensor([[1, 1, 1]])  # the -100 token never counts, mask or not
    loss, metrics = sft_loss(logits, labels, mask)
    assert close(loss, math.log(4))
    assert metrics["tokens"].item() == 2
    assert close(metrics["loss/sft"], math.log(4))
    assert_metrics_detached(metrics)
    # the summed form: 2 * ln 4 over 2 tokens
    total, n = sft_loss_sum(logits, labels, mask)
    assert close(total, 2 * math.log(4)) and n.item() == 2


def test_sft_loss_matches_cross_entropy_and_masks():
    torch.manual_seed(4)
    logits = torch.randn(2, 5, 7, requires_grad=True)
    labels = torch.randint(0, 7, (2, 5))
    mask = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]])  # assistant-only tokens
    loss, _ = sft_loss(logits, labels, mask)
    masked_labels = torch.where(mask.bool(), labels, -100)
    expected = F.cross_entropy(logits.reshape(-1, 7), masked_labels.reshape(-1), ignore_index=-100)
    assert close(loss, expected)


def test_sft_loss_fully_masked_is_zero_not_nan():
    logits = torch.randn(2, 3, 5, requires_grad=True)
    labels = torch.randint(0, 5, (2, 3))
    loss, metrics = sft_loss(logits, labels, torch.zeros(2, 3))
    assert loss.item() == 0.0 and metrics["tokens"].item() == 0
    loss.backward()
    assert torch.isfinite(logits.grad).all() and (logits.grad == 0).all()


def test_sft_loss_sum_split_invariance():
    # sum over micro-batches / global token count == full-batch mean, gradient included
    torch.manual_seed(5)
    logits = torch.randn(4, 6, 5, requires_grad=True)
    labels = torch.randint(0, 5, (4, 6))
    mask = (torch.rand(4, 6) > 0.4).float()
    mask[0] = 1.0  # uneven token counts across halves
    full, _ = sft_loss(logits, labels, mask)
    full.backward()
    g_full = logits.grad.clone()
    logits.grad = None
    global_tokens = mask.sum()
    for part in (slice(0, 1), slice(1, 4)):
        total, _ = sft_loss_sum(logits[part], labels[part], mask[part])
        (total / global_tokens).backward()
    assert close(logits.grad, g_full, 1e-6)


# ------------------------------------------------------------------------------------------
# Bradley-Terry
# ------------------------------------------------------------------------------------------


def test_bradley_terry_hand_computed():
    chosen = torch.tensor([2.0, 0.0])
    rejected = torch.tensor([0.0, 0.0])
    # -logsigmoid(2) = ln(1 + e^-2) = 0.1269280 ; -logsigmoid(0) = ln 2 = 0.6931472
    # mean = 0.4100376
    loss, m = bradley_terry_loss(chosen, rejected)
    expected = (math.log1p(math.exp(-2)) + math.log(2)) / 2
    assert close(loss, expected) and close(loss, 0.4100376)
    assert close(m["reward/accuracy"], 0.75)  # [1 (2 > 0), 0.5 (tie)]
    assert close(m["reward/margin"], 1.0)  # mean(2, 0)
    assert close(m["reward/chosen"], 1.0) and close(m["reward/rejected"], 0.0)
    assert_metrics_detached(m)
    # centering: mean((2+0)^2, (0+0)^2) = 2 ; 0.1 * 2 = 0.2 on top
    loss_c, _ = bradley_terry_loss(chosen, rejected, center_coef=0.1)
    assert close(loss_c, expected + 0.2)
    # margin 1 with scale 1: -logsigmoid(2-1) = 0.3132617, -logsigmoid(0-1) = 1.3132617
    loss_m, m2 = bradley_terry_loss(chosen, rejected, margin=torch.tensor([1.0, 1.0]), margin_scale=1.0)
    assert close(loss_m, (0.3132617 + 1.3132617) / 2)
    assert close(m2["reward/margin"], 1.0)  # the reported margin is r_c - r_r, no offset


def test_bradley_terry_preferred_gets_lower_loss_and_is_stable():
    right, _ = bradley_terry_loss(torch.tensor([1.0]), torch.tensor([-1.0]))
    wrong, _ = bradley_terry_loss(torch.tensor([-1.0]), torch.tensor([1.0]))
    assert right < wrong
    # gradient pushes chosen up, rejected down
    c = torch.tensor([0.3], requires_grad=True)
    r = torch.tensor([0.1], requires_grad=True)
    bradley_terry_loss(c, r)[0].backward()
    assert c.grad.item() < 0 < r.grad.item()
    # large differences: no inf / NaN (logsigmoid)
    big, _ = bradley_terry_loss(torch.tensor([-1000.0]), torch.tensor([1000.0]))
    assert torch.isfinite(big) and close(big, 2000.0)


def test_pairwise_accuracy():
    # [win, tie, loss, win] -> (1 + 0.5 + 0 + 1) / 4 = 0.625
    acc = pairwise_accuracy(torch.tensor([2.0, 1.0, 0.0, 5.0]), torch.tensor([1.0, 1.0, 3.0, 4.0]))
    assert close(acc, 0.625)
    assert pairwise_accuracy(torch.tensor([]), torch.tensor([])).item() == 0.0


# ------------------------------------------------------------------------------------------
# DPO
# ------------------------------------------------------------------------------------------


def test_dpo_hand_computed():
    pc, pr = torch.tensor([-1.0]), torch.tensor([-3.0])
    rc, rr = torch.tensor([-2.0]), torch.tensor([-2.0])
    # chosen logratio -1 - (-2) = 1 ; rejected -3 - (-2) = -1 ; h = 2 ; beta h = 0.5 * 2 = 1
    loss, m = dpo_loss(pc, pr, rc, rr, beta=0.5)
    assert close(loss, 0.3132617)  # -logsigmoid(1) = ln(1 + e^-1)
    assert close(m["rewards/chosen"], 0.5) and close(m["rewards/rejected"], -0.5)
    assert close(m["rewards/margins"], 1.0) and close(m["rewards/accuracies"], 1.0)
    assert close(m["loss/dpo"], 0.3132617)
    assert_metrics_detached(m)
    # label smoothing 0.1: 0.9 * 0.3132617 + 0.1 * (-logsigmoid(-1) = 1.3132617) = 0.4132617
    loss_ls, _ = dpo_loss(pc, pr, rc, rr, beta=0.5, label_smoothing=0.1)
    assert close(loss_ls, 0.4132617)
    # ipo: (h - 1 / (2 beta))^2 = (2 - 1)^2 = 1
    loss_ipo, _ = dpo_loss(pc, pr, rc, rr, beta=0.5, loss_type="ipo")
    assert close(loss_ipo, 1.0)


def test_dpo_properties():
    ref = torch.tensor([-5.0, -7.0])
    # at the start policy == reference: loss = ln 2, accuracies are ties -> 0.5
    loss0, m0 = dpo_loss(ref, ref, ref, ref, beta=0.1)
    assert close(loss0, math.log(2)) and close(m0["rewards/accuracies"], 0.5)
    # the policy preferring the chosen answer gets the lower loss
    good, _ = dpo_loss(ref + 1, ref - 1, ref, ref)
    bad, _ = dpo_loss(ref - 1, ref + 1, ref, ref)
    assert good < loss0 < bad
    # gradient raises chosen and lowers rejected log-probs
    pc = ref.clone().requires_grad_(True)
    pr = ref.clone().requires_grad_(True)
    dpo_loss(pc, pr, ref, ref)[0].backward()
    assert (pc.grad < 0).all() and (pr.grad > 0).all()


def test_dpo_errors():
    t = torch.zeros(1)
    with pytest.raises(ValueError, match="sigmoid, ipo"):
        dpo_loss(t, t, t, t, loss_type="hinge")
    with pytest.raises(ValueError, match="label_smoothing"):
        dpo_loss(t, t, t, t, loss_type="ipo", label_smoothing=0.1)


# ------------------------------------------------------------------------------------------
# RLOO: advantages, KL, rewards
# ------------------------------------------------------------------------------------------


def test_rloo_advantages_hand_computed():
    # one prompt, k = 4, rewards [1, 2, 3, 6], sum 12.
    # baselines (mean of the other three): (12-1)/3 = 11/3, (12-2)/3 = 10/3, (12-3)/3 = 3, (12-6)/3 = 2
    # advantages: 1 - 11/3 = -8/3, 2 - 10/3 = -4/3, 3 - 3 = 0, 6 - 2 = 4
    adv = rloo_advantages(torch.tensor([1.0, 2.0, 3.0, 6.0]), k=4)
    assert close(adv, [-8 / 3, -4 / 3, 0.0, 4.0])
    # two prompts, k = 2: A = R_i - R_other -> [1-3, 3-1, 5-5, 5-5]
    adv2 = rloo_advantages(torch.tensor([1.0, 3.0, 5.0, 5.0]), k=2)
    assert close(adv2, [-2.0, 2.0, 0.0, 0.0])


def test_rloo_advantages_loop_and_leave_one_out():
    torch.manual_seed(6)
    k, prompts = 4, 5
    rewards = torch.randn(prompts * k, dtype=torch.float64)
    adv = rloo_advantages(rewards, k)
    r = rewards.tolist()
    for p in range(prompts):
        group = r[p * k : (p + 1) * k]
        for i in range(k):
            others = [group[j] for j in range(k) if j != i]
            assert abs(adv[p * k + i].item() - (group[i] - sum(others) / (k - 1))) < 1e-12
    # the baseline excludes the sample itself: changing R_i moves A_i by exactly the change
    # (its own baseline is untouched) and every other A_j in its group by -change/(k-1)
    bumped = rewards.clone()
    bumped[1] += 3.0
    diff = rloo_advantages(bumped, k) - adv
    assert close(diff[:k], [-1.0, 3.0, -1.0, -1.0], 1e-12)
    assert close(diff[k:], torch.zeros(len(diff) - k), 1e-12)  # other prompts untouched
    # advantages sum to 0 within each prompt
    assert close(adv.view(prompts, k).sum(1), torch.zeros(prompts), 1e-12)


def test_rloo_advantages_whiten_and_errors():
    adv = rloo_advantages(torch.tensor([1.0, 2.0, 3.0, 6.0, 0.0, 1.0, 0.0, 1.0]), k=4, whiten=True)
    assert close(adv.mean(), 0.0) and close(adv.std(), 1.0, 1e-4)
    with pytest.raises(ValueError):
        rloo_advantages(torch.ones(4), k=1)
    with pytest.raises(ValueError):
        rloo_advantages(torch.ones(5), k=2)


def test_sequence_kl_hand_computed():
    pi = torch.tensor([[-1.0, -2.0, -0.5]])
    ref = torch.tensor([[-1.5, -1.0, -9.0]])
    mask = torch.tensor([[1, 1, 0]])
    # k1: (-1 - -1.5) + (-2 - -1) = 0.5 - 1 = -0.5 (last token masked)
    assert close(sequence_kl(pi, ref, mask, "k1"), [-0.5])
    # k3: log r = ref - pi = [-0.5, 1]
    #   (e^-0.5 - 1) + 0.5 = 0.1065307 ; (e^1 - 1) - 1 = 0.7182818 ; sum 0.8248125
    assert close(sequence_kl(pi, ref, mask, "k3"), [0.8248125])
    with pytest.raises(ValueError, match="k1, k3"):
        sequence_kl(pi, ref, mask, "k2")


def test_sequence_kl_properties():
    torch.manual_seed(7)
    pi = torch.randn(3, 6)
    mask = torch.ones(3, 6)
    mask[2] = 0
    for est in ("k1", "k3"):
        kl = sequence_kl(pi, pi.clone(), mask, est)
        assert (kl == 0).all()  # exactly, not approximately
    ref = torch.randn(3, 6)
    assert (sequence_kl(pi, ref, mask, "k3") >= 0).all()
    assert (sequence_kl(pi, ref, mask, "k1")[2] == 0).all()  # fully masked row


def test_rloo_rewards_hand_computed():
    # R = [1 - 0 - 0.1*0.5, 2 - 1.0 - 0.1*(-1)] = [0.95, 1.1]
    r = rloo_rewards(torch.tensor([1.0, 2.0]), torch.tensor([0.5, -1.0]),
                     torch.tensor([True, False]), beta=0.1, missing_eos_penalty=1.0)
    assert close(r, [0.95, 1.1])
    r01 = rloo_rewards(torch.tensor([1.0, 2.0]), torch.tensor([0.5, -1.0]),
                       torch.tensor([1, 0]), beta=0.1, missing_eos_penalty=1.0)
    assert close(r01, [0.95, 1.1])


# ------------------------------------------------------------------------------------------
# policy loss
# ------------------------------------------------------------------------------------------


def test_policy_loss_hand_computed():
    # seq 0: ratios [1.5, 0.9], A = 2 ; seq 1: ratios [0.5, (masked)], A = -1 ; eps 0.2
    old = torch.zeros(2, 2)
    logps = torch.log(torch.tensor([[1.5, 0.9], [0.5, 1.0]]))
    adv = torch.tensor([2.0, -1.0])
    mask = torch.tensor([[1, 1], [1, 0]])
    # seq 0 tok 0: max(-2*1.5, -2*1.2) = -2.4 (clipped) ; tok 1: -2*0.9 = -1.8 (inside)
    # seq 1 tok 0: max(1*0.5, 1*0.8) = 0.8 (clipped)
    loss, m = policy_loss(logps, old, adv, mask, clip_eps=0.2)
    assert close(loss, (-2.4 - 1.8 + 0.8) / 3)  # token_mean = -1.1333333
    # sequence_mean: mean(mean(-2.4, -1.8) = -2.1, 0.8) = -0.65
    loss_s, _ = policy_loss(logps, old, adv, mask, clip_eps=0.2, aggregation="sequence_mean")
    assert close(loss_s, -0.65)
    assert close(m["val/ratio"], (1.5 + 0.9 + 0.5) / 3)
    assert close(m["policy/clipfrac_avg"], 2 / 3)
    # 0.5 * mean(ln1.5^2, ln0.9^2, ln0.5^2) = 0.5 * (0.164402 + 0.011101 + 0.480453) / 3 = 0.109326
    expected_kl = 0.5 * (math.log(1.5) ** 2 + math.log(0.9) ** 2 + math.log(0.5) ** 2) / 3
    assert close(m["policy/approxkl_avg"], expected_kl) and close(expected_kl, 0.109326)
    assert close(m["loss/policy_avg"], loss)
    assert_metrics_detached(m)
    # normalizer: same sums over a global count of 6 tokens / 4 sequences
    assert close(policy_loss(logps, old, adv, mask, normalizer=6)[0], (-2.4 - 1.8 + 0.8) / 6)
    assert close(policy_loss(logps, old, adv, mask, aggregation="sequence_mean",
                             normalizer=torch.tensor(4.0))[0], (-2.1 + 0.8) / 4)
    with pytest.raises(ValueError, match="token_mean, sequence_mean"):
        policy_loss(logps, old, adv, mask, aggregation="sum")


def test_policy_loss_clipping_follows_sign_of_advantage():
    eps = 0.2
    # per token: ratio 1.5 and 0.5, each with A = +1 and A = -1
    ratios = torch.tensor([[1.5], [1.5], [0.5], [0.5]])
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    logps = torch.log(ratios).requires_grad_(True)
    loss, m = policy_loss(logps, torch.zeros(4, 1), adv, torch.ones(4, 1), clip_eps=eps,
                          normalizer=1.0)
    loss.backward()
    # clipped (zero gradient) exactly when the update would push the ratio further out:
    # A > 0 and ratio > 1 + eps ; A < 0 and ratio < 1 - eps
    clipped = torch.tensor([True, False, False, True])
    assert (logps.grad[clipped] == 0).all()
    # unclipped tokens: d(-A * ratio)/d logp = -A * ratio
    assert close(logps.grad[~clipped].squeeze(-1), [1.0 * 1.5, -1.0 * 0.5])
    assert close(m["policy/clipfrac_avg"], 0.5)
    # inside the trust region nothing is clipped
    _, m_in = policy_loss(torch.log(torch.tensor([[1.1, 0.9]])), torch.zeros(1, 2),
                          torch.tensor([1.0]), torch.ones(1, 2), clip_eps=eps)
    assert m_in["policy/clipfrac_avg"].item() == 0.0


def toy_policy(seed: int = 8):
    """A linear layer producing logits from fixed features, and sampled completions."""
    torch.manual_seed(seed)
    B, T, D, V = 6, 5, 4, 7
    layer = torch.nn.Linear(D, V)
    feats = torch.randn(B, T, D)
    tokens = torch.randint(0, V, (B, T))
    mask = torch.ones(B, T)
    mask[0, 3:] = 0  # uneven lengths
    mask[3, 1:] = 0
    mask[5] = 0  # one completion with no tokens at all
    adv = torch.randn(B)
    return layer, feats, tokens, mask, adv


def test_policy_loss_gradient_is_reinforce():
    layer, feats, tokens, mask, adv = toy_policy()
    params = list(layer.parameters())
    logps = token_logprobs(layer(feats), tokens)
    loss, _ = policy_loss(logps, logps.detach(), adv, mask)  # ratio == 1: pure REINFORCE
    grads = torch.autograd.grad(loss, params)

    # by hand: -sum_i A_i * grad log pi(y_i) / N, log pi(y_i) = sum of its masked token log-probs
    n_tokens = mask.sum()
    expected = [torch.zeros_like(p) for p in params]
    for i in range(len(adv)):
        seq_logp = (token_logprobs(layer(feats[i : i + 1]), tokens[i : i + 1]) * mask[i]).sum()
        if mask[i].sum() == 0:
            continue
        g_i = torch.autograd.grad(seq_logp, params)
        for e, g in zip(expected, g_i):
            e -= adv[i] * g / n_tokens
    for g, e in zip(grads, expected):
        assert close(g, e, 1e-6)

    # sequence_mean: -sum_i A_i * grad log pi(y_i) / (len_i * B)
    logps = token_logprobs(layer(feats), tokens)
    loss_s, _ = policy_loss(logps, logps.detach(), adv, mask, aggregation="sequence_mean")
    grads_s = torch.autograd.grad(loss_s, params)
    expected_s = [torch.zeros_like(p) for p in params]
    for i in range(len(adv)):
        if mask[i].sum() == 0:
            continue
        seq_logp = (token_logprobs(layer(feats[i : i + 1]), tokens[i : i + 1]) * mask[i]).sum()
        for e, g in zip(expected_s, torch.autograd.grad(seq_logp, params)):
            e -= adv[i] * g / (mask[i].sum() * len(adv))
    for g, e in zip(grads_s, expected_s):
        assert close(g, e, 1e-6)


@pytest.mark.parametrize("aggregation", ["token_mean", "sequence_mean"])
def test_policy_loss_split_invariance(aggregation):
    layer, feats, tokens, mask, adv = toy_policy(seed=9)
    old = token_logprobs(layer(feats), tokens).detach() + 0.05 * torch.randn(tokens.shape)

    def grads_for(parts, normalizer):
        layer.zero_grad()
        for part in parts:
            logps = token_logprobs(layer(feats[part]), tokens[part])
            loss, _ = policy_loss(logps, old[part], adv[part], mask[part],
                                  aggregation=aggregation, normalizer=normalizer)
            loss.backward()  # gradients accumulate as in gradient accumulation
        return [p.grad.clone() for p in layer.parameters()]

    full = grads_for([slice(0, 6)], None)
    # uneven halves, each normalized by the GLOBAL count (tokens or sequences)
    global_count = mask.sum() if aggregation == "token_mean" else len(adv)
    split = grads_for([slice(0, 2), slice(2, 6)], global_count)
    for a, b in zip(full, split):
        assert close(a, b, 1e-6)


def test_policy_loss_fully_masked_is_zero_not_nan():
    logps = torch.randn(2, 3, requires_grad=True)
    for aggregation in ("token_mean", "sequence_mean"):
        loss, m = policy_loss(logps, logps.detach(), torch.ones(2), torch.zeros(2, 3),
                              aggregation=aggregation)
        assert loss.item() == 0.0
        assert all(torch.isfinite(v) for v in m.values())
        (g,) = torch.autograd.grad(loss, logps)
        assert torch.isfinite(g).all() and (g == 0).all()
    # normalizer 0 (no tokens anywhere in the step) is also 0
    loss0, _ = policy_loss(logps, logps.detach(), torch.ones(2), torch.zeros(2, 3), normalizer=0)
    assert loss0.item() == 0.0


def test_policy_loss_advantage_carries_no_gradient():
    logps = torch.randn(2, 3, requires_grad=True)
    adv = torch.tensor([1.0, -1.0], requires_grad=True)
    loss, _ = policy_loss(logps, logps.detach(), adv, torch.ones(2, 3))
    loss.backward()
    assert adv.grad is None
    # per-token advantages [B, T] give the same result as broadcast per-sequence ones
    l2, _ = policy_loss(logps, logps.detach(), adv.detach()[:, None].expand(2, 3), torch.ones(2, 3))
    assert close(loss, l2)


# ------------------------------------------------------------------------------------------
# evaluation arithmetic
# ------------------------------------------------------------------------------------------


def test_accuracy_interval_wilson():
    # Wilson 95% for 8 / 10: p = 0.8, z^2 = 3.8416, denom = 1 + 0.38416 = 1.38416
    # center = (0.8 + 0.19208) / 1.38416 = 0.716738
    # half = 1.96 * sqrt(0.016 + 0.009604) / 1.38416 = 1.96 * 0.160012 / 1.38416 = 0.226580
    low, high = accuracy_interval(8, 10)
    assert abs(low - 0.490158) < 1e-5 and abs(high - 0.943318) < 1e-5
    # 0 / 10 stays inside [0, 1]: low = 0, high = z^2/n / (1 + z^2/n) = 0.38416 / 1.38416
    low0, high0 = accuracy_interval(0, 10)
    assert low0 == 0.0 and abs(high0 - 0.38416 / 1.38416) < 1e-9
    assert accuracy_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        accuracy_interval(11, 10)


def test_win_rate_hand_computed():
    # pairs: 3>1 win, 2=2 tie, 1<4 loss, 5>0 win -> rate (2 + 0.5) / 4 = 0.625
    out = win_rate(torch.tensor([3.0, 2.0, 1.0, 5.0]), [1.0, 2.0, 4.0, 0.0])
    assert out["wins"] == 2 and out["ties"] == 1 and out["losses"] == 1 and out["n"] == 4
    assert out["win_rate"] == 0.625
    # Wilson with p = 0.625, n = 4, z^2 = 3.8416:
    #   denom = 1 + 3.8416/4 = 1.9604
    #   center = (0.625 + 3.8416/8) / 1.9604 = 1.1052 / 1.9604 = 0.563762
    #   half = 1.96 * sqrt(0.625*0.375/4 + 3.8416/64) / 1.9604
    #        = 1.96 * sqrt(0.05859375 + 0.060025) / 1.9604 = 1.96 * 0.344411 / 1.9604 = 0.344341
    denom = 1 + 3.8416 / 4
    center = (0.625 + 3.8416 / 8) / denom
    half = 1.96 * math.sqrt(0.625 * 0.375 / 4 + 3.8416 / 64) / denom
    assert abs(out["ci_low"] - (center - half)) < 1e-12 and abs(out["ci_low"] - 0.219421) < 1e-5
    assert abs(out["ci_high"] - (center + half)) < 1e-12 and abs(out["ci_high"] - 0.908103) < 1e-5
    assert all(isinstance(v, float) for v in out.values())
    with pytest.raises(ValueError):
        win_rate([1.0], [1.0, 2.0])
    with pytest.raises(ValueError):
        win_rate([], [])


def test_paired_mean_interval_hand_computed():
    # differences 1, 2, 3, 4: mean 2.5, sd sqrt(5/3) = 1.2909944, se 0.6454972, half 1.96 * se = 1.2651745
    mean, low, high = paired_mean_interval([2.0, 2.0, 4.0, 4.5], [1.0, 0.0, 1.0, 0.5])
    assert close([mean, low, high], [2.5, 1.2348255, 3.7651745])
    assert paired_mean_interval([1.0, 2.0], [1.0, 2.0]) == (0.0, 0.0, 0.0)
    assert paired_mean_interval([3.0], [1.0]) == (2.0, -math.inf, math.inf)
    with pytest.raises(ValueError, match="differ in length"):
        paired_mean_interval([1.0], [1.0, 2.0])


# ------------------------------------------------------------------------------------------
# Other estimators: GRPO, Dr.GRPO, REINFORCE++ (batch baseline)
# ------------------------------------------------------------------------------------------


def test_grpo_advantages_hand_computed():
    # prompt 0, k = 4, rewards [1, 2, 3, 6]: mean 3, deviations [-2, -1, 0, 3],
    #   std (k - 1) = sqrt((4 + 1 + 0 + 9) / 3) = sqrt(14/3) = 2.1602469
    #   A = dev / (2.1602469 + 1e-4) = [-0.9257772, -0.4628886, 0, 1.3886659]
    # prompt 1, [0, 1, 0, 1]: mean 0.5, std sqrt(4 * 0.25 / 3) = 0.5773503, A = +-0.5 / 0.5774503
    adv = grpo_advantages(torch.tensor([1.0, 2.0, 3.0, 6.0, 0.0, 1.0, 0.0, 1.0]), k=4)
    assert close(adv, [-0.9257772, -0.4628886, 0.0, 1.3886659, -0.8658754, 0.8658754, -0.8658754, 0.8658754])
    # equal rewards: no signal, A = 0 (not NaN): 0 / (0 + 1e-4)
    assert (grpo_advantages(torch.tensor([5.0, 5.0]), k=2) == 0).all()
    with pytest.raises(ValueError, match="k >= 2"):
        grpo_advantages(torch.ones(3), k=1)
    with pytest.raises(ValueError, match="divisible"):
        grpo_advantages(torch.ones(5), k=2)


def test_grpo_and_dr_grpo_advantages_loop():
    torch.manual_seed(11)
    k, prompts = 5, 4
    rewards = torch.randn(prompts * k, dtype=torch.float64)
    grpo, dr = grpo_advantages(rewards, k), dr_grpo_advantages(rewards, k)
    r = rewards.tolist()
    for p in range(prompts):
        group = r[p * k : (p + 1) * k]
        mean = sum(group) / k
        std = math.sqrt(sum((x - mean) ** 2 for x in group) / (k - 1))
        for i in range(k):
            assert abs(grpo[p * k + i].item() - (group[i] - mean) / (std + 1e-4)) < 1e-12
            assert abs(dr[p * k + i].item() - (group[i] - mean)) < 1e-12
    # the group mean includes R_i itself: Dr.GRPO = (k - 1) / k * RLOO, exactly the same direction
    assert close(dr, (k - 1) / k * rloo_advantages(rewards, k), 1e-12)
    # GRPO is invariant to a positive scale of the rewards (up to the 1e-4), Dr.GRPO scales with it
    assert close(grpo_advantages(10 * rewards, k), grpo, 1e-3)
    assert close(dr_grpo_advantages(10 * rewards, k), 10 * dr, 1e-12)


def test_dr_grpo_advantages_hand_computed():
    # [1, 2, 3, 6] - 3 ; [1, 3] - 2
    assert close(dr_grpo_advantages(torch.tensor([1.0, 2.0, 3.0, 6.0]), k=4), [-2.0, -1.0, 0.0, 3.0])
    assert close(dr_grpo_advantages(torch.tensor([1.0, 3.0, 4.0, 4.0]), k=2), [-1.0, 1.0, 0.0, 0.0])


def test_reinforce_pp_advantages_hand_computed():
    # unweighted, rewards [1, 3]: mean 2, var (1 + 1) / 2 = 1 -> [-1, 1]
    assert close(reinforce_pp_advantages(torch.tensor([1.0, 3.0])), [-1.0, 1.0])
    # token-weighted, 1 and 3 tokens: mean (1*1 + 3*3) / 4 = 2.5 ;
    #   var (1 * 1.5^2 + 3 * 0.5^2) / 4 = 0.75 ; A = [-1.5, 0.5] / sqrt(0.75) = [-1.7320508, 0.5773503]
    adv = reinforce_pp_advantages(torch.tensor([1.0, 3.0]), torch.tensor([1, 3]))
    assert close(adv, [-1.7320508, 0.5773503])
    # constant rewards: A = 0 (variance clamped at 1e-8, not a division by 0)
    assert (reinforce_pp_advantages(torch.full((4,), 2.0)) == 0).all()
    # no tokens at all: finite
    assert torch.isfinite(reinforce_pp_advantages(torch.tensor([1.0, 2.0]), torch.zeros(2))).all()
    with pytest.raises(ValueError, match="must match"):
        reinforce_pp_advantages(torch.ones(3), torch.ones(2))


def openrlhf_reinforce_advantages(rewards: torch.Tensor, action_mask: torch.Tensor) -> torch.Tensor:
    """OpenRLHF's `reinforce` (REINFORCE++) estimator, transcribed from
    openrlhf/trainer/ppo_utils/experience_maker.py @ 3c3be62 (compute_advantages_and_returns,
    lines 238-330; get_cumulative_returns, lines 380-411) and openrlhf/models/utils.py
    compute_reward (lines 98-127), with kl_coef = 0 (KL not in the reward), gamma = 1 and one
    experience holding the whole batch. Returns per-token advantages [B, T]."""
    # compute_reward: the reward sits on the last action token
    eos_indices = action_mask.size(1) - 1 - action_mask.long().fliplr().argmax(dim=1, keepdim=True)
    reward = torch.zeros_like(action_mask, dtype=rewards.dtype).scatter_(1, eos_indices, rewards.unsqueeze(1))
    # get_cumulative_returns
    reward = action_mask * reward
    returns = torch.zeros_like(reward)
    cumulative = torch.zeros(reward.size(0), dtype=reward.dtype)
    for t in reversed(range(reward.size(1))):
        cumulative = reward[:, t] + 1.0 * cumulative
        returns[:, t] = cumulative
    advantages = returns.clone()
    # normalization across all experiences (estimator "reinforce")
    all_adv, all_mask = advantages.flatten(), action_mask.flatten()
    num_actions = all_mask.sum()
    mean = (all_adv * all_mask).sum() / num_actions
    var = ((all_adv - mean).pow(2) * all_mask).sum() / num_actions
    return (advantages - mean) * var.clamp(min=1e-8).rsqrt()


def test_reinforce_pp_matches_openrlhf_and_loop():
    """Cross-check with OpenRLHF (`--algo.advantage.estimator reinforce`, REINFORCE++): on the
    same rewards and completion masks, OpenRLHF's per-token advantages equal
    reinforce_pp_advantages(rewards, token counts) broadcast over each completion's tokens, to
    1e-12 in float64 (measured: identical, max difference 0.0). The token weighting is OpenRLHF's: its
    mean and variance run over every completion token of the batch.
    Also against a plain Python loop."""
    torch.manual_seed(12)
    B, T = 7, 6
    rewards = torch.randn(B, dtype=torch.float64)
    lengths = torch.tensor([6, 1, 3, 6, 2, 5, 4])
    mask = (torch.arange(T)[None, :] < lengths[:, None]).to(torch.float64)
    ours = reinforce_pp_advantages(rewards, lengths)
    theirs = openrlhf_reinforce_advantages(rewards, mask)
    assert close(theirs * mask, ours[:, None] * mask, 1e-12)
    # plain loop: one entry per token
    tokens = [r for r, n in zip(rewards.tolist(), lengths.tolist()) for _ in range(n)]
    mean = sum(tokens) / len(tokens)
    std = math.sqrt(sum((x - mean) ** 2 for x in tokens) / len(tokens))
    for i in range(B):
        assert abs(ours[i].item() - (rewards[i].item() - mean) / std) < 1e-12
    # OpenRLHF's dr_grpo estimator is the group mean baseline, as here (lines 267-268)
    k = 7
    assert close(dr_grpo_advantages(rewards, k), rewards - rewards.mean(), 1e-12)


def test_advantages_for_dispatches():
    rewards = torch.tensor([1.0, 2.0, 3.0, 6.0])
    assert torch.equal(advantages_for("rloo", rewards, 4), rloo_advantages(rewards, 4))
    assert torch.equal(advantages_for("grpo", rewards, 4), grpo_advantages(rewards, 4))
    assert torch.equal(advantages_for("dr_grpo", rewards, 4), dr_grpo_advantages(rewards, 4))
    w = torch.tensor([1.0, 2.0, 2.0, 1.0])
    assert torch.equal(advantages_for("reinforce_pp", rewards, 4, w), reinforce_pp_advantages(rewards, w))
    with pytest.raises(ValueError, match="rloo, grpo, dr_grpo, reinforce_pp"):
        advantages_for("ppo", rewards, 4)


# ------------------------------------------------------------------------------------------
# Policy loss options: clip-higher, sequence_sum_norm, KL in the loss
# ------------------------------------------------------------------------------------------


def test_policy_loss_asymmetric_clipping_hand_computed():
    # tokens: (ratio, A) = (1.3, +1), (0.7, -1), (1.3, -1), (0.75, +1); eps_low 0.2, eps_high 0.28
    ratios = torch.tensor([[1.3], [0.7], [1.3], [0.75]])
    adv = torch.tensor([1.0, -1.0, -1.0, 1.0])
    # (1.3, +1): max(-1.3, -1.28) = -1.28 (clipped high; symmetric 0.2 would give -1.2)
    # (0.7, -1): max(0.7, 0.8) = 0.8 (clipped low) ; (1.3, -1): max(1.3, 1.28) = 1.3 (not clipped)
    # (0.75, +1): max(-0.75, -0.8) = -0.75 (not clipped)
    # token_mean: (-1.28 + 0.8 + 1.3 - 0.75) / 4 = 0.0175
    logps = torch.log(ratios).requires_grad_(True)
    loss, m = policy_loss(logps, torch.zeros(4, 1), adv, torch.ones(4, 1), clip_eps_low=0.2, clip_eps_high=0.28)
    assert close(loss, 0.0175)
    assert close(m["policy/clipfrac_avg"], 0.5)
    loss.backward()
    # clipped tokens get no gradient; the others -A * ratio / 4
    assert close(logps.grad.squeeze(-1), [0.0, 0.0, 1.3 / 4, -0.75 / 4])
    sym, _ = policy_loss(torch.log(ratios), torch.zeros(4, 1), adv, torch.ones(4, 1), clip_eps=0.2)
    assert close(sym, (-1.2 + 0.8 + 1.3 - 0.75) / 4)
    # None means clip_eps, bit for bit
    layer, feats, tokens, mask, adv = toy_policy(seed=13)
    logps = token_logprobs(layer(feats), tokens).detach()
    old = logps + 0.3 * torch.randn(logps.shape)
    a, _ = policy_loss(logps, old, adv, mask, 0.2)
    b, _ = policy_loss(logps, old, adv, mask, 0.2, clip_eps_low=0.2, clip_eps_high=0.2)
    assert torch.equal(a, b)


def test_policy_loss_sequence_sum_norm_hand_computed():
    # the tokens of test_policy_loss_hand_computed: pg = [-2.4, -1.8 | 0.8, masked]
    old = torch.zeros(2, 2)
    logps = torch.log(torch.tensor([[1.5, 0.9], [0.5, 1.0]]))
    adv, mask = torch.tensor([2.0, -1.0]), torch.tensor([[1, 1], [1, 0]])
    # sum / (B * max_length) = (-2.4 - 1.8 + 0.8) / (2 * 4) = -0.425, whatever the lengths are
    loss, _ = policy_loss(logps, old, adv, mask, aggregation="sequence_sum_norm", max_length=4)
    assert close(loss, -0.425)
    # the normalizer replaces B * max_length (global sequences * max_length)
    assert close(policy_loss(logps, old, adv, mask, aggregation="sequence_sum_norm", normalizer=16)[0], -3.4 / 16)
    with pytest.raises(ValueError, match="max_length"):
        policy_loss(logps, old, adv, mask, aggregation="sequence_sum_norm")


def test_policy_loss_sequence_sum_norm_gradient_loop_and_split():
    layer, feats, tokens, mask, adv = toy_policy(seed=14)
    params = list(layer.parameters())
    L = 5
    logps = token_logprobs(layer(feats), tokens)
    loss, _ = policy_loss(logps, logps.detach(), adv, mask, aggregation="sequence_sum_norm", max_length=L)
    grads = torch.autograd.grad(loss, params)
    # by hand: -sum_i A_i * grad log pi(y_i) / (B * L): every token weighs the same, any length
    expected = [torch.zeros_like(p) for p in params]
    for i in range(len(adv)):
        if mask[i].sum() == 0:
            continue
        seq_logp = (token_logprobs(layer(feats[i : i + 1]), tokens[i : i + 1]) * mask[i]).sum()
        for e, g in zip(expected, torch.autograd.grad(seq_logp, params)):
            e -= adv[i] * g / (len(adv) * L)
    for g, e in zip(grads, expected):
        assert close(g, e, 1e-6)
    # split over uneven micro-batches with the global normalizer B * L: same gradient
    old = logps.detach() + 0.05 * torch.randn(tokens.shape)
    layer.zero_grad()
    policy_loss(token_logprobs(layer(feats), tokens), old, adv, mask, aggregation="sequence_sum_norm",
                max_length=L)[0].backward()
    full = [p.grad.clone() for p in params]
    layer.zero_grad()
    for part in (slice(0, 2), slice(2, 6)):
        policy_loss(token_logprobs(layer(feats[part]), tokens[part]), old[part], adv[part], mask[part],
                    aggregation="sequence_sum_norm", normalizer=len(adv) * L)[0].backward()
    for a, b in zip(full, [p.grad for p in params]):
        assert close(a, b, 1e-6)


def test_kl_per_token_values_and_gradients():
    pi = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    ref = torch.tensor([[-1.5, -1.0]])
    # k1: pi - ref = [0.5, -1] ; gradient 1 per token
    k1 = kl_per_token(pi, ref, "k1")
    assert close(k1, [[0.5, -1.0]])
    (g1,) = torch.autograd.grad(k1.sum(), pi)
    assert close(g1, [[1.0, 1.0]])
    # k3: (e^-0.5 - 1) + 0.5 = 0.1065307 ; (e^1 - 1) - 1 = 0.7182818
    # gradient d/dlogpi [e^(ref - pi) - 1 - (ref - pi)] = 1 - r = [1 - e^-0.5, 1 - e] = [0.3934693, -1.7182818]
    k3 = kl_per_token(pi, ref, "k3")
    assert close(k3, [[0.1065307, 0.7182818]])
    (g3,) = torch.autograd.grad(k3.sum(), pi)
    assert close(g3, [[0.3934693, -1.7182818]])
    with pytest.raises(ValueError, match="k1, k3"):
        kl_per_token(pi, ref, "k2")


def test_k3_loss_gradient_is_reverse_kl_gradient_in_expectation():
    """Exact expectation over a 4-token vocabulary: sum_y pi(y) (1 - pi_ref(y)/pi(y)) grad log pi(y)
    = grad KL(pi_ref || pi); k1's, sum_y pi(y) grad log pi(y), = 0."""
    torch.manual_seed(15)
    theta = torch.randn(4, dtype=torch.float64, requires_grad=True)
    ref_logp = torch.log_softmax(torch.randn(4, dtype=torch.float64), -1)
    logp = torch.log_softmax(theta, -1)
    p = logp.exp().detach()
    k3_expect = sum(p[y] * kl_per_token(logp[y : y + 1], ref_logp[y : y + 1], "k3")[0] for y in range(4))
    k1_expect = sum(p[y] * kl_per_token(logp[y : y + 1], ref_logp[y : y + 1], "k1")[0] for y in range(4))
    # p held constant (sampling distribution), as in the sampled loss
    (g3,) = torch.autograd.grad(k3_expect, theta, retain_graph=True)
    (g1,) = torch.autograd.grad(k1_expect, theta)
    reverse_kl = (ref_logp.exp() * (ref_logp - torch.log_softmax(theta, -1))).sum()
    (g_rev,) = torch.autograd.grad(reverse_kl, theta)
    assert close(g3, g_rev, 1e-12)
    assert close(g1, torch.zeros(4), 1e-12)


def test_policy_loss_kl_in_loss_hand_computed():
    # on-policy (ratio 1) with A = 0: the loss is the KL term alone
    # k3 per token [0.1065307, 0.7182818, masked] ; token_mean * beta 0.1 = 0.1 * 0.4124062 = 0.0412406
    pi = torch.tensor([[-1.0, -2.0, -0.5]], requires_grad=True)
    ref = torch.tensor([[-1.5, -1.0, -9.0]])
    mask = torch.tensor([[1, 1, 0]])
    loss, m = policy_loss(pi, pi.detach(), torch.zeros(1), mask, ref_logps=ref, kl_coef=0.1, kl_estimator="k3")
    assert close(loss, 0.0412406)
    assert close(m["loss/kl_term"], 0.0412406) and close(m["policy/kl_token_avg"], 0.4124062)
    assert_metrics_detached(m)
    (g,) = torch.autograd.grad(loss, pi)
    # beta * (1 - r_t) / N = 0.1 * [0.3934693, -1.7182818] / 2 ; the masked token 0
    assert close(g, [[0.0196735, -0.0859141, 0.0]])
    # without ref_logps the same call has no KL term at all
    assert close(policy_loss(pi, pi.detach(), torch.zeros(1), mask)[0], 0.0)
    # a masked position with a non-finite reference log-prob gives a finite loss and gradient
    bad_ref = ref.clone()
    bad_ref[0, 2] = -math.inf
    loss_b, _ = policy_loss(pi, pi.detach(), torch.zeros(1), mask, ref_logps=bad_ref, kl_coef=0.1)
    (gb,) = torch.autograd.grad(loss_b, pi)
    assert close(loss_b, 0.0412406) and close(gb, g)


@pytest.mark.parametrize("aggregation", ["token_mean", "sequence_mean", "sequence_sum_norm"])
def test_policy_loss_kl_term_gradient_loop(aggregation):
    """The KL term's gradient, by a loop over sequences and tokens: beta * (1 - r_t) * grad log pi_t,
    weighted as the aggregation weighs the policy term."""
    layer, feats, tokens, mask, adv = toy_policy(seed=16)
    params = list(layer.parameters())
    ref = token_logprobs(layer(feats), tokens).detach() + 0.2 * torch.randn(tokens.shape)
    beta, L, B = 0.3, 5, len(adv)
    logps = token_logprobs(layer(feats), tokens)
    with_kl, _ = policy_loss(logps, logps.detach(), adv, mask, aggregation=aggregation, max_length=L,
                             ref_logps=ref, kl_coef=beta, kl_estimator="k3")
    logps = token_logprobs(layer(feats), tokens)
    without, _ = policy_loss(logps, logps.detach(), adv, mask, aggregation=aggregation, max_length=L)
    kl_grads = [a - b for a, b in zip(torch.autograd.grad(with_kl, params), torch.autograd.grad(without, params))]
    expected = [torch.zeros_like(p) for p in params]
    for i in range(B):
        n_i = mask[i].sum().item()
        for t in range(tokens.shape[1]):
            if mask[i, t] == 0:
                continue
            logp_t = token_logprobs(layer(feats[i : i + 1]), tokens[i : i + 1])[0, t]
            weight = {"token_mean": 1 / mask.sum().item(), "sequence_mean": 1 / (n_i * B),
                      "sequence_sum_norm": 1 / (B * L)}[aggregation]
            coef = beta * (1 - math.exp(ref[i, t].item() - logp_t.item())) * weight
            for e, g in zip(expected, torch.autograd.grad(logp_t, params)):
                e += coef * g
    for g, e in zip(kl_grads, expected):
        assert close(g, e, 1e-6)


# TRL's GRPOTrainer formulas, transcribed from huggingface/trl @ f2cd577
# trl/trainer/grpo_trainer.py and trl/trainer/utils.py (nanstd, line 857).


def trl_nanstd(tensor: torch.Tensor, dim: int) -> torch.Tensor:
    mean = torch.nanmean(tensor, dim=dim, keepdim=True)
    variance = torch.nanmean((tensor - mean) ** 2, dim=dim, keepdim=True)
    count = torch.sum(~torch.isnan(tensor), dim=dim, keepdim=True)
    variance *= count / (count - 1)  # Bessel's correction
    return torch.sqrt(variance).squeeze(dim)


def trl_advantages(rewards: torch.Tensor, num_generations: int, scale_rewards: str) -> torch.Tensor:
    # grpo_trainer.py lines 2685-2707 (multi_objective_aggregation "sum_then_normalize")
    mean_grouped = torch.nanmean(rewards.view(-1, num_generations), dim=1).repeat_interleave(num_generations, dim=0)
    std = trl_nanstd(rewards.view(-1, num_generations), dim=1).repeat_interleave(num_generations, dim=0)
    advantages = rewards - mean_grouped
    if scale_rewards != "none":
        advantages = advantages / (std + 1e-4)
    return advantages


def trl_loss(per_token_logps, old_per_token_logps, ref_per_token_logps, advantages, mask, beta,
             epsilon_low, epsilon_high, loss_type, max_completion_length):
    # grpo_trainer.py _compute_loss, lines 3026-3030 and 3066-3138 (token-level importance
    # sampling, one process, no gradient accumulation)
    advantages = advantages.unsqueeze(1)
    coef_1 = torch.exp(per_token_logps - old_per_token_logps)
    per_token_kl = torch.exp(ref_per_token_logps - per_token_logps) - (ref_per_token_logps - per_token_logps) - 1
    coef_2 = torch.clamp(coef_1, 1 - epsilon_low, 1 + epsilon_high)
    per_token_loss = -torch.min(coef_1 * advantages, coef_2 * advantages)
    if beta != 0.0:
        per_token_loss = per_token_loss + beta * per_token_kl
    if loss_type == "grpo":
        return ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type == "dr_grpo":
        return (per_token_loss * mask).sum() / (per_token_loss.size(0) * max_completion_length)
    if loss_type == "dapo":  # num_items_in_batch = the batch's completion tokens
        return (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0)
    raise ValueError(loss_type)


@pytest.mark.parametrize("estimator,loss_type,aggregation", [
    ("grpo", "grpo", "sequence_mean"),
    ("dr_grpo", "dr_grpo", "sequence_sum_norm"),
    ("grpo", "dapo", "token_mean"),
])
def test_grpo_and_dr_grpo_match_trl(estimator, loss_type, aggregation):
    """Cross-check with TRL's GRPOTrainer (huggingface/trl @ f2cd577, trl/trainer/grpo_trainer.py
    lines 2685-2707 for the advantages, 3066-3138 for the loss; nanstd in trl/trainer/utils.py:857),
    on the same float64 tensors (4 prompts x 3 completions, uneven lengths, one empty completion,
    off-policy old log-probs so the asymmetric clip binds, k3 KL in the loss with beta 0.04):
      grpo    == TRL scale_rewards="group", loss_type="grpo"  (sequence_mean aggregation)
      dr_grpo == TRL scale_rewards="none",  loss_type="dr_grpo" with max_completion_length = L
                 (sequence_sum_norm aggregation, max_length = L)
      grpo + token_mean == TRL loss_type="dapo" on one process
    Result: advantages, loss and gradient agree to 1e-12 (measured max differences: advantages
    2.2e-16, loss 2.1e-17, gradient 1.4e-17; 19% of the tokens clipped). TRL's std epsilon is 1e-4 (GRPO_STD_EPS) and its std uses Bessel's correction."""
    torch.manual_seed(17)
    k, prompts, T, L = 3, 4, 6, 8
    B = k * prompts
    rewards = torch.randn(B, dtype=torch.float64)
    rewards[3:6] = 0.5  # one group with equal rewards: std 0
    ours_adv = advantages_for(estimator, rewards, k)
    trl_adv = trl_advantages(rewards, k, "group" if estimator == "grpo" else "none")
    assert close(ours_adv, trl_adv, 1e-12)

    lengths = torch.randint(1, T + 1, (B,))
    lengths[5] = 0
    mask = (torch.arange(T)[None, :] < lengths[:, None]).to(torch.float64)
    theta = torch.randn(B, T, dtype=torch.float64, requires_grad=True)  # stand-in per-token log-probs
    old = (theta + 0.3 * torch.randn(B, T, dtype=torch.float64)).detach()
    ref = (theta + 0.2 * torch.randn(B, T, dtype=torch.float64)).detach()
    ours, _ = policy_loss(theta, old, ours_adv, mask, aggregation=aggregation, max_length=L,
                          clip_eps_low=0.2, clip_eps_high=0.28, ref_logps=ref, kl_coef=0.04, kl_estimator="k3")
    theirs = trl_loss(theta, old, ref, trl_adv, mask, 0.04, 0.2, 0.28, loss_type, L)
    assert close(ours, theirs, 1e-12)
    (g_ours,) = torch.autograd.grad(ours, theta)
    (g_theirs,) = torch.autograd.grad(theirs, theta)
    assert close(g_ours, g_theirs, 1e-12)
