"""What do advantage labels add beyond success filtering? Regime A: demonstrations of mixed quality only.

Simulated operators rated better / okay / worse (`sim.actors.OPERATORS`, fixed before any policy was
trained on them: benchmarks/operator_profiles.py) demonstrate a MetaWorld task in equal shares, and every
demonstration succeeds (like robomimic's multi-human datasets), so success filtering keeps all of them;
only a signal of quality or speed can rank them. Every arm trains a policy from scratch on the same demos
with the same steps and seed (stock `lerobot-train`), and is evaluated with stock `lerobot-eval` on the same
env seeds, for success and for throughput (successes per hour of robot time, the pi*0.6 paper's metric):

  bc                  every demonstration, equal weights (= filtered BC: all succeed)
  return_filtered_bc  the third of the demonstrations with the highest return (the shortest), D4RL's
                      "10% BC": the strongest baseline a user can run without a value function
  oracle_bc           the 'better' operator's demonstrations only: knowledge a user does not have, an
                      upper reference
  recap_paper         RECAP as the paper pre-trains: cross-fitted distributional value functions on the
                      demos, full-return advantage indicators (`value-label --full-return`), the
                      advantage-conditioned policy; evaluated with guidance beta 1.0, 1.5, 2.5
  awr                 IQL advantage weights exp(A / temperature), no conditioning (the paper's baseline)
  recap_iql           IQL advantage conditioning, critics trained with the policy
  recap_paper_negative_weight0 (probe) recap_paper with the indicator-0 frames out of the loss
  recap_paper_unconditional (diagnostic) recap_paper's checkpoint evaluated at guidance beta 0: its
                      unconditional branch alone

Each (task, data seed, arm, seed) cell writes one small JSON with its per-episode successes and steps under
`--results` (committed); a cell whose JSON exists is not run again, so the grid accumulates across sessions.
The demos are rebuilt from their seeds when missing (the scripted expert, its degradations and the env are
deterministic), and each arm trains from them alone, so a cell never depends on another's checkpoint.
`--lanes 2` trains two arms at once, one compute thread each (1.3x the throughput of one on 2 cores).

    python benchmarks/mixed_quality.py --tasks pick-place-v3 --data-seeds 0 1 2     # the pilot
    python benchmarks/mixed_quality.py --summary-only                               # tables from the cells
"""

from __future__ import annotations

import argparse
import json
import shutil
import threading
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from lerobot_policy_pi_star_recap.evaluation.success_stats import (
    paired_difference,
    paired_throughput,
    speed_summary,
    wilson_interval,
)
from lerobot_policy_pi_star_recap.loop import steps
from lerobot_policy_pi_star_recap.loop.arms import FROM_SCRATCH_ARMS, default_arms, episode_selection
from lerobot_policy_pi_star_recap.loop.flags import guidance
from lerobot_policy_pi_star_recap.loop.lanes import Lanes
from lerobot_policy_pi_star_recap.loop.plan import DEMO_ENV_SEEDS, QUICK, DemoPlan, Workspace, check_plan
from lerobot_policy_pi_star_recap.loop.report import cell_record, write_cell
from lerobot_policy_pi_star_recap.sim.config import METAWORLD_FPS

ARMS = FROM_SCRATCH_ARMS
BASELINES = ("bc", "return_filtered_bc", "oracle_bc")
# The first three tasks of operator_profiles.TASKS on which every operator profile meets its rule
# (benchmarks/results/operator_profiles.md: sweep-into-v3, push-v3 and door-open-v3 do not); the pilot is the first.
TASKS = ("pick-place-v3", "button-press-v3", "drawer-open-v3")
# Regime A's data: 30 demonstrations, a third from each of the better, okay and worse operators.
PLAN = replace(DemoPlan(), demos=30, operators="better:1,okay:1,worse:1")


class Draw:
    """One (task, data seed): its demos, and each arm trained on them and evaluated, reusing what is done."""

    def __init__(self, task: str, plan: DemoPlan, root: Path, results: Path, data_seed: int):
        self.root = root / task / f"data_seed{data_seed}"
        self.results = results / task / f"data_seed{data_seed}"
        check_plan(plan, iterations=1)
        self.ws = Workspace(task, self.root, plan, data_seed)
        self.lanes = Lanes(self.ws.logs)
        self.task, self.plan, self.data_seed = task, plan, data_seed
        self._build = threading.Lock()  # the demos and their labels are built once, by the first lane

    def demos(self) -> Path:
        path = self.root / "data" / "demos"
        with self._build:
            if not (path / "meta" / "info.json").is_file():
                shutil.rmtree(path, ignore_errors=True)
                seed = self.ws.env_seed(DEMO_ENV_SEEDS)
                steps.collect(self.ws, self.lanes, "demos", "demo", self.plan.demos, seed)
        return path

    def labelled(self) -> Path:
        path = self.root / "data" / "demos_labelled"
        demos = self.demos()
        with self._build:
            if not (path / "meta" / "info.json").is_file():
                shutil.rmtree(self.root / "value_demos", ignore_errors=True)
                steps.label_advantages(self.ws, self.lanes, "demos", demos, full_return=True)
        return path

    def done(self, arm: str, seed: int) -> bool:
        return all((self.results / f"{cell}.json").is_file() for _, cell in ARMS[arm].cells(seed))

    def run_arm(self, name: str, seed: int) -> None:
        arm = ARMS[name]
        data = self.labelled() if arm.data == "labelled" else self.demos()
        flags = [*arm.flags, *episode_selection(arm, data, self.demos())]
        run = f"{arm.evaluates or name}_seed{seed}"
        checkpoint = self.ws.checkpoint(run)
        if not (checkpoint / "model.safetensors").is_file():
            shutil.rmtree(self.root / run, ignore_errors=True)
            steps.train(self.ws, self.lanes, run, data, self.plan.stage1_steps, None, tuple(flags), seed)
        for beta, cell in arm.cells(seed):
            if (self.results / f"{cell}.json").is_file():
                continue
            info = steps.evaluate(self.ws, self.lanes, cell, checkpoint, guidance(beta))
            self.write_cell(cell, name, beta, seed, flags + list(guidance(beta)), info)

    def write_cell(self, cell: str, arm: str, beta: float | None, seed: int, flags: list[str], info: dict):
        record = {
            "task": self.task,
            "arm": arm,
            "beta": beta,
            "seed": seed,
            "data_seed": self.data_seed,
            "plan": asdict(self.plan),
            "flags": flags,
            **cell_record(info),
        }
        write_cell(self.results / f"{cell}.json", record)


def run_draw(draw: Draw, arms: list[str], seeds: list[int], lanes: int) -> None:
    """Every missing cell of `draw`, `lanes` arms at a time (each training on one compute thread)."""
    work = [(arm, seed) for arm in arms for seed in seeds if not draw.done(arm, seed)]
    if work:
        draw.lanes.run_all([lambda a=arm, s=seed: draw.run_arm(a, s) for arm, seed in work], lanes)


def read_cells(results: Path, plan: DemoPlan) -> list[dict]:
    """Every committed cell under <results>/<task>/data_seed<k>/, refused if made with another plan."""
    cells = []
    for path in sorted(results.glob("*/data_seed*/*_seed[0-9]*.json")):  # not label_quality.json
        cell = json.loads(path.read_text())
        if cell["plan"] != asdict(plan):
            raise SystemExit(
                f"{path} was made with plan {cell['plan']}, not {asdict(plan)}: use another --results."
            )
        cells.append(cell)
    return cells


def label(cell: dict) -> str:
    return cell["arm"] if cell["beta"] is None else f"{cell['arm']} (beta {cell['beta']})"


def summarize(cells: list[dict]) -> list[dict]:
    """Per (task or "all tasks", arm and beta): success and throughput with 95% intervals over the
    episodes of every draw, and paired comparisons against each baseline on the same draws, seeds and env
    seeds (episodes pooled over the draws: paired bootstrap for success difference, throughput ratio and
    difference; McNemar for success)."""
    keyed = {(c["task"], c["data_seed"], label(c), c["seed"]): c for c in cells}
    groups: dict[tuple[str, str], list[dict]] = {}
    for c in cells:
        for task in (c["task"], "all tasks"):
            groups.setdefault((task, label(c)), []).append(c)
    out = []
    for (task, name), group in sorted(groups.items()):
        if task == "all tasks" and len({c["task"] for c in cells}) < 2:
            continue
        successes = np.concatenate([c["successes"] for c in group])
        steps = np.concatenate([c["steps"] for c in group])
        low, high = wilson_interval(int(successes.sum()), len(successes))
        entry = {
            "task": task,
            "arm": name,
            "draws": len({(c["task"], c["data_seed"]) for c in group}),
            "episodes": len(successes),
            "success_rate": float(successes.mean()),
            "success_ci": [low, high],
            "paired": {},
        }
        entry.update(speed_summary(successes, steps, METAWORLD_FPS))
        for baseline in (b for b in BASELINES if b != name):
            pairs = [
                (c, b) for c in group if (b := keyed.get((c["task"], c["data_seed"], baseline, c["seed"])))
            ]
            if not pairs:
                continue
            a_s = np.concatenate([c["successes"] for c, _ in pairs])
            b_s = np.concatenate([b["successes"] for _, b in pairs])
            a_t = np.concatenate([c["steps"] for c, _ in pairs])
            b_t = np.concatenate([b["steps"] for _, b in pairs])
            entry["paired"][baseline] = {
                "draws": len(pairs),
                **paired_difference(a_s, b_s),
                **paired_throughput(a_s, a_t, b_s, b_t, METAWORLD_FPS),
            }
        out.append(entry)
    return out


def format_summary(summary: list[dict]) -> str:
    head = " | ".join(f"vs {b}: success, throughput ratio (95% CI)" for b in BASELINES)
    lines = [
        f"| task | arm | draws x episodes | success [95% CI] | successes per hour | {head} |",
        "|---|---|---|---|---|" + "---|" * len(BASELINES),
    ]
    for s in summary:
        low, high = s["success_ci"]
        cells = []
        for baseline in BASELINES:
            p = s["paired"].get(baseline)
            if p is None:
                cells.append("-")
                continue
            ratio = p["throughput_ratio"]
            speed = (
                "-"
                if ratio is None
                else (f"{ratio:.2f}x [{p['throughput_ratio_ci'][0]:.2f}, {p['throughput_ratio_ci'][1]:.2f}]")
            )
            cells.append(
                f"{100 * p['difference']:+.1f} [{100 * p['ci_low']:+.1f}, {100 * p['ci_high']:+.1f}]; {speed}"
            )
        lines.append(
            f"| {s['task']} | {s['arm']} | {s['draws']} x {s['episodes'] // max(s['draws'], 1)} | "
            f"{100 * s['success_rate']:.0f}% [{100 * low:.0f}, {100 * high:.0f}] | {s['throughput_per_hour']:.0f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--data-seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=default_arms(ARMS))
    parser.add_argument("--lanes", type=int, choices=(1, 2), default=2, help="arms trained at once")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the pipeline")
    parser.add_argument("--summary-only", action="store_true", help="tables from the committed cells")
    parser.add_argument("--root", type=Path, default=Path("outputs/mixed_quality"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/mixed_quality"))
    args = parser.parse_args()
    # the quick sizes with the step limit of the real plan: the worse operator needs it to succeed
    plan = (
        replace(QUICK, demos=3, operators=PLAN.operators, episode_length=PLAN.episode_length)
        if args.quick
        else PLAN
    )
    if not args.summary_only:
        for task in args.tasks:
            for data_seed in args.data_seeds:
                draw = Draw(task, plan, args.root, args.results, data_seed)
                run_draw(draw, args.arms, args.seeds, args.lanes)
    summary = summarize(read_cells(args.results, plan))
    table = format_summary(summary)
    print("\n" + table)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "mixed_quality.json").write_text(
        json.dumps({"plan": asdict(plan), "summary": summary}, indent=1)
    )
    (args.results / "mixed_quality.md").write_text(table + "\n")
    print(f"Wrote {args.results / 'mixed_quality.json'} and mixed_quality.md")


if __name__ == "__main__":
    main()
