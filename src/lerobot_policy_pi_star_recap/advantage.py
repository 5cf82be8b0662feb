"""The RL math of RECAP, each piece a few lines: IQL losses, advantage weights, value bins, indicators."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

# --- IQL (Kostrikov et al., 2021) ---------------------------------------------------------------


def asymmetric_l2_loss(diff: Tensor, expectile: float) -> Tensor:
    """Expectile regression: |tau - 1(u < 0)| * u^2 with u = target - prediction (per element)."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return weight * diff.square()


def chunked_q_target(reward_sum: Tensor, bootstrap_discount: Tensor, next_value: Tensor) -> Tensor:
    """sum_{k<H} gamma^k r_{t+k} + gamma^H (1 - done) V(s_{t+H}); the table folds done into the discount."""
    return reward_sum + bootstrap_discount * next_value


def awr_weights(advantage: Tensor, temperature: float, clip: float) -> Tensor:
    """Advantage-weighted regression weights exp(A / temperature), clipped above (IQL's policy extraction)."""
    return torch.exp(advantage / temperature).clamp(max=clip)


# --- Distributional value (pi*0.6 paper) --------------------------------------------------------


def bin_centers(num_bins: int, low: float, high: float, device=None) -> Tensor:
    return torch.linspace(low, high, num_bins, device=device)


def two_hot(values: Tensor, num_bins: int, low: float, high: float) -> Tensor:
    """Project scalars onto the two nearest bins so that the expectation over bins gives them back."""
    position = (values.clamp(low, high) - low) / (high - low) * (num_bins - 1)
    lower = position.floor().long().clamp(max=num_bins - 2)
    upper_weight = position - lower
    target = torch.zeros(*values.shape, num_bins, device=values.device, dtype=values.dtype)
    target.scatter_(-1, lower.unsqueeze(-1), (1 - upper_weight).unsqueeze(-1))
    target.scatter_add_(-1, (lower + 1).unsqueeze(-1), upper_weight.unsqueeze(-1))
    return target


def hl_gauss(values: Tensor, num_bins: int, low: float, high: float, sigma_bins: float = 0.75) -> Tensor:
    """Histogram loss with a Gaussian (Farebrother et al., 2024): bin mass of N(value, sigma) on the support.

    Smoother than two-hot, which regularises a value head that sees few episodes.
    """
    width = (high - low) / (num_bins - 1)
    edges = torch.linspace(low - width / 2, high + width / 2, num_bins + 1, device=values.device)
    sigma = sigma_bins * width
    cdf = torch.special.ndtr((edges - values.clamp(low, high).unsqueeze(-1)) / sigma)
    mass = cdf[..., 1:] - cdf[..., :-1]
    return mass / mass.sum(-1, keepdim=True).clamp_min(1e-12)


def expected_value(logits: Tensor, low: float, high: float) -> Tensor:
    """Scalar value of a binned distribution: the expectation over bin centres."""
    centers = bin_centers(logits.shape[-1], low, high, device=logits.device).to(logits.dtype)
    return (logits.softmax(-1) * centers).sum(-1)


def distributional_value_loss(
    logits: Tensor, targets: Tensor, low: float, high: float, smoothing: str
) -> Tensor:
    """Cross-entropy of the value head against discretised Monte-Carlo returns (per sample)."""
    project = two_hot if smoothing == "two_hot" else hl_gauss
    target_probs = project(targets.float(), logits.shape[-1], low, high)
    return -(target_probs * F.log_softmax(logits.float(), -1)).sum(-1)


# --- Advantage indicator -------------------------------------------------------------------------


def nstep_advantage(
    nstep_reward: Tensor, nstep_bootstrap: Tensor, value_next: Tensor, value: Tensor
) -> Tensor:
    """sum_{k<N} r_{t+k} + V(o_{t+N}) - V(o_t) (no bootstrap when the episode ends within N steps)."""
    return nstep_reward + nstep_bootstrap * value_next - value


def quantile_thresholds(
    advantage: np.ndarray, task_index: np.ndarray, positive_fraction: float
) -> dict[int, float]:
    """Per-task threshold eps such that a `positive_fraction` share of that task's frames has A > eps."""
    return {
        int(task): float(np.quantile(advantage[task_index == task], 1.0 - positive_fraction))
        for task in np.unique(task_index)
    }


def advantage_indicator(advantage: Tensor, threshold: Tensor, intervention: Tensor) -> Tensor:
    """I_t = 1 if A_t > eps_task; human corrections are always positive (the paper's rule)."""
    return ((advantage > threshold) | (intervention > 0.5)).float()
