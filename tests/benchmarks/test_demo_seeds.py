"""benchmarks/demo_seeds.py: demo runs of one plan pooled over their seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from synthetic import load_benchmark

ROOT = Path(__file__).parents[2]
SCRIPT = load_benchmark("demo_seeds")
COMMITTED = ROOT / "benchmarks" / "results" / "demo_sweep-into-v3_results.json"


def run_with(tmp_path: Path, name: str, seed: int, successes: dict[str, list[bool]], **changes) -> Path:
    """A copy of the committed default demo run with another seed and other per-episode successes."""
    run = {**json.loads(COMMITTED.read_text()), "seed": seed, "successes": successes, **changes}
    path = tmp_path / name / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(run))
    return path


def demo(*args) -> str:
    """`demo_seeds.py ARGS` in this process: "" when it succeeds, else the reason it gave for refusing."""
    try:
        SCRIPT.main([str(a) for a in args])
    except SystemExit as refused:
        return str(refused)
    return ""


def test_runs_are_summarized_per_run_and_over_runs(tmp_path):
    stages = list(json.loads(COMMITTED.read_text())["successes"])  # stage 1, null control, stage 2
    first = {
        stages[0]: [True] * 50 + [False] * 50,
        stages[1]: [True] * 60 + [False] * 40,
        stages[2]: [True] * 80 + [False] * 20,
    }
    second = {
        stages[0]: [True] * 60 + [False] * 40,
        stages[1]: [True] * 60 + [False] * 40,
        stages[2]: [True] * 60 + [False] * 40,
    }
    paths = [run_with(tmp_path, "a", 0, first), run_with(tmp_path, "b", 1, second)]
    output = tmp_path / "out" / "seeds.json"
    assert demo(*paths, "--output", output) == ""
    summary = json.loads(output.read_text())
    assert summary["seeds"] == [0, 1]
    assert summary["rates"][stages[2]]["per_run"] == [0.8, 0.6]
    assert summary["rates"][stages[2]]["pooled"] == pytest.approx(0.7)
    by_pair = {(c["stage"], c["baseline"]): c for c in summary["comparisons"]}
    assert set(by_pair) == {(stages[1], stages[0]), (stages[2], stages[0]), (stages[2], stages[1])}
    vs_null = by_pair[(stages[2], stages[1])]
    assert vs_null["per_run"] == [pytest.approx(0.2), pytest.approx(0.0)]
    assert vs_null["difference"] == pytest.approx(0.1) and vs_null["a_only"] == 20 and vs_null["b_only"] == 0
    assert vs_null["ci_low"] <= 0.0 < vs_null["pooled_ci_low"]  # run 2 shows no gain: over runs, CI reaches 0
    assert "| stage 2 | null control | +20% / +0% |" in output.with_suffix(".md").read_text()
    assert output.with_suffix(".png").stat().st_size > 0


def test_runs_of_other_plans_or_one_seed_are_refused(tmp_path):
    successes = json.loads(COMMITTED.read_text())["successes"]
    base = run_with(tmp_path, "a", 0, successes)
    other_plan = run_with(tmp_path, "b", 1, successes, plan={"stage1_steps": 2400})
    assert "differs in ['plan']" in demo(base, other_plan, "--output", tmp_path / "x.json")
    same_seed = run_with(tmp_path, "c", 0, successes)
    assert "share a seed" in demo(base, same_seed, "--output", tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()


def write_cell(root: Path, run: Path, method: str, successes: list[bool], **changes) -> None:
    """An efficacy.py cell fine-tuned on `run`'s data (its data seed = the run's seed)."""
    made = json.loads(run.read_text())
    folder = root / made["task"] / ("" if made["seed"] == 0 else f"data_seed{made['seed']}")
    folder.mkdir(parents=True, exist_ok=True)
    cell = {
        "task": made["task"],
        "method": method,
        "seed": 0,
        "data_seed": made["seed"],
        "plan": made["plan"],
    }
    (folder / f"{method}_seed0.json").write_text(json.dumps({**cell, "successes": successes, **changes}))


def test_efficacy_arms_on_the_runs_data_are_compared_with_recap(tmp_path):
    stages = list(json.loads(COMMITTED.read_text())["successes"])
    run = {stages[0]: [True] * 40 + [False] * 60, stages[1]: [True] * 50 + [False] * 50}
    paths = [
        run_with(tmp_path, "a", 0, {**run, stages[2]: [True] * 70 + [False] * 30}),
        run_with(tmp_path, "b", 1, {**run, stages[2]: [True] * 60 + [False] * 40}),
    ]
    cells = tmp_path / "cells"
    write_cell(cells, paths[0], "bc", [True] * 50 + [False] * 50)
    write_cell(cells, paths[1], "bc", [True] * 60 + [False] * 40)
    write_cell(cells, paths[0], "stage1", [True] * 40 + [False] * 60)  # agrees everywhere
    write_cell(cells, paths[1], "stage1", [False] * 10 + [True] * 30 + [False] * 60)  # 10 episodes differ
    output = tmp_path / "out.json"
    assert demo(*paths, "--output", output, "--cells", cells) == ""
    summary = json.loads(output.read_text())
    assert summary["rates"]["bc seed 0"]["per_run"] == [0.5, 0.6]
    by_pair = {(c["stage"], c["baseline"]): c for c in summary["comparisons"]}
    recap_vs_bc = by_pair[(stages[2], "bc seed 0")]
    assert recap_vs_bc["per_run"] == [pytest.approx(0.2), pytest.approx(0.0)]
    assert recap_vs_bc["difference"] == pytest.approx(0.1)
    assert by_pair[("bc seed 0", stages[0])]["per_run"] == [pytest.approx(0.1), pytest.approx(0.2)]
    assert summary["stage1_reevaluation_agreement"] == [1.0, pytest.approx(0.9)]
    assert "100% / 90% of the episodes agree" in output.with_suffix(".md").read_text()


def test_efficacy_cells_of_another_plan_or_missing_arms_are_refused(tmp_path):
    successes = json.loads(COMMITTED.read_text())["successes"]
    paths = [run_with(tmp_path, "a", 0, successes), run_with(tmp_path, "b", 1, successes)]
    cells = tmp_path / "cells"
    write_cell(cells, paths[0], "bc", [True] * 100)
    assert "cells missing for (run seed, arm) [(1, 'bc seed 0')]" in demo(
        *paths, "--output", tmp_path / "x.json", "--cells", cells
    )
    write_cell(
        cells, paths[1], "bc", [True] * 100, plan={**json.loads(paths[1].read_text())["plan"], "demos": 5}
    )
    assert "is not an arm of the seed-1 run" in demo(
        *paths, "--output", tmp_path / "x.json", "--cells", cells
    )
    write_cell(cells, paths[1], "bc", [True] * 100, base_policy="smolvla")  # the run's plan, another policy
    assert "is not an arm of the seed-1 run" in demo(
        *paths, "--output", tmp_path / "x.json", "--cells", cells
    )
    assert not (tmp_path / "x.json").exists()


def test_versus_compares_every_cell_arm_with_the_named_methods_arms(tmp_path):
    stages = list(json.loads(COMMITTED.read_text())["successes"])
    path = run_with(tmp_path, "a", 0, {stage: [True] * 50 + [False] * 50 for stage in stages})
    cells = tmp_path / "cells"
    write_cell(cells, path, "bc", [True] * 50 + [False] * 50)
    write_cell(cells, path, "filtered_bc", [True] * 60 + [False] * 40)
    write_cell(cells, path, "recap_paper_negative_weight0", [False] * 10 + [True] * 65 + [False] * 25)
    output = tmp_path / "out.json"
    assert demo(path, "--output", output, "--cells", cells, "--versus", "filtered_bc", "bc") == ""
    by_pair = {(c["stage"], c["baseline"]): c for c in json.loads(output.read_text())["comparisons"]}
    probe_vs_filtered = by_pair[("recap_paper_negative_weight0 seed 0", "filtered_bc seed 0")]
    # 65% vs 60%: the probe wins episodes 60-74 (15) and loses 0-9 (10)
    assert probe_vs_filtered["difference"] == pytest.approx(0.05)
    assert (probe_vs_filtered["a_only"], probe_vs_filtered["b_only"]) == (15, 10)
    assert ("recap_paper_negative_weight0 seed 0", "bc seed 0") in by_pair
    # each pair of arms once, in one direction
    bc, filtered = "bc seed 0", "filtered_bc seed 0"
    assert (bc, filtered) in by_pair and (filtered, bc) not in by_pair
    assert "--versus ['dagger']: no such arm" in demo(
        path, "--output", tmp_path / "x.json", "--cells", cells, "--versus", "dagger"
    )
