"""Shared fixtures of the data tests (annotate, collect, merge, real-robot paths): tiny source datasets,
a collected MetaWorld dataset, a policy trained on it for a few steps, and CLI runners."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")  # headless MuJoCo rendering; must be set before mujoco loads

import numpy as np
import pandas as pd
import pytest
import torch
from synthetic import TINY_CLI

BIN = Path(sys.executable).parent
# Under pytest-xdist (`make test`: -n 2) each worker's subprocesses get a share of the cores: a subprocess
# limit set for the machine alone is scaled by the number of workers.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
TINY_POLICY = ["--policy.type=pi_star_recap", *TINY_CLI]  # the policy tests' tiny settings


def pytest_configure(config: pytest.Config) -> None:
    """Each xdist worker, and every subprocess it starts, computes on its share of the cores: two workers
    each running torch's default of one thread per core oversubscribe the machine, and OpenMP's spinning
    threads then make a 4-second training test take 90 s while the other worker runs a lerobot-train."""
    if WORKERS > 1:
        threads = max(1, (os.cpu_count() or 1) // WORKERS)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


def run_cli(*argv: str) -> int:
    """`pi-star-recap ARGV` in this process; returns the exit status."""
    from lerobot_policy_pi_star_recap.cli import main

    return main([str(a) for a in argv])


def cli_output(capsys: pytest.CaptureFixture, *argv: str | Path, returncode: int = 0) -> tuple[str, str]:
    """`pi-star-recap ARGV` in this process (no interpreter start-up to pay, ~10 s under load): its stdout
    and stderr; fails the test unless it exits with `returncode`."""
    capsys.readouterr()  # what the test printed before is not the command's
    code = run_cli(*argv)
    out, err = capsys.readouterr()
    assert code == returncode, (
        f"pi-star-recap exited with {code}, expected {returncode}:\n{out[-3000:]}\n{err[-5000:]}"
    )
    return out, err


def run_tool(
    name: str, *args: str | Path, cwd: Path | None = None, timeout: int = 600, returncode: int = 0
) -> subprocess.CompletedProcess:
    """A console script of this venv (lerobot-train, lerobot-eval, pi-star-recap, accelerate, python) in a
    subprocess, offline; fails the test unless it exits with `returncode`. `timeout` is for the machine
    alone (scaled by the xdist workers sharing it)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(
        [str(BIN / name), *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout * WORKERS,
    )
    assert result.returncode == returncode, (
        f"{name} exited with {result.returncode}, expected {returncode}:\n"
        f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    )
    return result


def lerobot_eval_episode(tool: list[str | Path], checkpoint: Path, tmp_path: Path, *flags: str) -> None:
    """One short stock lerobot-eval episode (`tool`: lerobot-eval, or a runner that patches sizes) of
    `checkpoint` on metaworld_recap push-v3 at 32 px; fails unless it exits 0 and reports the episode."""
    run_tool(
        *tool,
        f"--policy.path={checkpoint}",
        *flags,
        "--env.type=metaworld_recap",
        "--env.task=push-v3",
        "--env.image_size=32",
        "--env.episode_length=8",
        "--eval.n_episodes=1",
        "--eval.batch_size=1",
        "--eval.use_async_envs=false",  # the env in this process: no worker to start (~10 s of imports)
        "--policy.device=cpu",
        f"--output_dir={tmp_path / 'eval'}",
        cwd=tmp_path,
    )
    assert json.loads((tmp_path / "eval" / "eval_info.json").read_text())["overall"]["n_episodes"] == 1


def read_frames(root: Path) -> pd.DataFrame:
    """Every frame of a dataset (no images decoded), in global index order."""
    files = sorted((root / "data").glob("*/*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files]).sort_values("index").reset_index(drop=True)


def tree_hashes(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under `root`."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def annotate(src: Path, dst: Path, *args: str) -> pd.DataFrame:
    """Run `pi-star-recap annotate`, check it succeeded without touching the source, return the frames."""
    before = tree_hashes(src)
    assert run_cli("annotate", "--input", src, "--output", dst, *args) == 0
    assert tree_hashes(src) == before, "the source dataset was modified"
    return read_frames(dst)


def make_source(
    root: Path,
    lengths: list[int],
    extra: dict[str, tuple[dict, list]] | None = None,
    video: bool = False,
    fps: int = 10,
) -> Path:
    """A LeRobot v3 dataset without RECAP fields: 3-d state (= episode*10 + frame), 2-d action, one camera.

    `extra` maps a feature name to (feature spec, one list of per-frame values per episode)."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    extra = extra or {}
    size = 64 if video else 16  # LeRobot's default AV1 encoder needs frames of at least 64 px
    features = {
        "observation.state": {"dtype": "float32", "shape": (3,), "names": None},
        "action": {"dtype": "float32", "shape": (2,), "names": None},
        "observation.images.front": {
            "dtype": "video" if video else "image",
            "shape": (size, size, 3),
            "names": ["height", "width", "channels"],
        },
        **{name: spec for name, (spec, _) in extra.items()},
    }
    dataset = LeRobotDataset.create("local/source", fps=fps, features=features, root=root, use_videos=video)
    for episode, length in enumerate(lengths):
        for t in range(length):
            frame = {
                "observation.state": np.full(3, episode * 10 + t, np.float32),
                "action": np.array([t, -t], np.float32),
                "observation.images.front": np.full((size, size, 3), 10 * t, np.uint8),
                "task": "fold the towel",
            }
            for name, (spec, values) in extra.items():
                frame[name] = np.array([values[episode][t]], dtype=spec["dtype"])
            dataset.add_frame(frame)
        dataset.save_episode()
    dataset.finalize()
    return root


def collect_args(output: Path, mode: str, task: str, episodes: int, *extra: str) -> list[str]:
    """`pi-star-recap collect` arguments with small, fast settings."""
    return [
        "collect",
        f"--mode={mode}",
        f"--task={task}",
        f"--episodes={episodes}",
        f"--output={output}",
        "--image-size=32",
        *extra,
    ]


# Session fixtures are built once per xdist worker: the tests that use them share one worker (loadgroup).
SHARED_FIXTURES = ("collected_demo", "tiny_checkpoint")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(name in getattr(item, "fixturenames", ()) for name in SHARED_FIXTURES):
            item.add_marker(pytest.mark.xdist_group("collected_demo"))


@pytest.fixture(scope="session")
def collected_demo(tmp_path_factory) -> Path:
    """3 scripted-expert episodes of push-v3 at 32 px."""
    out = tmp_path_factory.mktemp("collected") / "push_demo"
    assert run_cli(*collect_args(out, "demo", "push-v3", 3, "--episode-length=120")) == 0
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(collected_demo, tmp_path_factory) -> Path:
    """A pi_star_recap policy trained for 3 steps on `collected_demo` with lerobot-train."""
    work = tmp_path_factory.mktemp("train")
    run_tool(
        "lerobot-train",
        "--dataset.repo_id=local/push_demo",
        f"--dataset.root={collected_demo}",
        f"--output_dir={work / 'run'}",
        "--steps=3",
        "--batch_size=4",
        "--save_freq=3",
        *TINY_POLICY,
        cwd=work,
    )
    model = work / "run" / "checkpoints" / "last" / "pretrained_model"
    assert (model / "model.safetensors").is_file()
    return model
