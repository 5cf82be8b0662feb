"""Facts about the MetaWorld tasks and the options of the `metaworld_recap` env, and their checks.

A leaf module: the env config (imported with the package, so it must stay light) and the env itself
(which needs metaworld and mujoco) both take these from here instead of from each other.
"""

from __future__ import annotations

import difflib
import json
import logging
from functools import cache
from pathlib import Path

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


def check_env_options(
    task: str, cameras: str, state: str, layout: str, reward: str, episode_length: int, image_size: int
) -> tuple[str, list[str]]:
    """Reject options the env cannot honour, with the flag to fix; returns the canonical task name and
    the camera list."""
    task = canonical_task(task)
    if state not in STATE_DIMS:
        raise ValueError(f"--env.state={state!r}: choose one of {list(STATE_DIMS)}.")
    if reward not in REWARDS:
        raise ValueError(f"--env.reward={reward!r}: choose one of {list(REWARDS)}.")
    if layout not in LAYOUTS:
        raise ValueError(f"--env.layout={layout!r}: choose one of {list(LAYOUTS)}.")
    if not 1 <= episode_length <= MAX_EPISODE_LENGTH:
        raise ValueError(f"--env.episode_length must lie in 1..{MAX_EPISODE_LENGTH}, got {episode_length}.")
    if image_size < 8:
        raise ValueError(f"--env.image_size must be >= 8 pixels, got {image_size}.")
    names = parse_cameras(cameras)
    if layout == "lerobot" and (len(names) != 1 or state != "hand"):
        raise ValueError(
            "layout 'lerobot' mirrors --env.type=metaworld: exactly one camera and state 'hand' "
            f"(got cameras={names}, state={state!r})."
        )
    return task, names
