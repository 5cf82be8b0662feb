"""CLI plumbing every `pi-star-recap` subcommand shares: the help formatter and the error reporting."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable


class UsageError(ValueError):
    """Bad flags, values or paths given to a command; the message names the problem and the fix."""


class CommandFailed(RuntimeError):
    """A step of a command failed although its input was valid (e.g. a lerobot-train run it started)."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows `(default: X)` for options with a real default; None / False defaults are described in the
    option's own help."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def report_errors(command: str) -> Callable:
    """Decorate a subcommand's `run` so that every command fails alike: one line
    `pi-star-recap <command>: error: <message>` on stderr and no traceback. Bad input (UsageError,
    ValueError and its kin, FileNotFoundError) exits with status 2, as argparse does for bad flags; a
    failed step (CommandFailed) with status 1."""

    def decorate(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        @functools.wraps(run)
        def wrapper(args: argparse.Namespace) -> int:
            try:
                return run(args)
            except (ValueError, FileNotFoundError, CommandFailed) as error:
                print(f"pi-star-recap {command}: error: {error}", file=sys.stderr)
                return 1 if isinstance(error, CommandFailed) else 2

        return wrapper

    return decorate
