"""MetaWorld as a gymnasium env with fast CPU rendering, LeRobot observation names and the task's scripted
expert, for `lerobot-eval --env.type=metaworld_recap` and for `pi-star-recap collect`.

Rendering: MuJoCo's default offscreen quality costs 70-90 ms per frame on a CPU (Mesa llvmpipe); with
shadows, reflections and multisampling off it is ~8 ms at 96-224 px. Headless machines need
MUJOCO_GL=egl (or osmesa).
"""

from __future__ import annotations

import os
import warnings
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .tasks import ACTION_DIM, STATE_DIMS, check_env_options, task_descriptions

# MetaWorld's corner2 camera renders upside down; LeRobot's wrapper flips it and moves it closer to the
# table. Doing the same keeps images comparable with `--env.type=metaworld`.
FLIPPED_CAMERAS = ("corner2",)
CORNER2_POSITION = (0.75, 0.075, 0.7)
# The scripted experts' gains exceed the action bounds on purpose; actions are clipped below.
warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high")


_gl_context_created = False  # whether this process has an OpenGL context (then it must not fork envs)


def process_has_gl_context() -> bool:
    return _gl_context_created


class FastRenderer:
    """An offscreen MuJoCo renderer with shadows, reflections and multisampling off."""

    def __init__(self, model, size: int):
        import mujoco

        global _gl_context_created

        if not os.environ.get("MUJOCO_GL"):
            raise RuntimeError(
                "MetaWorld rendering needs a headless OpenGL backend: set MUJOCO_GL=egl (or osmesa) "
                "before starting Python."
            )
        model.vis.quality.offsamples = 0
        self._renderer = mujoco.Renderer(model, size, size)
        _gl_context_created = True
        self._off = (mujoco.mjtRndFlag.mjRND_SHADOW, mujoco.mjtRndFlag.mjRND_REFLECTION)

    def render(self, data, camera: str) -> np.ndarray:
        self._renderer.update_scene(data, camera=camera)
        for flag in self._off:
            self._renderer.scene.flags[flag] = 0
        image = self._renderer.render()
        return np.ascontiguousarray(np.flip(image, (0, 1))) if camera in FLIPPED_CAMERAS else image

    def close(self) -> None:
        self._renderer.close()


class MetaWorldRecapEnv(gym.Env):
    """One MetaWorld v3 task. Episodes terminate at the first success and are truncated at
    `episode_length` steps; `reset(seed=s)` places objects and goal deterministically from `s`.

    The reward is MetaWorld's dense shaped reward (what `lerobot-eval` sums), or with reward="recap" the
    paper's -1 per step and 0 on the success step; `info["is_success"]` is the
    task's success flag; `expert_action()` is the scripted expert's action for the current state.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 80}

    def __init__(
        self,
        task: str = "push-v3",
        image_size: int = 96,
        cameras: tuple[str, ...] = ("corner2",),
        state: str = "full",
        layout: str = "recap",
        episode_length: int = 200,
        fps: int = 80,
        reward: str = "dense",
    ):
        super().__init__()
        self.task, _ = check_env_options(
            task, ",".join(cameras), state, layout, reward, episode_length, image_size
        )
        self.reward = reward
        self.task_description = task_descriptions()[self.task]
        self.cameras = tuple(cameras)
        self.image_size = image_size
        self.state = state
        self.layout = layout
        self._max_episode_steps = episode_length
        self.render_mode = "rgb_array"
        self.metadata = {**self.metadata, "render_fps": fps}

        image_space = spaces.Box(0, 255, (image_size, image_size, 3), dtype=np.uint8)
        observation: dict[str, spaces.Space] = {
            "agent_pos": spaces.Box(-np.inf, np.inf, (STATE_DIMS[state],), dtype=np.float64)
        }
        if self.cameras:
            observation["pixels"] = (
                image_space
                if layout == "lerobot"
                else spaces.Dict({camera: image_space for camera in self.cameras})
            )
        self.observation_space = spaces.Dict(observation)
        self.action_space = spaces.Box(-1.0, 1.0, (ACTION_DIM,), dtype=np.float32)

        # Built on first reset, inside the process that steps the env (OpenGL contexts do not survive fork).
        self._env = None
        self._renderer: FastRenderer | None = None
        self._expert = None
        self._raw_obs: np.ndarray | None = None
        self._steps = 0

    def _ensure_env(self) -> None:
        if self._env is not None:
            return
        import metaworld
        from metaworld.policies import ENV_POLICY_MAP

        benchmark = metaworld.MT1(self.task, seed=42)
        env = benchmark.train_classes[self.task]()
        env.set_task(benchmark.train_tasks[0])
        env.model.cam_pos[env.model.camera("corner2").id] = CORNER2_POSITION
        env.reset()
        env._freeze_rand_vec = False  # otherwise every reset restores train_tasks[0]'s positions
        env.seeded_rand_vec = True  # positions drawn from env.np_random, so seed(s) fixes them
        self._env = env
        self._expert = ENV_POLICY_MAP[self.task]()
        if self.cameras:
            self._renderer = FastRenderer(env.model, self.image_size)

    def _observation(self) -> dict[str, Any]:
        state = self._raw_obs if self.state == "full" else self._raw_obs[: STATE_DIMS["hand"]]
        observation: dict[str, Any] = {"agent_pos": np.array(state, dtype=np.float64)}
        if self.cameras:
            images = {camera: self._renderer.render(self._env.data, camera) for camera in self.cameras}
            observation["pixels"] = images[self.cameras[0]] if self.layout == "lerobot" else images
        return observation

    def reset(self, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._ensure_env()
        if seed is not None:
            self._env.seed(int(seed))
        self._raw_obs, _ = self._env.reset()
        self._steps = 0
        return self._observation(), {"is_success": False, "task": self.task}

    def step(self, action: np.ndarray):
        self._ensure_env()
        action = np.clip(np.asarray(action, dtype=np.float64).reshape(-1), -1.0, 1.0)
        if action.shape != (ACTION_DIM,):
            raise ValueError(f"MetaWorld takes a {ACTION_DIM}-d action, got shape {action.shape}.")
        self._raw_obs, reward, _, _, info = self._env.step(action)
        self._steps += 1
        success = bool(info.get("success", 0.0))
        truncated = not success and self._steps >= self._max_episode_steps
        info = {"is_success": success, "task": self.task}
        if self.reward == "recap":
            reward = 0.0 if success else -1.0
        return self._observation(), float(reward), success, truncated, info

    def expert_action(self) -> np.ndarray:
        """The scripted expert's action for the current state (MetaWorld's `metaworld.policies`)."""
        self._ensure_env()
        if self._raw_obs is None:
            raise RuntimeError("reset the env before asking for the expert's action.")
        return np.clip(self._expert.get_action(self._raw_obs), -1.0, 1.0).astype(np.float32)

    def render(self) -> np.ndarray:
        self._ensure_env()
        camera = self.cameras[0] if self.cameras else "corner2"
        if self._renderer is None:
            self._renderer = FastRenderer(self._env.model, self.image_size)
        return self._renderer.render(self._env.data, camera)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        if self._env is not None:
            self._env.close()
            self._env = None


def make_vector_env(env_kwargs: dict, n_envs: int, use_async: bool = False) -> gym.vector.VectorEnv:
    """A vector env for `lerobot-eval`: sub-envs stop simulating once their episode ends (LeRobot's
    FreezeAfterEpisodeEnd), autoreset in the same step, worker processes for `use_async`."""
    from lerobot.envs.utils import freeze_after_episode_end

    if n_envs < 1:
        raise ValueError(f"n_envs must be >= 1, got {n_envs}.")
    factories = [freeze_after_episode_end(partial(MetaWorldRecapEnv, **env_kwargs)) for _ in range(n_envs)]
    mode = gym.vector.AutoresetMode.SAME_STEP
    if use_async and n_envs > 1:
        return gym.vector.AsyncVectorEnv(factories, context="forkserver", autoreset_mode=mode)
    return gym.vector.SyncVectorEnv(factories, autoreset_mode=mode)
