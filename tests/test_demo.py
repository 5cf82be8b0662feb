"""The README's main job, `pi-star-recap demo`, in its --quick smoke-test size: every stage runs through
the real lerobot-train / lerobot-eval and the report is written."""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import BIN, run_tool
from PIL import Image


def _processes_writing_into(folder: Path) -> list[int]:
    """Pids of the live processes whose command line names `folder` (zombies excluded)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            alive = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
            if proc.name.isdigit() and alive and str(folder) in (proc / "cmdline").read_bytes().decode():
                pids.append(int(proc.name))
        except (OSError, IndexError):
            continue  # a process that ended while we looked
    return pids


def _kill_demo_mid_training(out: Path, cwd: Path, seed: int = 0) -> str:
    """Start the quick demo, kill -9 it a seeded random delay after its stage-1 lerobot-train starts; the
    demo's children must die with it. Returns where the kill landed."""
    argv = [str(BIN / "pi-star-recap"), "demo", "--quick", "--task=button-press-v3", f"--output={out}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not (out / "logs" / "train_stage1.log").is_file():
            assert process.poll() is None and time.monotonic() < deadline, "the demo never reached stage 1"
            time.sleep(0.05)
        time.sleep(random.Random(seed).uniform(0, 10))
        assert _processes_writing_into(out), "stage 1's lerobot-train should be running"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    deadline = time.monotonic() + 30
    while _processes_writing_into(out):  # PR_SET_PDEATHSIG: lerobot-train is killed with the demo
        assert time.monotonic() < deadline, (
            f"orphans still writing into {out}: {_processes_writing_into(out)}"
        )
        time.sleep(0.1)
    written = sorted(p.name for p in (out / "stage1" / "checkpoints").glob("*")) if out.exists() else []
    return f"mid stage 1 (checkpoints so far: {written or 'none'})"


@pytest.mark.slow
def test_quick_demo_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    # first a run killed with kill -9: no orphan keeps writing, no results.json, and a rerun needs --overwrite
    landed = _kill_demo_mid_training(out, tmp_path)
    with capsys.disabled():
        print(f"\nkill -9 of demo: {landed}")
    assert not (out / "results.json").exists()
    refused = run_tool("pi-star-recap", "demo", "--quick", f"--output={out}", cwd=tmp_path, returncode=2)
    assert "holds an unfinished run (no results.json); pass --overwrite" in refused.stderr
    result = run_tool(
        "pi-star-recap",
        "demo",
        "--quick",
        "--task=button-press-v3",
        f"--output={out}",
        "--overwrite",
        cwd=tmp_path,
        timeout=900,
    )
    report = json.loads((out / "results.json").read_text())
    assert [s["stage"] for s in report["stages"]] == [
        "stage 1 (BC on demos)",
        "null control (stage 1 + stage-2 steps on the demos)",
        "stage 2 (RECAP, iteration 1)",
    ]
    for stage in report["stages"]:
        assert stage["episodes"] == 3 and 0.0 <= stage["success_rate"] <= 1.0
        low, high = stage["success_ci"]
        assert 0.0 <= low <= stage["success_rate"] <= high <= 1.0
    # paired comparisons on the same seeds: null control vs stage 1, stage 2 vs stage 1 and vs the control
    pairs = [(c["stage"].split(" (")[0], c["baseline"].split(" (")[0]) for c in report["comparisons"]]
    assert pairs == [("null control", "stage 1"), ("stage 2", "stage 1"), ("stage 2", "null control")]
    for c in report["comparisons"]:
        assert c["episodes"] == 3 and c["ci_low"] <= c["difference"] <= c["ci_high"]
    for name, path in report["eval_info"].items():
        info = json.loads(Path(path).read_text())
        assert info["overall"]["n_episodes"] == 3
        assert report["successes"][name] == [bool(s) for s in info["per_task"][0]["metrics"]["successes"]]
    for path in report["plots"].values():
        with Image.open(path) as image:
            assert image.format == "PNG"
    assert "| stage 2 (RECAP, iteration 1) | 3 |" in (out / "results.md").read_text()
    assert "| stage 1 (BC on demos) |" in result.stdout  # the table is printed at the end
    for name in ("stage1", "null_control", "stage2"):
        assert (out / name / "checkpoints" / "last" / "pretrained_model" / "model.safetensors").is_file()
    assert (out / "stage2" / "tensorboard").is_dir()
    # stage 2 trained on cross-fitted labels: two value functions, the labelled copy, held-out value plots
    for fold in ("fold0", "fold1"):
        assert (out / "value_mixed1" / fold / "checkpoints" / "last" / "pretrained_model").is_dir()
    assert (out / "data" / "mixed1_labelled" / "meta" / "info.json").is_file()
    offline = json.loads((out / "offline_eval" / "offline_eval.json").read_text())
    assert set(offline["episode_indices"]) <= {0, 2, 4, 6}  # fold 0 trained on the odd episodes only


def test_demo_checks_the_task_before_creating_anything(tmp_path):
    out = tmp_path / "demo"
    result = run_tool(
        "pi-star-recap",
        "demo",
        "--quick",
        "--task=nope",
        f"--output={out}",
        cwd=tmp_path,
        timeout=120,
        returncode=2,
    )
    assert "pi-star-recap demo: error: unknown MetaWorld task 'nope'" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_stock_base_policy_flags(tmp_path):
    """--base-policy smolvla builds stock SmolVLA tiny from the package's SmolVLM folder (written once);
    pi05 has no small offline form, so without --base-path it is refused with the fix."""
    from lerobot_policy_pi_star_recap.stock_vla import policy_flags

    flags = policy_flags("smolvla", tmp_path, image_size=96, state_dim=39, chunk_size=16, n_action_steps=8)
    assert flags[0] == "--policy.type=smolvla"
    for flag in ("--policy.max_state_dim=39", "--policy.resize_imgs_with_padding=[96,96]",
                 "--policy.load_vlm_weights=false", "--policy.n_action_steps=8"):  # fmt: skip
        assert flag in flags, flag
    assert f"--policy.vlm_model_name={tmp_path / 'tiny_smolvlm'}" in flags
    assert (tmp_path / "tiny_smolvlm" / "processor_config.json").is_file()
    with pytest.raises(ValueError, match="--base-path"):
        policy_flags("pi05", tmp_path, image_size=96, state_dim=39, chunk_size=16, n_action_steps=8)


# --- A lerobot-train step that saved its work, then aborted at shutdown ------------------------------

ABORT_TAIL = [
    "INFO lerobot_train.py:687 Checkpoint policy after step 30",
    "INFO lerobot_train.py:770 End of training",
    "terminate called without an active exception",
    "RuntimeError: DataLoader worker (pid 4242) is killed by signal: Aborted. ",
]


def _fake_checkpoint(path: Path, weights: bool = True) -> Path:
    """A pretrained_model folder: a config and a one-tensor model.safetensors (or cut-off bytes)."""
    import torch
    from safetensors.torch import save_file

    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"type": "pi_star_recap"}))
    if weights:
        save_file({"w": torch.zeros(2)}, str(path / "model.safetensors"))
    else:
        (path / "model.safetensors").write_bytes(b"\x10\x00\x00")
    return path


def _fake_log(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(["lerobot-train --steps=30", *lines]) + "\n")
    return path


@pytest.mark.parametrize(
    "lines, weights, completed",
    [
        (ABORT_TAIL, True, True),  # the shutdown abort: work done, checkpoint loads
        (ABORT_TAIL, False, False),  # the checkpoint does not load
        ([line for line in ABORT_TAIL if "Checkpoint" not in line], True, False),  # no final save
        ([line.replace("step 30", "step 20") for line in ABORT_TAIL], True, False),  # an earlier save only
        ([line.replace("step 30", "step 300") for line in ABORT_TAIL], True, False),  # not this run's step
        (ABORT_TAIL[:2] + ["RuntimeError: out of memory"], True, False),  # a real error
        (ABORT_TAIL[:2] + ["DataLoader worker (pid 1) is killed by signal: Killed."], True, False),
        (ABORT_TAIL[-1:] + ABORT_TAIL[:2] + ["x"] * 50, True, False),  # the abort is not in the tail
    ],
)
def test_trained_run_tells_a_shutdown_abort_from_a_failure(tmp_path, lines, weights, completed):
    from lerobot_policy_pi_star_recap.commands.demo import TrainedRun

    checkpoint = _fake_checkpoint(tmp_path / "pretrained_model", weights)
    assert TrainedRun(30, checkpoint).completed(_fake_log(tmp_path / "train.log", lines)) is completed


def test_trained_run_without_a_checkpoint_is_a_failure(tmp_path):
    from lerobot_policy_pi_star_recap.commands.demo import TrainedRun

    log = _fake_log(tmp_path / "train.log", ABORT_TAIL)
    assert not TrainedRun(30, tmp_path / "missing").completed(log)


def _exits_like_the_abort(code: int) -> list[str]:
    """A command that prints the abort tail and exits `code`."""
    script = f"print({chr(10).join(ABORT_TAIL)!r}); raise SystemExit({code})"
    return [sys.executable, "-c", script]


@pytest.mark.parametrize("weights", [True, False])
def test_run_step_warns_on_a_shutdown_abort_and_fails_otherwise(tmp_path, capsys, weights):
    from lerobot_policy_pi_star_recap.commands.common import CommandFailed
    from lerobot_policy_pi_star_recap.commands.demo import Demo, TrainedRun

    demo = Demo(argparse.Namespace(quick=True, output=str(tmp_path / "demo"), **_no_overrides()))
    trained = TrainedRun(30, _fake_checkpoint(tmp_path / "pretrained_model", weights))
    if weights:
        demo.run_step("train_stage1", _exits_like_the_abort(1), trained=trained)
        warning = capsys.readouterr().err.strip().splitlines()
        assert len(warning) == 1 and "warning: train_stage1 exited 1" in warning[0]
        assert str(demo.logs / "train_stage1.log") in warning[0]
    else:
        with pytest.raises(CommandFailed, match="train_stage1 failed"):
            demo.run_step("train_stage1", _exits_like_the_abort(1), trained=trained)
    with pytest.raises(CommandFailed):  # without `trained` (not a training step) any non-zero exit fails
        demo.run_step("merge_all", _exits_like_the_abort(1))


def _no_overrides() -> dict[str, None]:
    from dataclasses import fields

    from lerobot_policy_pi_star_recap.commands.demo import DemoPlan

    return {f.name: None for f in fields(DemoPlan)} | {"iterations": 1}  # the CLI's default


@pytest.mark.parametrize(
    "trigger, collect_flags, stall_frames",
    [
        ("stall", ["--trigger=stall", "--stall-steps=20"], "20"),
        ("disagreement", ["--trigger=disagreement", "--disagreement=1.0"], "0"),
    ],
)
def test_correction_trigger_reaches_collect_and_labelling(tmp_path, trigger, collect_flags, stall_frames):
    """The plan's correction trigger picks collect's takeover rule, and only stall takeovers mark the
    frames before them negative (a disagreement says nothing about them)."""
    from synthetic import make_dataset

    from lerobot_policy_pi_star_recap.commands.demo import Demo

    overrides = {**_no_overrides(), "correction_trigger": trigger}
    args = argparse.Namespace(quick=True, output=str(tmp_path / "demo"), task="push-v3", seed=0, **overrides)
    demo = Demo(args)
    commands: dict[str, list[str]] = {}
    demo.run_step = lambda name, command, **kwargs: commands.__setitem__(name, command)
    demo.collect("corrections1", "intervention", 2, 500, policy=tmp_path / "stage1")
    assert all(flag in commands["collect_corrections1"] for flag in [*collect_flags, "--handback-steps=20"])
    mixed = make_dataset(tmp_path / "mixed1", ["demo", "auto", "intervention", "auto"])
    demo.label_advantages("mixed1", mixed)
    assert f"--negative-before-takeover={stall_frames}" in commands["label_mixed1"]


@pytest.mark.parametrize("storage, stored_as_video", [("png", False), ("video", True)])
def test_camera_storage_reaches_every_collection(tmp_path, storage, stored_as_video):
    from lerobot_policy_pi_star_recap.commands.demo import Demo

    overrides = {**_no_overrides(), "camera_storage": storage}
    args = argparse.Namespace(quick=True, output=str(tmp_path / "demo"), task="push-v3", seed=0, **overrides)
    demo = Demo(args)
    commands: dict[str, list[str]] = {}
    demo.run_step = lambda name, command, **kwargs: commands.__setitem__(name, command)
    demo.collect("demos", "demo", 2, 0)
    demo.collect("rollouts1", "auto", 2, 1000, policy=tmp_path / "stage1")
    assert [("--video" in command) for command in commands.values()] == [stored_as_video] * 2


@pytest.mark.parametrize("flag, kept", [([], True), (["--no-successful-demos"], False)])
def test_successful_demos_reach_the_demo_collection_only(tmp_path, flag, kept):
    from lerobot_policy_pi_star_recap.cli import build_parser
    from lerobot_policy_pi_star_recap.commands.demo import Demo

    args = build_parser().parse_args(["demo", "--quick", f"--output={tmp_path / 'demo'}", *flag])
    demo = Demo(args)
    assert demo.plan.successful_demos is kept
    commands: dict[str, list[str]] = {}
    demo.run_step = lambda name, command, **kwargs: commands.__setitem__(name, command)
    demo.collect("demos", "demo", 2, 0)
    demo.collect("rollouts1", "auto", 2, 1000, policy=tmp_path / "stage1")
    assert [("--successes-only" in command) for command in commands.values()] == [kept, False]


@pytest.mark.parametrize("failing", ["controls", "iterations"])
def test_a_failing_lane_stops_the_other_and_its_error_is_the_one_reported(tmp_path, failing):
    """After stage 1 the demo runs two lanes at once; when one fails, the other's running command is killed
    (not waited for) and the demo raises the first failure, not the kill it caused."""
    from lerobot_policy_pi_star_recap.commands.common import CommandFailed
    from lerobot_policy_pi_star_recap.commands.demo import Demo

    args = argparse.Namespace(
        quick=True, output=str(tmp_path / "demo"), task="push-v3", seed=0, **_no_overrides()
    )
    demo = Demo(args)
    demo.collect = lambda *a, **k: tmp_path / "demos"
    demo.train = lambda *a, **k: tmp_path / "stage1"
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]

    def runs_a_long_step(demos, stage1):
        demo.run_step("long_step", sleeper)

    def fails_once_the_other_runs(demos, stage1):
        deadline = time.monotonic() + 30
        while not demo.processes:  # the other lane's command is running
            assert time.monotonic() < deadline
            time.sleep(0.05)
        raise RuntimeError(f"the {failing} lane broke")

    other = "iterations" if failing == "controls" else "controls"
    setattr(demo, failing, fails_once_the_other_runs)
    setattr(demo, other, runs_a_long_step)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=f"the {failing} lane broke"):
        demo.run()
    assert time.monotonic() - start < 30 and not demo.processes  # the 60 s step was killed
    assert demo.stopping.is_set()
    with pytest.raises(CommandFailed, match="not started: another step of the demo failed"):
        demo.run_step("next_step", sleeper)  # nothing new starts after a failure


class _StopAfterDemos(Exception):
    pass


def _env_seeds_of_a_run(tmp_path: Path, seed: int) -> dict[str, range]:
    """The env seeds a demo run with `seed` would collect and evaluate on (default plan), read off the
    collect / lerobot-eval commands it builds (nothing runs)."""
    from lerobot_policy_pi_star_recap.commands.demo import Demo

    out = tmp_path / f"seed{seed}"
    args = argparse.Namespace(quick=False, output=str(out), task="push-v3", seed=seed, **_no_overrides())
    demo = Demo(args)
    commands: dict[str, list[str]] = {}

    def record(name, command, **kwargs):
        commands[name] = command
        if name.startswith("eval_"):  # evaluate() reads what lerobot-eval would have written
            (out / "eval" / name.removeprefix("eval_")).mkdir(parents=True)
            (out / "eval" / name.removeprefix("eval_") / "eval_info.json").write_text("{}")

    def stop(*args, **kwargs):
        raise _StopAfterDemos

    demo.run_step, demo.train = record, stop
    with pytest.raises(_StopAfterDemos):
        demo.run()  # collects the demos, then stops at stage 1
    demo.gather(1, tmp_path / "stage1", [])
    demo.gather(2, tmp_path / "stage2", [], "_arm")  # a second round, named apart (efficacy's iterated arms)
    demo.evaluate("stage1", tmp_path / "stage1")

    def flag(command: list[str], name: str) -> int:
        return int(next(c.split("=", 1)[1] for c in command if c.startswith(f"--{name}=")))

    seeds = {
        name: range(
            flag(commands[name], "seed"), flag(commands[name], "seed") + flag(commands[name], "episodes")
        )
        for name in (
            "collect_demos",
            "collect_rollouts1",
            "collect_corrections1",
            "collect_rollouts2_arm",
            "collect_corrections2_arm",
        )
    }
    evaluation = commands["eval_stage1"]
    seeds["eval"] = range(
        flag(evaluation, "seed"), flag(evaluation, "seed") + flag(evaluation, "eval.n_episodes")
    )
    return seeds


def test_runs_with_other_seeds_share_no_env_seed(tmp_path):
    """Each --seed collects its demos, rollouts and corrections and evaluates on env seeds of its own: with
    offsets of one per seed, seed 1 repeated 9 of seed 0's 10 (deterministic) demos and 99 of its 100
    evaluation episodes. Seed 0 keeps the env seeds every committed run used."""
    runs = [_env_seeds_of_a_run(tmp_path, seed) for seed in (0, 1, 2)]
    assert runs[0] == {
        "collect_demos": range(0, 10),
        "collect_rollouts1": range(1000, 1020),
        "collect_corrections1": range(1500, 1520),
        "collect_rollouts2_arm": range(2000, 2020),
        "collect_corrections2_arm": range(2500, 2520),
        "eval": range(10_000, 10_100),
    }
    used = [set().union(*run.values()) for run in runs]
    assert all(len(u) == 190 for u in used)  # no overlap inside a run either
    assert not (used[0] & used[1]) and not (used[0] & used[2]) and not (used[1] & used[2])


@pytest.mark.parametrize(
    "overrides, iterations, fits",
    [
        ({"demos": 200}, 1, True),  # 5 tries per successful demo: seeds 0..999, the block below 1000
        ({"demos": 201}, 1, False),
        ({"demos": 1000, "successful_demos": False}, 1, True),
        ({"rollouts": 500, "corrections": 500}, 1, True),
        ({"rollouts": 501}, 1, False),
        ({"corrections": 501}, 1, False),
        ({}, 9, True),  # iteration 9's corrections end at 9999, below the evaluation's 10 000
        ({}, 10, False),
        ({"eval_episodes": 90_001}, 1, False),
    ],
)
def test_plans_that_overrun_their_env_seed_blocks_are_refused(tmp_path, overrides, iterations, fits):
    from lerobot_policy_pi_star_recap.commands.common import UsageError
    from lerobot_policy_pi_star_recap.commands.demo import Demo

    args = {**_no_overrides(), **overrides, "iterations": iterations}
    args = argparse.Namespace(quick=False, output=str(tmp_path), task="push-v3", seed=0, **args)
    if fits:
        Demo(args)
    else:
        flag = next(iter(overrides), "iterations").replace("_", "-")
        with pytest.raises(UsageError, match=f"--{flag} is too large for the demo's env-seed blocks"):
            Demo(args)


def test_an_invalid_plan_leaves_the_existing_output_alone(tmp_path):
    out = tmp_path / "demo"
    (out / "stage1").mkdir(parents=True)
    (out / "results.json").write_text("{}")
    result = run_tool(
        "pi-star-recap",
        "demo",
        "--demos=201",
        f"--output={out}",
        "--overwrite",
        cwd=tmp_path,
        timeout=120,
        returncode=2,
    )
    assert "--demos is too large" in result.stderr and "Traceback" not in result.stderr
    assert (out / "results.json").read_text() == "{}" and (out / "stage1").is_dir()
