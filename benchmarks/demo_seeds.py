"""How much does the demo's result move from one draw of the data to the next? Demo runs pooled over seeds.

Each `pi-star-recap demo --seed S` run collects its own demos, trains its own stage 1, collects its own
experience and fine-tunes on it, then evaluates every stage on its own 100+ env seeds (each --seed has its
own block of env seeds, `ENV_SEEDS_PER_RUN`). Within a run the stages are paired (same env seeds); across
runs nothing is shared, so a run's gain is one draw of "collect, label, fine-tune". This script reads the
runs' `results.json` (their per-episode `successes`), checks they ran the same plan, and reports each
run's paired differences and, over the runs (each weighing the same), the mean difference with two
intervals that hold the run-to-run variance pooling the episodes into one paired test hides: Student's t
over the runs' differences (the safer one with few runs) and a two-stage bootstrap (runs, then episodes
within a run), the pooled-episode interval beside them.

`--cells` adds the arms `benchmarks/efficacy.py --data-seeds S` fine-tuned from each run's own stage 1 on
its own data (BC, filtered BC, ...: its <root>/<task>/data_seed<S>/ holding the run's data/ and stage1/, so
nothing is rebuilt), evaluated on the run's env seeds: RECAP is then compared with them run by run. The
cells' stage-1 evaluation, a re-run of the run's own, is reported as the share of episodes that agree.

    python benchmarks/demo_seeds.py benchmarks/results/demo_sweep-into-v3_keep_failed_results.json \\
        benchmarks/results/demo_sweep-into-v3_seed1_results.json \\
        benchmarks/results/demo_sweep-into-v3_seed2_results.json \\
        --output benchmarks/results/demo_seeds_sweep-into-v3.json
    # with BC and filtered BC fine-tuned on the seed-1 and seed-2 runs' data (BENCHMARKS §2.2m)
    python benchmarks/demo_seeds.py benchmarks/results/demo_sweep-into-v3_seed1_results.json \\
        benchmarks/results/demo_sweep-into-v3_seed2_results.json \\
        --cells benchmarks/results/efficacy_demo_keep_failed --output benchmarks/results/demo_seeds_sweep-into-v3_bc.json \\
        --versus filtered_bc  # and every arm against filtered BC (BENCHMARKS §2.2p)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from efficacy import LEGACY_PLAN, data_seed_folder  # benchmarks/ is the script's folder

from lerobot_policy_pi_star_recap.data.writing import write_text_atomic
from lerobot_policy_pi_star_recap.evaluation.plots import plot_bars
from lerobot_policy_pi_star_recap.evaluation.success_stats import clustered_difference, wilson_interval
from lerobot_policy_pi_star_recap.loop.recap import NULL_CONTROL

# what a run's plan may differ in and still be the same experiment (the seed is in `seed`, not the plan)
SAME_EXPERIMENT = ("task", "plan", "advantage_estimator", "base_policy", "base_path")


def load_runs(paths: list[Path]) -> list[dict]:
    """The runs' results, refused with the reason if they are not the same experiment on other seeds."""
    runs = []
    for path in paths:
        run = json.loads(Path(path).read_text())
        if "successes" not in run:
            raise SystemExit(
                f"{path} has no per-episode 'successes' (written by demos since 2026-12-04): rerun the demo, "
                "or evaluate its checkpoints again."
            )
        # a plan field added after the run was made has the value it had then
        runs.append({**run, "plan": {**LEGACY_PLAN, **run["plan"]}})
    first = runs[0]
    for path, run in zip(paths[1:], runs[1:], strict=True):
        differ = [key for key in SAME_EXPERIMENT if run.get(key) != first.get(key)]
        if differ:
            raise SystemExit(
                f"{path} is another experiment than {paths[0]} (differs in {differ}): pool runs of one plan."
            )
        if list(run["successes"]) != list(first["successes"]):
            raise SystemExit(f"{path} has other stages than {paths[0]}: {list(run['successes'])}")
    seeds = [run["seed"] for run in runs]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"runs share a seed ({seeds}): the same seed repeats the same draw.")
    return runs


def load_cells(runs: list[dict], root: Path) -> tuple[dict[str, list[list[bool]]], list[float]]:
    """The efficacy cells of each run's task and data seed under `root` (its --results), by arm
    ("<method> seed <fine-tuning seed>"), and per run the share of episodes where the cells' stage-1
    evaluation agrees with the run's own. Refuses cells of another plan, and arms some run lacks."""
    per_run, agreement = [], []
    for run in runs:
        folder = root / run["task"] / data_seed_folder(run["seed"])
        cells = {}
        for path in sorted(folder.glob("*.json")):
            cell = json.loads(path.read_text())
            if "successes" not in cell:
                continue  # the grid's own summary (efficacy.json)
            same = (
                {**LEGACY_PLAN, **cell["plan"]} == run["plan"]
                and cell.get("data_seed", 0) == run["seed"]
                and cell.get("base_policy", "native") == run.get("base_policy", "native")
            )
            if not same:
                raise SystemExit(
                    f"{path} is not an arm of the seed-{run['seed']} run (plan, data seed or base policy differ): run "
                    "efficacy.py with the run's plan and --data-seeds, or give another --cells."
                )
            cells[f"{cell['method']} seed {cell['seed']}"] = cell["successes"]
        stage1 = cells.pop("stage1 seed 0", None)
        if stage1 is not None:
            own = next(iter(run["successes"].values()))
            agreement.append(float(np.mean(np.asarray(stage1) == np.asarray(own))))
        per_run.append(cells)
    arms = sorted(set().union(*per_run))
    missing = [
        (run["seed"], arm)
        for run, cells in zip(runs, per_run, strict=True)
        for arm in arms
        if arm not in cells
    ]
    if missing:
        raise SystemExit(f"cells missing for (run seed, arm) {missing}: run efficacy.py for them first.")
    return {arm: [cells[arm] for cells in per_run] for arm in arms}, agreement


def summarize(
    runs: list[dict], cells: dict[str, list[list[bool]]] | None = None, versus: tuple[str, ...] = ()
) -> dict:
    """Rates per arm and paired differences: every arm against stage 1 and the null control, RECAP against
    every cell arm, and every cell arm against the cell arms whose method is in `versus`."""
    stages = list(runs[0]["successes"])
    arms = {stage: [np.asarray(run["successes"][stage], dtype=bool) for run in runs] for stage in stages}
    cells = cells or {}
    arms.update({arm: [np.asarray(s, dtype=bool) for s in per_run] for arm, per_run in cells.items()})
    rates = {}
    for stage, per_run in arms.items():
        total = np.concatenate(per_run)
        low, high = wilson_interval(int(total.sum()), len(total))
        rates[stage] = {
            "per_run": [float(r.mean()) for r in per_run],
            "pooled": float(total.mean()),
            "wilson_95": [low, high],
            "episodes": len(total),
        }
    baselines = [stages[0]] + ([NULL_CONTROL] if NULL_CONTROL in arms else [])
    pairs = [
        (stage, baseline) for stage in [*stages[1:], *cells] for baseline in baselines if stage != baseline
    ]
    pairs += [(stages[-1], arm) for arm in cells]  # RECAP (the last stage) against every arm on its data
    unknown = sorted(set(versus) - {method_of(arm) for arm in cells})
    if unknown:
        raise SystemExit(f"--versus {unknown}: no such arm among the cells ({sorted(cells)}).")
    versus_arms = [arm for method in versus for arm in cells if method_of(arm) == method]  # in --versus order
    for baseline in versus_arms:
        pairs += [(arm, baseline) for arm in cells if arm != baseline and (baseline, arm) not in pairs]
    comparisons = [
        {"stage": stage, "baseline": baseline, **clustered_difference(arms[stage], arms[baseline])}
        for stage, baseline in pairs
    ]
    return {
        "task": runs[0]["task"],
        "plan": runs[0]["plan"],
        "seeds": [run["seed"] for run in runs],
        "wall_minutes": [round(run["wall_seconds"] / 60, 1) for run in runs],
        "rates": rates,
        "comparisons": comparisons,
    }


def method_of(arm: str) -> str:
    """The method of a cell arm ("<method> seed <fine-tuning seed>")."""
    return arm.rsplit(" seed ", 1)[0]


def format_summary(summary: dict) -> str:
    seeds = ", ".join(str(s) for s in summary["seeds"])
    lines = [
        f"{summary['task']}, demo seeds {seeds} (wall {summary['wall_minutes']} min)",
        "",
        "| stage | per run | pooled [95% CI] |",
        "|---|---|---|",
    ]
    for stage, r in summary["rates"].items():
        per_run = " / ".join(f"{x:.0%}" for x in r["per_run"])
        lines.append(
            f"| {stage} | {per_run} | {r['pooled']:.1%} [{r['wilson_95'][0]:.0%}, {r['wilson_95'][1]:.0%}] |"
        )
    lines += [
        "",
        "| stage | vs | per run | mean over runs | 95% CI, t over runs | 95% CI, bootstrap runs then episodes "
        "| pooled episodes [95% CI] | wins / losses | McNemar p |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in summary["comparisons"]:
        per_run = " / ".join(f"{x:+.0%}" for x in c["per_run"])
        t_interval = (
            "n/a (one run)" if c["t_ci_low"] is None else f"[{c['t_ci_low']:+.1%}, {c['t_ci_high']:+.1%}]"
        )
        lines.append(
            f"| {c['stage'].split(' (')[0]} | {c['baseline'].split(' (')[0]} | {per_run} | "
            f"{c['difference']:+.1%} | {t_interval} | "
            f"[{c['ci_low']:+.1%}, {c['ci_high']:+.1%}] | {c['pooled_difference']:+.1%} "
            f"[{c['pooled_ci_low']:+.1%}, {c['pooled_ci_high']:+.1%}] | {c['a_only']} / {c['b_only']} | "
            f"{c['mcnemar_p']:.3g} |"
        )
    if agreement := summary.get("stage1_reevaluation_agreement"):
        shares = " / ".join(f"{a:.0%}" for a in agreement)
        lines += [
            "",
            f"Stage 1 evaluated again by efficacy.py: {shares} of the episodes agree with the runs'.",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", nargs="+", type=Path, help="results.json of demo runs of one plan")
    parser.add_argument("--output", type=Path, required=True, help="summary JSON (a .md and .png beside it)")
    parser.add_argument(
        "--cells",
        type=Path,
        default=None,
        help="efficacy.py --results folder holding arms fine-tuned on the runs' data (their --data-seeds)",
    )
    parser.add_argument(
        "--versus",
        nargs="+",
        default=(),
        metavar="METHOD",
        help="also compare every cell arm with the cell arms of these methods (e.g. filtered_bc)",
    )
    args = parser.parse_args(argv)
    runs = load_runs(args.results)
    cells, agreement = load_cells(runs, args.cells) if args.cells else ({}, [])
    summary = summarize(runs, cells, tuple(args.versus))
    if agreement:
        summary["stage1_reevaluation_agreement"] = agreement
    table = format_summary(summary)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.output, json.dumps(summary, indent=2))
    write_text_atomic(args.output.with_suffix(".md"), table + "\n")
    gains = [c for c in summary["comparisons"] if c["stage"] != NULL_CONTROL]
    low, high = ("t_ci_low", "t_ci_high") if len(summary["seeds"]) > 1 else ("ci_low", "ci_high")
    plot_bars(
        [f"{c['stage'].split(' (')[0]}\nvs {c['baseline'].split(' (')[0]}" for c in gains],
        [c["difference"] for c in gains],
        # the headline interval: t over the runs (one run has none: its episode bootstrap instead)
        [[c["difference"] - c[low] for c in gains], [c[high] - c["difference"] for c in gains]],
        "success difference",
        f"{summary['task']}: {len(summary['seeds'])} demo runs, mean over runs, 95% CI "
        + ("t over runs" if len(summary["seeds"]) > 1 else "paired bootstrap"),
        args.output.with_suffix(".png"),
    )
    print(table)


if __name__ == "__main__":
    main()
