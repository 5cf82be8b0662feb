"""`pi-star-recap`: the package's console script, one subcommand per RECAP workflow step.

Each subcommand lives in `commands/<name>.py` and exposes `register(subparsers)`; heavy imports
(torch, lerobot, metaworld) happen inside the command's `run`, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules in lerobot_policy_pi_star_recap.commands; each registers its subcommand(s).
# value: value-train, value-label; prompt: tag-prompts, tag-checkpoint
COMMAND_MODULES = ["annotate", "collect", "merge", "check", "demo", "eval", "value", "prompt", "migrate"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pi-star-recap",
        description="pi*0.6 RECAP for LeRobot: label data, collect experience, train and evaluate.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(f"lerobot_policy_pi_star_recap.commands.{module_name}").register(subparsers)
    return parser


def subcommand_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """Each subcommand's parser by name, e.g. for errors that name the subcommand."""
    (subparsers,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(subparsers.choices)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):
        subcommand_parsers(parser)[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
