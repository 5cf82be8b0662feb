"""Does RECAP beat behaviour cloning? Same mixed-quality data, backbone, steps and seeds for every method.

Per MetaWorld task, one dataset is collected once: a few scripted-expert demos, many autonomous episodes
of a degraded expert (noise, pauses, wrong-direction segments: mostly failures) and some episodes with
simulated expert corrections. Each method trains with stock `lerobot-train` and is evaluated with stock
`lerobot-eval` on the same seeds:

  bc           all data, equal weights, no advantage
  filtered_bc  successful episodes only (the strong offline-RL baseline)
  awr          IQL advantage weights exp(A / beta), no conditioning
  recap_iql    the spec's defaults (IQL advantage conditioning + weights, intervention weight 2)
  recap_paper  distributional value + advantage indicator, evaluated with guidance beta 1.0, 1.5, 2.5

Results are resumable per (task, method, seed): a finished cell's JSON is reused. Prints a table
(success rate and mean steps to success, mean and spread over seeds) and writes JSON + a PNG.

    python benchmarks/efficacy.py                # default budget (about an hour on 2 CPU cores)
    python benchmarks/efficacy.py --full         # 3 tasks x 3 seeds x 50 episodes, longer training
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from lerobot_policy_pi_star_recap.commands.demo import POLICY_FLAGS, eval_summary

BIN = Path(sys.executable).parent
NO_ADVANTAGE = ["--policy.use_advantage_weighting=false", "--policy.use_advantage_conditioning=false"]
METHODS = {
    "bc": [*NO_ADVANTAGE, "--policy.intervention_weight=1"],
    "filtered_bc": [*NO_ADVANTAGE, "--policy.intervention_weight=1", "--policy.success_only=true"],
    "awr": ["--policy.use_advantage_weighting=true", "--policy.use_advantage_conditioning=false"],
    "recap_iql": [],
    "recap_paper": ["--policy.advantage_estimator=mc_distributional"],
}
GUIDANCE = {"recap_paper": [1.0, 1.5, 2.5]}


@dataclass(frozen=True)
class Budget:
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    steps: int
    eval_episodes: int
    demos: int
    autonomous: int
    interventions: int


DEFAULT = Budget(("push-v3", "drawer-open-v3", "button-press-v3"), (0,), 400, 20, 5, 30, 10)
FULL = Budget(("push-v3", "drawer-open-v3", "button-press-v3"), (0, 1, 2), 1000, 50, 10, 40, 15)


def run(command: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
        "HF_HUB_OFFLINE": "1",
    }
    with open(log, "w") as f:
        code = subprocess.call(command, stdout=f, stderr=subprocess.STDOUT, env=env)
    if code != 0:
        raise SystemExit(f"failed ({code}): {' '.join(command)}\nsee {log}")


def dataset(task: str, budget: Budget, root: Path) -> Path:
    """demos + degraded-expert rollouts + rollouts with corrections, merged (built once per task)."""
    merged = root / "data" / task / "mixed"
    if (merged / "meta" / "info.json").is_file():
        return merged
    parts = []
    for mode, episodes, seed in (
        ("demo", budget.demos, 0),
        ("auto", budget.autonomous, 1000),
        ("intervention", budget.interventions, 2000),
    ):
        out = root / "data" / task / mode
        if not (out / "meta" / "info.json").is_file():
            run(
                [str(BIN / "pi-star-recap"), "collect", f"--mode={mode}", f"--task={task}", f"--episodes={episodes}",
                 f"--seed={seed}", f"--output={out}", "--overwrite", "--trigger=stall,disagreement"],
                root / "logs" / task / f"collect_{mode}.log",
            )  # fmt: skip
        parts.append(out)
    run(
        [
            str(BIN / "pi-star-recap"),
            "merge",
            "--inputs",
            *map(str, parts),
            f"--output={merged}",
            "--overwrite",
        ],
        root / "logs" / task / "merge.log",
    )
    return merged


def evaluate(checkpoint: Path, task: str, budget: Budget, out: Path, extra: list[str]) -> dict:
    run(
        [str(BIN / "lerobot-eval"), f"--policy.path={checkpoint}", "--env.type=metaworld_recap", f"--env.task={task}",
         "--env.reward=recap", f"--eval.n_episodes={budget.eval_episodes}", "--eval.batch_size=1", "--policy.device=cpu",
         f"--output_dir={out}", "--seed=100000", *extra],
        out.with_suffix(".log"),
    )  # fmt: skip
    return eval_summary(json.loads((out / "eval_info.json").read_text()))


def cell(task: str, method: str, seed: int, data: Path, budget: Budget, root: Path) -> list[dict]:
    """Train one (task, method, seed) and evaluate it (once per guidance strength); cached as JSON."""
    result_path = root / "results" / task / f"{method}_seed{seed}.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    train_dir = root / "runs" / task / f"{method}_seed{seed}"
    checkpoint = train_dir / "checkpoints" / "last" / "pretrained_model"
    if not (checkpoint / "model.safetensors").is_file():
        if train_dir.exists():
            import shutil

            shutil.rmtree(train_dir)
        run(
            [str(BIN / "lerobot-train"), "--policy.type=pi_star_recap", *POLICY_FLAGS, *METHODS[method],
             f"--dataset.repo_id=local/{task}_mixed", f"--dataset.root={data}", f"--output_dir={train_dir}",
             f"--steps={budget.steps}", "--batch_size=32", f"--save_freq={budget.steps}", "--log_freq=100",
             f"--seed={seed}", "--num_workers=1", "--policy.device=cpu", "--policy.push_to_hub=false",
             "--wandb.enable=false"],
            root / "logs" / task / f"train_{method}_seed{seed}.log",
        )  # fmt: skip
    rows = []
    for beta in GUIDANCE.get(method, [None]):
        name = method if beta is None else f"{method}_beta{beta}"
        extra = [] if beta is None else [f"--policy.cfg_beta={beta}"]
        result = evaluate(checkpoint, task, budget, root / "eval" / task / f"{name}_seed{seed}", extra)
        rows.append({"task": task, "method": name, "seed": seed, **result})
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(rows, indent=2))
    return rows


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


def print_table(summary: list[dict]) -> str:
    lines = [
        "| task | method | seeds | success rate (mean ± std) | mean steps to success |",
        "|---|---|---|---|---|",
    ]
    for s in summary:
        steps = f"{s['steps_to_success_mean']:.0f}" if s["steps_to_success_mean"] is not None else "-"
        lines.append(
            f"| {s['task']} | {s['method']} | {s['seeds']} | {100 * s['success_mean']:.0f}% ± {100 * s['success_std']:.0f} | {steps} |"
        )
    table = "\n".join(lines)
    print(table)
    return table


def plot(summary: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = sorted({s["task"] for s in summary})
    methods = list(dict.fromkeys(s["method"] for s in summary))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(2.5 + 2.2 * len(tasks), 4.5))
    for i, method in enumerate(methods):
        values = [next((s for s in summary if s["task"] == t and s["method"] == method), None) for t in tasks]
        means = [100 * v["success_mean"] if v else 0 for v in values]
        stds = [100 * v["success_std"] if v else 0 for v in values]
        ax.bar(np.arange(len(tasks)) + i * width, means, width, yerr=stds, capsize=3, label=method)
    ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2, tasks)
    ax.set_ylabel("success rate (%)")
    ax.set_title("RECAP vs behaviour cloning on mixed-quality data")
    ax.legend(fontsize=8)
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
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--eval-episodes", type=int, default=None)
    parser.add_argument("--root", default="outputs/efficacy", help="data, runs, results (reused: resumable)")
    args = parser.parse_args()
    budget = FULL if args.full else DEFAULT
    overrides = {
        "tasks": tuple(args.tasks) if args.tasks else None,
        "seeds": tuple(args.seeds) if args.seeds else None,
        "steps": args.steps,
        "eval_episodes": args.eval_episodes,
    }
    budget = Budget(**{**asdict(budget), **{k: v for k, v in overrides.items() if v is not None}})
    root = Path(args.root)
    rows = []
    for task in budget.tasks:
        data = dataset(task, budget, root)
        for method in args.methods:
            for seed in budget.seeds:
                print(f"{task} / {method} / seed {seed} ...", flush=True)
                rows += cell(task, method, seed, data, budget, root)
    summary = summarize(rows)
    table = print_table(summary)
    (root / "efficacy.json").write_text(
        json.dumps({"budget": asdict(budget), "rows": rows, "summary": summary}, indent=2)
    )
    (root / "efficacy.md").write_text(table + "\n")
    plot(summary, root / "efficacy.png")
    print(f"Wrote {root / 'efficacy.json'}, {root / 'efficacy.md'}, {root / 'efficacy.png'}")


if __name__ == "__main__":
    main()
