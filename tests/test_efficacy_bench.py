"""benchmarks/efficacy.py's own logic: the episodes filtered BC keeps on a stock policy, and cells made
with another plan are refused instead of being paired with this one's."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from synthetic import make_dataset

BENCH = Path(__file__).parents[1] / "benchmarks" / "efficacy.py"


@pytest.fixture(scope="module")
def efficacy():
    spec = importlib.util.spec_from_file_location("efficacy_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_filtered_bc_keeps_the_successful_episodes(efficacy, tmp_path):
    root = make_dataset(
        tmp_path / "mixed", ["demo", "auto", "auto", "intervention"], successes=[True, False, True, False]
    )
    assert efficacy.successful_episodes(root) == [0, 2]
    failed = make_dataset(tmp_path / "failed", ["auto", "auto"], successes=[False, False])
    with pytest.raises(SystemExit, match="no successful episode"):
        efficacy.successful_episodes(failed)


def test_a_cell_from_another_plan_is_refused(efficacy, tmp_path):
    budget = efficacy.Budget(("push-v3",), (0,), efficacy.QUICK)
    bench = efficacy.TaskBench("push-v3", budget, tmp_path / "root", tmp_path / "results")
    cell = bench.results / "bc_seed0.json"
    cell.parent.mkdir(parents=True)
    cell.write_text(
        json.dumps({"plan": asdict(efficacy.QUICK), "base_policy": "native", "success_rate": 0.5})
    )
    assert bench.cached("bc_seed0")["success_rate"] == 0.5
    assert bench.cached("missing") is None
    other = efficacy.TaskBench(
        "push-v3",
        replace(budget, plan=replace(efficacy.QUICK, stage1_steps=99)),
        tmp_path / "r",
        tmp_path / "results",
    )
    with pytest.raises(SystemExit, match="give each its own --root and --results"):
        other.cached("bc_seed0")
    stock = efficacy.TaskBench(
        "push-v3", replace(budget, base_policy="smolvla"), tmp_path / "s", tmp_path / "results"
    )
    with pytest.raises(SystemExit, match="base policy"):
        stock.cached("bc_seed0")


def test_a_cell_from_before_a_plan_field_existed_has_its_default(efficacy, tmp_path):
    """Cells committed before `correction_trigger` joined the plan were made with stall corrections."""
    older = {k: v for k, v in asdict(efficacy.QUICK).items() if k != "correction_trigger"}
    budget = efficacy.Budget(("push-v3",), (0,), efficacy.QUICK)
    bench = efficacy.TaskBench("push-v3", budget, tmp_path / "root", tmp_path / "results")
    cell = bench.results / "bc_seed0.json"
    cell.parent.mkdir(parents=True)
    cell.write_text(json.dumps({"plan": older, "base_policy": "native", "success_rate": 0.5}))
    assert bench.cached("bc_seed0")["success_rate"] == 0.5
    disagreement = replace(budget, plan=replace(efficacy.QUICK, correction_trigger="disagreement"))
    with pytest.raises(SystemExit, match="give each its own --root and --results"):
        efficacy.TaskBench("push-v3", disagreement, tmp_path / "r", tmp_path / "results").cached("bc_seed0")
