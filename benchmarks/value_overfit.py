"""Does the value function generalise to episodes it never saw, or overfit the ones it trained on?

Splits a RECAP dataset's episodes (every k-th held out), trains the paper's distributional value function
on the rest with `pi-star-recap value-train`, then runs `pi-star-recap eval` on the training episodes and
on the held-out ones and prints the same metrics side by side: correlation of V with the Monte-Carlo
return, its mean absolute error, and how well the episode's mean value separates successes from failures
(AUC). A large train / held-out gap means the value model memorises episodes. The defaults reproduce
fold 0 of the demo's cross-fitting (`value-train --folds 2`, 400 steps): train on the odd episodes,
evaluate on the even ones, i.e. exactly the out-of-sample values `value-label` gives those episodes.

    python benchmarks/value_overfit.py --dataset-root outputs/demo/data/mixed1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from lerobot_policy_pi_star_recap.loop.flags import POLICY_FLAGS

BIN = Path(sys.executable).parent
METRICS = {
    "V vs return, Pearson r": ("value", "pearson_vs_return"),
    "V mean abs error (return units)": ("value", "mean_abs_error"),
    "success vs failure AUC (episode mean V)": ("success_separation", "auc_episode_mean_value"),
    "success vs failure AUC (frame V)": ("success_separation", "auc_frame_value"),
    "mean V, successful episodes": ("success_separation", "mean_value_success"),
    "mean V, failed episodes": ("success_separation", "mean_value_failure"),
}


def run(command: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with open(log, "w") as f:
        if subprocess.call(command, stdout=f, stderr=subprocess.STDOUT, env=env) != 0:
            raise SystemExit(f"failed: {' '.join(command)}\nsee {log}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset-root", required=True, type=Path)
    parser.add_argument("--repo-id", default=None, help="default: local/<folder name>")
    parser.add_argument("--holdout-every", type=int, default=2, help="hold out episodes 0, k, 2k, ...")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--return-normalizer", type=float, default=400.0, help="as in the demo: 2 x 200 steps"
    )
    parser.add_argument("--output", "--output-dir", type=Path, default=Path("outputs/value_overfit"))
    args = parser.parse_args()
    from lerobot.datasets import LeRobotDatasetMetadata

    repo_id = args.repo_id or f"local/{args.dataset_root.name}"
    total = LeRobotDatasetMetadata(repo_id, root=args.dataset_root).total_episodes
    held_out = list(range(0, total, args.holdout_every))
    train = [e for e in range(total) if e not in held_out]
    out = args.output
    checkpoint = out / "value" / "checkpoints" / "last" / "pretrained_model"
    if not (checkpoint / "model.safetensors").is_file():
        run(
            [str(BIN / "pi-star-recap"), "value-train", f"--dataset.repo_id={repo_id}",
             f"--dataset.root={args.dataset_root}", f"--dataset.episodes={train}", f"--output_dir={out / 'value'}",
             f"--steps={args.steps}", f"--batch_size={args.batch_size}", f"--save_freq={args.steps}",
             "--num_workers=1", "--policy.device=cpu", "--policy.push_to_hub=false", "--wandb.enable=false",
             *POLICY_FLAGS, f"--policy.critic.return_normalizer={args.return_normalizer}"],
            out / "value_train.log",
        )  # fmt: skip
    reports = {}
    for split, episodes in (("train", train), ("held_out", held_out)):
        run(
            [str(BIN / "pi-star-recap"), "eval", f"--policy.path={checkpoint}", f"--dataset.repo_id={repo_id}",
             f"--dataset.root={args.dataset_root}", "--episodes", *map(str, episodes),
             f"--output={out / split}", "--policy.device=cpu"],
            out / f"eval_{split}.log",
        )  # fmt: skip
        reports[split] = json.loads((out / split / "offline_eval.json").read_text())
    rows = {name: {s: reports[s][group][key] for s in reports} for name, (group, key) in METRICS.items()}
    lines = ["| metric | train episodes | held-out episodes |", "|---|---|---|"]
    lines += [f"| {name} | {v['train']:.3f} | {v['held_out']:.3f} |" for name, v in rows.items()]
    table = "\n".join(lines)
    print(table)
    summary = {"train_episodes": train, "held_out_episodes": held_out, "metrics": rows}
    (out / "value_overfit.json").write_text(json.dumps(summary, indent=2))
    (out / "value_overfit.md").write_text(table + "\n")
    print(f"Wrote {out / 'value_overfit.json'}; value plots in {out / 'train'} and {out / 'held_out'}")


if __name__ == "__main__":
    main()
