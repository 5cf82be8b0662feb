"""CLI plumbing every `pi-star-recap` subcommand shares: errors, options with hidden aliases, the help
formatter and the error reporting.

Flag convention: kebab-case (`--batch-size`); `--input` / `--inputs` name the dataset(s) read and
`--output` where the result goes. Options that mirror a lerobot-train / lerobot-eval flag keep LeRobot's
dotted spelling (`--policy.path`, `--dataset.repo_id`, `--eval.n_episodes`). Older spellings stay
accepted as hidden aliases (see `add_option`).
"""

from __future__ import annotations

import argparse
import copy
import functools
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path


class UsageError(ValueError):
    """Bad flags, values or paths given to a command; the message names the problem and the fix."""


class CommandFailed(RuntimeError):
    """A step of a command failed although its input was valid (e.g. a lerobot-train run it started)."""


HUB_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")


def check_local_or_hub(path: str, flag: str) -> None:
    """Refuse a checkpoint path that is neither an existing folder nor shaped like a hub repo id before any
    work starts: LeRobot would try to download it and fail with a network error (a traceback offline)."""
    if not Path(path).expanduser().exists() and not HUB_REPO_ID.fullmatch(path):
        raise UsageError(f"{flag} {path} does not exist (and is not a hub repo id like user/model).")


def _prctl():
    """libc's prctl, looked up once in the parent: a `preexec_fn` runs between fork and exec, where a
    process with threads (the demo's two lanes) should do as little as possible."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except OSError:
        return None


PRCTL = _prctl()


def die_with_parent() -> None:
    """`preexec_fn` for a child process: Linux sends it SIGKILL when the command that started it dies
    (even of kill -9), so no orphan keeps writing into an output folder a rerun is about to replace."""
    if PRCTL is not None:
        PRCTL(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def add_option(parser: argparse._ActionsContainer, name: str, *aliases: str, **kwargs) -> argparse.Action:
    """`parser.add_argument(name, *aliases, **kwargs)` with the aliases left out of --help: old spellings
    (`--dst`, `--output_dir`, ...) keep working in scripts while --help shows only `name`."""
    action = parser.add_argument(name, *aliases, **kwargs)
    action.hidden_aliases = aliases
    return action


def add_cut_at_takeovers(parser: argparse.ArgumentParser) -> None:
    """`--cut-at-takeovers`, for the commands that compute N-step advantages from a value (value-label,
    eval) and so must agree on where a window stops."""
    parser.add_argument(
        "--cut-at-takeovers",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="stop N-step windows where the expert takes over or hands back, so the stall before a takeover "
        "is not credited with the rescue that follows it. Off by default: with a value function that is not "
        "calibrated step by step, the shorter windows score higher (on the demo's data 26%% of the stall "
        "frames came out positive with the cut, 5%% without; BENCHMARKS.md)",
    )


def shown_option_strings(action: argparse.Action) -> list[str]:
    """The option strings --help shows for `action`: all but its hidden aliases."""
    hidden = getattr(action, "hidden_aliases", ())
    return [option for option in action.option_strings if option not in hidden]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows `(default: X)` for options with a real default (None / False defaults are described in the
    option's own help, a switch's default is its absence) and hides the aliases of `add_option`."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or action.nargs == 0:
            return action.help
        return super()._get_help_string(action)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        shown = copy.copy(action)
        shown.option_strings = shown_option_strings(action)
        return super()._format_action_invocation(shown)


class RawDescriptionHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """HelpFormatter that keeps the description's line breaks (for a module docstring)."""


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
