"""loop/: the lane runner (a shutdown abort is told from a failure, a failing lane stops the others), the
steps' commands against hand-written flags, the demo's env-seed blocks and plan checks. Nothing here runs
lerobot-train or lerobot-eval."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from lerobot_policy_pi_star_recap.commands.common import CommandFailed, UsageError
from lerobot_policy_pi_star_recap.loop import recap, steps
from lerobot_policy_pi_star_recap.loop.lanes import Lanes, TrainedRun
from lerobot_policy_pi_star_recap.loop.plan import (
    QUICK,
    DemoPlan,
    DemoSettings,
    Workspace,
    check_plan,
    resolve_plan,
)


class RecordingLanes(Lanes):
    """Lanes that record each command instead of running it (an evaluation leaves an empty eval_info)."""

    def __init__(self, logs: Path):
        super().__init__(logs)
        self.commands: dict[str, list[str]] = {}

    def run(self, name: str, command: list[str], threads: int | None = None, trained=None) -> None:
        self.commands[name] = command
        if name.startswith("eval_"):
            output = Path(next(c for c in command if c.startswith("--output_dir=")).split("=", 1)[1])
            output.mkdir(parents=True)
            (output / "eval_info.json").write_text("{}")


def workspace(tmp_path: Path, plan: DemoPlan = QUICK, seed: int = 0) -> Workspace:
    return Workspace("push-v3", tmp_path / "demo", plan, seed, bin=Path("/venv/bin"))


# --- The lane runner ----------------------------------------------------------------------------------

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
    checkpoint = _fake_checkpoint(tmp_path / "pretrained_model", weights)
    assert TrainedRun(30, checkpoint).completed(_fake_log(tmp_path / "train.log", lines)) is completed


def test_trained_run_without_a_checkpoint_is_a_failure(tmp_path):
    log = _fake_log(tmp_path / "train.log", ABORT_TAIL)
    assert not TrainedRun(30, tmp_path / "missing").completed(log)


def _exits_like_the_abort(code: int) -> list[str]:
    """A command that prints the abort tail and exits `code`."""
    script = f"print({chr(10).join(ABORT_TAIL)!r}); raise SystemExit({code})"
    return [sys.executable, "-c", script]


@pytest.mark.parametrize("weights", [True, False])
def test_run_warns_on_a_shutdown_abort_and_fails_otherwise(tmp_path, capsys, weights):
    lanes = Lanes(tmp_path / "logs")
    trained = TrainedRun(30, _fake_checkpoint(tmp_path / "pretrained_model", weights))
    if weights:
        lanes.run("train_stage1", _exits_like_the_abort(1), trained=trained)
        warning = capsys.readouterr().err.strip().splitlines()
        assert len(warning) == 1 and "warning: train_stage1 exited 1" in warning[0]
        assert str(lanes.logs / "train_stage1.log") in warning[0]
    else:
        with pytest.raises(CommandFailed, match="train_stage1 failed"):
            lanes.run("train_stage1", _exits_like_the_abort(1), trained=trained)
    with pytest.raises(CommandFailed):  # without `trained` (not a training step) any non-zero exit fails
        lanes.run("merge_all", _exits_like_the_abort(1))


def test_two_lanes_return_their_results_in_order(tmp_path):
    lanes = Lanes(tmp_path / "logs")
    echo = [sys.executable, "-c", "print('Collected 1 episode')"]

    def job(name: str):
        return lambda: (lanes.run(name, echo, threads=lanes.step_threads), name)[1]

    assert lanes.run_all([job("first"), job("second")], lanes=2) == ["first", "second"]
    assert lanes.step_threads == 1  # two lanes share the cores: one compute thread each
    assert set(lanes.timings) == {"first", "second"}
    assert "Collected 1 episode" in (lanes.logs / "second.log").read_text()


@pytest.mark.parametrize("failing", [0, 1])
def test_a_failing_lane_stops_the_other_and_its_error_is_the_one_reported(tmp_path, failing):
    """When one lane fails, the other's running command is killed (not waited for) and the first failure
    is raised, not the kill it caused; nothing new starts afterwards."""
    lanes = Lanes(tmp_path / "logs")
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]

    def runs_a_long_step():
        lanes.run("long_step", sleeper)

    def fails_once_the_other_runs():
        deadline = time.monotonic() + 30
        while not lanes.processes:  # the other lane's command is running
            assert time.monotonic() < deadline
            time.sleep(0.05)
        raise RuntimeError(f"lane {failing} broke")

    jobs = [runs_a_long_step, runs_a_long_step]
    jobs[failing] = fails_once_the_other_runs
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=f"lane {failing} broke"):
        lanes.run_all(jobs, lanes=2)
    assert time.monotonic() - start < 30 and not lanes.processes  # the 60 s step was killed
    assert lanes.stopping.is_set()
    with pytest.raises(CommandFailed, match="not started: another step of the demo failed"):
        lanes.run("next_step", sleeper)


# --- The steps' commands ------------------------------------------------------------------------------


def test_a_fresh_stage_and_a_fine_tuning_stage_by_hand(tmp_path):
    ws = workspace(tmp_path)
    lanes = RecordingLanes(ws.logs)
    data = tmp_path / "demos"
    steps.train(ws, lanes, "stage1", data, 30, None)
    run = [
        "--dataset.repo_id=local/demos",
        f"--dataset.root={data}",
        f"--output_dir={ws.out / 'stage1'}",
        "--steps=30",
        "--batch_size=8",
        "--save_freq=30",
        "--log_freq=3",
        "--seed=0",
        "--num_workers=1",
        "--policy.device=cpu",
        "--policy.push_to_hub=false",
        "--wandb.enable=false",
    ]
    assert lanes.commands["train_stage1"] == [
        "/venv/bin/lerobot-train",
        "--policy.type=pi_star_recap",
        "--policy.vlm_model_name=tiny",
        "--policy.expert.width=128",
        "--policy.expert.depth=4",
        "--policy.expert.heads=4",
        "--policy.chunk_size=16",
        "--policy.n_action_steps=8",
        "--policy.policy_lr=3e-4",
        "--policy.optim.scheduler_warmup_steps=100",
        "--policy.critic.return_normalizer=120",
        "--policy.backbone.tokenizer_padding=max_length",
        "--policy.use_advantage_conditioning=false",
        *run,
    ]
    stage1 = ws.checkpoint("stage1")
    flags = recap.stage2_flags(DemoSettings(ws))
    assert flags == (
        "--policy.use_advantage_conditioning=true",
        "--policy.advantage_estimator=mc_distributional",
        "--policy.advantage_source=dataset",
    )
    assert recap.stage2_flags(DemoSettings(ws, advantage_estimator="iql")) == (
        "--policy.use_advantage_conditioning=true",
        "--policy.advantage_estimator=iql",
    )
    steps.train(ws, lanes, "stage2", data, 30, stage1, flags, seed=4)
    assert lanes.commands["train_stage2"][:5] == [
        "/venv/bin/lerobot-train",
        f"--policy.path={stage1}",
        *flags,
    ]
    assert "--seed=4" in lanes.commands["train_stage2"]


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

    from lerobot_policy_pi_star_recap.loop.plan import resolve_plan

    ws = workspace(tmp_path, resolve_plan(True, {"correction_trigger": trigger}))
    lanes = RecordingLanes(ws.logs)
    steps.collect(ws, lanes, "corrections1", "intervention", 2, 500, policy=tmp_path / "stage1")
    assert all(
        flag in lanes.commands["collect_corrections1"] for flag in [*collect_flags, "--handback-steps=20"]
    )
    mixed = make_dataset(tmp_path / "mixed1", ["demo", "auto", "intervention", "auto"])
    labelled = steps.label_advantages(ws, lanes, "mixed1", mixed)
    assert f"--negative-before-takeover={stall_frames}" in lanes.commands["label_mixed1"]
    assert labelled.path == ws.data / "mixed1_labelled" and labelled.held_out == (0, 2)  # fold 0: odd ones


@pytest.mark.parametrize(
    "changes, video, successes_only",
    [({}, True, True), ({"camera_storage": "png"}, False, True), ({"successful_demos": False}, True, False)],
)
def test_camera_storage_reaches_every_collection_and_successful_demos_the_demos_only(
    tmp_path, changes, video, successes_only
):
    ws = workspace(tmp_path, resolve_plan(True, changes))
    lanes = RecordingLanes(ws.logs)
    steps.collect(ws, lanes, "demos", "demo", 2, 0)
    steps.collect(ws, lanes, "rollouts1", "auto", 2, 1000, policy=tmp_path / "stage1")
    assert [("--video" in c) for c in lanes.commands.values()] == [video] * 2
    assert [("--successes-only" in c) for c in lanes.commands.values()] == [successes_only, False]


def test_resolve_plan_takes_every_given_override_only():
    assert resolve_plan(False, {"demos": None, "task": "x"}) == DemoPlan()
    assert resolve_plan(True, {"demos": 5, "operators": None}) == DemoPlan(**{**QUICK.__dict__, "demos": 5})


# --- The demo's env-seed blocks and plan checks ---------------------------------------------------------


class _StopAtStage1(Exception):
    pass


def _env_seeds_of_a_run(tmp_path: Path, seed: int, monkeypatch) -> dict[str, range]:
    """The env seeds a demo run with `seed` would collect and evaluate on (default plan), read off the
    collect / lerobot-eval commands it builds (nothing runs)."""
    ws = workspace(tmp_path / f"seed{seed}", DemoPlan(), seed)
    lanes = RecordingLanes(ws.logs)

    def stop(*args, **kwargs):
        raise _StopAtStage1

    with monkeypatch.context() as patch:
        patch.setattr(steps, "train", stop)
        with pytest.raises(_StopAtStage1):
            recap.run_demo(DemoSettings(ws), lanes)  # collects the demos, then stops at stage 1
    steps.gather(ws, lanes, 1, tmp_path / "stage1", [])
    steps.gather(ws, lanes, 2, tmp_path / "stage2", [], "_arm")  # a second round, named apart (efficacy)
    steps.evaluate(ws, lanes, "stage1", tmp_path / "stage1")

    def flag(command: list[str], name: str) -> int:
        return int(next(c.split("=", 1)[1] for c in command if c.startswith(f"--{name}=")))

    commands = lanes.commands
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


def test_runs_with_other_seeds_share_no_env_seed(tmp_path, monkeypatch):
    """Each --seed collects its demos, rollouts and corrections and evaluates on env seeds of its own: with
    offsets of one per seed, seed 1 repeated 9 of seed 0's 10 (deterministic) demos and 99 of its 100
    evaluation episodes. Seed 0 keeps the env seeds every committed run used."""
    runs = [_env_seeds_of_a_run(tmp_path, seed, monkeypatch) for seed in (0, 1, 2)]
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
def test_plans_that_overrun_their_env_seed_blocks_are_refused(overrides, iterations, fits):
    plan = resolve_plan(False, overrides)
    if fits:
        check_plan(plan, iterations)
    else:
        flag = next(iter(overrides), "iterations").replace("_", "-")
        with pytest.raises(UsageError, match=f"--{flag} is too large for the demo's env-seed blocks"):
            check_plan(plan, iterations)


def test_a_plan_needs_two_value_folds_and_known_operators():
    with pytest.raises(UsageError, match="--value-folds must be >= 2"):
        check_plan(resolve_plan(True, {"value_folds": 1}), 1)
    with pytest.raises(UsageError, match="--operators"):
        check_plan(resolve_plan(True, {"operators": "nobody:1"}), 1)
