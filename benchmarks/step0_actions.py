"""Does a fine-tune start acting like its checkpoint? Step-0 action difference on a real dataset.

Builds the policy and processors `lerobot-train --policy.path=<stage 1>` would build for the dataset
(with keep_pretrained_stats true and false), samples action chunks for frames of that dataset with the
same noise as the stage-1 checkpoint under its own processors, and reports the mean absolute difference
in action units, and how far the dataset's states lie outside stage 1's normalisation (z-scores).

    python benchmarks/step0_actions.py outputs/demo/stage1/checkpoints/last/pretrained_model \\
        outputs/demo/data/mixed1 --output benchmarks/results/step0_actions_push-v3.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from lerobot_policy_pi_star_recap.evaluation.policy_loading import load_for_fine_tuning, load_policy
from lerobot_policy_pi_star_recap.processor_pi_star_recap import checkpoint_normalization_stats


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()

    from lerobot.datasets import LeRobotDataset

    dataset = LeRobotDataset(f"local/{args.dataset.name}", root=args.dataset)
    rows = np.linspace(0, len(dataset) - 1, args.frames).astype(int).tolist()
    frames = [dataset[i] for i in rows]
    stage1, pre1, post1 = load_policy(args.checkpoint, "cpu")
    report: dict = {"checkpoint": str(args.checkpoint), "dataset": str(args.dataset), "frames": len(rows)}

    state = torch.stack([f["observation.state"] for f in frames]).numpy()
    saved = checkpoint_normalization_stats(args.checkpoint)["observation.state"]
    z = np.abs(state - saved["mean"]) / (saved["std"] + 1e-8)
    report["state_z_under_stage1_stats"] = {
        "median_of_max_per_frame": float(np.median(z.max(1))),
        "share_of_frames_with_z_above_10": float((z.max(1) > 10).mean()),
    }
    generator = torch.Generator().manual_seed(0)
    noise = [torch.randn(1, stage1.config.chunk_size, stage1.action_dim, generator=generator) for _ in frames]

    def chunks(policy, pre, post) -> np.ndarray:
        out = []
        for frame, n in zip(frames, noise, strict=True):
            observation = {k: v for k, v in frame.items() if k.startswith("observation") or k == "task"}
            out.append(post(policy.predict_action_chunk(pre(observation), noise=n)).numpy())
        return np.concatenate(out)

    reference = chunks(stage1, pre1, post1)
    for keep in (True, False):
        policy, pre, post = load_for_fine_tuning(
            args.checkpoint, args.dataset, "cpu", keep_pretrained_stats=keep
        )
        difference = np.abs(chunks(policy, pre, post) - reference)
        report[f"keep_pretrained_stats={str(keep).lower()}"] = {
            "mean_abs_action_difference": float(difference.mean()),
            "max_abs_action_difference": float(difference.max()),
        }
    print(json.dumps(report, indent=2))
    if args.output:
        args.output.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
