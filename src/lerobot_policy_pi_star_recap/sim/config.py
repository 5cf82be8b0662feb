"""`--env.type=metaworld_recap`: the LeRobot EnvConfig of the fast MetaWorld env.

Imported with the package (LeRobot's `register_third_party_plugins()` imports every installed
`lerobot_policy_*` distribution before it parses CLI arguments), so it must stay light: metaworld and
mujoco are only imported by `create_envs`.
"""

from __future__ import annotations

import difflib
import json
import logging
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from lerobot.configs import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig
from lerobot.utils.constants import ACTION, OBS_IMAGE, OBS_IMAGES, OBS_STATE

ENV_TYPE = "metaworld_recap"
ACTION_DIM = 4
STATE_DIMS = {
    "full": 39,
    "hand": 4,
}  # full: MetaWorld's observation (hand, objects, goal); hand: xyz + gripper
LAYOUTS = ("recap", "lerobot")
REWARDS = ("dense", "recap")
CAMERAS = ("corner", "corner2", "corner3", "topview", "behindGripper", "gripperPOV")
MAX_EPISODE_LENGTH = 500  # MetaWorld refuses to step past max_path_length = 500


@cache
def task_descriptions() -> dict[str, str]:
    """MetaWorld v3 task name -> instruction, from LeRobot's own table (so `task` strings match the stock
    `--env.type=metaworld` wrapper and a policy's language input transfers between the two)."""
    import lerobot.envs

    path = Path(lerobot.envs.__file__).parent / "metaworld_config.json"
    return dict(json.loads(path.read_text())["TASK_DESCRIPTIONS"])


def canonical_task(name: str) -> str:
    """`push-v3`, LeRobot's `metaworld-push-v3` and the legacy `metaworld-push-v2` all mean `push-v3`
    (metaworld 3 only ships v3 environments)."""
    task = name.strip().removeprefix("metaworld-")
    if task.endswith("-v2"):
        logging.warning(f"MetaWorld task {name!r}: metaworld 3 has no v2 envs, using {task[:-3]}-v3.")
        task = task[:-3] + "-v3"
    known = task_descriptions()
    if task not in known:
        close = difflib.get_close_matches(task, list(known), n=3)
        hint = f" Did you mean {close}?" if close else ""
        raise ValueError(f"unknown MetaWorld task {name!r}.{hint} Known tasks: {', '.join(sorted(known))}.")
    return task


def parse_cameras(cameras: str) -> list[str]:
    names = [c.strip() for c in cameras.split(",") if c.strip()]
    unknown = sorted(set(names) - set(CAMERAS))
    if unknown:
        raise ValueError(
            f"unknown MetaWorld cameras {unknown}; choose from {list(CAMERAS)} (comma separated)."
        )
    if len(set(names)) != len(names):
        raise ValueError(f"cameras {names} list a camera twice.")
    return names


@EnvConfig.register_subclass(ENV_TYPE)
@dataclass
class MetaWorldRecapEnvConfig(EnvConfig):
    """MetaWorld with fast CPU rendering, a configurable episode length, image size, cameras and state.

    layout="recap": `observation.images.<camera>` for each camera and `observation.state` (39-d "full" or
    4-d "hand"). layout="lerobot": LeRobot's `--env.type=metaworld` names, `observation.image` (one camera)
    and the 4-d hand state, so policies move between this env and the stock one.
    """

    task: str | None = "push-v3"
    fps: int = 80
    episode_length: int = 200
    image_size: int = 96
    cameras: str = "corner2"  # comma separated; "" for state-only observations
    state: str = "full"
    layout: str = "recap"
    # "dense": MetaWorld's shaped reward; "recap": the paper's -1 per step and 0 on the success step, so
    # lerobot-eval's sum_reward of a successful episode is 1 - (steps to success).
    reward: str = "dense"
    features: dict[str, PolicyFeature] = field(default_factory=dict)
    features_map: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.task is None:
            raise ValueError("metaworld_recap needs --env.task, e.g. push-v3.")
        self.task = canonical_task(self.task)
        if self.state not in STATE_DIMS:
            raise ValueError(f"--env.state={self.state!r}: choose one of {list(STATE_DIMS)}.")
        if self.reward not in REWARDS:
            raise ValueError(f"--env.reward={self.reward!r}: choose one of {list(REWARDS)}.")
        if self.layout not in LAYOUTS:
            raise ValueError(f"--env.layout={self.layout!r}: choose one of {list(LAYOUTS)}.")
        if not 1 <= self.episode_length <= MAX_EPISODE_LENGTH:
            raise ValueError(
                f"--env.episode_length must lie in 1..{MAX_EPISODE_LENGTH}, got {self.episode_length}."
            )
        if self.image_size < 8:
            raise ValueError(f"--env.image_size must be >= 8 pixels, got {self.image_size}.")
        cameras = parse_cameras(self.cameras)
        if self.layout == "lerobot" and (len(cameras) != 1 or self.state != "hand"):
            raise ValueError(
                "layout 'lerobot' mirrors --env.type=metaworld: exactly one camera and state 'hand' "
                f"(got cameras={cameras}, state={self.state!r})."
            )
        size = (self.image_size, self.image_size, 3)
        self.features = {ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(ACTION_DIM,))}
        self.features["agent_pos"] = PolicyFeature(type=FeatureType.STATE, shape=(STATE_DIMS[self.state],))
        self.features_map = {ACTION: ACTION, "agent_pos": OBS_STATE}
        if self.layout == "lerobot":
            self.features["pixels"] = PolicyFeature(type=FeatureType.VISUAL, shape=size)
            self.features_map["pixels"] = OBS_IMAGE
        else:
            for camera in cameras:
                self.features[f"pixels/{camera}"] = PolicyFeature(type=FeatureType.VISUAL, shape=size)
                self.features_map[f"pixels/{camera}"] = f"{OBS_IMAGES}.{camera}"

    @property
    def gym_kwargs(self) -> dict:
        return {
            "task": self.task,
            "image_size": self.image_size,
            "cameras": tuple(parse_cameras(self.cameras)),
            "state": self.state,
            "layout": self.layout,
            "episode_length": self.episode_length,
            "fps": self.fps,
            "reward": self.reward,
        }

    def create_envs(self, n_envs: int, use_async_envs: bool = False):
        from .metaworld_env import make_vector_env

        return {self.type: {0: make_vector_env(self.gym_kwargs, n_envs, use_async_envs)}}

    def dataset_features(self) -> dict[str, dict]:
        """LeRobot dataset features of the observations and action (images stored as `image`)."""
        out = {}
        for key, feature in self.features.items():
            if feature.type is FeatureType.VISUAL:
                spec = {"dtype": "image", "shape": feature.shape, "names": ["height", "width", "channel"]}
            else:
                spec = {"dtype": "float32", "shape": feature.shape, "names": None}
            out[self.features_map[key]] = spec
        return out
