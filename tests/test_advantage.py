"""The RL math against hand-computed numbers."""

import numpy as np
import pytest
import torch

from lerobot_policy_pi_star_recap.rl.advantage import (
    advantage_indicator,
    nstep_advantage,
    quantile_thresholds,
)
from lerobot_policy_pi_star_recap.rl.iql import asymmetric_l2_loss, awr_weights, chunked_q_target
from lerobot_policy_pi_star_recap.rl.value_bins import (
    distributional_value_loss,
    expected_value,
    hl_gauss,
    two_hot,
)


def test_expectile_loss_hand_computed():
    diff = torch.tensor([2.0, -1.0, 0.5, 0.0])
    loss = asymmetric_l2_loss(diff, expectile=0.7)
    assert torch.allclose(loss, torch.tensor([0.7 * 4, 0.3 * 1, 0.7 * 0.25, 0.0]))
    # tau = 0.5 is half the squared error: the mean regression special case
    assert torch.allclose(asymmetric_l2_loss(diff, 0.5), 0.5 * diff.square())


def test_expectile_regression_finds_the_expectile():
    samples = torch.tensor([0.0, 1.0, 2.0, 10.0])
    value = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.SGD([value], lr=0.05)
    for _ in range(2000):
        optimizer.zero_grad()
        asymmetric_l2_loss(samples - value, 0.9).mean().backward()
        optimizer.step()
    # The 0.9-expectile v solves 0.9 * sum_{x>v} (x - v) = 0.1 * sum_{x<v} (v - x):
    # 0.9 (10 - v) = 0.1 (3 v - 3)  =>  v = 9.3 / 1.2 = 7.75.
    assert value.item() == pytest.approx(7.75, abs=1e-3)


def test_chunked_q_target():
    # r_t + g r_{t+1} + g^2 V(s_{t+2}) with g = 0.5: -1 - 0.5 + 0.25 * 4 = -0.5
    target = chunked_q_target(torch.tensor([-1.5]), torch.tensor([0.25]), torch.tensor([4.0]))
    assert target.item() == pytest.approx(-0.5)


def test_awr_weights_are_clipped():
    weights = awr_weights(torch.tensor([0.0, 1.0, 100.0]), temperature=0.5, clip=100.0)
    assert torch.allclose(weights, torch.tensor([1.0, float(np.exp(2.0)), 100.0]))


def test_two_hot_round_trip():
    values = torch.tensor([-0.35, -1.0, 0.0, -0.5, -0.123])
    probs = two_hot(values, 11, -1.0, 0.0)
    assert torch.allclose(probs.sum(-1), torch.ones(5))
    assert probs[0, 6].item() == pytest.approx(0.5) and probs[0, 7].item() == pytest.approx(0.5)
    assert torch.allclose(expected_value(probs.clamp_min(1e-12).log(), -1.0, 0.0), values, atol=1e-5)


def test_hl_gauss_expectation_close_to_value():
    values = torch.tensor([-0.7, -0.25])
    probs = hl_gauss(values, 201, -1.0, 0.0)
    assert torch.allclose(probs.sum(-1), torch.ones(2))
    assert torch.allclose(expected_value(probs.log(), -1.0, 0.0), values, atol=1e-3)


def test_values_outside_the_support_are_clipped():
    probs = two_hot(torch.tensor([-3.0, 0.5]), 5, -1.0, 0.0)
    assert probs[0, 0] == 1.0 and probs[1, -1] == 1.0


def test_distributional_loss_is_minimal_at_the_target():
    target = torch.tensor([-0.4])
    exact = two_hot(target, 11, -1.0, 0.0).clamp_min(1e-9).log()
    wrong = two_hot(torch.tensor([-0.9]), 11, -1.0, 0.0).clamp_min(1e-9).log()
    loss_exact = distributional_value_loss(exact, target, -1.0, 0.0, "two_hot")
    loss_wrong = distributional_value_loss(wrong, target, -1.0, 0.0, "two_hot")
    assert loss_exact.item() < 1e-6 < loss_wrong.item()


def test_nstep_advantage():
    # sum of N rewards (-3) + V(o_{t+N}) (-0.5) - V(o_t) (-4) = 0.5; no bootstrap near the end
    adv = nstep_advantage(
        torch.tensor([-3.0, -3.0]),
        torch.tensor([1.0, 0.0]),
        torch.tensor([-0.5, -0.5]),
        torch.tensor([-4.0, -4.0]),
    )
    assert torch.allclose(adv, torch.tensor([0.5, 1.0]))


@pytest.mark.parametrize(
    ("function", "arity"), [(nstep_advantage, 4), (chunked_q_target, 3), (advantage_indicator, 3)]
)
def test_numpy_and_torch_versions_agree(function, arity):
    """Training computes these on tensors, labelling on numpy arrays: the same numbers either way."""
    rng = np.random.default_rng(0)
    for _ in range(5):
        shape = tuple(rng.integers(1, 20, size=rng.integers(1, 3)))
        parts = [rng.normal(size=shape) for _ in range(arity)]
        parts[1] = rng.uniform(0.0, 1.0, size=shape)  # a bootstrap discount / a threshold
        torch_out = function(*(torch.tensor(p) for p in parts))
        np.testing.assert_allclose(function(*parts), torch_out.numpy(), rtol=1e-12)


def test_quantile_threshold_gives_the_positive_fraction():
    advantage = np.r_[np.arange(10.0), np.arange(100.0, 120.0)]
    task = np.r_[np.zeros(10, int), np.ones(20, int)]
    thresholds = quantile_thresholds(advantage, task, positive_fraction=0.3)
    assert thresholds[0] == pytest.approx(6.3)
    for t, count in ((0, 10), (1, 20)):
        positive = advantage[task == t] > thresholds[t]
        assert positive.sum() == round(0.3 * count)


def test_interventions_are_always_positive():
    indicator = advantage_indicator(
        torch.tensor([-5.0, -5.0, 5.0]), torch.tensor(0.0), torch.tensor([1.0, 0.0, 0.0])
    )
    assert indicator.tolist() == [1.0, 0.0, 1.0]
