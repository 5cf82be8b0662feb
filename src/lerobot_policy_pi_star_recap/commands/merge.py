"""`pi-star-recap merge`: several RECAP datasets (e.g. the demos and each iteration's rollouts) -> one
training dataset, for `lerobot-train`, which takes a single dataset.

An input annotated before `annotate` dropped LeRobot's raw `intervention` flags still carries them next to
`intervention_mask`, which holds the same flags: merge leaves them out (`schema.superseded_flags`), so it
merges with inputs that never had them, and the output has the mask as its only intervention flag."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ..data.writing import DatasetToolError
from ..schema import RAW_INTERVENTION_FLAGS, RECAP_FEATURES, superseded_flags
from .common import HelpFormatter, report_errors

# Video encoder details may differ between datasets without preventing a merge (LeRobot ignores them too).
IGNORED_INFO = "info"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "merge",
        help="merge several datasets (collection iterations) into one training dataset",
        description=(
            "Concatenate LeRobot v3 datasets with identical features and fps into a NEW dataset (episodes "
            "renumbered, tasks unified, stats aggregated) with LeRobot's merge_datasets. Inputs are only read. "
            "Raw intervention flags (LeRobot's `intervention`) next to an intervention_mask are left out."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--inputs", required=True, nargs="+", type=Path, help="dataset roots, in order")
    parser.add_argument("--output", required=True, type=Path, help="new dataset folder (must not exist)")
    parser.add_argument(
        "--repo-id", default=None, help="repo id of the merged dataset (default: local/<output name>)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.set_defaults(run=run)


def _comparable(feature: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in feature.items() if k != IGNORED_INFO}


def features_of(root: Path) -> dict:
    return json.loads((root / "meta" / "info.json").read_text())["features"]


def check_compatible(roots: list[Path], left_out: dict[Path, list[str]] | None = None) -> None:
    """Same fps, robot type and features (name, dtype, shape) everywhere, or an error naming the difference;
    `left_out` names each input's features that merge drops (not compared)."""
    left_out = left_out or {}
    infos = [json.loads((root / "meta" / "info.json").read_text()) for root in roots]
    for root, info in zip(roots, infos, strict=True):
        info["features"] = {k: v for k, v in info["features"].items() if k not in left_out.get(root, ())}
    first, reference = roots[0], infos[0]
    for root, info in zip(roots[1:], infos[1:], strict=True):
        for key in ("fps", "robot_type"):
            if info.get(key) != reference.get(key):
                raise DatasetToolError(
                    f"{root} has {key}={info.get(key)!r} but {first} has {reference.get(key)!r}."
                )
        ours, theirs = reference["features"], info["features"]
        only_first, only_this = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
        if only_first or only_this:
            differ = set(only_first + only_this)
            hint = ""
            if set(RECAP_FEATURES) & differ:
                hint = " Label both with the RECAP fields first (`pi-star-recap annotate`)."
            elif set(RAW_INTERVENTION_FLAGS) & differ:
                hint = (
                    f" {sorted(set(RAW_INTERVENTION_FLAGS) & differ)} are raw intervention flags, which "
                    "`pi-star-recap annotate` turns into intervention_mask: annotate each input first."
                )
            raise DatasetToolError(
                f"features differ: only in {first}: {only_first}; only in {root}: {only_this}.{hint}"
            )
        for name in ours:
            if _comparable(ours[name]) != _comparable(theirs[name]):
                raise DatasetToolError(
                    f"feature {name!r} differs: {first} has {_comparable(ours[name])}, {root} has "
                    f"{_comparable(theirs[name])}. Record both with the same settings (image size, state, layout, `collect --video` or not)."
                )
    missing = sorted(set(RECAP_FEATURES) - set(reference["features"]))
    if missing:
        logging.warning(
            f"the inputs lack RECAP fields {missing}; annotate the merged dataset before training."
        )


@report_errors("merge")
def run(args: argparse.Namespace) -> int:
    from lerobot.datasets.dataset_tools import merge_datasets, modify_features
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from ..data.writing import (
        COLLECT_PROVENANCE,
        atomic_output_dir,
        check_dataset_root,
        merged_provenance,
        print_summary,
    )

    roots = [path.expanduser().resolve() for path in args.inputs]
    if len(set(roots)) != len(roots):
        raise DatasetToolError(f"--inputs lists a dataset twice: {[str(r) for r in roots]}.")
    for root in roots:
        check_dataset_root(root, "input")
    left_out = {root: superseded_flags(features_of(root)) for root in roots}
    check_compatible(roots, left_out)
    datasets = [LeRobotDataset(f"local/{root.name}", root=root) for root in roots]
    repo_id = args.repo_id or f"local/{args.output.name}"
    with atomic_output_dir(args.output, args.overwrite, sources=roots) as out:
        for i, root in enumerate(roots):
            if left_out[root]:  # a copy without them, next to the output (removed with the staging folder)
                logging.info(f"{root}: leaving out {left_out[root]} (intervention_mask holds the same flags)")
                datasets[i] = modify_features(
                    datasets[i],
                    remove_features=left_out[root],
                    output_dir=out.parent / f"input-{i}",
                    repo_id=f"local/{root.name}",
                )
        merge_datasets(datasets, output_repo_id=repo_id, output_dir=out)
        provenance = merged_provenance(roots)
        if provenance is not None:  # collections keep their per-episode records (operator profiles, seeds)
            (out / "meta" / COLLECT_PROVENANCE).write_text(json.dumps(provenance, indent=2))
    print_summary(
        args.output,
        f"Merged {len(roots)} datasets ({sum(d.meta.total_episodes for d in datasets)} episodes, "
        f"{sum(d.meta.total_frames for d in datasets)} frames) -> {args.output}",
    )
    return 0
