"""Record MetaWorld episodes into a LeRobotDataset with RECAP fields.

Modes:
  demo          the scripted expert acts (optionally noisy); every episode is "demo".
  auto          an actor acts alone (a policy checkpoint or a degraded expert); every episode is "auto".
  intervention  the actor acts and the expert takes over when a trigger fires, optionally handing control
                back after M steps. `intervention_mask` is True exactly on the frames whose executed action
                came from the expert; an episode is "intervention" if the expert took over at least once,
                else "auto".

A frame holds the observation, the action executed from it, and the RECAP columns of `data.writing`.
Episodes end at the first success or after `episode_length` steps (failure).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm import tqdm

from ..data.writing import RewardScheme, episode_columns
from ..schema import DATA_TYPE
from .actors import OPERATORS, Actor, ExpertActor
from .config import MetaWorldRecapEnvConfig
from .pool import EnvPool, EnvStep
from .tasks import task_descriptions

MODES = ("demo", "auto", "intervention")
TRIGGERS = ("stall", "disagreement", "random")


@dataclass(frozen=True)
class InterventionRule:
    """When the expert takes over an autonomous episode, and for how long.

    stall: for `stall_steps` of the actor's steps, MetaWorld's dense reward has not beaten by more than
    `stall_tolerance` the best the actor reached since it (re)gained control; disagreement: the L2 distance between the actor's and the expert's 4-d action exceeds
    `disagreement`; random: with probability `random_prob` per step. `handback_steps` = 0 keeps the
    expert in control until the episode ends, M > 0 returns control to the actor after M expert steps.
    """

    triggers: tuple[str, ...] = ("stall",)
    stall_steps: int = 20
    stall_tolerance: float = 1e-3
    disagreement: float = 1.0
    random_prob: float = 0.02
    handback_steps: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.triggers) - set(TRIGGERS))
        if unknown or not self.triggers:
            raise ValueError(
                f"intervention triggers {list(self.triggers)}: choose one or more of {list(TRIGGERS)}."
            )
        if self.stall_steps < 1:
            raise ValueError(f"stall steps must be >= 1, got {self.stall_steps}.")
        if self.disagreement <= 0:
            raise ValueError(f"the disagreement threshold must be > 0, got {self.disagreement}.")
        if not 0.0 <= self.random_prob <= 1.0:
            raise ValueError(f"the random trigger probability must lie in [0, 1], got {self.random_prob}.")
        if self.handback_steps < 0:
            raise ValueError(f"handback steps must be >= 0 (0: never hand back), got {self.handback_steps}.")


@dataclass
class _Episode:
    """The episode running in one env slot."""

    seed: int
    rng: np.random.Generator
    observation: dict[str, Any]
    expert_action: np.ndarray
    frames: list[dict[str, Any]] = field(default_factory=list)
    expert_flags: list[bool] = field(default_factory=list)
    expert_left: int = 0  # > 0: expert steps until handback; -1: expert until the end; 0: actor acts
    takeovers: int = 0
    best_progress: float = -np.inf
    since_progress: int = 0


@dataclass
class EpisodeRecord:
    """What was collected in one episode (written to meta/recap_collect.json)."""

    seed: int
    data_type: str
    success: bool
    length: int
    expert_frames: int
    takeovers: int
    # the operator profile (sim.actors.OPERATORS) that demonstrated (demo) or corrected (intervention); None
    # where no operator acted (auto) or the actions came from outside the simulator
    operator: str | None = None
    # demo mode with a degraded profile: the frames whose action was a pause / a wrong-direction (detour) step
    pause_frames: list[int] = field(default_factory=list)
    detour_frames: list[int] = field(default_factory=list)


def observation_frame(observation: dict[str, Any], env_config: MetaWorldRecapEnvConfig) -> dict[str, Any]:
    """Dataset columns of one env observation, named like the env's LeRobot features."""
    frame: dict[str, Any] = {}
    for key, target in env_config.features_map.items():
        if key == "action":
            continue
        value: Any = observation
        for part in key.split("/"):
            value = value[part]
        frame[target] = value.astype(np.float32) if value.dtype == np.float64 else value
    return frame


class Collector:
    """Drives the envs of an EnvPool, each through its own sequence of episodes, and writes them."""

    def __init__(
        self,
        env_config: MetaWorldRecapEnvConfig,
        actor: Actor,
        mode: str,
        reward_scheme: RewardScheme,
        intervention: InterventionRule | None = None,
        seed: int = 0,
        operator: str | None = "expert",
    ):
        """`operator` names the profile of sim.actors.OPERATORS whose actions the records credit: the actor's
        in demo mode, the takeovers' in intervention mode (the expert then acts as that operator); None for
        demonstrations that follow no profile (e.g. `collect --noise`), whose takeovers are the clean expert's."""
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: choose one of {list(MODES)}.")
        if (mode == "intervention") != (intervention is not None):
            raise ValueError("an InterventionRule is required in intervention mode, and only there.")
        self.env_config = env_config
        self.actor = actor
        self.mode = mode
        self.rule = intervention
        self.reward_scheme = reward_scheme.resolved(env_config.episode_length)
        self.seed = seed
        self.task = task_descriptions()[env_config.task]
        self.operator = operator
        # The clean expert's takeovers execute its actions unchanged (as collections before profiles did).
        profile = OPERATORS[operator or "expert"]
        self.corrector = ExpertActor(profile, seed) if mode == "intervention" and profile.active else None

    def run(
        self, pool: EnvPool, dataset, episodes: int, max_attempts: int | None = None
    ) -> tuple[list[EpisodeRecord], list[EpisodeRecord]]:
        """Record `episodes` episodes (env seeds seed, seed+1, ...) into `dataset` (a LeRobotDataset being
        written), keeping every env of `pool` busy; returns one record per saved episode, in dataset order,
        and one per discarded episode.

        With `max_attempts` only successful episodes are kept, going on to the next env seeds until
        `episodes` succeeded, within `max_attempts` seeds (a failed attempt of the scripted expert is not a
        demonstration). Episodes in flight never exceed what is still missing, so the kept seeds (the first
        `episodes` successes) do not depend on the number of envs.

        Finished episodes are written by one background thread (LeRobot's save_episode encodes images
        and computes stats, ~0.5 s per episode), so stepping continues meanwhile."""
        if episodes < 1:
            raise ValueError(f"need at least one episode, got {episodes}.")
        successes_only = max_attempts is not None
        attempts = max_attempts if successes_only else episodes
        seeds = iter(range(self.seed, self.seed + attempts))
        records: list[EpisodeRecord] = []
        discarded: list[EpisodeRecord] = []
        running: dict[int, _Episode] = {}
        writes: list[Future] = []
        with (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="episode-writer") as writer,
            tqdm(total=episodes, desc=f"collect {self.mode} {self.env_config.task}", unit="ep") as bar,
        ):
            self._start(pool, running, dict(zip(range(min(pool.n_envs, episodes)), seeds, strict=False)))
            while running:
                executed = self._act(running)
                restart = {}
                for slot, result in pool.step(executed).items():
                    episode = running[slot]
                    self._record(episode, executed[slot], result)
                    if not (result.terminated or result.truncated):
                        continue
                    record, frames = self._finish(slot, episode, result.success)
                    del running[slot]
                    if successes_only and not record.success:
                        discarded.append(record)
                    else:
                        records.append(record)
                        writes.append(writer.submit(self._write, dataset, frames))
                        bar.update(1)
                    finished = records + discarded
                    bar.set_postfix(success=f"{np.mean([r.success for r in finished]):.0%}")
                    if len(records) + len(running) + len(restart) < episodes:
                        next_seed = next(seeds, None)
                        if next_seed is not None:
                            restart[slot] = next_seed
                if restart:
                    self._start(pool, running, restart)
                for done in [w for w in writes if w.done()]:
                    done.result()  # a failed write stops the collection now
                    writes.remove(done)
            for pending in writes:
                pending.result()
        if len(records) < episodes:
            raise ValueError(
                f"only {len(records)} of {attempts} {self.mode} episodes of {self.env_config.task} (env seeds "
                f"{self.seed}-{self.seed + attempts - 1}) succeeded, {episodes} were asked for: raise "
                "--episode-length, or keep the failures (collect without --successes-only; `demo "
                "--no-successful-demos`)."
            )
        return records, discarded

    def _start(self, pool: EnvPool, running: dict[int, _Episode], seeds: dict[int, int]) -> None:
        for slot, step in pool.reset(seeds).items():
            rng = np.random.default_rng([self.seed, seeds[slot], 2])
            running[slot] = _Episode(seeds[slot], rng, step.observation, step.expert_action)
            self.actor.start_episode(slot, seeds[slot])
            if self.corrector is not None:
                self.corrector.start_episode(slot, seeds[slot])

    def _act(self, running: dict[int, _Episode]) -> dict[int, np.ndarray]:
        """The executed action of every running env; marks which came from the expert."""
        actor_slots = {s: e for s, e in running.items() if e.expert_left == 0}
        proposals = (
            self.actor.propose(
                {s: e.observation for s, e in actor_slots.items()},
                {s: e.expert_action for s, e in actor_slots.items()},
            )
            if actor_slots
            else {}
        )
        executed, corrected = {}, []
        for slot, episode in running.items():
            if episode.expert_left == 0 and not self._triggered(episode, proposals[slot]):
                executed[slot] = proposals[slot]
                episode.expert_flags.append(False)
                continue
            if episode.expert_left == 0:  # a trigger fired: the expert takes over from this frame
                episode.takeovers += 1
                episode.expert_left = self.rule.handback_steps or -1
                self.actor.interrupt(slot)
                if self.corrector is not None:
                    self.corrector.interrupt(slot)
            corrected.append(slot)
            executed[slot] = episode.expert_action
            episode.expert_flags.append(True)
            if episode.expert_left > 0:
                episode.expert_left -= 1
                if episode.expert_left == 0:  # hand back: the actor replans from the next state
                    self.actor.interrupt(slot)
                    episode.best_progress, episode.since_progress = -np.inf, 0
        if corrected and self.corrector is not None:  # the expert's actions as the operator executes them
            executed.update(
                self.corrector.propose(
                    {s: running[s].observation for s in corrected},
                    {s: running[s].expert_action for s in corrected},
                )
            )
        return executed

    def _triggered(self, episode: _Episode, proposal: np.ndarray) -> bool:
        if self.rule is None:
            return False
        triggers = self.rule.triggers
        return (
            ("stall" in triggers and episode.since_progress >= self.rule.stall_steps)
            or (
                "disagreement" in triggers
                and float(np.linalg.norm(proposal - episode.expert_action)) > self.rule.disagreement
            )
            or ("random" in triggers and episode.rng.random() < self.rule.random_prob)
        )

    def _record(self, episode: _Episode, action: np.ndarray, result: EnvStep) -> None:
        frame = observation_frame(episode.observation, self.env_config)
        frame["action"] = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        episode.frames.append(frame)
        if self.rule is not None and not episode.expert_flags[-1]:
            # Stall tracking covers the actor's own steps: its first step sets the baseline.
            if result.progress > episode.best_progress + self.rule.stall_tolerance:
                episode.best_progress, episode.since_progress = result.progress, 0
            else:
                episode.since_progress += 1
        episode.observation, episode.expert_action = result.observation, result.expert_action

    def _finish(
        self, slot: int, episode: _Episode, success: bool
    ) -> tuple[EpisodeRecord, list[dict[str, Any]]]:
        """The episode's record and its frames with the RECAP columns filled in."""
        mask = np.asarray(episode.expert_flags, dtype=bool)
        if self.mode == "intervention":
            data_type = "intervention" if episode.takeovers else "auto"
        else:
            data_type = self.mode
        columns = episode_columns(len(episode.frames), success, data_type, mask, self.reward_scheme)
        for t, frame in enumerate(episode.frames):
            frame.update({key: np.array([values[t]]) for key, values in columns.items()})
            frame[DATA_TYPE.name] = data_type  # string features take a plain str
            frame["task"] = self.task
        operator = None if data_type == "auto" else self.operator
        record = EpisodeRecord(
            episode.seed,
            data_type,
            success,
            len(episode.frames),
            int(mask.sum()),
            episode.takeovers,
            operator,
        )
        if self.mode == "demo" and isinstance(self.actor, ExpertActor):  # the actor acted on every frame
            degraded = self.actor.degraded_actions(slot)
            record.pause_frames, record.detour_frames = degraded["pause"], degraded["wrong"]
        return record, episode.frames

    @staticmethod
    def _write(dataset, frames: list[dict[str, Any]]) -> None:
        for frame in frames:
            dataset.add_frame(frame)
        dataset.save_episode()
