"""benchmarks/efficacy.py's own logic: the episodes filtered BC keeps on a stock policy, and cells made
with another plan are refused instead of being paired with this one's."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from synthetic import load_benchmark, make_dataset


@pytest.fixture(scope="module")
def efficacy():
    return load_benchmark("efficacy")


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
    """Cells committed before `correction_trigger`, `tokenizer_padding`, `camera_storage` and
    `successful_demos` joined the plan were made with stall corrections, prompts padded to 48 tokens, PNG
    frames and the scripted expert's failed demo attempts kept."""
    older = {k: v for k, v in asdict(efficacy.QUICK).items() if k not in efficacy.LEGACY_PLAN}
    then = replace(
        efficacy.QUICK,
        correction_trigger="stall",
        tokenizer_padding="max_length",
        camera_storage="png",
        successful_demos=False,
    )
    budget = efficacy.Budget(("push-v3",), (0,), then)
    bench = efficacy.TaskBench("push-v3", budget, tmp_path / "root", tmp_path / "results")
    cell = bench.results / "bc_seed0.json"
    cell.parent.mkdir(parents=True)
    cell.write_text(json.dumps({"plan": older, "base_policy": "native", "success_rate": 0.5}))
    assert bench.cached("bc_seed0")["success_rate"] == 0.5
    for today in (
        {"correction_trigger": "disagreement"},
        {"tokenizer_padding": "longest"},
        {"camera_storage": "video"},
        {"successful_demos": True},
    ):
        other = replace(budget, plan=replace(then, **today))
        with pytest.raises(SystemExit, match="give each its own --root and --results"):
            efficacy.TaskBench("push-v3", other, tmp_path / "r", tmp_path / "results").cached("bc_seed0")


def test_the_summary_pools_every_committed_cell_and_pairs_on_shared_seeds(efficacy, tmp_path):
    """A run over seed 1 alone still summarises seed 0's committed cells; a baseline that has only
    seed 0 so far is compared on that seed, and the table says so."""
    budget = efficacy.Budget(("push-v3",), (1,), efficacy.QUICK)
    results = tmp_path / "results"
    (results / "push-v3").mkdir(parents=True)
    cells = {
        "recap_paper_seed0": ("recap_paper", 0, [1, 1, 1, 0]),
        "recap_paper_seed1": ("recap_paper", 1, [1, 0, 1, 1]),
        "filtered_bc_seed0": ("filtered_bc", 0, [1, 0, 0, 0]),
    }
    for name, (method, seed, successes) in cells.items():
        cell = {
            "task": "push-v3",
            "method": method,
            "seed": seed,
            "plan": asdict(efficacy.QUICK),
            "base_policy": "native",
            "success_rate": sum(successes) / len(successes),
            "episodes": len(successes),
            "mean_steps_to_success": None,
            "successes": successes,
        }
        (results / "push-v3" / f"{name}.json").write_text(json.dumps(cell))
    (results / "efficacy.json").write_text("{}")  # the summary itself is not a cell
    rows = efficacy.all_cells(results, budget)
    assert sorted((r["method"], r["seed"]) for r in rows) == [
        ("filtered_bc", 0),
        ("recap_paper", 0),
        ("recap_paper", 1),
    ]
    summary = {s["method"]: s for s in efficacy.summarize(rows)}
    recap = summary["recap_paper"]
    assert recap["seeds"] == 2 and recap["success_mean"] == pytest.approx(0.75)
    vs_filtered = recap["paired"]["filtered_bc"]
    assert vs_filtered["seeds"] == 1 and vs_filtered["episodes"] == 4
    assert vs_filtered["difference"] == pytest.approx(0.5)  # 3/4 against 1/4 on seed 0
    assert (vs_filtered["a_only"], vs_filtered["b_only"]) == (2, 0)
    assert "(1 of 2 cells)" in efficacy.format_table(list(summary.values()))
    other = replace(budget, plan=replace(efficacy.QUICK, stage2_steps=7))
    with pytest.raises(SystemExit, match="give each its own --root and --results"):
        efficacy.all_cells(results, other)


def test_a_reused_dataset_stored_otherwise_than_the_plan_is_refused(efficacy, tmp_path):
    """Data under --root made with PNG frames is not reused by a plan that stores video, and back."""
    make_dataset(tmp_path / "root" / "push-v3" / "data" / "demos", ["demo", "demo"])
    for storage, reused in (("png", True), ("video", False)):
        plan = replace(efficacy.QUICK, camera_storage=storage)
        bench = efficacy.TaskBench(
            "push-v3", efficacy.Budget(("push-v3",), (0,), plan), tmp_path / "root", tmp_path
        )
        if reused:
            assert bench.demos() == tmp_path / "root" / "push-v3" / "data" / "demos"
        else:
            with pytest.raises(SystemExit, match="camera_storage=video: give each plan its own --root"):
                bench.demos()


def test_reused_demos_collected_otherwise_than_the_plan_are_refused(efficacy, tmp_path):
    """Demos under --root that kept the expert's failures are not reused by a plan of successful demos
    (stage 1 and the experience were built on them), and back."""
    demos = make_dataset(tmp_path / "root" / "push-v3" / "data" / "demos", ["demo", "demo"])
    for collected_with in (False, True):
        provenance = {"arguments": {"successes_only": collected_with}}
        (demos / "meta" / "recap_collect.json").write_text(json.dumps(provenance))
        for successful_demos in (False, True):
            plan = replace(efficacy.QUICK, camera_storage="png", successful_demos=successful_demos)
            bench = efficacy.TaskBench(
                "push-v3", efficacy.Budget(("push-v3",), (0,), plan), tmp_path / "root", tmp_path
            )
            if successful_demos == collected_with:
                assert bench.demos() == demos
            else:
                with pytest.raises(SystemExit, match=f"successes_only={collected_with}, not the plan's"):
                    bench.demos()


def write_cell(
    results: Path, plan: dict, name: str, method: str, seed: int, successes, data_seed=None, task="push-v3"
):
    """A committed cell; `data_seed` None writes it as cells were before data seeds existed."""
    cell = {
        "task": task,
        "method": method,
        "seed": seed,
        "plan": plan,
        "base_policy": "native",
        "success_rate": sum(successes) / len(successes),
        "episodes": len(successes),
        "mean_steps_to_success": None,
        "successes": successes,
    }
    folder = results / task
    if data_seed is not None:
        cell["data_seed"] = data_seed
        folder = folder / f"data_seed{data_seed}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(cell))


def test_each_data_seed_is_paired_with_its_own_stage1_and_spread_over_draws(efficacy, tmp_path):
    """Data seed 0's cells (from before data seeds existed) and data seed 1's: RECAP is paired with the
    stage 1 of its own data seed, and the difference gets an interval over the two draws of the data."""
    results, plan = tmp_path / "results", asdict(efficacy.DemoPlan())
    write_cell(results, plan, "stage1", "stage1", 0, [0, 0, 0, 0])
    write_cell(results, plan, "recap_paper_seed0", "recap_paper", 0, [1, 1, 0, 0])
    write_cell(results, plan, "stage1", "stage1", 0, [1, 1, 1, 1], data_seed=1)
    write_cell(results, plan, "recap_paper_seed0", "recap_paper", 0, [1, 1, 1, 1], data_seed=1)
    rows = efficacy.all_cells(results, efficacy.Budget(("push-v3",), (0,), efficacy.DemoPlan()))
    assert sorted((r["method"], r["data_seed"]) for r in rows) == [
        ("recap_paper", 0),
        ("recap_paper", 1),
        ("stage1", 0),
        ("stage1", 1),
    ]
    summary = {s["method"]: s for s in efficacy.summarize(rows)}
    recap = summary["recap_paper"]
    assert recap["seeds"] == 2 and recap["data_seeds"] == 2
    vs_stage1 = recap["paired"]["stage1"]
    # +2 of 4 on data seed 0, 0 of 4 on data seed 1 (against the other seed's stage 1 it would be +2 / -2)
    assert (vs_stage1["a_only"], vs_stage1["b_only"]) == (2, 0)
    assert vs_stage1["difference"] == pytest.approx(0.25)
    assert vs_stage1["over_data_seeds"]["per_data_seed"] == {0: 0.5, 1: 0.0}
    assert vs_stage1["over_data_seeds"]["ci_low"] == pytest.approx(0.0)  # a draw of data seed 1 twice: 0
    table = efficacy.format_table(list(summary.values()))
    # per data seed +50 and +0: t(0.975, 1) = 12.71 over 2 runs of sd 0.354 -> +25 +- 318
    assert "| 2 x 4 (2 data seeds) | 75% ± 25 | " in table  # the success column keeps its spread
    assert "; over data seeds +25, t 95% CI [-293, +343]" in table


def test_all_tasks_pool_every_draw_and_weigh_draws_alike(efficacy, tmp_path):
    """Two tasks, three draws: the "all tasks" row pairs each draw with its own stage 1, pools the episodes
    and gives each draw one weight in the two-stage interval; the per-draw table shows every rate."""
    results, plan = tmp_path / "results", asdict(efficacy.DemoPlan())
    draws = {  # (task, data seed): (stage 1, RECAP)
        ("push-v3", 0): ([0, 0, 0, 0], [1, 1, 0, 0]),  # +50
        ("push-v3", 1): ([1, 1, 0, 0], [1, 1, 0, 0]),  # +0
        ("sweep-into-v3", 2): ([0, 0, 0, 0], [1, 0, 0, 0]),  # +25
    }
    for (task, data_seed), (stage1, recap) in draws.items():
        write_cell(results, plan, "stage1", "stage1", 0, stage1, data_seed=data_seed, task=task)
        write_cell(
            results, plan, "recap_paper_seed0", "recap_paper", 0, recap, data_seed=data_seed, task=task
        )
    rows = efficacy.all_cells(results, efficacy.Budget(("push-v3",), (0,), efficacy.DemoPlan()))
    assert efficacy.across_tasks([r for r in rows if r["task"] == "push-v3"]) == []  # one task: nothing new
    pooled = {s["method"]: s for s in efficacy.summarize(efficacy.across_tasks(rows))}["recap_paper"]
    assert pooled["task"] == efficacy.ALL_TASKS and pooled["data_seeds"] == 3 and pooled["episodes"] == 12
    vs_stage1 = pooled["paired"]["stage1"]
    assert vs_stage1["difference"] == pytest.approx(3 / 12)  # 3 wins, 0 losses over 12 paired episodes
    over = vs_stage1["over_data_seeds"]
    assert over["per_data_seed"] == {"push-v3/0": 0.5, "push-v3/1": 0.0, "sweep-into-v3/2": 0.25}
    assert over["difference"] == pytest.approx(0.25)  # (50 + 0 + 25) / 3, each draw alike
    assert "| all tasks | recap_paper | 3 x 4 (3 draws) | " in efficacy.format_table([pooled])
    draws_table = efficacy.format_draws(rows).splitlines()
    assert draws_table[0] == "| task | data seed | stage1 | recap_paper |"
    # 1 of 4: Wilson 95% [4.6%, 69.9%]
    assert draws_table[-1] == "| sweep-into-v3 | 2 | 0% [0, 49] | 25% [5, 70] |"


def test_a_data_seed_has_its_own_folders_and_seeds_the_loop(efficacy, tmp_path):
    budget = efficacy.Budget(
        ("push-v3",), (0,), replace(efficacy.QUICK, camera_storage="png"), data_seeds=(0, 1)
    )
    bench = efficacy.TaskBench("push-v3", budget, tmp_path / "root", tmp_path / "results", data_seed=1)
    assert bench.root == tmp_path / "root" / "push-v3" / "data_seed1"
    assert bench.results == tmp_path / "results" / "push-v3" / "data_seed1"
    assert bench.ws.seed == 1  # demos, stage 1, collection and labels all derive from it
    seed0 = efficacy.TaskBench("push-v3", budget, tmp_path / "root", tmp_path / "results")
    assert seed0.root == tmp_path / "root" / "push-v3" and seed0.ws.seed == 0  # the grid's old cells
    make_dataset(bench.root / "data" / "demos", ["demo", "demo"])
    assert bench.demos() == bench.root / "data" / "demos"  # reused from its own folder, not seed 0's
    assert bench.ws.env_seed(0) != seed0.ws.env_seed(0)  # demos from its own env seeds (test_loop.py)


def test_outcome_labels_mark_successful_episodes_and_expert_frames(efficacy, tmp_path):
    """recap_outcome's data: the labelled copy with the indicator from each episode's outcome (and expert
    frames positive), every other column kept, the source untouched, loadable by LeRobotDataset."""
    import numpy as np
    from lerobot.datasets import LeRobotDataset
    from lerobot.datasets.dataset_tools import add_features

    types, successes, length = ["demo", "auto", "intervention", "intervention"], [True, False, True, False], 8
    source = LeRobotDataset(
        "local/s", root=make_dataset(tmp_path / "src", types, length, successes=successes)
    )
    frames = source.meta.total_frames
    value_labels = (np.arange(frames) % 3 == 0).astype(np.float32)[:, None]  # what value-label wrote
    feature = {"dtype": "float32", "shape": (1,), "names": None}
    add_features(
        source,
        {"advantage_indicator": (value_labels, feature)},
        output_dir=tmp_path / "lab",
        repo_id="local/l",
    )
    out = efficacy.outcome_indicator_copy(tmp_path / "lab", tmp_path / "outcome")
    assert out == tmp_path / "outcome" and not (tmp_path / "outcome.tmp").exists()
    labelled = LeRobotDataset("local/o", root=out)
    indicator = np.array([float(labelled.hf_dataset[i]["advantage_indicator"]) for i in range(frames)])
    # episodes 0 and 2 succeeded: all 8 frames each; episode 3 failed: only its expert half (frames 4-7)
    expected = np.concatenate([np.ones(8), np.zeros(8), np.ones(8), [0, 0, 0, 0, 1, 1, 1, 1]])
    np.testing.assert_array_equal(indicator, expected)
    source_labels = LeRobotDataset("local/l", root=tmp_path / "lab")
    assert float(source_labels.hf_dataset[1]["advantage_indicator"]) == 0.0  # the source keeps its labels
    assert float(source_labels.hf_dataset[3]["advantage_indicator"]) == 1.0
    assert labelled.hf_dataset[5]["data_type"] == source_labels.hf_dataset[5]["data_type"]


def test_cells_of_a_lost_stage1_are_not_paired_with_a_retrained_one(efficacy, tmp_path):
    """The committed cells of a draw whose stage-1 checkpoint is gone from --root refuse a new stage 1
    instead of mixing two stage 1s in one paired comparison; with the checkpoint there, it is reused."""
    budget = efficacy.Budget(("push-v3",), (0,), replace(efficacy.QUICK, camera_storage="png"))
    bench = efficacy.TaskBench("push-v3", budget, tmp_path / "root", tmp_path / "results")
    write_cell(bench.results.parent, asdict(budget.plan), "stage1", "stage1", 0, [1, 0])
    with pytest.raises(SystemExit, match="no longer at .*stage1.*choose another --data-seeds"):
        bench.experience()
    checkpoint = bench.root / "stage1" / "checkpoints" / "last" / "pretrained_model"
    checkpoint.mkdir(parents=True)
    (checkpoint / "model.safetensors").write_bytes(b"")
    mixed = make_dataset(bench.root / "data" / "mixed1", ["auto", "auto"])
    make_dataset(bench.root / "data" / "demos", ["demo", "demo"])
    assert bench.experience() == (checkpoint, mixed)


def test_an_iterated_arm_collects_its_second_round_with_its_own_first_policy(efficacy, tmp_path, monkeypatch):
    """recap_paper_iter2 / filtered_bc_iter2: round 2 is collected by the arm's own iteration-1 checkpoint
    on iteration 2's env seeds, merged with the first round's data, and reused once it is built."""
    budget = efficacy.Budget(("push-v3",), (0,), replace(efficacy.QUICK, camera_storage="png"))
    bench = efficacy.TaskBench("push-v3", budget, tmp_path / "root", tmp_path / "results")
    with pytest.raises(SystemExit, match="put recap_paper before recap_paper_iter2"):
        bench.second_round("recap_paper", 0)
    first = bench.checkpoint_dir("recap_paper_seed0")
    first.mkdir(parents=True)
    (first / "model.safetensors").write_bytes(b"")
    data = bench.root / "data"
    make_dataset(data / "demos", ["demo", "demo"])
    calls = []

    def gather(ws, lanes, iteration, policy, experience, tag=""):
        calls.append((iteration, policy, experience, tag))
        return make_dataset(data / f"mixed{iteration}{tag}", ["auto", "intervention"])

    monkeypatch.setattr(efficacy.steps, "gather", gather)
    mixed = bench.second_round("recap_paper", 0)
    assert mixed == data / "mixed2_recap_paper_seed0"
    assert calls == [
        (2, first, [data / "demos", data / "rollouts1", data / "corrections1"], "_recap_paper_seed0")
    ]
    assert bench.second_round("recap_paper", 0) == mixed and len(calls) == 1  # built once, then reused


def test_an_iterated_arm_is_paired_with_the_same_iteration_of_its_baselines(efficacy, tmp_path):
    """RECAP's second round meets filtered BC's and BC's second rounds (each collected its own), an
    iterated baseline its own first round; stage 1 has one round and pairs as before."""
    results, plan = tmp_path / "results", asdict(efficacy.DemoPlan())
    cells = {  # name: (method, successes)
        "stage1": ("stage1", [0, 0, 0, 0]),
        "filtered_bc_seed0": ("filtered_bc", [1, 0, 0, 0]),
        "filtered_bc_iter2_seed0": ("filtered_bc_iter2", [1, 1, 1, 0]),
        "bc_seed0": ("bc", [0, 0, 0, 0]),
        "bc_iter2_seed0": ("bc_iter2", [1, 0, 0, 1]),
        "recap_paper_iter2_beta2.5_seed0": ("recap_paper_iter2_beta2.5", [1, 1, 0, 0]),
    }
    for name, (method, successes) in cells.items():
        write_cell(results, plan, name, method, 0, successes, data_seed=0)
    rows = efficacy.all_cells(results, efficacy.Budget(("push-v3",), (0,), efficacy.DemoPlan()))
    summary = {s["method"]: s["paired"] for s in efficacy.summarize(rows)}
    assert summary["recap_paper_iter2_beta2.5"]["filtered_bc"]["difference"] == pytest.approx(-1 / 4)
    assert summary["recap_paper_iter2_beta2.5"]["stage1"]["difference"] == pytest.approx(2 / 4)
    assert summary["filtered_bc_iter2"]["filtered_bc"]["difference"] == pytest.approx(2 / 4)
    assert summary["recap_paper_iter2_beta2.5"]["bc"]["difference"] == pytest.approx(0)  # bc_iter2, not bc
    assert summary["filtered_bc_iter2"]["bc"]["difference"] == pytest.approx(1 / 4)
    assert summary["bc_iter2"]["bc"]["difference"] == pytest.approx(2 / 4)  # its own first round
    assert summary["bc_iter2"]["filtered_bc"]["difference"] == pytest.approx(-1 / 4)  # filtered BC's second
    assert "vs filtered_bc; an iterated arm: the same iteration (95% CI)" in efficacy.format_table([])
    efficacy.plot(efficacy.summarize(rows), tmp_path / "differences.png")
    assert (tmp_path / "differences.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
