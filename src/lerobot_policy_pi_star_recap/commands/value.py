"""The paper's staged workflow: `value-train` fits the value function alone, `value-label` writes
value / advantage / indicator columns into a new dataset, and the policy then trains on that dataset
with `lerobot-train ... --policy.advantage_source=dataset`."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

VALUE_TRAIN_FLAGS = [
    "--policy.advantage_estimator=mc_distributional",
    "--policy.train_policy=false",
    "--policy.critic_backbone_grad=true",
]


def register(subparsers) -> None:
    train = subparsers.add_parser(
        "value-train",
        help="Train only the distributional value function (lerobot-train with value-only flags).",
        description=(
            "Runs lerobot-train with --policy.type=pi_star_recap and "
            + " ".join(VALUE_TRAIN_FLAGS)
            + ". Every other argument is passed to lerobot-train unchanged (dataset, output_dir, steps, "
            "policy options such as --policy.vlm_model_name or --policy.value_num_bins)."
        ),
    )
    train.set_defaults(run=run_value_train, accepts_extra=True)

    label = subparsers.add_parser(
        "value-label",
        help="Label a dataset with value, advantage and advantage indicator columns from a value checkpoint.",
        description=(
            "Runs a value checkpoint over every frame of a dataset and writes a NEW dataset with columns "
            "'value', 'advantage' (N-step by default: sum_{k<N} r_{t+k} + V(o_{t+N}) - V(o_t)) and "
            "'advantage_indicator' (1 for the top --positive-fraction of each task's frames, and for every "
            "frame a human corrected). The source dataset is not modified."
        ),
    )
    label.add_argument(
        "--value.path", dest="value_path", required=True, help="value-train checkpoint directory"
    )
    label.add_argument("--src", required=True, help="local root of the dataset to label")
    label.add_argument("--dst", required=True, help="local root of the labelled copy (must not exist)")
    label.add_argument(
        "--repo-id", default=None, help="repo id of the copy (default: <source repo id>_labelled)"
    )
    label.add_argument(
        "--positive-fraction", type=float, default=None, help="default: the checkpoint's (0.3)"
    )
    horizon = label.add_mutually_exclusive_group()
    horizon.add_argument(
        "--n-step", type=int, default=None, help="N of the N-step advantage (default: checkpoint's)"
    )
    horizon.add_argument("--full-return", action="store_true", help="advantage = Monte-Carlo return - V")
    label.add_argument("--batch-size", type=int, default=32)
    label.add_argument("--device", default=None)
    label.add_argument("--overwrite", action="store_true")
    label.set_defaults(run=run_value_label)


def run_value_train(args: argparse.Namespace) -> int:
    extra = list(args.extra)
    policy = [] if any(a.startswith("--policy.path") for a in extra) else ["--policy.type=pi_star_recap"]
    command = [str(Path(sys.executable).parent / "lerobot-train"), *policy, *VALUE_TRAIN_FLAGS, *extra]
    print("Running:", shlex.join(command), flush=True)
    return subprocess.call(command)


def run_value_label(args: argparse.Namespace) -> int:
    import numpy as np
    from lerobot.datasets import LeRobotDataset
    from lerobot.datasets.dataset_tools import add_features

    from ..offline import episode_advantage, label_indicators, load_recap_policy, predict_episodes
    from ..recap_data import DATA_TYPES
    from ..recap_dataset import atomic_output_dir, check_dataset_root

    src = Path(args.src).expanduser()
    check_dataset_root(src, "source dataset")
    policy, preprocessor, _ = load_recap_policy(args.value_path, args.device)
    config = policy.config
    if policy.critics is None:
        raise SystemExit(f"error: {args.value_path} has no value function (trained as plain BC).")
    fraction = args.positive_fraction or config.indicator_positive_fraction
    if args.full_return:
        n_step = None
    elif args.n_step:
        n_step = args.n_step
    else:
        n_step = config.advantage_n_step if config.advantage_horizon == "n_step" else None

    source = LeRobotDataset(_repo_id(src), root=src)
    episodes = predict_episodes(
        policy, preprocessor, source.repo_id, src, list(range(source.meta.total_episodes)), args.batch_size
    )
    index = np.concatenate([e.index for e in episodes])
    value = np.concatenate([e.value for e in episodes])
    if config.advantage_estimator == "iql":
        advantage = np.concatenate([e.q - e.value for e in episodes])
    else:
        advantage = np.concatenate(
            [episode_advantage(e.value, e.reward.astype(np.float64), n_step) for e in episodes]
        )
    task = np.concatenate([e.task_index for e in episodes])
    intervention = np.concatenate([e.intervention for e in episodes])
    indicator, thresholds = label_indicators(advantage, task, intervention, fraction)

    # Columns in the dataset's own row order (global index order).
    order = np.argsort(index)
    spec = {"dtype": "float32", "shape": (1,), "names": None}
    columns = {
        "value": (value[order, None].astype(np.float32), spec),
        "advantage": (advantage[order, None].astype(np.float32), spec),
        "advantage_indicator": (indicator[order, None].astype(np.float32), spec),
    }
    repo_id = args.repo_id or f"{source.repo_id}_labelled"
    with atomic_output_dir(args.dst, args.overwrite, sources=[src]) as staged:
        add_features(source, columns, output_dir=staged, repo_id=repo_id)

    data_type = np.concatenate([e.data_type for e in episodes])
    print(f"Labelled {len(index)} frames of {source.meta.total_episodes} episodes -> {args.dst} ({repo_id})")
    print("advantage: " + ("full return - V" if n_step is None else f"{n_step}-step"))
    for task_index, threshold in thresholds.items():
        print(f"task {task_index}: threshold {threshold:.4f}")
    for code, name in enumerate(DATA_TYPES):
        rows = data_type == code
        if rows.any():
            print(
                f"{name:<13} frames {rows.sum():>6}  advantage mean {advantage[rows].mean():+.4f}  "
                f"positive {indicator[rows].mean():.2f}"
            )
    print(
        f"Train the policy on it: lerobot-train --policy.type=pi_star_recap --dataset.repo_id={repo_id} "
        f"--dataset.root={args.dst} --policy.advantage_source=dataset ..."
    )
    return 0


def _repo_id(root: Path) -> str:
    # With a local root, LeRobot only uses the repo id as a label.
    return f"local/{root.name}"
