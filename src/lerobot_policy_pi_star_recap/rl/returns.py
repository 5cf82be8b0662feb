"""Multi-step windows along one episode (numpy; precomputed per frame).

Every multi-step quantity (IQL's chunk backup, the paper's N-step advantage, the full return) is
  reward_sum[t] + bootstrap_discount[t] * V(o_{b_t}),  b_t = min(t + H, cut_t),
with reward_sum[t] = sum_{t<=k<b_t} gamma^(k-t) r_k. `cut_t` is where the window must stop: the end of
the episode (a terminal end has no state after it, so nothing is bootstrapped; a truncated end -- a
time-out -- bootstraps from its last observation instead of counting its final reward), or the next
change of controller (policy -> expert or back) when `switches` are given, so that a rescue's success
is not credited to the stall that triggered it.
"""

from __future__ import annotations

import numpy as np


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


def return_discount(estimator: str, discount: float) -> float:
    """Discount of the returns the critics estimate: IQL's are discounted, the paper's value is not."""
    return discount if estimator == "iql" else 1.0
