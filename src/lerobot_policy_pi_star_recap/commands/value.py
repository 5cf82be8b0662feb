"""The paper's staged workflow: `value-train` fits the value function alone, `value-label` writes
value / advantage / indicator columns into a new dataset, and the policy then trains on that dataset
with `lerobot-train ... --policy.advantage_source=dataset`.

Cross-fitting: a value function trained on a few dozen episodes fits their returns better than those
of new episodes (push-v3: Pearson 0.61 in-sample vs 0.43 held-out), which shrinks in-sample advantages
towards 0. `value-train --folds K` trains K value functions, each without one fold of episodes, and
`value-label` labels every episode with the value functions that never saw it."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .common import (
    HelpFormatter,
    UsageError,
    add_cut_at_takeovers,
    add_option,
    check_local_or_hub,
    die_with_parent,
    report_errors,
)

FOLD_POLL_SECONDS = 0.5  # how often `value-train --jobs` checks its running folds
VALUE_TRAIN_FLAGS = [
    "--policy.advantage_estimator=mc_distributional",
    "--policy.train_policy=false",
    "--policy.critic.backbone_grad=true",
]


def register(subparsers) -> None:
    train = subparsers.add_parser(
        "value-train",
        help="Train only the distributional value function (lerobot-train with value-only flags).",
        description=(
            "Runs lerobot-train with --policy.type=pi_star_recap and "
            + " ".join(VALUE_TRAIN_FLAGS)
            + ". Every other argument is passed to lerobot-train unchanged (dataset, output_dir, steps, "
            "policy options such as --policy.vlm_model_name or --policy.critic.value_num_bins)."
        ),
        formatter_class=HelpFormatter,
    )
    train.add_argument(
        "--folds",
        type=int,
        default=1,
        help="K > 1: train K value functions, the k-th without the episodes at positions k, k+K, ..., into "
        "<output_dir>/fold<k> (cross-fitting; label with all K checkpoints)",
    )
    train.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="train up to this many folds at once, each with one compute thread and its output in "
        "<output_dir>/fold<k>.log (on a 2-core CPU, --jobs 2 trains 2 folds in about the time of one)",
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
        formatter_class=HelpFormatter,
    )
    label.add_argument(
        "--value.path",
        dest="value_paths",
        nargs="+",
        required=True,
        help="value-train checkpoint directory, or the K fold checkpoints of `value-train --folds K`: each "
        "episode is then labelled by the checkpoints that did not train on it",
    )
    add_option(label, "--input", "--src", required=True, help="local root of the dataset to label")
    add_option(
        label, "--output", "--dst", required=True, help="local root of the labelled copy (must not exist)"
    )
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
    label.add_argument(
        "--negative-before-takeover",
        type=int,
        default=0,
        help="label the policy's last K frames before each takeover negative (the expert judged them bad "
        "enough to take over); 0 keeps their computed advantage",
    )
    add_cut_at_takeovers(label)
    label.add_argument("--batch-size", type=int, default=32, help="frames per value forward pass")
    label.add_argument("--device", default=None, help="torch device (default: the checkpoint's)")
    label.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    label.set_defaults(run=run_value_label)


@report_errors("value-train")
def run_value_train(args: argparse.Namespace) -> int:
    extra = list(args.extra)
    policy = [] if any(a.startswith("--policy.path") for a in extra) else ["--policy.type=pi_star_recap"]
    command = [str(Path(sys.executable).parent / "lerobot-train"), *policy, *VALUE_TRAIN_FLAGS]
    if args.folds < 1:
        raise UsageError(f"--folds must be >= 1, got {args.folds}.")
    if args.jobs < 1:
        raise UsageError(f"--jobs must be >= 1, got {args.jobs}.")
    _check_training_data(extra)
    if args.folds == 1:
        return _call([*command, *extra])
    output_dir = Path(_option(extra, "--output_dir"))
    episodes = _dataset_episodes(extra)
    rest = [a for a in extra if not a.startswith(("--output_dir=", "--dataset.episodes="))]
    commands = [
        [
            *command,
            *rest,
            f"--output_dir={output_dir / f'fold{fold}'}",
            f"--dataset.episodes={train_episodes}",
        ]
        for fold, train_episodes in enumerate(fold_training_episodes(episodes, args.folds))
    ]
    code = (
        _call_all(commands, output_dir, args.jobs)
        if args.jobs > 1
        else next((c for c in map(_call, commands) if c), 0)
    )
    if code:
        return code
    checkpoints = [
        str(output_dir / f"fold{fold}" / "checkpoints" / "last" / "pretrained_model")
        for fold in range(args.folds)
    ]
    print(f"Trained {args.folds} cross-fitted value functions. Label with:")
    print(
        f"  pi-star-recap value-label --value.path {' '.join(checkpoints)} --input=<dataset root> --output=<new root>"
    )
    return 0


def fold_training_episodes(episodes: list[int], folds: int) -> list[list[int]]:
    """For each fold k, the episodes its value function trains on: all but those at positions k, k+K, ...
    Interleaving keeps every data type in every fold (merged datasets list demos, rollouts and
    corrections in blocks)."""
    if len(episodes) < folds:
        raise UsageError(f"--folds={folds} needs at least {folds} episodes, the dataset has {len(episodes)}.")
    held_out = [set(episodes[k::folds]) for k in range(folds)]
    return [[e for e in episodes if e not in held_out[k]] for k in range(folds)]


def _call(command: list[str]) -> int:
    print("Running:", shlex.join(command), flush=True)
    return subprocess.call(command)


def _call_all(commands: list[list[str]], output_dir: Path, jobs: int) -> int:
    """Run `commands` (one per fold), `jobs` at a time with one compute thread each, each one's output in
    <output_dir>/fold<k>.log. The first failure stops the others and returns its exit code."""
    output_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    pending, running = list(enumerate(commands)), {}
    try:
        while pending or running:
            while pending and len(running) < jobs:
                fold, command = pending.pop(0)
                log = output_dir / f"fold{fold}.log"
                print(f"Running fold {fold} (log {log}):", shlex.join(command), flush=True)
                with open(log, "w") as out:
                    running[fold] = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                                     preexec_fn=die_with_parent)  # fmt: skip
            time.sleep(FOLD_POLL_SECONDS)
            for fold, process in list(running.items()):
                if process.poll() is None:
                    continue
                del running[fold]
                if process.returncode != 0:
                    log = output_dir / f"fold{fold}.log"
                    tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
                    print(f"{tail}\nfold {fold} failed (exit {process.returncode}); the lines above end {log}",
                          file=sys.stderr)  # fmt: skip
                    return process.returncode
                print(f"fold {fold} trained", flush=True)
        return 0
    finally:
        for process in running.values():
            process.kill()
            process.wait()


def _check_training_data(extra: list[str]) -> None:
    """Run the dataset checks lerobot-train will run, here: a refusal is then one error line (exit 2),
    not a traceback from inside lerobot-train (once per fold). Datasets not on disk yet (a hub download)
    are checked by lerobot-train itself."""
    from ..data.checks import check_dataset
    from ..data.writing import check_dataset_root

    root = _optional(extra, "--dataset.root")
    if root is None:
        from lerobot.utils.constants import HF_LEROBOT_HOME

        repo_id = _optional(extra, "--dataset.repo_id")
        cached = HF_LEROBOT_HOME / repo_id if repo_id else None
        if cached is None or not (cached / "meta" / "info.json").is_file():
            return
        root = cached
    root = Path(root).expanduser()
    check_dataset_root(root, "--dataset.root")
    check_dataset(root).enforce()  # value training needs rewards


def _optional(extra: list[str], name: str) -> str | None:
    values = [a.split("=", 1)[1] for a in extra if a.startswith(name + "=")]
    return values[-1] if values else None


def _option(extra: list[str], name: str) -> str:
    value = _optional(extra, name)
    if value is None:
        raise UsageError(
            f"--folds needs {name}=... (folds are written to <output_dir>/fold<k> and "
            "split the episodes of a local dataset: --dataset.root, or --dataset.episodes=[...])."
        )
    return value


def _dataset_episodes(extra: list[str]) -> list[int]:
    """The episodes `--dataset.episodes` selects, or every episode of `--dataset.root`."""
    if any(a.startswith("--dataset.episodes=") for a in extra):
        return [int(e) for e in json.loads(_option(extra, "--dataset.episodes"))]
    from lerobot.datasets import LeRobotDatasetMetadata

    from ..data.writing import check_dataset_root

    root = Path(_option(extra, "--dataset.root")).expanduser()
    check_dataset_root(root, "--dataset.root")
    total = LeRobotDatasetMetadata(_option(extra, "--dataset.repo_id"), root=root).total_episodes
    return list(range(total))


@report_errors("value-label")
def run_value_label(args: argparse.Namespace) -> int:
    from lerobot.datasets import LeRobotDataset
    from lerobot.datasets.dataset_tools import add_features

    from ..data.checks import check_dataset
    from ..data.writing import atomic_output_dir, check_dataset_root, check_output_dir
    from ..evaluation.predictions import label_indicators
    from ..rl.advantage import advantage_n_step, frames_before_takeovers
    from ..schema import ADVANTAGE, DATA_TYPES, INDICATOR, VALUE

    if args.negative_before_takeover < 0:
        raise UsageError(f"--negative-before-takeover must be >= 0, got {args.negative_before_takeover}.")
    src = Path(args.input).expanduser()
    check_dataset_root(src, "--input")
    check_output_dir(args.output, args.overwrite, sources=[src])  # before the value functions run
    for path in args.value_paths:
        check_local_or_hub(path, "--value.path")
    check_dataset(src).enforce()
    source = LeRobotDataset(_repo_id(src), root=src)
    config, episodes, labellers = predict_out_of_sample(
        args.value_paths, source, args.batch_size, args.device
    )
    fraction = args.positive_fraction or config.conditioning.indicator_positive_fraction
    horizon = "full_return" if args.full_return else "n_step" if args.n_step else config.advantage_horizon
    n_step = advantage_n_step(horizon, args.n_step or config.advantage_n_step)

    index = np.concatenate([e.index for e in episodes])
    value = np.concatenate([e.value for e in episodes])
    advantage = np.concatenate(
        [e.advantage(config.advantage_estimator, n_step, args.cut_at_takeovers) for e in episodes]
    )
    forced_negative = np.concatenate(
        [frames_before_takeovers(e.intervention, args.negative_before_takeover) for e in episodes]
    )
    task = np.concatenate([e.task_index for e in episodes])
    intervention = np.concatenate([e.intervention for e in episodes])
    # Each episode's threshold comes from the frames valued by the same value function(s).
    labeller = np.concatenate([np.full(len(e.index), labellers[e.episode_index]) for e in episodes])
    indicator, thresholds = label_indicators(
        advantage, task, intervention, fraction, labeller, forced_negative
    )

    # Columns in the dataset's own row order (global index order).
    order = np.argsort(index)
    columns = {
        field.name: (values[order, None].astype(np.float32), field.feature)
        for field, values in ((VALUE, value), (ADVANTAGE, advantage), (INDICATOR, indicator))
    }
    repo_id = args.repo_id or f"{source.repo_id}_labelled"
    with atomic_output_dir(args.output, args.overwrite, sources=[src]) as staged:
        add_features(source, columns, output_dir=staged, repo_id=repo_id)

    data_type = np.concatenate([e.data_type for e in episodes])
    print(
        f"Labelled {len(index)} frames of {source.meta.total_episodes} episodes -> {args.output} ({repo_id})"
    )
    print("advantage: " + ("full return - V" if n_step is None else f"{n_step}-step"))
    groups = int(labeller.max()) + 1
    for key, threshold in thresholds.items():
        print(f"task {key // groups}, value function set {key % groups}: threshold {threshold:.4f}")
    for code, name in enumerate(DATA_TYPES):
        rows = data_type == code
        if rows.any():
            print(
                f"{name:<13} frames {rows.sum():>6}  advantage mean {advantage[rows].mean():+.4f}  "
                f"positive {indicator[rows].mean():.2f}"
            )
    print(
        f"Train the policy on it: lerobot-train --policy.type=pi_star_recap --dataset.repo_id={repo_id} "
        f"--dataset.root={args.output} --policy.advantage_source=dataset ..."
    )
    return 0


def predict_out_of_sample(paths: list[str], source, batch_size: int, device: str | None):
    """Value (and Q) predictions for every episode of `source`, each from the checkpoints that did not
    train on it (averaged when several did not); with one checkpoint, from that one. Also returns, per
    episode, a code for the set of checkpoints that valued it (0, 1, ...)."""
    from ..evaluation.policy_loading import load_recap_policy
    from ..evaluation.predictions import predict_episodes

    total = source.meta.total_episodes
    trained = [_trained_episodes(path, total) for path in paths]
    labellers = {e: [k for k, seen in enumerate(trained) if e not in seen] for e in range(total)}
    if len(paths) == 1:
        in_sample = sum(e in trained[0] for e in range(total))
        labellers = {e: [0] for e in range(total)}
        if in_sample:
            print(
                f"warning: {paths[0]} trained on {in_sample} of the {total} episodes it labels; their "
                "advantages are in-sample (shrunk towards 0 where it fits the returns). Cross-fit with "
                "`value-train --folds K` and pass all K checkpoints."
            )
    unlabelled = [e for e, ks in labellers.items() if not ks]
    if unlabelled:
        raise UsageError(
            f"episodes {unlabelled[:10]} were seen by every value checkpoint given, so no "
            "out-of-sample value exists for them; pass the checkpoints of all folds of `value-train --folds K`."
        )
    config, per_episode = None, {}
    for k, path in enumerate(paths):
        policy, preprocessor, _ = load_recap_policy(path, device)
        if not policy.model.critic.has_value:
            raise UsageError(f"{path} has no value function (trained as plain BC).")
        if config is not None and policy.config.advantage_estimator != config.advantage_estimator:
            raise UsageError("the value checkpoints mix advantage estimators; train them alike.")
        config = config or policy.config
        mine = [e for e, ks in labellers.items() if k in ks]
        predictions = predict_episodes(policy, preprocessor, source.repo_id, source.root, mine, batch_size)
        for prediction in predictions:
            per_episode.setdefault(prediction.episode_index, []).append(prediction)
        del policy
    sets = sorted({tuple(ks) for ks in labellers.values()})
    codes = {e: sets.index(tuple(ks)) for e, ks in labellers.items()}
    return config, [_average(per_episode[e]) for e in range(total)], codes


def _trained_episodes(path: str, total: int) -> set[int]:
    """Episodes a checkpoint trained on, from the train_config.json lerobot-train saves beside it."""
    train_config = Path(path) / "train_config.json"
    if not train_config.is_file():
        return set(range(total))  # unknown: assume it saw everything
    episodes = json.loads(train_config.read_text()).get("dataset", {}).get("episodes")
    return set(range(total)) if episodes is None else set(episodes)


def _average(predictions: list):
    first = predictions[0]
    first.value = np.mean([p.value for p in predictions], axis=0)
    if first.q is not None:
        first.q = np.mean([p.q for p in predictions], axis=0)
    return first


def _repo_id(root: Path) -> str:
    # With a local root, LeRobot only uses the repo id as a label.
    return f"local/{root.name}"
