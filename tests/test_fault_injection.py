"""kill -9 of every writing command at a seeded random point while it writes: its target must be absent or
complete (never half-written), and the next run must complete and leave no staging folder behind.

The kill lands a seeded delay after the command's staging folder appears, drawn from [0, the time the
same command takes in-process], so it falls anywhere in the write (or just after, when the target must be
complete). Every test prints where its kill landed."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import BIN, WORKERS, make_source, read_frames, run_cli
from synthetic import TINY_CLI, make_dataset

pytestmark = pytest.mark.slow

SEED = 0


def _dataset_loads(root: Path) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    dataset = LeRobotDataset(f"local/{root.name}", root=root)
    assert dataset.num_episodes > 0 and len(read_frames(root)) == dataset.num_frames


def _checkpoint_loads(root: Path) -> None:
    json.loads((root / "config.json").read_text())
    assert json.loads((root / "policy_preprocessor.json").read_text())["steps"]


def _staging(target: Path) -> list[Path]:
    return list(target.parent.glob(f".{target.name}.tmp-*"))


def _kill_while_writing(
    argv: list[str], target: Path, window_s: float, rng: random.Random
) -> tuple[str, int]:
    """Start `pi-star-recap ARGV`, kill -9 it a random delay in [0, window_s] after its staging folder
    appears; returns where the kill landed and the process id."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    process = subprocess.Popen([str(BIN / "pi-star-recap"), *map(str, argv)], env=env)
    try:
        deadline = time.monotonic() + 120 * WORKERS
        while not _staging(target) and process.poll() is None:
            assert time.monotonic() < deadline, "no staging folder within 120 s"
            time.sleep(0.005)
        time.sleep(rng.uniform(0, window_s))
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    if process.returncode == 0:
        return "after it finished", process.pid
    assert process.returncode == -signal.SIGKILL
    return "mid-write" if _staging(target) else "after the rename", process.pid


def _write_time(argv: list, target: Path) -> float:
    """Run `pi-star-recap ARGV` in-process; seconds from its staging folder appearing to its return."""
    appeared: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() and not _staging(target):
            time.sleep(0.002)
        appeared.append(time.perf_counter())

    watcher = threading.Thread(target=watch)
    start = time.perf_counter()
    watcher.start()
    try:
        assert run_cli(*argv) == 0
    finally:
        done.set()
        watcher.join()
    end = time.perf_counter()
    return end - min(appeared[0], end) if appeared else end - start


def _fault_then_rerun(
    argv: list, target: Path, check: Callable[[Path], None], seed: int, capsys: pytest.CaptureFixture
) -> None:
    """A timed in-process reference run, the killed run, then a rerun: each leaves `target` whole or
    absent, and the rerun leaves it whole with no staging folder."""
    reference = target.with_name(f"{target.name}_reference")
    window_s = _write_time(argv[:-1] + [reference], reference)  # the output path is argv's last item
    check(reference)

    landed, pid = _kill_while_writing(argv, target, window_s, random.Random(seed))
    with capsys.disabled():
        print(f"\nkill -9 of {argv[0]}: {landed} (window {window_s:.2f} s)")
    if target.exists():
        check(target)  # a kill can never leave a half-written target
    capsys.readouterr()
    assert run_cli(*argv, *(["--overwrite"] if target.exists() else [])) == 0
    if landed == "mid-write":
        assert f"(its process {pid} is gone)" in capsys.readouterr().out  # the stale folder is removed
    check(target)
    assert not _staging(target)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return make_source(tmp_path_factory.mktemp("fault") / "source", [6, 5, 4])


@pytest.fixture(scope="module")
def other_source(tmp_path_factory) -> Path:
    return make_source(tmp_path_factory.mktemp("fault") / "other", [3, 7])


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """A RECAP dataset with value-label's advantage_indicator column (built directly, no value model)."""
    from lerobot.datasets import LeRobotDataset
    from lerobot.datasets.dataset_tools import add_features

    root = tmp_path_factory.mktemp("fault_labelled")
    dataset = LeRobotDataset("local/synthetic", root=make_dataset(root / "src", ["demo", "auto"], length=8))
    indicator = (np.arange(dataset.meta.total_frames) % 2).astype(np.float32)[:, None]
    feature = {"dtype": "float32", "shape": (1,), "names": None}
    add_features(
        dataset, {"advantage_indicator": (indicator, feature)}, output_dir=root / "data", repo_id="x"
    )
    return root / "data"


def test_annotate_killed_with_kill_9(source, tmp_path, capsys):
    argv = ["annotate", "--input", source, "--all-success", "--output", tmp_path / "annotated"]
    _fault_then_rerun(argv, tmp_path / "annotated", _dataset_loads, SEED, capsys)


def test_merge_killed_with_kill_9(source, other_source, tmp_path, capsys):
    argv = ["merge", "--inputs", source, other_source, "--output", tmp_path / "merged"]
    _fault_then_rerun(argv, tmp_path / "merged", _dataset_loads, SEED + 1, capsys)


def test_tag_prompts_killed_with_kill_9(labelled, tmp_path, capsys):
    argv = ["tag-prompts", "--input", labelled, "--output", tmp_path / "tagged"]
    _fault_then_rerun(argv, tmp_path / "tagged", _dataset_loads, SEED + 2, capsys)


def test_tag_checkpoint_killed_with_kill_9(tmp_path, capsys):
    checkpoint = tmp_path / "checkpoint"
    checkpoint.mkdir()
    steps = [{"registry_name": "to_batch_processor", "config": {}}, {"registry_name": "tokenizer_processor"}]
    (checkpoint / "policy_preprocessor.json").write_text(json.dumps({"name": "p", "steps": steps}))
    (checkpoint / "config.json").write_text("{}")
    for k in range(2000):  # many files, so that the copy takes long enough to be killed in
        (checkpoint / f"extra_{k}.bin").write_bytes(os.urandom(4096))
    argv = ["tag-checkpoint", "--input", checkpoint, "--output", tmp_path / "positive"]
    _fault_then_rerun(argv, tmp_path / "positive", _checkpoint_loads, SEED + 3, capsys)


def test_lerobot_train_killed_while_saving_leaves_only_loadable_checkpoints(tmp_path):
    """lerobot-train saving every step, killed the moment a save's `.saving` staging folder appears: a
    `pretrained_model` holding weights loads, and `checkpoints/last` (if any) is one of those."""
    from lerobot_policy_pi_star_recap import PiStarRECAPPolicy

    root = make_dataset(tmp_path / "data", ["demo", "auto"], length=8)
    out = tmp_path / "run"
    argv = [
        "--policy.type=pi_star_recap",
        "--dataset.repo_id=local/synthetic",
        f"--dataset.root={root}",
        f"--output_dir={out}",
        "--steps=200",
        "--batch_size=4",
        "--save_freq=1",
        *TINY_CLI,
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    process = subprocess.Popen([str(BIN / "lerobot-train"), *argv], cwd=tmp_path, env=env)
    try:
        deadline = time.monotonic() + 180 * WORKERS
        saves = out / "checkpoints"
        # Kill in a save after the first, so a complete one exists; a save missed by the polling falls
        # back to a kill between saves after the fifth.
        while not [p for p in saves.glob("*/pretrained_model/.saving") if p.parts[-3] != "000001"]:
            assert process.poll() is None and time.monotonic() < deadline, "no second save within 180 s"
            if len(list(saves.glob("0*"))) >= 5:
                break
            time.sleep(0.001)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    mid_save = list(saves.glob("*/pretrained_model/.saving"))
    print(f"\nkill -9 of lerobot-train: {'mid-save' if mid_save else 'between saves'}")
    weights = sorted(saves.glob("0*/pretrained_model/model.safetensors"))
    assert weights, "no checkpoint was completed before the kill"
    for path in weights:
        PiStarRECAPPolicy.from_pretrained(path.parent)
    last = saves / "last"
    if last.exists():
        assert (last / "pretrained_model" / "model.safetensors").resolve() in {p.resolve() for p in weights}


def test_value_label_killed_with_kill_9(collected_demo, tiny_checkpoint, tmp_path, capsys):
    """value-label with one value checkpoint (the tiny policy's IQL critics: in-sample labels, warned)."""
    argv = ["value-label", "--value.path", tiny_checkpoint, "--input", collected_demo, "--device", "cpu"]
    argv += ["--output", tmp_path / "labelled"]
    _fault_then_rerun(argv, tmp_path / "labelled", _dataset_loads, SEED + 4, capsys)
