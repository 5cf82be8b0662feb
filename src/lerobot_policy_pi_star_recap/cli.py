"""`pi-star-recap`: the package's console script, one subcommand per RECAP workflow step.

Each subcommand lives in `commands/<name>.py` and exposes `register(subparsers)`; heavy imports
(torch, lerobot, metaworld) happen inside the command's `run`, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules in lerobot_policy_pi_star_recap.commands; each registers its subcommand(s).
COMMAND_MODULES = ["annotate", "collect", "merge", "demo", "eval", "value"]  # value: value-train, value-label


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pi-star-recap",
        description="pi*0.6 RECAP for LeRobot: label data, collect experience, train and evaluate.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(f"lerobot_policy_pi_star_recap.commands.{module_name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
