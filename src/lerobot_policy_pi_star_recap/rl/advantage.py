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


def chunked_q_target(reward_sum, bootstrap_discount, next_value):
    """sum_{k<H} gamma^k r_{t+k} + gamma^H (1 - done) V(s_{t+H}); the table folds done into the discount.
    The same formula for torch tensors and numpy arrays."""
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


# --- Multi-step windows along one episode (numpy; precomputed per frame) --------------------------
#
# Every multi-step quantity (IQL's chunk backup, the paper's N-step advantage, the full return) is
#   reward_sum[t] + bootstrap_discount[t] * V(o_{b_t}),  b_t = min(t + H, cut_t),
# with reward_sum[t] = sum_{t<=k<b_t} gamma^(k-t) r_k. `cut_t` is where the window must stop: the end of
# the episode (a terminal end has no state after it, so nothing is bootstrapped; a truncated end -- a
# time-out -- bootstraps from its last observation instead of counting its final reward), or the next
# change of controller (policy -> expert or back) when `switches` are given, so that a rescue's success
# is not credited to the stall that triggered it.


def reverse_discounted_cumsum(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """R[t] = r[t] + gamma * R[t+1] within one episode."""
    out = np.zeros(len(rewards) + 1, dtype=np.float64)
    for t in range(len(rewards) - 1, -1, -1):
        out[t] = rewards[t] + gamma * out[t + 1]
    return out[:-1]


def window_cuts(length: int, terminal: bool, controller: np.ndarray | None = None) -> np.ndarray:
    """Per frame, the index where its window stops: the next change of `controller` after t, else the
    episode's end (`length` if terminal, the last frame if truncated)."""
    end = length if terminal else length - 1
    cuts = np.full(length, end, dtype=np.int64)
    if controller is not None:
        controller = np.asarray(controller).reshape(-1)
        switches = np.flatnonzero(controller[1:] != controller[:-1]) + 1
        for start, stop in zip(np.r_[0, switches], np.r_[switches, length], strict=True):
            cuts[start:stop] = min(stop, end) if stop < length else end
    return cuts


def window_targets(
    rewards: np.ndarray, horizon: int | None, gamma: float, cuts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reward_sum, bootstrap_discount, bootstrap_index) of every frame; horizon None = no limit (full
    return). bootstrap_discount is 0 where the window reaches a terminal end (no state to bootstrap)."""
    length = len(rewards)
    returns = reverse_discounted_cumsum(rewards, gamma)
    t = np.arange(length)
    stop = cuts if horizon is None else np.minimum(t + horizon, cuts)
    tail = np.r_[returns, 0.0][stop]
    reward_sum = returns - gamma ** (stop - t) * tail
    discount = np.where(stop < length, gamma ** (stop - t), 0.0)
    return reward_sum, discount, np.minimum(stop, length - 1)


def episode_advantage(
    values: np.ndarray,
    rewards: np.ndarray,
    n_step: int | None,
    terminal: bool = True,
    controller: np.ndarray | None = None,
) -> np.ndarray:
    """Paper advantage along one episode: sum_{k<N} r_{t+k} + V(o_{t+N}) - V(o_t) (n_step None: the
    return to the window's end minus V), windows cut as in `window_cuts`."""
    cuts = window_cuts(len(rewards), terminal, controller)
    reward_sum, discount, index = window_targets(rewards, n_step, 1.0, cuts)
    return nstep_advantage(reward_sum, discount, values[index], values)


def estimated_advantage(
    estimator: str,
    value: np.ndarray,
    q: np.ndarray | None,
    rewards: np.ndarray,
    n_step: int | None,
    terminal: bool = True,
    controller: np.ndarray | None = None,
) -> np.ndarray:
    """Advantage along one episode for `estimator`: IQL's min Q(s, recorded chunk) - V(s), else the
    paper's N-step (or full-return) advantage from V (`episode_advantage`)."""
    if estimator == "iql":
        return q - value
    return episode_advantage(value, rewards, n_step, terminal, controller)


def advantage_n_step(horizon: str, n_step: int) -> int | None:
    """N of the paper's advantage for an `advantage_horizon`: None (no limit) for "full_return"."""
    return n_step if horizon == "n_step" else None


def return_discount(estimator: str, discount: float) -> float:
    """Discount of the returns the critics estimate: IQL's are discounted, the paper's value is not."""
    return discount if estimator == "iql" else 1.0


def frames_before_takeovers(controller: np.ndarray, steps: int) -> np.ndarray:
    """Mask of the (up to) `steps` frames before each takeover (controller 0 -> 1) of one episode."""
    expert = np.asarray(controller).reshape(-1) > 0.5
    mask = np.zeros(len(expert), dtype=bool)
    for takeover in np.flatnonzero(expert & ~np.r_[False, expert[:-1]]):
        mask[max(0, takeover - steps) : takeover] = True
    return mask & ~expert


# --- Advantage indicator -------------------------------------------------------------------------


def nstep_advantage(nstep_reward, nstep_bootstrap, value_next, value):
    """sum_{k<N} r_{t+k} + V(o_{t+N}) - V(o_t) (no bootstrap when a terminal end comes within N steps):
    the bootstrapped window return minus V, for torch tensors (training) and numpy arrays (labelling)."""
    return chunked_q_target(nstep_reward, nstep_bootstrap, value_next) - value


def quantile_thresholds(
    advantage: np.ndarray, group: np.ndarray, positive_fraction: float
) -> dict[int, float]:
    """Per-group (task, or task x value function) threshold eps such that a `positive_fraction` share of
    that group's frames has A > eps."""
    return {
        int(g): float(np.quantile(advantage[group == g], 1.0 - positive_fraction)) for g in np.unique(group)
    }


def advantage_indicator(advantage, threshold, intervention):
    """I_t = 1 if A_t > eps_task; human corrections are always positive (the paper's rule). Floats from
    torch tensors (training) and numpy arrays (labelling) alike."""
    return ((advantage > threshold) | (intervention > 0.5)) * 1.0
