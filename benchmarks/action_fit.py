"""Whose actions does each fine-tuned policy reproduce? Sampled chunks against the dataset's, per data type.

For the same frames of a (labelled) dataset and the same noise, every checkpoint samples an action chunk
and is scored by the mean squared error of its first `n_action_steps` actions against the chunk recorded
there (in the checkpoint's normalised units; every arm of benchmarks/efficacy.py keeps stage 1's stats, so
the units agree). Rows split the frames by who drove them (demo, autonomous, the policy in a corrected
episode, the expert) and by advantage indicator. A RECAP checkpoint is also scored at guidance beta 0
(unconditional) and the betas given. It answers "which data did fine-tuning move the policy towards":
e.g. a policy far from the demos' actions on demo frames but close to the expert's corrections imitates
the corrections.

    python benchmarks/action_fit.py --dataset-root outputs/efficacy/push-v3/data/mixed1_labelled \\
        --checkpoint stage1=outputs/efficacy/push-v3/stage1/checkpoints/last/pretrained_model \\
        --checkpoint recap=outputs/efficacy/push-v3/recap_paper_seed0/checkpoints/last/pretrained_model
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from lerobot.datasets import LeRobotDataset, LeRobotDatasetMetadata
from tqdm import tqdm

from lerobot_policy_pi_star_recap.evaluation.policy_loading import load_recap_policy


def frame_groups(batch: dict) -> list[str]:
    """Who drove each frame: demo, auto, policy (its own frames in a corrected episode) or expert."""
    kinds = batch["data_type"]
    expert = batch["intervention_mask"].flatten().bool().tolist()
    return [
        "expert" if e else ("policy" if k == "intervention" else k)
        for k, e in zip(kinds, expert, strict=True)
    ]


@torch.no_grad()
def chunk_errors(policy, preprocessor, loader, seed: int) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(per-frame squared error of the executed part of the chunk, who drove it, its indicator)."""
    generator = torch.Generator().manual_seed(seed)
    executed = policy.config.n_action_steps
    errors, groups, indicators = [], [], []
    for batch in loader:
        inputs = preprocessor(dict(batch))
        observation, _ = policy.observation(inputs)
        target = inputs["action"][:, :executed]
        shape = (target.shape[0], policy.config.chunk_size, policy.model.flow.noise_dim)
        chunk = policy.model.sample(observation, torch.randn(shape, generator=generator))
        errors.append((chunk[:, :executed] - target).square().mean((1, 2)).numpy())
        groups += frame_groups(batch)
        indicator = batch.get("advantage_indicator", torch.full((target.shape[0],), float("nan")))
        indicators.append(indicator.flatten().numpy())
    return np.concatenate(errors), groups, np.concatenate(indicators)


def summarise(errors: np.ndarray, groups: list[str], indicators: np.ndarray) -> dict[str, dict]:
    """Mean error and frame count per driver, and per driver x indicator when the data is labelled."""
    groups_array = np.asarray(groups)
    rows: dict[str, dict] = {}
    for group in dict.fromkeys(groups):
        picked = groups_array == group
        rows[group] = {"frames": int(picked.sum()), "mse": float(errors[picked].mean())}
        for value, name in ((1.0, "positive"), (0.0, "negative")):
            both = picked & (indicators == value)
            if both.any():
                rows[f"{group} {name}"] = {"frames": int(both.sum()), "mse": float(errors[both].mean())}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset-root", required=True, type=Path)
    parser.add_argument(
        "--checkpoint", action="append", required=True, help="NAME=pretrained_model folder (repeat)"
    )
    parser.add_argument("--frames", type=int, default=768, help="frames drawn at random (same for all)")
    parser.add_argument("--betas", type=float, nargs="+", default=[1.0, 2.5], help="guidance of RECAP arms")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("outputs/action_fit.json"))
    args = parser.parse_args()
    meta = LeRobotDatasetMetadata("local/data", root=args.dataset_root)
    results: dict[str, dict] = {}
    for spec in tqdm(args.checkpoint, desc="checkpoints"):
        name, _, path = spec.partition("=")
        if not path:
            parser.error(f"--checkpoint {spec!r}: write NAME=path")
        policy, preprocessor, _ = load_recap_policy(path, device="cpu")
        policy.eval()
        horizon = [i / meta.fps for i in range(policy.config.chunk_size)]
        dataset = LeRobotDataset("local/data", root=args.dataset_root, delta_timestamps={"action": horizon})
        picked = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(args.seed))
        subset = torch.utils.data.Subset(dataset, picked[: args.frames].tolist())
        loader = torch.utils.data.DataLoader(subset, batch_size=64)
        conditioned = policy.model.conditioner.embedding is not None
        for beta in [0.0, *args.betas] if conditioned else [None]:
            if beta is not None:
                policy.config.cfg_beta = beta
            label = name if beta is None else f"{name} beta {beta:g}"
            results[label] = summarise(*chunk_errors(policy, preprocessor, loader, args.seed + 1))
    groups = list(dict.fromkeys(g for row in results.values() for g in row))
    print("mean squared error of the executed actions (normalised units), by who drove the frame")
    print(f"{'':<22}" + "".join(f"{g:>18}" for g in groups))
    for label, row in results.items():
        print(
            f"{label:<22}" + "".join(f"{row[g]['mse'] if g in row else float('nan'):>18.3f}" for g in groups)
        )
    report = {"dataset": str(args.dataset_root), "frames": args.frames, "checkpoints": args.checkpoint}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    staging = args.output.with_suffix(".tmp")
    staging.write_text(json.dumps({**report, "results": results}, indent=1))
    staging.replace(args.output)
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
