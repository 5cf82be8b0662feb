"""Simulated operators of mixed quality (profiles, recording, merge), throughput with its intervals, and
the paper's RECAP pre-training as stage 1."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import collect_args, read_frames, run_cli

from lerobot_policy_pi_star_recap.data.writing import episode_records
from lerobot_policy_pi_star_recap.evaluation.success_stats import paired_throughput, speed_summary, throughput
from lerobot_policy_pi_star_recap.loop.plan import operator_counts
from lerobot_policy_pi_star_recap.loop.report import eval_summary
from lerobot_policy_pi_star_recap.sim.actors import parse_operators

FPS = 80


def test_throughput_counts_every_episode_at_the_control_rate():
    # 3 successes in 50 + 100 + 200 (a failure: its whole length) + 50 = 400 steps = 5 s at 80 Hz
    assert throughput([True, True, False, True], [50, 100, 200, 50], FPS) == pytest.approx(3 * 3600 / 5)
    summary = speed_summary(np.array([True, True, False, True]), np.array([50, 100, 200, 50]), FPS)
    assert summary["throughput_per_hour"] == pytest.approx(2160.0)
    assert summary["mean_steps_to_success"] == pytest.approx(200 / 3)
    low, high = summary["throughput_ci"]
    assert low < 2160 < high
    assert speed_summary([False, False], [200, 200], FPS)["steps_to_success_ci"] is None


def test_paired_throughput_ratio_and_difference_against_hand_computed_values():
    a, b = [True, True, False, True], [True, False, False, True]
    paired = paired_throughput(a, [50, 100, 200, 50], b, [100, 200, 200, 100], FPS)
    # a: 3 in 400 steps = 2160 / h; b: 2 in 600 steps = 960 / h
    assert paired["throughput_a"] == pytest.approx(2160.0)
    assert paired["throughput_b"] == pytest.approx(960.0)
    assert paired["throughput_ratio"] == pytest.approx(2.25)
    assert paired["throughput_difference"] == pytest.approx(1200.0)
    assert paired["throughput_ratio_ci"][0] < 2.25 < paired["throughput_ratio_ci"][1]
    # identical episodes within each arm: every paired resample gives the same ratio, 3600 / 1800 per hour
    same = paired_throughput([True] * 4, [80] * 4, [True] * 4, [160] * 4, FPS)
    assert same["throughput_ratio_ci"] == pytest.approx([2.0, 2.0])
    assert same["throughput_difference_ci"] == pytest.approx([1800.0, 1800.0])
    never = paired_throughput([True, False], [50, 200], [False, False], [200, 200], FPS)
    assert never["throughput_ratio"] is None and never["throughput_ratio_ci"] is None
    with pytest.raises(ValueError, match="same episodes"):
        paired_throughput([True], [50], [True, True], [50, 50], FPS)
    with pytest.raises(ValueError, match="one step count per episode"):
        speed_summary([True, False], [50], FPS)


def test_eval_summary_reads_steps_from_the_recap_reward():
    # --env.reward=recap: a success after 50 steps sums to -49, a failure over 200 steps to -200
    info = {"per_task": [{"metrics": {"successes": [True, False], "sum_rewards": [-49.0, -200.0]}}]}
    summary = eval_summary(info)
    assert summary["mean_steps_to_success"] == pytest.approx(50.0)
    assert summary["throughput_per_hour"] == pytest.approx(3600 / (250 / FPS))


@pytest.mark.parametrize(
    "shares, episodes, counts",
    [
        ("better:1,okay:1,worse:1", 10, "better:4,okay:3,worse:3"),
        ("better:1,okay:1,worse:1", 30, "better:10,okay:10,worse:10"),
        ("better:1,okay:1,worse:1", 2, "better:1,okay:1"),
        ("better:2,worse:1", 4, "better:3,worse:1"),
    ],
)
def test_operator_shares_split_by_largest_remainder(shares, episodes, counts):
    assert operator_counts(shares, episodes) == counts


@pytest.mark.parametrize("spec", ["great:3", "better:0", "better:2,better:1", "", "better"])
def test_bad_operator_specs_are_refused(spec):
    with pytest.raises(ValueError, match="--operators"):
        parse_operators(spec)


def _collect(output, *extra) -> list[dict]:
    argv = collect_args(output, "demo", "pick-place-v3", 3, "--cameras=", "--episode-length=200", *extra)
    assert run_cli(*[a for a in argv if not a.startswith("--episodes")]) == 0
    return episode_records(output)


def test_operator_profiles_are_reproducible_and_recorded_per_episode(tmp_path):
    spec = "--operators=better:1,worse:2"
    first = _collect(tmp_path / "a", spec, "--seed=7")
    again = _collect(tmp_path / "b", spec, "--seed=7")
    assert first == again  # seeds, lengths, degraded frames: all from the seed
    frames_a, frames_b = read_frames(tmp_path / "a"), read_frames(tmp_path / "b")
    np.testing.assert_array_equal(np.stack(frames_a["action"]), np.stack(frames_b["action"]))
    assert [r["operator"] for r in first] == ["better", "worse", "worse"]
    assert [r["seed"] for r in first] == [7, 7 + 1, 7 + 2]  # each profile on its own env seeds
    better, worse = first[0], first[1:]
    assert better["pause_frames"] == better["detour_frames"] == []
    assert all(r["pause_frames"] for r in worse)  # 4% a step, over 100+ steps
    # a paused frame moves the arm by the profile's noise only, the expert moves it further
    actions = np.stack(frames_a["action"])
    episode = frames_a["episode_index"].to_numpy()
    paused = actions[episode == 1][worse[0]["pause_frames"]]
    assert np.abs(paused[:, :3]).mean() < np.abs(actions[episode == 0][:, :3]).mean()


def test_episodes_that_disagree_with_the_operators_are_refused(tmp_path, capsys):
    argv = collect_args(
        tmp_path / "c", "demo", "pick-place-v3", 5, "--cameras=", "--operators=better:1,worse:2"
    )
    assert run_cli(*argv) == 2
    assert "add up to 3" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_takeovers_act_as_the_operator_and_merge_keeps_every_record(tmp_path, capsys):
    demos = _collect(tmp_path / "demos", "--operators=okay:2")
    argv = collect_args(tmp_path / "corrected", "intervention", "pick-place-v3", 2, "--cameras=")
    argv += ["--trigger=random", "--random-prob=0.05", "--handback-steps=10", "--operators=worse:2"]
    assert run_cli(*[a for a in argv if not a.startswith("--episodes")]) == 0
    corrected = episode_records(tmp_path / "corrected")
    assert {r["operator"] for r in corrected if r["data_type"] == "intervention"} == {"worse"}
    assert all(r["operator"] is None for r in corrected if r["data_type"] == "auto")
    out = tmp_path / "merged"
    assert (
        run_cli("merge", "--inputs", str(tmp_path / "demos"), str(tmp_path / "corrected"), f"--output={out}")
        == 0
    )
    merged = episode_records(out)
    assert [r["operator"] for r in merged] == [r["operator"] for r in demos + corrected]
    assert [r["source"] for r in merged] == [str(tmp_path / "demos")] * 2 + [str(tmp_path / "corrected")] * 2
    assert json.loads((out / "meta" / "recap_collect.json").read_text())["command"] == "pi-star-recap merge"


def test_operators_are_refused_where_no_operator_acts(tmp_path, capsys):
    argv = collect_args(tmp_path / "auto", "auto", "push-v3", 2, "--cameras=", "--operators=better:2")
    assert run_cli(*argv) == 2
    assert "--mode demo or intervention" in capsys.readouterr().err


def test_stage1_recap_trains_values_and_the_conditioned_policy_on_the_demos_alone(tmp_path):
    """`--stage1 recap`: cross-fitted value functions on the demos, full-return labels, then a policy
    trained from scratch with advantage conditioning on the labelled demos; the null control fine-tunes on
    the same labelled demos (its config reads the labels)."""
    from synthetic import make_dataset
    from test_loop import RecordingLanes, workspace

    from lerobot_policy_pi_star_recap.loop import recap
    from lerobot_policy_pi_star_recap.loop.plan import DemoSettings, resolve_plan

    ws = workspace(tmp_path, resolve_plan(True, {"stage1": "recap"}))
    lanes = RecordingLanes(ws.logs)
    commands = lanes.commands
    demos = make_dataset(tmp_path / "demo" / "data" / "demos", ["demo"] * 4)
    stage1, written = recap.stage1(ws, lanes, demos)
    assert list(commands) == ["train_value_demos", "label_demos", "train_stage1"]
    assert f"--dataset.root={demos}" in commands["train_value_demos"]
    assert "--full-return" in commands["label_demos"]
    train = commands["train_stage1"]
    labelled = tmp_path / "demo" / "data" / "demos_labelled"
    assert f"--dataset.root={labelled}" in train and not any(a.startswith("--policy.path") for a in train)
    assert "--policy.use_advantage_conditioning=true" in train
    assert "--policy.advantage_source=dataset" in train
    assert "--policy.use_advantage_conditioning=false" not in train
    assert written.path == labelled
    recap.controls(DemoSettings(ws), lanes, stage1)
    assert f"--dataset.root={labelled}" in commands["train_null_control"]
