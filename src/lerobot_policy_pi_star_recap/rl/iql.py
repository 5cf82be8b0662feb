"""IQL (Kostrikov et al., 2021): expectile regression for V, the chunked Q backup, AWR weights."""

from __future__ import annotations

import torch
from torch import Tensor


def asymmetric_l2_loss(diff: Tensor, expectile: float) -> Tensor:
    """Expectile regression: |tau - 1(u < 0)| * u^2 with u = target - prediction (per element)."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return weight * diff.square()


def chunked_q_target(reward_sum, bootstrap_discount, next_value):
    """sum_{k<H} gamma^k r_{t+k} + gamma^H (1 - done) V(s_{t+H}); the table folds done into the discount.
    The same formula for torch tensors and numpy arrays."""
    return reward_sum + bootstrap_discount * next_value


def awr_weights(advantage: Tensor, temperature: float, clip: float) -> Tensor:
    """Advantage-weighted regression weights exp(A / temperature), clipped above (IQL's policy extraction)."""
    return torch.exp(advantage / temperature).clamp(max=clip)
