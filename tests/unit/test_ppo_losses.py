"""PPO's pure functions (tiller.losses): per-token rewards, GAE, clipped value loss, whitening,
against numbers worked out by hand in the comments."""

from __future__ import annotations

import torch

from tiller.losses import gae_advantages, masked_whiten, ppo_token_rewards, value_loss

ATOL = 1e-6


def close(actual, expected, atol: float = ATOL) -> bool:
    return torch.allclose(torch.as_tensor(actual, dtype=torch.float64),
                          torch.as_tensor(expected, dtype=torch.float64), atol=atol)


MASK = torch.tensor([[1.0, 1.0, 1.0, 0.0]])  # 3 completion tokens, then one pad


def test_token_rewards_put_the_score_on_the_last_real_token():
    # r_t = -beta * KL_t; the score 2.0 is added at the last real token (index 2), not the pad.
    # beta 0.5, KL [0.1, -0.2, 0.3, 9 (pad)] -> [-0.05, 0.1, -0.15 + 2 = 1.85, 0]
    kl = torch.tensor([[0.1, -0.2, 0.3, 9.0]])
    rewards = ppo_token_rewards(torch.tensor([2.0]), kl, MASK, beta=0.5)
    assert close(rewards, [[-0.05, 0.1, 1.85, 0.0]])


def test_token_rewards_row_without_tokens_is_zero():
    rewards = ppo_token_rewards(torch.tensor([5.0]), torch.tensor([[1.0, 1.0]]), torch.zeros(1, 2), beta=0.1)
    assert close(rewards, [[0.0, 0.0]])


def test_gae_hand_computed():
    # rewards [-0.05, 0.1, 1.85 | pad], values [0.5, 1.0, 1.5 | 7 (pad, ignored)], gamma 0.9, lam 0.8
    # t=2: delta = 1.85 + 0.9*0   - 1.5 = 0.35;  A2 = 0.35
    # t=1: delta = 0.1  + 0.9*1.5 - 1.0 = 0.45;  A1 = 0.45 + 0.72*0.35  = 0.702
    # t=0: delta = -0.05 + 0.9*1.0 - 0.5 = 0.35; A0 = 0.35 + 0.72*0.702 = 0.85544
    # returns = A + V = [1.35544, 1.702, 1.85]; the pad holds 0 in both
    rewards = torch.tensor([[-0.05, 0.1, 1.85, 3.0]])
    values = torch.tensor([[0.5, 1.0, 1.5, 7.0]])
    adv, ret = gae_advantages(rewards, values, MASK, gamma=0.9, lam=0.8)
    assert close(adv, [[0.85544, 0.702, 0.35, 0.0]])
    assert close(ret, [[1.35544, 1.702, 1.85, 0.0]])


def test_gae_with_gamma_and_lambda_one_is_reward_to_go_minus_value():
    # gamma = lam = 1: A_t = (sum of rewards from t on) - V_t and the returns are the reward-to-go.
    rewards = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    values = torch.tensor([[0.5, 0.5, 0.5], [1.0, 9.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    adv, ret = gae_advantages(rewards, values, mask, gamma=1.0, lam=1.0)
    assert close(ret, [[6.0, 5.0, 3.0], [4.0, 0.0, 0.0]])
    assert close(adv, [[5.5, 4.5, 2.5], [3.0, 0.0, 0.0]])


def test_gae_empty_row_gives_zeros_not_nan():
    adv, ret = gae_advantages(torch.ones(1, 3), torch.ones(1, 3), torch.zeros(1, 3), 1.0, 0.95)
    assert close(adv, torch.zeros(1, 3)) and close(ret, torch.zeros(1, 3))


def test_value_loss_hand_computed():
    # token 0: V 1.0, old 0.5, R 2.0: unclipped (1-2)^2 = 1; V_clip = 0.5 + 0.2 = 0.7, (0.7-2)^2 = 1.69
    #          max = 1.69 (the clipped branch: its gradient in V is 0)
    # token 1: V = old = 2.0, R 1.0: both (2-1)^2 = 1
    # token 2: masked
    # loss = 0.5 * (1.69 + 1) / 2 = 0.6725; clipfrac 1/2; dloss/dV = [0, 0.5 * 2 * (2-1) / 2 = 0.5, 0]
    values = torch.tensor([[1.0, 2.0, 50.0]], requires_grad=True)
    old = torch.tensor([[0.5, 2.0, 0.0]])
    returns = torch.tensor([[2.0, 1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    loss, metrics = value_loss(values, old, returns, mask, clip=0.2)
    assert close(loss, 0.6725)
    assert close(metrics["value/clipfrac_avg"], 0.5)
    loss.backward()
    assert close(values.grad, [[0.0, 0.5, 0.0]])


def test_value_loss_normalizer_splits_exactly():
    # Two halves, each normalized by the whole count, sum to the loss of the whole.
    torch.manual_seed(0)
    v, old, ret = torch.randn(4, 5), torch.randn(4, 5), torch.randn(4, 5)
    mask = (torch.rand(4, 5) > 0.3).float()
    whole, _ = value_loss(v, old, ret, mask, 0.1)
    n = mask.sum()
    halves = sum(value_loss(v[s], old[s], ret[s], mask[s], 0.1, normalizer=n)[0] for s in (slice(0, 2), slice(2, 4)))
    assert close(halves, whole)


def test_masked_whiten_hand_computed():
    # [1, 2, 3 | 100 masked]: mean 2, unbiased var (1 + 0 + 1) / 2 = 1 -> [-1, 0, 1 | 0]
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    assert close(masked_whiten(x, MASK), [[-1.0, 0.0, 1.0, 0.0]], atol=1e-5)
    # shift_mean=False keeps the mean: [1, 2, 3 | 0]
    assert close(masked_whiten(x, MASK, shift_mean=False), [[1.0, 2.0, 3.0, 0.0]], atol=1e-5)
    # given statistics (over all processes) replace the local ones: (x - 0) / sqrt(4) = x / 2
    assert close(masked_whiten(x, MASK, mean=torch.tensor(0.0), var=torch.tensor(4.0)), [[0.5, 1.0, 1.5, 0.0]], atol=1e-5)
