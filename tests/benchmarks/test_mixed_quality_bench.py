"""benchmarks/mixed_quality.py and the profile parts of label_quality.py / efficacy.py: the paired success
and throughput comparisons against hand-computed values."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
from synthetic import load_benchmark


@pytest.fixture(scope="module")
def mixed():
    return load_benchmark("mixed_quality")


@pytest.fixture(scope="module")
def efficacy():
    return load_benchmark("efficacy")


def _cell(mixed, arm: str, successes: list[bool], steps: list[int], beta=None, data_seed=0) -> dict:
    return {
        "task": "pick-place-v3",
        "arm": arm,
        "beta": beta,
        "seed": 0,
        "data_seed": data_seed,
        "plan": asdict(mixed.PLAN),
        "successes": successes,
        "steps": steps,
    }


def test_the_summary_pairs_every_arm_with_each_baseline_on_success_and_throughput(mixed, tmp_path):
    cells = [
        _cell(mixed, "bc", [True, False, True, True], [100, 200, 100, 100]),
        _cell(mixed, "recap_paper", [True, True, True, True], [50, 100, 50, 100], beta=2.5),
        _cell(mixed, "return_filtered_bc", [True, False, False, True], [50, 200, 200, 50]),
        _cell(mixed, "bc", [True], [100], data_seed=1),
        _cell(mixed, "recap_paper", [False], [200], beta=2.5, data_seed=1),
    ]
    for c in cells:
        name = f"{mixed.ARMS[c['arm']].label(c['beta'])}_seed{c['seed']}"
        folder = tmp_path / c["task"] / f"data_seed{c['data_seed']}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.json").write_text(json.dumps(c))
    summary = {s["arm"]: s for s in mixed.summarize(mixed.read_cells(tmp_path, mixed.PLAN))}
    recap = summary["recap_paper (beta 2.5)"]
    assert recap["draws"] == 2 and recap["episodes"] == 5
    vs_bc = recap["paired"]["bc"]
    # pooled over both draws: recap 4/5 in 500 steps, bc 4/5 in 600 steps
    assert vs_bc["difference"] == pytest.approx(0.0)
    assert (vs_bc["a_only"], vs_bc["b_only"]) == (1, 1)
    assert vs_bc["throughput_ratio"] == pytest.approx(600 / 500)
    per_hour = 80 * 3600
    assert vs_bc["throughput_difference"] == pytest.approx(per_hour * (4 / 500 - 4 / 600))
    vs_filtered = recap["paired"]["return_filtered_bc"]  # only draw 0 has it
    assert vs_filtered["draws"] == 1 and vs_filtered["difference"] == pytest.approx(0.5)
    assert vs_filtered["throughput_ratio"] == pytest.approx((4 / 300) / (2 / 500))
    assert "bc" not in summary["bc"]["paired"]  # an arm is not compared with itself
    table = mixed.format_summary(list(summary.values()))
    assert "1.20x" in table and "recap_paper (beta 2.5)" in table
    other = tmp_path / "other"
    (other / "pick-place-v3" / "data_seed0").mkdir(parents=True)
    (other / "pick-place-v3" / "data_seed0" / "bc_seed0.json").write_text(
        json.dumps({**cells[0], "plan": {**cells[0]["plan"], "demos": 3}})
    )
    with pytest.raises(SystemExit, match="another --results"):
        mixed.read_cells(other, mixed.PLAN)


def test_label_report_per_operator_against_paused_and_detour_frames(monkeypatch, tmp_path):
    labels = load_benchmark("label_quality")
    import lerobot_policy_pi_star_recap.data.writing as writing

    records = [
        {"operator": "better", "pause_frames": [], "detour_frames": []},
        {"operator": "worse", "pause_frames": [0, 1], "detour_frames": [3]},
    ]
    monkeypatch.setattr(writing, "episode_records", lambda root: records)
    episode = np.array([0, 0, 0, 1, 1, 1, 1])
    advantage = np.array([0.3, 0.2, 0.1, -0.4, -0.2, 0.5, -0.1])
    positive = advantage > 0.15
    monkeypatch.setattr(labels, "written_labels", lambda root: (episode, advantage, positive))
    report = labels.operator_report(tmp_path, tmp_path, folds=2)
    assert report["better operator"]["positive"] == pytest.approx(2 / 3)
    assert report["worse operator"]["positive"] == pytest.approx(1 / 4)
    assert report["worse: paused frames"]["positive"] == 0.0
    assert report["worse: paused frames"]["mean_advantage"] == pytest.approx(-0.3)
    assert report["worse: other frames"]["positive"] == 1.0  # frame 2 of episode 1 (advantage 0.5)
    assert report["all detour frames"]["frames"] == 1
    assert "better: paused frames" not in report  # no degraded frame to compare with
    assert report["frames valued by fold 1"]["frames"] == 4


def test_efficacy_summary_reports_paired_throughput_where_cells_have_steps(efficacy, tmp_path):
    budget = efficacy.Budget(("push-v3",), (0,), efficacy.QUICK)
    (tmp_path / "push-v3").mkdir()
    for method, successes, steps in [
        ("bc", [1, 1, 0, 1], [100, 100, 200, 100]),
        ("recap_paper", [1, 1, 1, 1], [50, 50, 100, 100]),
    ]:
        cell = {
            "task": "push-v3",
            "method": method,
            "seed": 0,
            "plan": asdict(efficacy.QUICK),
            "base_policy": "native",
            "success_rate": float(np.mean(successes)),
            "episodes": 4,
            "mean_steps_to_success": None,
            "successes": successes,
            "steps": steps,
        }
        (tmp_path / "push-v3" / f"{method}_seed0.json").write_text(json.dumps(cell))
    summary = {s["method"]: s for s in efficacy.summarize(efficacy.all_cells(tmp_path, budget))}
    paired = summary["recap_paper"]["paired"]["bc"]
    assert paired["throughput_ratio"] == pytest.approx((4 / 300) / (3 / 500))
    assert "throughput 2.22x" in efficacy.format_table(list(summary.values()))
