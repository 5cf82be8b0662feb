"""The paper's distributional value: returns on a binned support (two-hot or HL-Gauss targets), its
cross-entropy loss and the expected value of a binned distribution."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor


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
