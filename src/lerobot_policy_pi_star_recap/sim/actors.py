"""Who proposes actions during collection: the scripted expert (optionally degraded to fail sometimes) or
a LeRobot policy checkpoint. Actors see one batch of envs per step, so a policy runs one forward pass for
all envs that need a new action chunk.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


def stack_observations(observations: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack per-env observation dicts (nested, numpy) into one batched dict like a vector env's."""
    first = observations[0]
    if isinstance(first, dict):
        return {key: stack_observations([o[key] for o in observations]) for key in first}
    return np.stack(observations)


class Actor(ABC):
    """Proposes actions for envs addressed by slot; `interrupt` drops whatever it had planned for a slot
    (the expert took over or handed back, so old plans no longer fit the state)."""

    def start_episode(self, slot: int, seed: int) -> None:  # noqa: B027 - optional hook
        """A new episode starts in `slot` from env seed `seed`."""

    def interrupt(self, slot: int) -> None:  # noqa: B027 - optional hook
        """Forget planned actions of `slot`."""

    @abstractmethod
    def propose(
        self, observations: dict[int, dict[str, Any]], expert_actions: dict[int, np.ndarray]
    ) -> dict[int, np.ndarray]:
        """One action per slot given."""


@dataclass(frozen=True)
class Degradation:
    """How a scripted expert is made to fail sometimes, for realistic autonomous data without a policy.

    Per step, with `pause_prob` a pause of `pause_steps` steps starts (no motion, gripper kept), and with
    `wrong_prob` a wrong-direction segment of `wrong_steps` steps (the expert's motion reversed); Gaussian
    noise of std `noise` is added to every action.
    """

    noise: float = 0.0
    pause_prob: float = 0.0
    pause_steps: int = 10
    wrong_prob: float = 0.0
    wrong_steps: int = 10

    def __post_init__(self) -> None:
        if self.noise < 0:
            raise ValueError(f"action noise must be >= 0, got {self.noise}.")
        for name in ("pause_prob", "wrong_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}.")
        for name in ("pause_steps", "wrong_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")

    @property
    def active(self) -> bool:
        return self.noise > 0 or self.pause_prob > 0 or self.wrong_prob > 0


# Simulated demonstrators of mixed quality, like robomimic's multi-human operators rated better / okay /
# worse: the scripted expert with jitter (action noise), hesitations (pauses) and detours (reversed motion).
# "expert" is the clean scripted expert. Frozen: the profiles were fixed by a stated rule (each succeeds
# as a demonstrator; "worse" takes 1.5-2.5x the expert's steps) before any policy was trained on them, and
# results name them; a changed profile is new data, so add a profile rather than edit one.
OPERATORS: dict[str, Degradation] = {
    "expert": Degradation(),
    "better": Degradation(noise=0.05),
    "okay": Degradation(noise=0.05, pause_prob=0.02, pause_steps=10, wrong_prob=0.005, wrong_steps=5),
    "worse": Degradation(noise=0.1, pause_prob=0.04, pause_steps=15, wrong_prob=0.01, wrong_steps=5),
}


def parse_operators(spec: str) -> list[tuple[str, int]]:
    """`"better:4,okay:3,worse:3"` -> [("better", 4), ("okay", 3), ("worse", 3)]: episodes per profile,
    in collection order."""
    groups: list[tuple[str, int]] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, _, count = part.partition(":")
        if name not in OPERATORS or not count.strip().isdigit() or int(count) < 1:
            raise ValueError(
                f"--operators {spec!r}: write PROFILE:EPISODES pairs, e.g. better:4,okay:3,worse:3, with "
                f"profiles from {list(OPERATORS)} and at least one episode each."
            )
        if name in dict(groups):
            raise ValueError(f"--operators {spec!r} names {name!r} twice.")
        groups.append((name, int(count)))
    if not groups:
        raise ValueError("--operators is empty: e.g. better:4,okay:3,worse:3.")
    return groups


class ExpertActor(Actor):
    """MetaWorld's scripted expert with an optional `Degradation`; random draws are seeded per episode, so
    an episode is reproducible from its env seed whatever env slot runs it."""

    def __init__(self, degradation: Degradation = Degradation(), seed: int = 0):
        self.degradation = degradation
        self.seed = seed
        self._rng: dict[int, np.random.Generator] = {}
        self._segment: dict[int, tuple[str, int]] = {}  # slot -> (kind, steps left)
        self._proposed: dict[int, int] = {}  # slot -> actions proposed in its episode so far
        self._degraded: dict[int, dict[str, list[int]]] = {}  # slot -> kind -> indices of those actions

    def start_episode(self, slot: int, seed: int) -> None:
        self._rng[slot] = np.random.default_rng([self.seed, seed, 1])
        self._segment.pop(slot, None)
        self._proposed[slot] = 0
        self._degraded[slot] = {"pause": [], "wrong": []}

    def degraded_actions(self, slot: int) -> dict[str, list[int]]:
        """Which of the actions proposed for `slot` since its episode started were pauses and which
        wrong-direction (detour) steps, by proposal index: ground truth for checking advantage labels."""
        return {kind: list(steps) for kind, steps in self._degraded[slot].items()}

    def interrupt(self, slot: int) -> None:
        self._segment.pop(slot, None)

    def propose(self, observations, expert_actions):
        return {slot: self._degrade(slot, expert_actions[slot]) for slot in observations}

    def _degrade(self, slot: int, expert: np.ndarray) -> np.ndarray:
        d, rng = self.degradation, self._rng[slot]
        action = expert.astype(np.float32).copy()
        step, self._proposed[slot] = self._proposed[slot], self._proposed[slot] + 1
        if not d.active:
            return action
        kind, left = self._segment.get(slot, (None, 0))
        if left == 0:
            kind = None
            draw = rng.random()
            if draw < d.pause_prob:
                kind, left = "pause", d.pause_steps
            elif draw < d.pause_prob + d.wrong_prob:
                kind, left = "wrong", d.wrong_steps
        if kind == "pause":
            action[:3] = 0.0
        elif kind == "wrong":
            action[:3] = -action[:3]
        self._segment[slot] = (kind, max(left - 1, 0))
        if kind is not None:
            self._degraded[slot][kind].append(step)
        if d.noise > 0:
            action = action + rng.normal(0.0, d.noise, size=action.shape).astype(np.float32)
        return np.clip(action, -1.0, 1.0)


class PolicyActor(Actor):
    """A LeRobot policy checkpoint (a `pretrained_model` folder), e.g. one trained by
    `lerobot-train --policy.type=pi_star_recap`.

    Chunks come from `predict_action_chunk` and are queued per env (`n_action_steps` actions executed per
    chunk, as `select_action` does), so envs at different points of their episodes share one batched
    forward pass and a takeover only clears that env's queue.
    """

    def __init__(self, path: str | Path, device: str, env_features: dict[str, Any], task: str):
        import torch

        from ..evaluation.policy_loading import load_policy

        self.policy, self.preprocessor, self.postprocessor = load_policy(path, device)
        config = self.policy.config
        if getattr(config, "n_obs_steps", 1) != 1:
            raise ValueError(
                f"{path}: the collector feeds one observation per step; policies with n_obs_steps="
                f"{config.n_obs_steps} are not supported."
            )
        self._check_features(config, env_features, Path(path))
        self.policy.reset()
        self.n_action_steps = int(getattr(config, "n_action_steps", 1))
        self.task = task
        self._torch = torch
        self._queues: dict[int, deque[np.ndarray]] = {}
        logging.info(f"collector: policy {config.type} from {path} on {device}")

    @staticmethod
    def _check_features(config, env_features: dict[str, Any], path: Path) -> None:
        problems = []
        for key, feature in config.input_features.items():
            if key not in env_features:
                problems.append(f"{key} (not produced by this env)")
            elif key.startswith("observation.images") or key == "observation.image":
                continue  # policies resize images themselves; names must match
            elif tuple(feature.shape) != tuple(env_features[key].shape):
                problems.append(f"{key} shape {tuple(feature.shape)} vs env {tuple(env_features[key].shape)}")
        if problems:
            raise ValueError(
                f"{path} expects inputs the env does not provide: {problems}. The env provides "
                f"{sorted(env_features)}; pick matching --cameras / --state / --layout."
            )

    def start_episode(self, slot: int, seed: int) -> None:
        self._queues[slot] = deque()

    def interrupt(self, slot: int) -> None:
        self._queues[slot] = deque()

    def propose(self, observations, expert_actions):
        from lerobot.envs.utils import preprocess_observation

        needy = [slot for slot in observations if not self._queues.get(slot)]
        if needy:
            batch = preprocess_observation(stack_observations([observations[s] for s in needy]))
            batch["task"] = [self.task] * len(needy)
            with self._torch.inference_mode():
                chunk = self.policy.predict_action_chunk(self.preprocessor(batch))
                chunk = self.postprocessor(chunk[:, : self.n_action_steps])
            chunk = chunk.float().cpu().numpy()
            for row, slot in enumerate(needy):
                self._queues[slot] = deque(np.clip(chunk[row], -1.0, 1.0))
        return {slot: self._queues[slot].popleft().astype(np.float32) for slot in observations}
