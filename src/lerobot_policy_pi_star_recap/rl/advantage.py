"""Advantages and their indicator: the paper's N-step (or full-return) advantage along an episode, IQL's
Q - V, per-task quantile thresholds and the 0/1 indicator, for tensors (training) and arrays (labelling)."""

from __future__ import annotations

import numpy as np

from .iql import chunked_q_target
from .returns import window_cuts, window_targets


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


def frames_before_takeovers(controller: np.ndarray, steps: int) -> np.ndarray:
    """Mask of the (up to) `steps` frames before each takeover (controller 0 -> 1) of one episode."""
    expert = np.asarray(controller).reshape(-1) > 0.5
    mask = np.zeros(len(expert), dtype=bool)
    for takeover in np.flatnonzero(expert & ~np.r_[False, expert[:-1]]):
        mask[max(0, takeover - steps) : takeover] = True
    return mask & ~expert


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
