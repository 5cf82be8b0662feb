"""Does RECAP beat behaviour cloning? Same experience, backbone, steps and seeds for every method.

Per MetaWorld task the data comes from RECAP's own loop, exactly as `pi-star-recap demo` builds it:
scripted-expert demos -> stage 1 (behaviour cloning on the demos) -> autonomous rollouts of stage 1
(a mix of successes and failures) and rollouts where the expert corrects the policy when it stalls,
merged into one mixed-quality dataset. Every method then fine-tunes the same stage-1 checkpoint on that
dataset with stock `lerobot-train`, and is evaluated with stock `lerobot-eval` on the same seeds:

  stage1       the starting point, no fine-tuning (reference)
  bc           all data, equal weights, no advantage
  filtered_bc  successful episodes only (the strong offline-RL baseline)
  awr          IQL advantage weights exp(A / beta), no conditioning
  recap_iql    the spec's defaults (IQL advantage conditioning, intervention weight 2)
  recap_paper  the paper's staged workflow: cross-fitted distributional values (`value-train --folds 2`),
               `value-label` indicators, then the policy; evaluated with guidance beta 1.0, 1.5, 2.5

Resumable per (task, method, seed): finished datasets, checkpoints and result JSONs are reused, so an
interrupted run continues where it stopped. Prints a table (success rate and mean steps to success, mean
and spread over seeds) and writes JSON + a PNG.

    python benchmarks/efficacy.py           # default budget: 3 tasks x 1 seed (about 1.5 h on 2 CPU cores)
    python benchmarks/efficacy.py --full    # 3 tasks x 3 seeds x 50 episodes, longer fine-tuning
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from lerobot_policy_pi_star_recap.commands.demo import RECAP_FLAGS, Demo, DemoPlan, eval_summary

NO_ADVANTAGE = ("--policy.use_advantage_weighting=false", "--policy.use_advantage_conditioning=false")
METHODS: dict[str, tuple[str, ...]] = {
    "bc": (*NO_ADVANTAGE, "--policy.intervention_weight=1"),
    "filtered_bc": (*NO_ADVANTAGE, "--policy.intervention_weight=1", "--policy.success_only=true"),
    "awr": ("--policy.use_advantage_weighting=true", "--policy.use_advantage_conditioning=false"),
    "recap_iql": RECAP_FLAGS,
    "recap_paper": (
        *RECAP_FLAGS,
        "--policy.advantage_estimator=mc_distributional",
        "--policy.advantage_source=dataset",
    ),
}
LABELLED = {"recap_paper"}  # trained on the cross-fitted labelled copy of the mixed dataset
GUIDANCE = {"recap_paper": (1.0, 1.5, 2.5)}
TASKS = ("push-v3", "button-press-v3", "sweep-into-v3")


@dataclass(frozen=True)
class Budget:
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]  # fine-tuning seeds; the data and stage 1 are built once per task (seed 0)
    plan: DemoPlan  # data sizes; stage2_steps is each method's fine-tuning length


DEFAULT = Budget(TASKS, (0,), DemoPlan(stage2_steps=400, eval_episodes=30))
FULL = Budget(TASKS, (0, 1, 2), DemoPlan(rollouts=30, corrections=30, stage2_steps=1000, eval_episodes=50))


class TaskBench:
    """One task's data, stage 1 and method runs, under <root>/<task>/, reusing whatever is finished."""

    def __init__(self, task: str, budget: Budget, root: Path):
        fields = asdict(budget.plan)
        args = argparse.Namespace(
            task=task, output_dir=str(root / task), seed=0, quick=False, advantage_estimator="iql", **fields
        )
        self.demo = Demo(args)
        self.task, self.budget, self.root = task, budget, root / task

    def experience(self) -> tuple[Path, Path]:
        """(stage-1 checkpoint, mixed dataset), built like the demo's first iteration."""
        plan = self.budget.plan
        stage1 = self.checkpoint("stage1", self.demos(), plan.stage1_steps, None)
        mixed = self.root / "data" / "mixed1"
        if not _dataset_done(mixed):
            for name in ("rollouts1", "corrections1", "mixed1"):
                shutil.rmtree(self.root / "data" / name, ignore_errors=True)
            self.demo.gather(1, stage1, [self.demos()])
        return stage1, mixed

    def labelled(self, mixed: Path) -> Path:
        """The mixed dataset with cross-fitted advantage labels, as the demo builds it."""
        path = self.root / "data" / f"{mixed.name}_labelled"
        if _dataset_done(path):
            return path
        shutil.rmtree(self.root / f"value_{mixed.name}", ignore_errors=True)
        return self.demo.label_advantages(mixed.name, mixed)

    def demos(self) -> Path:
        path = self.root / "data" / "demos"
        if _dataset_done(path):
            return path
        shutil.rmtree(path, ignore_errors=True)
        return self.demo.collect("demos", "demo", self.budget.plan.demos, 0)

    def checkpoint(self, name: str, dataset: Path, steps: int, init: Path | None, *train_args) -> Path:
        """`Demo.train`, unless a finished checkpoint is there already."""
        path = self.root / name / "checkpoints" / "last" / "pretrained_model"
        if (path / "model.safetensors").is_file():
            return path
        shutil.rmtree(self.root / name, ignore_errors=True)
        return self.demo.train(name, dataset, steps, init, *train_args)

    def evaluate(self, name: str, checkpoint: Path, method: str, seed: int, flags=()) -> dict:
        """One lerobot-eval run, cached as results/<name>.json."""
        result = self.root / "results" / f"{name}.json"
        if not result.is_file():
            summary = eval_summary(self.demo.evaluate(name, checkpoint, tuple(flags)))
            result.parent.mkdir(parents=True, exist_ok=True)
            result.write_text(json.dumps({"task": self.task, "method": method, "seed": seed, **summary}))
        return json.loads(result.read_text())

    def run(self, methods: list[str]) -> list[dict]:
        stage1, mixed = self.experience()
        rows = [self.evaluate("stage1", stage1, "stage1", 0)]
        for method in methods:
            for seed in self.budget.seeds:
                name = f"{method}_seed{seed}"
                print(f"\n##### {self.task} / {method} / seed {seed}", flush=True)
                steps = self.budget.plan.stage2_steps
                data = self.labelled(mixed) if method in LABELLED else mixed
                checkpoint = self.checkpoint(name, data, steps, stage1, METHODS[method], seed)
                for beta in GUIDANCE.get(method, (None,)):
                    if beta is None:
                        rows.append(self.evaluate(name, checkpoint, method, seed))
                    else:
                        label = f"{method}_beta{beta}"
                        flags = (f"--policy.cfg_beta={beta}",)
                        rows.append(self.evaluate(f"{label}_seed{seed}", checkpoint, label, seed, flags))
        return rows


def _dataset_done(path: Path) -> bool:
    return (path / "meta" / "info.json").is_file()


def summarize(rows: list[dict]) -> list[dict]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["task"], row["method"]), []).append(row)
    out = []
    for (task, method), group in groups.items():
        rates = [r["success_rate"] for r in group]
        steps = [r["mean_steps_to_success"] for r in group if r["mean_steps_to_success"] is not None]
        out.append(
            {
                "task": task,
                "method": method,
                "seeds": len(group),
                "success_mean": statistics.mean(rates),
                "success_std": statistics.pstdev(rates) if len(rates) > 1 else 0.0,
                "steps_to_success_mean": statistics.mean(steps) if steps else None,
            }
        )
    return out


def format_table(summary: list[dict]) -> str:
    lines = [
        "| task | method | seeds | success rate (mean ± std) | mean steps to success |",
        "|---|---|---|---|---|",
    ]
    for s in summary:
        steps = f"{s['steps_to_success_mean']:.0f}" if s["steps_to_success_mean"] is not None else "-"
        spread = f" ± {100 * s['success_std']:.0f}" if s["seeds"] > 1 else ""  # no spread from one seed
        success = f"{100 * s['success_mean']:.0f}%{spread}"
        lines.append(f"| {s['task']} | {s['method']} | {s['seeds']} | {success} | {steps} |")
    return "\n".join(lines)


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = list(dict.fromkeys(s["task"] for s in summary))
    methods = list(dict.fromkeys(s["method"] for s in summary))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(2.5 + 2.5 * len(tasks), 4.5))
    for i, method in enumerate(methods):
        values = [next((s for s in summary if s["task"] == t and s["method"] == method), None) for t in tasks]
        means = [100 * v["success_mean"] if v else 0 for v in values]
        stds = [100 * v["success_std"] if v else 0 for v in values]
        ax.bar(np.arange(len(tasks)) + i * width, means, width, yerr=stds, capsize=3, label=method)
    ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2, tasks)
    ax.set_ylabel("success rate (%)")
    ax.set_title("Fine-tuning stage 1 on mixed-quality experience")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="3 tasks x 3 seeds x 50 episodes, 1000 steps")
    parser.add_argument("--tasks", nargs="+", default=None)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--steps", type=int, default=None, help="fine-tuning steps per method")
    parser.add_argument("--eval-episodes", type=int, default=None)
    parser.add_argument("--root", default="outputs/efficacy", help="data, runs, results (reused: resumable)")
    args = parser.parse_args()
    budget = FULL if args.full else DEFAULT
    plan_overrides = {"stage2_steps": args.steps, "eval_episodes": args.eval_episodes}
    budget = Budget(
        tuple(args.tasks) if args.tasks else budget.tasks,
        tuple(args.seeds) if args.seeds else budget.seeds,
        replace(budget.plan, **{k: v for k, v in plan_overrides.items() if v is not None}),
    )
    root = Path(args.root)
    rows = [row for task in budget.tasks for row in TaskBench(task, budget, root).run(args.methods)]
    summary = summarize(rows)
    table = format_table(summary)
    print("\n" + table)
    report = {"budget": asdict(budget), "methods": {m: list(METHODS[m]) for m in args.methods}}
    (root / "efficacy.json").write_text(json.dumps({**report, "rows": rows, "summary": summary}, indent=2))
    (root / "efficacy.md").write_text(table + "\n")
    plot(summary, root / "efficacy.png")
    print(f"Wrote {root / 'efficacy.json'}, {root / 'efficacy.md'}, {root / 'efficacy.png'}")


if __name__ == "__main__":
    main()
