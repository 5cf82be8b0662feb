"""docs/real_robot.md runs: every command of its `bash` blocks, in order, in one working folder, so the
page cannot go stale.

Commands after a `# on the robot` comment need the SO-101 arm. Each is parsed with the installed LeRobot's
own parser (`lerobot.configs.parser.wrap` over `RecordConfig` / `RolloutConfig`, the dataclasses
`lerobot-record` / `lerobot-rollout` parse into; `--policy.path` loads the checkpoint an earlier command
wrote), so an unknown flag or a bad value fails; then a dataset with the layout the command would record
(`so101_follower`, 6 joint positions and targets with LeRobot's names, one 64 px video camera, 30 fps,
the `intervention` flags of DAgger; no reward columns) is written at its `--dataset.root`.

Every other command runs for real (`pi-star-recap` in this process, `lerobot-train` and any other tool
as a subprocess) with these substitutions, which only shrink sizes:
- `--policy.base_path=lerobot/pi05_base` -> a tiny random stock pi05 checkpoint built here (no download),
  and on every command that builds a new pi05-base policy the tiny sizes of tests/test_pi05_base.py
  (`pi05.size`, `pi05.tokenizer`, `pi05.image_resolution`, `chunk_size`, `n_action_steps`,
  `num_inference_steps`);
- `--policy.device=cuda` -> `cpu`; `--steps` -> 2, `--batch_size` -> 2, `--save_freq` -> 2, and
  `--num_workers=0` added to training runs.
"""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import read_frames, run_cli, run_tool

PAGE = Path(__file__).resolve().parents[1] / "docs" / "real_robot.md"
ON_ROBOT = "# on the robot"
TINY_SIZES = {
    "pi05.size": "tiny",
    "pi05.tokenizer": "tiny",
    "pi05.image_resolution": "32",
    "chunk_size": "4",
    "n_action_steps": "4",
    "num_inference_steps": "2",
}
RUN_SIZES = {"steps": "2", "batch_size": "2", "save_freq": "2", "num_workers": "0"}
JOINTS = ["shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"]

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("real_robot_recipe")]


def page_commands(text: str) -> list[tuple[list[str], bool]]:
    """The page's commands in order, each as argv and whether a `# on the robot` comment precedes it."""
    commands: list[tuple[list[str], bool]] = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        on_robot, current = False, ""
        for line in block.splitlines():
            stripped = line.strip()
            if not current and stripped.startswith("#"):
                on_robot = on_robot or stripped.startswith(ON_ROBOT)
                continue
            if not stripped:
                continue
            current += " " + stripped.removesuffix("\\")
            if not stripped.endswith("\\"):
                commands.append((shlex.split(current), on_robot))
                on_robot, current = False, ""
        assert not current, f"a command in {PAGE.name} ends with a line continuation: {current}"
    return commands


def flag(argv: list[str], name: str) -> str | None:
    """The value of `--name=value` in argv (None when absent)."""
    prefix = f"--{name}="
    return next((a.removeprefix(prefix) for a in argv if a.startswith(prefix)), None)


def shrink(argv: list[str], base_path: Path) -> list[str]:
    """The module docstring's substitutions for a training command (lerobot-train / value-train)."""
    sizes = dict(RUN_SIZES)
    if flag(argv, "policy.base_path") is not None:  # builds a new policy on the pi05 base
        sizes |= {f"policy.{k}": v for k, v in TINY_SIZES.items()} | {"policy.base_path": str(base_path)}
    if flag(argv, "policy.device") is not None:
        sizes["policy.device"] = "cpu"
    out = []
    for arg in argv:
        key = arg[2:].split("=", 1)[0] if arg.startswith("--") and "=" in arg else None
        out.append(f"--{key}={sizes.pop(key)}" if key in sizes else arg)
    return out + [f"--{k}={v}" for k, v in sizes.items()]


def parse_lerobot(program: str, argv: list[str], monkeypatch: pytest.MonkeyPatch):
    """`argv` parsed as `program` (lerobot-record / lerobot-rollout) parses it, without running it."""
    from lerobot.configs import parser

    if program == "lerobot-record":
        from lerobot.scripts.lerobot_record import RecordConfig as config_class
    else:
        from lerobot.scripts.lerobot_rollout import RolloutConfig as config_class

    def capture(cfg):
        return cfg

    capture.__annotations__ = {"cfg": config_class}
    monkeypatch.setattr(sys, "argv", [program, *argv])
    return parser.wrap()(capture)()


def record_like(root: Path, lengths: list[int], task: str, intervention: list[list[int]] | None) -> None:
    """A dataset with the layout lerobot-record / lerobot-rollout write for an SO-101 and one camera."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    names = [f"{joint}.pos" for joint in JOINTS]
    features = {
        "action": {"dtype": "float32", "shape": (6,), "names": names},
        "observation.state": {"dtype": "float32", "shape": (6,), "names": names},
        "observation.images.front": {
            "dtype": "video",
            "shape": (64, 64, 3),  # LeRobot's default AV1 encoder needs at least 64 px
            "names": ["height", "width", "channels"],
        },
    }
    if intervention is not None:
        features["intervention"] = {"dtype": "bool", "shape": (1,), "names": None}
    dataset = LeRobotDataset.create(
        f"me/{root.name}", fps=30, features=features, root=root, robot_type="so101_follower", use_videos=True
    )
    rng = np.random.default_rng(len(lengths))
    for episode, length in enumerate(lengths):
        for t in range(length):
            frame = {
                "action": rng.normal(size=6).astype(np.float32),
                "observation.state": rng.normal(size=6).astype(np.float32),
                "observation.images.front": np.full((64, 64, 3), 8 * t, np.uint8),
                "task": task,
            }
            if intervention is not None:
                frame["intervention"] = np.array([bool(intervention[episode][t])])
            dataset.add_frame(frame)
        dataset.save_episode()
    dataset.finalize()


@pytest.fixture(scope="module")
def pi05_base(tmp_path_factory) -> Path:
    """A tiny random stock pi05 checkpoint standing in for `lerobot/pi05_base`."""
    from lerobot.policies.pi05 import PI05Policy
    from test_pi05_base import base_config
    from tiny_vlas import pi05_config, tiny_pi05

    config = base_config()
    torch.manual_seed(0)
    with tiny_pi05():
        policy = PI05Policy(pi05_config(config.input_features, config.output_features))
    path = tmp_path_factory.mktemp("stock") / "pi05_base"
    policy.save_pretrained(path)
    return path


def test_page_commands_parse_and_every_robot_command_is_marked():
    """The parser itself: the page has the steps the issue asks for, and only LeRobot's robot-side tools
    (and nothing the test could run) are marked `# on the robot`."""
    commands = page_commands(PAGE.read_text())
    programs = [(argv[0], argv[1] if argv[0] == "pi-star-recap" else None) for argv, _ in commands]
    for step in [("lerobot-record", None), ("lerobot-rollout", None), ("lerobot-train", None)]:
        assert step in programs
    for sub in ("annotate", "merge", "value-train", "value-label"):
        assert ("pi-star-recap", sub) in programs
    for argv, on_robot in commands:
        assert on_robot == (argv[0] in ("lerobot-record", "lerobot-rollout")), argv
    assert any(flag(argv, "policy.cfg_beta") for argv, _ in commands)


def test_recipe_runs_end_to_end(pi05_base, tmp_path, monkeypatch):
    """Each command of the page in order; robot commands parsed and replaced by their recordings."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    recordings = 0
    for argv, on_robot in page_commands(PAGE.read_text()):
        program, args = argv[0], argv[1:]
        if on_robot:
            cfg = parse_lerobot(program, args, monkeypatch)
            # LeRobot 0.6.1 registers so101_follower as an alias of the SO-100 config (`type` says so100)
            assert cfg.robot.port == "/dev/ttyACM0" and "front" in cfg.robot.cameras
            if cfg.dataset is None:  # deployment: the guidance flag reached the trained policy's config
                assert cfg.policy.type == "pi_star_recap" and cfg.policy.cfg_beta == 1.5
                continue
            assert cfg.dataset.no_stamp and not cfg.dataset.push_to_hub
            root = Path(cfg.dataset.root)
            if program == "lerobot-record":
                assert cfg.teleop.port == "/dev/ttyACM1"
                record_like(root, [7, 6, 8], cfg.dataset.single_task, None)
            else:
                assert cfg.strategy.type == "dagger" and cfg.strategy.record_autonomous
                assert cfg.policy.type == "pi_star_recap"  # the stage-1 checkpoint loaded
                flags = [[0] * 7, [0, 0, 1, 1, 1, 0], [0, 0, 0, 1, 1, 1, 1, 1]]
                record_like(root, [7, 6, 8], cfg.dataset.single_task, flags)
            recordings += 1
        elif program == "pi-star-recap":
            assert run_cli(*(shrink(args, pi05_base) if args[0] == "value-train" else args)) == 0, argv
        elif program == "lerobot-train":
            run_tool(program, *shrink(args, pi05_base), cwd=tmp_path)
            assert (Path(flag(args, "output_dir")) / "checkpoints/last/pretrained_model").is_dir()
        else:
            run_tool(program, *args, cwd=tmp_path)
    assert recordings == 2

    # What the commands claim to write.
    mixed = read_frames(tmp_path / "data/cube_mixed_it1_labelled")
    assert "intervention" not in mixed.columns
    assert sorted(set(mixed["data_type"])) == ["auto", "demo", "intervention"]
    assert mixed["advantage_indicator"][mixed["intervention_mask"]].all()  # corrections positive
    assert (mixed.groupby("episode_index")["reward"].last().isin([0.0, -900.0])).all()
    stage2 = tmp_path / "outputs/cube_stage2_it1/checkpoints/last/pretrained_model"
    assert (stage2 / "model.safetensors").is_file()
    config = json.loads((stage2 / "config.json").read_text())
    assert config["base_model"] == "pi05" and config["mode"] == "paper"  # stage 1's base, paper mode
