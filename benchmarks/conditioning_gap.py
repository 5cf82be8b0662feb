"""How strongly does a trained RECAP policy's advantage condition change what it does?

For frames of a dataset, the action expert's velocity is computed for the same noisy chunk, flow time and
observation under three conditions: indicator 1 ("good action"), indicator 0 and the unconditional null
embedding. A gap near zero means the conditioning was never learned (then guidance and the indicator can
change nothing); a large gap means it was, and any failure to improve lies elsewhere.

`--versus` gives the scale to read the gap against: how far another checkpoint's velocity lies from this
one's on the same inputs (e.g. filtered BC from BC: how far the data's good episodes pull the policy).
Frames are also grouped by their `advantage_indicator` and `data_type` columns, when the dataset has them,
to show *where* two policies differ.

    python benchmarks/conditioning_gap.py \\
        --checkpoint outputs/efficacy/push-v3/recap_paper_seed0/checkpoints/last/pretrained_model \\
        --dataset-root outputs/efficacy/push-v3/data/mixed1_labelled
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch
from lerobot.datasets import LeRobotDataset, LeRobotDatasetMetadata

from lerobot_policy_pi_star_recap.evaluation.policy_loading import load_recap_policy

FLOW_TIMES = (0.9, 0.5, 0.1)


def relative_gap(a: torch.Tensor, b: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return (a - b).flatten(1).norm(dim=1) / reference.flatten(1).norm(dim=1)


class Velocities:
    """One checkpoint's expert velocity under a given condition, for a batch of dataset frames."""

    def __init__(self, checkpoint: str):
        self.policy, self.preprocessor, _ = load_recap_policy(checkpoint, device="cpu")
        self.expert = self.policy.model.flow.expert
        self.embedding = self.policy.model.conditioner.embedding

    def encode(self, batch: dict) -> None:
        current, _ = self.policy.observation(self.preprocessor(dict(batch)))
        prefix = self.policy.model.encode(current)
        self.size = prefix.hidden.shape[0]
        self.prefix_kv, self.attention_mask = self.expert.prefix_cache(prefix.hidden, prefix.mask)

    def condition(self, indicator: float | None) -> torch.Tensor:
        """The embedded indicator; None: the unconditional input (null embedding, or zeros without one)."""
        if self.embedding is None:
            return torch.zeros(self.size, self.expert.width)
        keep = torch.full((self.size,), indicator is not None)
        return self.embedding(torch.full((self.size,), 1.0 if indicator is None else indicator), keep)

    def __call__(self, noisy: torch.Tensor, time: torch.Tensor, indicator: float | None) -> torch.Tensor:
        return self.expert(noisy, time, self.condition(indicator), self.prefix_kv, self.attention_mask)


def frame_groups(batch: dict) -> list[str]:
    """'I=<indicator> <data_type>' per frame, from whichever of the two columns the dataset has."""
    columns = []
    if (indicator := batch.get("advantage_indicator")) is not None:
        columns.append([f"I={int(v > 0.5)}" for v in indicator.tolist()])
    if (data_type := batch.get("data_type")) is not None:
        columns.append([str(v) for v in data_type])
    return (
        [" ".join(parts) for parts in zip(*columns, strict=True)]
        if columns
        else ["all"] * len(batch["index"])
    )


@torch.no_grad()
def conditioning_gaps(
    model: Velocities, versus: Velocities | None, root: Path, frames: int, seed: int
) -> tuple[dict[float, dict], dict[str, dict]]:
    """(mean gaps per flow time, mean gaps per frame group at every flow time together)."""
    meta = LeRobotDatasetMetadata("local/data", root=root)
    chunk = {"action": [i / meta.fps for i in range(model.policy.config.chunk_size)]}
    dataset = LeRobotDataset("local/data", root=root, delta_timestamps=chunk)
    generator = torch.Generator().manual_seed(seed)
    picked = torch.randperm(len(dataset), generator=generator)[:frames].tolist()
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, picked), batch_size=32)
    names = ["good_vs_bad", "good_vs_null"] if model.embedding is not None else []
    names += ["versus"] if versus is not None else []
    per_time: dict[float, dict[str, list[torch.Tensor]]] = {t: defaultdict(list) for t in FLOW_TIMES}
    per_group: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for batch in loader:
        model.encode(batch)
        if versus is not None:
            versus.encode(batch)
        groups = frame_groups(batch)
        for t in FLOW_TIMES:
            noisy = torch.randn(
                model.size, model.policy.config.chunk_size, model.policy.action_dim, generator=generator
            )
            time = torch.full((model.size,), t)
            v_null = model(noisy, time, None)
            gaps = {}
            if model.embedding is not None:
                v_good = model(noisy, time, 1.0)
                gaps["good_vs_bad"] = relative_gap(v_good, model(noisy, time, 0.0), v_null)
                gaps["good_vs_null"] = relative_gap(v_good, v_null, v_null)
            if versus is not None:
                gaps["versus"] = relative_gap(versus(noisy, time, None), v_null, v_null)
            for name, gap in gaps.items():
                per_time[t][name].append(gap)
                for group, value in zip(groups, gap.tolist(), strict=True):
                    per_group[group][name].append(value)
    by_time = {t: {k: torch.cat(row[k]).mean().item() for k in names} for t, row in per_time.items()}
    by_group = {
        group: {
            "frames": len(row[names[0]]) // len(FLOW_TIMES),
            **{k: sum(v) / len(v) for k, v in row.items()},
        }
        for group, row in sorted(per_group.items())
    }
    return by_time, by_group


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="a pi_star_recap pretrained_model folder")
    parser.add_argument("--dataset-root", required=True, type=Path)
    parser.add_argument(
        "--versus",
        help="another pi_star_recap checkpoint: its unconditional velocity's distance from this one's",
    )
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="outputs/conditioning_gap.json")
    args = parser.parse_args()
    model = Velocities(args.checkpoint)
    if model.embedding is None and args.versus is None:
        raise SystemExit(
            f"error: {args.checkpoint} was trained without advantage conditioning: "
            "pass --versus CHECKPOINT to compare it with another policy."
        )
    versus = Velocities(args.versus) if args.versus else None
    gaps, groups = conditioning_gaps(model, versus, args.dataset_root, args.frames, args.seed)
    columns = list(next(iter(gaps.values())))
    print("relative velocity gap |v_a - v_b| / |v_null|, mean over frames")
    print(f"{'flow time':>10}" + "".join(f"{c:>14}" for c in columns))
    for t, row in gaps.items():
        print(f"{t:>10.1f}" + "".join(f"{row[c]:>14.3f}" for c in columns))
    print("by frame group (all flow times)")
    for group, row in groups.items():
        print(f"{group:>24} ({row['frames']:>3})" + "".join(f"{row[c]:>14.3f}" for c in columns))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    result = {"checkpoint": args.checkpoint, "versus": args.versus, "frames": args.frames, "gaps": gaps}
    output.write_text(json.dumps({**result, "groups": groups}, indent=2))
    print(f"Wrote {output}")


if __name__ == "__main__":
    main()
