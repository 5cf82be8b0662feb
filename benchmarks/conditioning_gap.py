"""How strongly does a trained RECAP policy's advantage condition change what it does?

For frames of a dataset, the action expert's velocity is computed for the same noisy chunk, flow time and
observation under three conditions: indicator 1 ("good action"), indicator 0 and the unconditional null
embedding. A gap near zero means the conditioning was never learned (then guidance and the indicator can
change nothing); a large gap means it was, and any failure to improve lies elsewhere.

    python benchmarks/conditioning_gap.py \\
        --checkpoint outputs/efficacy/push-v3/recap_paper_seed0/checkpoints/last/pretrained_model \\
        --dataset-root outputs/efficacy/push-v3/data/mixed1_labelled
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from lerobot.datasets import LeRobotDataset, LeRobotDatasetMetadata

from lerobot_policy_pi_star_recap.checkpoints import load_recap_policy

FLOW_TIMES = (0.9, 0.5, 0.1)


def relative_gap(a: torch.Tensor, b: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return (a - b).flatten(1).norm(dim=1) / reference.flatten(1).norm(dim=1)


@torch.no_grad()
def conditioning_gaps(policy, preprocessor, root: Path, frames: int, seed: int) -> dict[float, dict]:
    meta = LeRobotDatasetMetadata("local/data", root=root)
    chunk = {"action": [i / meta.fps for i in range(policy.config.chunk_size)]}
    dataset = LeRobotDataset("local/data", root=root, delta_timestamps=chunk)
    generator = torch.Generator().manual_seed(seed)
    picked = torch.randperm(len(dataset), generator=generator)[:frames].tolist()
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, picked), batch_size=32)
    gaps: dict[float, dict[str, list[torch.Tensor]]] = {
        t: {"good_vs_bad": [], "good_vs_null": []} for t in FLOW_TIMES
    }
    for batch in loader:
        current, _ = policy.observation(preprocessor(batch))
        prefix = policy.model.encode(current)
        expert, embedding = policy.model.flow.expert, policy.model.conditioner.embedding
        prefix_kv, attention_mask = expert.prefix_cache(prefix.hidden, prefix.mask)
        size = prefix.hidden.shape[0]
        keep = torch.ones(size, dtype=torch.bool)
        good = embedding(torch.ones(size), keep)
        bad = embedding(torch.zeros(size), keep)
        null = embedding(torch.ones(size), ~keep)
        for t in FLOW_TIMES:
            noisy = torch.randn(size, policy.config.chunk_size, policy.action_dim, generator=generator)
            time = torch.full((size,), t)
            v_good, v_bad, v_null = (
                expert(noisy, time, c, prefix_kv, attention_mask) for c in (good, bad, null)
            )
            gaps[t]["good_vs_bad"].append(relative_gap(v_good, v_bad, v_null))
            gaps[t]["good_vs_null"].append(relative_gap(v_good, v_null, v_null))
    return {t: {k: torch.cat(v).mean().item() for k, v in row.items()} for t, row in gaps.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="a pi_star_recap pretrained_model folder")
    parser.add_argument("--dataset-root", required=True, type=Path)
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="outputs/conditioning_gap.json")
    args = parser.parse_args()
    policy, preprocessor, _ = load_recap_policy(args.checkpoint, device="cpu")
    if policy.model.conditioner.embedding is None:
        raise SystemExit(f"error: {args.checkpoint} was trained without advantage conditioning.")
    gaps = conditioning_gaps(policy, preprocessor, args.dataset_root, args.frames, args.seed)
    print("relative velocity gap |v_a - v_b| / |v_null|, mean over frames")
    print(f"{'flow time':>10}{'I=1 vs I=0':>12}{'I=1 vs null':>13}")
    for t, row in gaps.items():
        print(f"{t:>10.1f}{row['good_vs_bad']:>12.3f}{row['good_vs_null']:>13.3f}")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps({"checkpoint": args.checkpoint, "frames": args.frames, "gaps": gaps}, indent=2)
    )
    print(f"Wrote {output}")


if __name__ == "__main__":
    main()
