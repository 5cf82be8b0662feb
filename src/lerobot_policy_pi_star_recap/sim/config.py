"""`--env.type=metaworld_recap`: the LeRobot EnvConfig of the fast MetaWorld env.

Imported with the package (LeRobot's `register_third_party_plugins()` imports every installed
`lerobot_policy_*` distribution before it parses CLI arguments), so it must stay light: metaworld and
mujoco are only imported by `create_envs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lerobot.configs import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig
from lerobot.utils.constants import ACTION, OBS_IMAGE, OBS_IMAGES, OBS_STATE

from .tasks import ACTION_DIM, STATE_DIMS, check_env_options, parse_cameras

ENV_TYPE = "metaworld_recap"


METAWORLD_FPS = 80  # MetaWorld's control rate: robot time of an episode = steps / 80 s


@EnvConfig.register_subclass(ENV_TYPE)
@dataclass
class MetaWorldRecapEnvConfig(EnvConfig):
    """MetaWorld with fast CPU rendering, a configurable episode length, image size, cameras and state.

    layout="recap": `observation.images.<camera>` for each camera and `observation.state` (39-d "full" or
    4-d "hand"). layout="lerobot": LeRobot's `--env.type=metaworld` names, `observation.image` (one camera)
    and the 4-d hand state, so policies move between this env and the stock one.
    """

    task: str | None = "push-v3"
    fps: int = METAWORLD_FPS
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
        self.task, cameras = check_env_options(
            self.task,
            self.cameras,
            self.state,
            self.layout,
            self.reward,
            self.episode_length,
            self.image_size,
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

    def dataset_features(self, video: bool = False) -> dict[str, dict]:
        """LeRobot dataset features of the observations and action (camera frames as `image` or `video`)."""
        out = {}
        for key, feature in self.features.items():
            if feature.type is FeatureType.VISUAL:
                dtype = "video" if video else "image"
                spec = {"dtype": dtype, "shape": feature.shape, "names": ["height", "width", "channel"]}
            else:
                spec = {"dtype": "float32", "shape": feature.shape, "names": None}
            out[self.features_map[key]] = spec
        return out
