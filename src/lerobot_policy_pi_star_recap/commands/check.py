"""`pi-star-recap check`: what the policy will read from a dataset, and every problem in it, before a
training run finds them one at a time (or trains on them without a word).

It runs the checks training, `value-train`, `value-label` and `annotate` run (`data.checks`), over
the parquet columns and `meta/` only: no image or video is decoded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import HelpFormatter, report_errors


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check",
        help="check a dataset before training: RECAP summary, then its errors, warnings and notes",
        description=(
            "Read a local LeRobot v3 dataset the way pi_star_recap will (columns only, no video decoding) "
            "and print its RECAP summary (episodes, successes, frames per data type, expert frames, how "
            "episode ends are read) and every problem found: errors (training refuses the dataset), "
            "warnings (contradictions, and how they are read) and notes (unusual data, and what is "
            "assumed). Exit status 2 when there are errors, else 0."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--input", required=True, type=Path, help="dataset root (meta/, data/)")
    parser.add_argument(
        "--timeouts-truncate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="read failed episodes' ends as time-outs, as --policy.critic.timeouts_truncate does",
    )
    parser.add_argument(
        "--bc",
        action="store_true",
        help="check for plain behaviour cloning (--policy.use_advantage_weighting=false "
        "--policy.use_advantage_conditioning=false): rewards are not needed",
    )
    parser.set_defaults(run=run)


@report_errors("check")
def run(args: argparse.Namespace) -> int:
    from ..data.checks import check_dataset
    from ..data.writing import check_dataset_root

    root = args.input.expanduser()
    check_dataset_root(root, "--input")
    report = check_dataset(root, need_rewards=not args.bc, timeouts_truncate=args.timeouts_truncate)
    print(report.format(), flush=True)
    if report.errors:
        count = len(report.errors)
        print(
            f"pi-star-recap check: error: {count} error{'s' * (count > 1)} in {root}: training would refuse "
            "this dataset; fix them and check again.",
            file=sys.stderr,
        )
        return 2
    return 0
