"""Every `pi-star-recap` subcommand follows one flag convention and reports bad input the same way.

The parsers are built from cli.py, so a new subcommand or option is checked without touching this file."""

import argparse
import re
from pathlib import Path

import pytest
from conftest import run_cli

from lerobot_policy_pi_star_recap.cli import build_parser, subcommand_parsers
from lerobot_policy_pi_star_recap.commands.common import shown_option_strings

KEBAB = re.compile(r"--[a-z0-9]+(-[a-z0-9]+)*")
# Options that mirror a lerobot-train / lerobot-eval flag keep LeRobot's dotted spelling.
LEROBOT_STYLE = re.compile(r"--(policy|dataset|eval|value)\.[a-z0-9_]+")
# One documented name per role; the other spellings are hidden aliases.
ROLES = {"--output": {"--dst", "--output-dir", "--output_dir"}, "--input": {"--src"}}
PARSERS = subcommand_parsers(build_parser())


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and a.help is not argparse.SUPPRESS]


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_help_shows_one_flag_convention(command):
    parser = PARSERS[command]
    text = parser.format_help()
    for action in options(parser):
        for option in shown_option_strings(action):
            assert option == "-h" or KEBAB.fullmatch(option) or LEROBOT_STYLE.fullmatch(option), (
                f"pi-star-recap {command} {option}: use kebab-case (or a lerobot-style dotted name)"
            )
        for alias in set(action.option_strings) - set(shown_option_strings(action)):
            assert not re.search(rf"(?<![\w-]){re.escape(alias)}(?![\w-])", text), f"{command}: {alias} shown"
        for name, others in ROLES.items():
            if set(action.option_strings) & (others | {name}):
                assert shown_option_strings(action) == [name], f"{command}: call it {name}"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["annotate", "--src", "a", "--dst", "b"], {"input": Path("a"), "output": Path("b")}),
        (["value-label", "--value.path", "v", "--src", "a", "--dst", "b"], {"input": "a", "output": "b"}),
        (["demo", "--output-dir", "d"], {"output": "d"}),
        # The spellings of lerobot-eval, kept for `pi-star-recap eval`.
        (
            [
                "eval",
                "--policy.pretrained_model_path=p",
                "--dataset.repo_id=user/data",
                "--eval.n_episodes=10",
                "--output_dir=o",
                "--batch_size=4",
            ],
            {"policy_path": "p", "repo_id": "user/data", "n_episodes": 10, "output": "o", "batch_size": 4},
        ),
        (["eval", "--policy.path=p", "--dataset.repo_id=r", "--output-dir=o"], {"output": "o"}),
    ],
)
def test_old_spellings_still_parse(argv, expected):
    args = build_parser().parse_args([str(a) for a in argv])
    assert {key: getattr(args, key) for key in expected} == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["annotate", "--input", "{tmp}/missing", "--output", "{tmp}/out", "--all-success"],
            "does not exist",
        ),
        (["merge", "--inputs", "{tmp}/missing", "--output", "{tmp}/out"], "does not exist"),
        (["collect", "--mode=demo", "--task=nope", "--output={tmp}/out"], "unknown MetaWorld task"),
        (["value-train", "--folds=0"], "--folds must be >= 1"),
        (["value-train", "--folds=2", "--jobs=0"], "--jobs must be >= 1"),
        (
            ["value-label", "--value.path={tmp}", "--input={tmp}/missing", "--output={tmp}/out"],
            "does not exist",
        ),
        (
            ["eval", "--policy.path={tmp}", "--dataset.repo_id=local/x", "--dataset.root={tmp}/missing"],
            "does not exist",
        ),
        (["demo", "--task=nope", "--output={tmp}/out"], "unknown MetaWorld task"),
        (["demo", "--iterations=0", "--output={tmp}/out"], "--iterations must be >= 1"),
    ],
)
def test_bad_input_is_one_error_line_and_status_2(argv, message, tmp_path, capsys):
    assert run_cli(*(a.format(tmp=tmp_path) for a in argv)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith(f"pi-star-recap {argv[0]}: error: ") and message in lines[-1]
    assert not (tmp_path / "out").exists()


def test_unknown_flags_are_reported_by_the_subcommand(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli("merge", "--inputs", "a", "--output", "b", "--bogus")
    assert exit_info.value.code == 2
    assert "pi-star-recap merge: error: unrecognized arguments: --bogus" in capsys.readouterr().err
