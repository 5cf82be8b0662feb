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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from efficacy import top_return_episodes

from lerobot_policy_pi_star_recap.commands.demo import (
    DEMO_ENV_SEEDS,
    LABELLED_RECAP_FLAGS,
    QUICK,
    RECAP_FLAGS,
    Demo,
    DemoPlan,
    episode_steps,
    episode_successes,
    eval_summary,
)
from lerobot_policy_pi_star_recap.dataset_writing import episode_records
from lerobot_policy_pi_star_recap.paired import (
    paired_difference,
    paired_throughput,
    speed_summary,
    wilson_interval,
)
from lerobot_policy_pi_star_recap.sim.config import METAWORLD_FPS

NO_ADVANTAGE = ("--policy.use_advantage_weighting=false", "--policy.use_advantage_conditioning=false")


@dataclass(frozen=True)
class Arm:
    """One way to train on the demos: its lerobot-train flags, which demos it sees, whether it reads the
    cross-fitted full-return labels, and the guidance betas it is evaluated with (None: no guidance)."""

    flags: tuple[str, ...]
    episodes: str = "all"  # "all", "top_third_return" or "better_operator"
    labelled: bool = False
    betas: tuple[float | None, ...] = (None,)


GUIDANCE = (1.0, 1.5, 2.5)
ARMS: dict[str, Arm] = {
    "bc": Arm(NO_ADVANTAGE),
    "return_filtered_bc": Arm(NO_ADVANTAGE, episodes="top_third_return"),
    "oracle_bc": Arm(NO_ADVANTAGE, episodes="better_operator"),
    "recap_paper": Arm(LABELLED_RECAP_FLAGS, labelled=True, betas=GUIDANCE),
    "awr": Arm(("--policy.use_advantage_weighting=true", "--policy.use_advantage_conditioning=false")),
    "recap_iql": Arm(RECAP_FLAGS, betas=GUIDANCE),
    "recap_paper_negative_weight0": Arm(
        (*LABELLED_RECAP_FLAGS, "--policy.negative_weight=0"), labelled=True, betas=GUIDANCE
    ),
}
PROBES = ("recap_paper_negative_weight0",)
BASELINES = ("bc", "return_filtered_bc", "oracle_bc")
# The first three tasks of operator_profiles.TASKS on which every operator profile meets its rule
# (benchmarks/results/operator_profiles.md: sweep-into-v3, push-v3 and door-open-v3 do not); the pilot is the first.
TASKS = ("pick-place-v3", "button-press-v3", "drawer-open-v3")
# Regime A's data: 30 demonstrations, a third from each of the better, okay and worse operators.
PLAN = replace(DemoPlan(), demos=30, operators="better:1,okay:1,worse:1")


def operator_episodes(root: Path, operator: str) -> list[int]:
    """The episodes of `root` that `operator` demonstrated (from the collection's records)."""
    records = episode_records(root)
    if records is None:
        raise SystemExit(
            f"{root} has no meta/recap_collect.json: which operator made which episode is unknown."
        )
    chosen = [i for i, r in enumerate(records) if r.get("operator") == operator]
    if not chosen:
        raise SystemExit(f"{root} has no episode of operator {operator!r}.")
    return chosen


class Draw:
    """One (task, data seed): its demos, and each arm trained on them and evaluated, reusing what is done."""

    def __init__(self, task: str, plan: DemoPlan, root: Path, results: Path, data_seed: int):
        self.root = root / task / f"data_seed{data_seed}"
        self.results = results / task / f"data_seed{data_seed}"
        args = argparse.Namespace(
            task=task,
            output=str(self.root),
            seed=data_seed,
            quick=False,
            advantage_estimator="mc_distributional",
            null_control=False,
            base_policy="native",
            base_path=None,
            iterations=1,
            **asdict(plan),
        )
        self.demo = Demo(args)
        self.task, self.plan, self.data_seed = task, plan, data_seed
        self._build = threading.Lock()  # the demos and their labels are built once, by the first lane

    def demos(self) -> Path:
        path = self.root / "data" / "demos"
        with self._build:
            if not (path / "meta" / "info.json").is_file():
                shutil.rmtree(path, ignore_errors=True)
                self.demo.collect("demos", "demo", self.plan.demos, self.demo.env_seed(DEMO_ENV_SEEDS))
        return path

    def labelled(self) -> Path:
        path = self.root / "data" / "demos_labelled"
        demos = self.demos()
        with self._build:
            if not (path / "meta" / "info.json").is_file():
                shutil.rmtree(self.root / "value_demos", ignore_errors=True)
                self.demo.label_advantages("demos", demos, full_return=True)
        return path

    def cells(self, arm: str, seed: int) -> list[str]:
        return [arm_cell(arm, beta, seed) for beta in ARMS[arm].betas]

    def done(self, arm: str, seed: int) -> bool:
        return all((self.results / f"{cell}.json").is_file() for cell in self.cells(arm, seed))

    def run_arm(self, arm: str, seed: int) -> None:
        spec = ARMS[arm]
        data = self.labelled() if spec.labelled else self.demos()
        flags = list(spec.flags)
        if spec.episodes != "all":
            chosen = (
                top_return_episodes(data)
                if spec.episodes == "top_third_return"
                else operator_episodes(self.demos(), "better")
            )
            flags.append(f"--dataset.episodes=[{','.join(map(str, chosen))}]")
        name = f"{arm}_seed{seed}"
        checkpoint = self.root / name / "checkpoints" / "last" / "pretrained_model"
        if not (checkpoint / "model.safetensors").is_file():
            shutil.rmtree(self.root / name, ignore_errors=True)
            self.demo.train(name, data, self.plan.stage1_steps, None, tuple(flags), seed)
        for beta, cell in zip(spec.betas, self.cells(arm, seed), strict=True):
            if (self.results / f"{cell}.json").is_file():
                continue
            guidance = () if beta is None else (f"--policy.cfg_beta={beta}",)
            info = self.demo.evaluate(cell, checkpoint, guidance)
            self.write_cell(cell, arm, beta, seed, flags + list(guidance), info)

    def write_cell(self, cell: str, arm: str, beta: float | None, seed: int, flags: list[str], info: dict):
        record = {
            "task": self.task,
            "arm": arm,
            "beta": beta,
            "seed": seed,
            "data_seed": self.data_seed,
            "plan": asdict(self.plan),
            "flags": flags,
            **eval_summary(info),
            "successes": episode_successes(info),
            "steps": episode_steps(info),
        }
        self.results.mkdir(parents=True, exist_ok=True)
        staging = self.results / f"{cell}.tmp"
        staging.write_text(json.dumps(record, indent=1))
        staging.replace(self.results / f"{cell}.json")


def arm_cell(arm: str, beta: float | None, seed: int) -> str:
    return f"{arm}_seed{seed}" if beta is None else f"{arm}_beta{beta}_seed{seed}"


def run_draw(draw: Draw, arms: list[str], seeds: list[int], lanes: int) -> None:
    """Every missing cell of `draw`, `lanes` arms at a time (each training on one compute thread)."""
    work = [(arm, seed) for arm in arms for seed in seeds if not draw.done(arm, seed)]
    if not work:
        return
    draw.demo.step_threads = 1 if lanes > 1 else None
    with ThreadPoolExecutor(max_workers=lanes) as pool:
        futures = [
            pool.submit(draw.demo.in_lane, draw.run_arm, arm, seed, quiet=i % lanes > 0)
            for i, (arm, seed) in enumerate(work)
        ]
        for future in futures:
            future.exception()
    if draw.demo.failure is not None:
        raise draw.demo.failure


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
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=[a for a in ARMS if a not in PROBES])
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
