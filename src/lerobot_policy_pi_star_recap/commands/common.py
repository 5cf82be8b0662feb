"""CLI plumbing every `pi-star-recap` subcommand shares: the help formatter and the error reporting."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows `(default: X)` for options with a real default; None / False defaults are described in the
    option's own help."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def report_errors(command: str) -> Callable:
    """Decorate a subcommand's `run`: bad input (ValueError and its kin, FileNotFoundError) prints
    `pi-star-recap <command>: error: <message>` and exits with status 2 instead of a traceback."""

    def decorate(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        @functools.wraps(run)
        def wrapper(args: argparse.Namespace) -> int:
            try:
                return run(args)
            except (ValueError, FileNotFoundError) as error:
                print(f"pi-star-recap {command}: error: {error}", file=sys.stderr)
                return 2

        return wrapper

    return decorate
