"""`pi-star-recap eval`: offline evaluation of a checkpoint against a dataset, without a simulator.

Simulator evaluation stays on stock `lerobot-eval --policy.path=... --env.type=metaworld_recap ...`.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

from .common import (
    HelpFormatter,
    UsageError,
    add_cut_at_takeovers,
    add_option,
    check_local_or_hub,
    report_errors,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="Evaluate a checkpoint on episodes of a dataset: action error, value/Q vs returns, advantages.",
        description=(
            "Offline evaluation of a pi_star_recap checkpoint on N episodes of a LeRobot dataset with RECAP "
            "fields: error of sampled action chunks vs recorded actions (per data type), value and Q "
            "predictions vs Monte-Carlo returns (correlation, calibration), advantage statistics per data "
            "type and how well the value separates successful from failed episodes. Writes a JSON report "
            "and PNG plots."
        ),
        formatter_class=HelpFormatter,
    )
    add_option(
        parser,
        "--policy.path",
        "--policy.pretrained_model_path",
        dest="policy_path",
        required=True,
        help="checkpoint directory, e.g. outputs/run/checkpoints/last/pretrained_model",
    )
    parser.add_argument("--dataset.repo_id", dest="repo_id", required=True, help="dataset to evaluate on")
    parser.add_argument(
        "--dataset.root", dest="root", default=None, help="local dataset root (default: HF cache)"
    )
    parser.add_argument(
        "--eval.n_episodes",
        dest="n_episodes",
        type=int,
        default=10,
        help="episodes, spread evenly over the dataset",
    )
    parser.add_argument("--episodes", type=int, nargs="*", default=None, help="explicit episode indices")
    add_option(
        parser,
        "--output",
        "--output-dir",
        "--output_dir",
        default=None,
        help="report folder (default: outputs/offline_eval/<date>_<time>)",
    )
    add_option(parser, "--batch-size", "--batch_size", type=int, default=32, help="frames per forward pass")
    parser.add_argument(
        "--policy.device", dest="device", default=None, help="torch device (default: the checkpoint's)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled action chunks")
    add_cut_at_takeovers(parser)
    parser.set_defaults(run=run)


def choose_episodes(total: int, n_episodes: int) -> list[int]:
    """Evenly spread episodes, so datasets ordered by iteration or data type are all represented."""
    if n_episodes >= total:
        return list(range(total))
    return sorted(
        {int(round(x)) for x in [i * (total - 1) / max(n_episodes - 1, 1) for i in range(n_episodes)]}
    )


@dataclass(frozen=True)
class OfflineEval:
    """What one offline evaluation reads and where it writes: the command's flags, or the demo's report."""

    policy_path: str
    repo_id: str
    root: str | None = None
    n_episodes: int = 10
    episodes: list[int] | None = None  # explicit episode indices (default: n_episodes spread evenly)
    output: str | None = None  # default: outputs/offline_eval/<date>_<time>
    batch_size: int = 32
    device: str | None = None  # default: the checkpoint's
    seed: int = 0
    cut_at_takeovers: bool = False


def evaluate(request: OfflineEval) -> int:
    """The offline evaluation itself; errors propagate, so the demo, which calls it, reports them."""
    import numpy as np
    from lerobot.datasets import LeRobotDatasetMetadata

    from ..data.writing import check_dataset_root
    from ..evaluation.metrics import episode_returns, format_table, summarize
    from ..evaluation.plots import plot_advantage_by_type, plot_calibration, plot_values_along_episodes
    from ..evaluation.policy_loading import load_recap_policy
    from ..evaluation.predictions import predict_episodes
    from ..rl.advantage import advantage_n_step
    from ..schema import DATA_TYPES

    check_local_or_hub(request.policy_path, "--policy.path")
    if request.root is not None:
        check_dataset_root(Path(request.root).expanduser(), "--dataset.root")  # not a download attempt
    meta = LeRobotDatasetMetadata(request.repo_id, root=request.root)
    episodes = (
        request.episodes if request.episodes else choose_episodes(meta.total_episodes, request.n_episodes)
    )
    unknown = sorted(set(episodes) - set(range(meta.total_episodes)))
    if unknown:
        raise UsageError(f"episodes {unknown} are not in {request.repo_id} ({meta.total_episodes} episodes).")
    output_dir = Path(request.output or f"outputs/offline_eval/{time.strftime('%Y-%m-%d_%H-%M-%S')}")
    output_dir.mkdir(parents=True, exist_ok=True)

    policy, preprocessor, _ = load_recap_policy(request.policy_path, request.device)
    config = policy.config
    predictions = predict_episodes(
        policy,
        preprocessor,
        request.repo_id,
        meta.root,
        episodes,
        request.batch_size,
        sample_actions=config.train_policy,  # a value-train checkpoint has an untrained action expert
        seed=request.seed,
    )
    n_step = advantage_n_step(config.advantage_horizon, config.advantage_n_step)
    report = summarize(
        predictions, config.advantage_estimator, config.iql_discount, n_step, request.cut_at_takeovers
    )
    report.update(policy_path=str(request.policy_path), dataset=request.repo_id, episode_indices=episodes)

    plots = {}
    if "value" in report:
        gamma = report["return_discount"]
        returns = [episode_returns(e, gamma) for e in predictions]
        plots["value_along_episodes"] = plot_values_along_episodes(
            predictions, returns, output_dir / "value_along_episodes.png"
        )
        plots["value_calibration"] = plot_calibration(
            report["value"]["calibration"], output_dir / "value_calibration.png"
        )
        advantages = {name: [] for name in DATA_TYPES}
        for episode in predictions:
            advantage = episode.advantage(config.advantage_estimator, n_step, request.cut_at_takeovers)
            for code, name in enumerate(DATA_TYPES):
                advantages[name].append(advantage[episode.data_type == code])
        plots["advantage_by_type"] = plot_advantage_by_type(
            {k: np.concatenate(v) for k, v in advantages.items()}, output_dir / "advantage_by_type.png"
        )
    report["plots"] = {k: str(v) for k, v in plots.items()}
    (output_dir / "offline_eval.json").write_text(json.dumps(report, indent=2))
    print(format_table(report))
    print(f"Report: {output_dir / 'offline_eval.json'}; plots: {', '.join(str(p) for p in plots.values())}")
    return 0


@report_errors("eval")
def run(args: argparse.Namespace) -> int:
    return evaluate(OfflineEval(**{f: getattr(args, f) for f in OfflineEval.__dataclass_fields__}))
