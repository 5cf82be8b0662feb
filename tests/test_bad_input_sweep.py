"""Generated bad-input and fault sweeps: every config field and every `pi-star-recap` subcommand is fed
values it must refuse, and a command killed with kill -9 must leave nothing a later run trips over.

The cases are generated from the config's dataclass fields and its validation tables (`CHOICES`, `RULES`)
and from the parsers cli.py builds, so a new field, rule, subcommand or option is swept without editing
this file. `python tests/test_bad_input_sweep.py` runs the sweep and prints cases and passes per group
(the table in docs/reliability.md).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import pytest
from conftest import BIN, WORKERS, collect_args, make_source, run_cli
from synthetic import option

from lerobot_policy_pi_star_recap import PiStarRECAPConfig
from lerobot_policy_pi_star_recap.cli import build_parser, subcommand_parsers
from lerobot_policy_pi_star_recap.configuration_pi_star_recap import (
    CHOICES,
    GROUPS,
    IQL_PRESETS,
    MODES,
    RULES,
    scalar_field_types,
)

# --- Config ----------------------------------------------------------------------------------------
# Fields that take any value of their type, or whose values are checked where they are used.
EXEMPT = {
    "vlm_model_name": "any hub id or local folder; checked when the backbone loads (test_backbones.py)",
    "backbone.vision_model_name": "any hub id or local folder; only read with text-only LMs, checked when loaded",
    "backbone.vlm_config": "the backbone's architecture, recorded by the package itself on first load",
    "runtime.tensorboard_dir": "any path (or None)",
    "normalization_mapping": "LeRobot's feature-type -> NormalizationMode dict, parsed by draccus",
    "input_features": "filled by LeRobot from the dataset; checked by validate_features",
    "output_features": "filled by LeRobot from the dataset; checked by validate_features",
    "device": "any torch device; LeRobot falls back to an available one",
    "repo_id": "any hub repo id (LeRobot's push_to_hub)",
    "license": "free text (LeRobot's push_to_hub)",
    "tags": "free text (LeRobot's push_to_hub)",
    "pretrained_path": "set by LeRobot when loading; a missing path fails there",
    "pretrained_revision": "any hub revision",
}
# Choice-like fields validated outside `CHOICES` (they are resolved before the tables run).
PRESET_CHOICES = {"mode": tuple(MODES), "iql_preset": tuple(IQL_PRESETS)}
# Candidates from which each RULES field's out-of-range values are picked: those its rule rejects.
RANGE_CANDIDATES = (-1e9, -1, -0.5, 0, 0.5, 1, 1.5, 2, 3, 1e9)
# Every option, those in a group by their dotted path ("expert.width").
FIELD_TYPES = {f.name: f.type for f in fields(PiStarRECAPConfig) if f.name not in GROUPS}
FIELD_TYPES |= {f"{group}.{f.name}": f.type for group, cls in GROUPS.items() for f in fields(cls)}
SCALARS = scalar_field_types(PiStarRECAPConfig)


def _kind(name: str) -> type:
    """The scalar type a field holds (int, float, str, bool), or object for the rest."""
    return SCALARS[name][0][-1] if name in SCALARS else object


def _out_of_range(name: str, kind: type) -> list:
    """Values of the field's type that its rule in RULES rejects, checked against the default config."""
    default = PiStarRECAPConfig(device="cpu")
    for names, ok, _ in RULES:
        if name in names.split():
            candidates = [kind(v) for v in RANGE_CANDIDATES if kind is float or float(v).is_integer()]
            return sorted({v for v in candidates if not ok(default, v)})
    return []


def config_cases() -> list:
    """(field, bad value) for every non-exempt field: non-finite, wrong type, out of range or unknown."""
    cases = []
    for name in FIELD_TYPES:
        kind = _kind(name)
        if name in EXEMPT:
            continue
        assert kind is not object, f"{name}: no sweep for its type {FIELD_TYPES[name]}; sweep it or exempt it"
        values = []
        if kind is float:
            values += [math.nan, math.inf, -math.inf, "0.5"]
        elif kind is int:
            values += ["1", 2.5, True]
        elif kind is bool:
            values += ["false", 1]
        else:
            values += [3]
        values += _out_of_range(name, kind)
        if name in CHOICES or name in PRESET_CHOICES:
            values.append("bogus")
        cases += [pytest.param(name, value, id=f"config:{name}={value!r}") for value in values]
    return cases


@pytest.mark.parametrize(("name", "value"), config_cases())
def test_bad_config_value_names_the_field(name, value):
    with pytest.raises(ValueError, match=rf"\b{re.escape(name)}\b"):
        PiStarRECAPConfig(device="cpu", **option(name, value))


def test_every_field_is_swept_or_exempt():
    assert set(EXEMPT) <= set(FIELD_TYPES), "EXEMPT names a field the config no longer has"
    swept = {param.values[0] for param in config_cases()}
    assert swept | set(EXEMPT) == set(FIELD_TYPES)


# --- CLI -------------------------------------------------------------------------------------------
PARSERS = subcommand_parsers(build_parser())
# Options naming something that must exist; (command, option) -> the other flags that make it read.
INPUTS = ("--input", "--inputs", "--value.path", "--policy.path", "--dataset.root", "--policy", "--base-path")
INPUTS += ("--types-file", "--success-episodes-file")
CONTEXT = {("collect", "--policy"): ["--mode=auto"], ("demo", "--base-path"): ["--base-policy=smolvla"]}
CONTEXT[("annotate", "--success-episodes-file")] = []  # says how episodes ended itself
# Flags every case of a command gets, so that only the swept input is wrong.
BASE = {"annotate": ["--all-success"]}
# Commands that hand their arguments to lerobot-train: paths are lerobot-train's to check (test_train_cli.py).
PASS_THROUGH = {name for name, parser in PARSERS.items() if parser.get_default("accepts_extra")}


def _options(command: str) -> dict[str, argparse.Action]:
    return {a.option_strings[0]: a for a in PARSERS[command]._actions if a.option_strings}


def _fill(option: str, dirs: dict[str, Path]) -> str:
    """A valid value for a required option: the tiny dataset, an existing folder, a fresh output path."""
    values = {
        "--input": dirs["dataset"],
        "--inputs": dirs["dataset"],
        "--output": dirs["out"],
        "--mode": "demo",
    }
    return f"{option}={values.get(option, dirs['folder'] if 'path' in option else 'local/x')}"


def _required(command: str, dirs: dict[str, Path], without: str | None = None) -> list[str]:
    """The required options (and --output, so nothing is written into the working directory)."""
    options = _options(command)
    return [_fill(o, dirs) for o, a in options.items() if (a.required or o == "--output") and o != without]


def cli_cases() -> list:
    """(command, case, option) for every subcommand: each required option left out, each input path
    missing, an existing --output without --overwrite and an unknown --task."""
    cases = []
    for command in sorted(PARSERS):
        options = _options(command)
        cases += [
            pytest.param(command, "missing", o, id=f"{command}:missing {o}")
            for o, a in options.items()
            if a.required
        ]
        if command in PASS_THROUGH:
            continue
        cases += [
            pytest.param(command, "no-such-input", o, id=f"{command}:missing path {o}")
            for o in options
            if o in INPUTS
        ]
        if "--output" in options and "--overwrite" in options:
            cases.append(
                pytest.param(command, "output-exists", "--output", id=f"{command}:existing --output")
            )
        if "--task" in options:
            cases.append(pytest.param(command, "unknown-task", "--task", id=f"{command}:unknown --task"))
    return cases


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> Path:
    return make_source(tmp_path_factory.mktemp("sweep") / "source", [3, 2])


# What the error line of each run-time case must name (a missing path names itself).
NAMED = {"output-exists": "exists", "unknown-task": "push-v3x"}


def _leftovers(out: Path) -> list[Path]:
    """`out` and its staging folders, wherever a failed command might have left them."""
    return [p for p in out.parent.iterdir() if p.name == out.name or p.name.startswith(f".{out.name}.tmp-")]


@pytest.mark.parametrize(("command", "case", "option"), cli_cases())
def test_bad_cli_input_is_status_2_and_one_error_line(command, case, option, tiny_dataset, tmp_path, capsys):
    dirs = {"dataset": tiny_dataset, "out": tmp_path / "out", "folder": tmp_path / "folder"}
    dirs["folder"].mkdir()
    missing = tmp_path / "no-such-path"
    argv = [command, *_required(command, dirs, without=option if case == "missing" else None)]
    argv += (
        CONTEXT.get((command, option), BASE.get(command, []))
        if case == "no-such-input"
        else BASE.get(command, [])
    )
    if case == "no-such-input":
        argv = [a for a in argv if not a.startswith(f"{option}=")] + [f"{option}={missing}"]
    elif case == "output-exists":
        dirs["out"].mkdir()
        (dirs["out"] / "keep.txt").write_text("mine")
    elif case == "unknown-task":
        argv.append("--task=push-v3x")
    capsys.readouterr()
    if case == "missing":
        with pytest.raises(SystemExit) as exit_info:
            run_cli(*argv)
        status = exit_info.value.code
    else:
        status = run_cli(*argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status == 2, err
    assert "Traceback" not in err
    if case == "missing":
        assert lines[0].startswith("usage: ") and lines[-1].startswith(f"pi-star-recap {command}: error: ")
        assert option in lines[-1]
    else:
        assert len(lines) == 1 and lines[0].startswith(f"pi-star-recap {command}: error: "), err
        assert (str(missing) if case == "no-such-input" else NAMED[case]) in lines[0]
    if case == "output-exists":
        assert [p.name for p in dirs["out"].iterdir()] == ["keep.txt"]
        assert [p.name for p in _leftovers(dirs["out"])] == ["out"]
    else:
        assert not _leftovers(dirs["out"])


# --- Stale staging folders (kill -9) ----------------------------------------------------------------
def _dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", ""])
    process.wait()
    return process.pid


def test_stale_staging_folder_is_removed_by_the_next_run(tiny_dataset, tmp_path, capsys):
    out = tmp_path / "merged"
    stale = tmp_path / f".merged.tmp-{_dead_pid()}-abc123"
    live = tmp_path / f".merged.tmp-{os.getpid()}-live"  # a writer that is still running keeps its folder
    for folder in (stale, live):
        (folder / "dataset" / "meta").mkdir(parents=True)
    assert run_cli("merge", "--inputs", tiny_dataset, "--output", out) == 0
    assert (out / "meta" / "info.json").is_file()
    assert not stale.exists() and live.is_dir()
    printed = [line for line in capsys.readouterr().out.splitlines() if "stale staging" in line]
    assert printed == [
        f"removed stale staging folder {stale} (its process {stale.name.split('-')[1]} is gone)"
    ]


@pytest.mark.slow  # a collection killed mid-way, then a full one
def test_collect_killed_with_kill_9_leaves_no_target_and_the_rerun_completes(tmp_path, capsys):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    out = tmp_path / "push"
    argv = collect_args(out, "demo", "push-v3", 2, "--episode-length=40")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([str(BIN / "pi-star-recap"), *argv], env=env)
    try:
        deadline = time.monotonic() + 300 * WORKERS
        while not list(tmp_path.glob(".push.tmp-*")):
            assert process.poll() is None and time.monotonic() < deadline, "collect ended before staging"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not out.exists() and list(tmp_path.glob(".push.tmp-*")), "kill -9 should leave the staging folder"

    capsys.readouterr()
    assert run_cli(*argv) == 0
    assert f"(its process {process.pid} is gone)" in capsys.readouterr().out
    assert (out / "meta" / "info.json").is_file()
    assert LeRobotDataset("local/push", root=out).num_episodes == 2
    assert not list(tmp_path.glob(".push.tmp-*"))


# --- Counts ----------------------------------------------------------------------------------------
UNPARAMETRIZED_GROUPS = {
    "test_every_field_is_swept_or_exempt": "config",
    "test_stale_staging_folder_is_removed_by_the_next_run": "stale staging folders",
    "test_collect_killed_with_kill_9_leaves_no_target_and_the_rerun_completes": "stale staging folders",
}


class _Counter:
    """Cases and passes per group: the command (or "config") before the ':' of a case id."""

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" or (report.when == "setup" and not report.passed):
            test, _, case = report.nodeid.partition("::")[2].partition("[")
            group = case.partition(":")[0] if ":" in case else UNPARAMETRIZED_GROUPS[test]
            tried, passed = self.counts.setdefault(group, [0, 0])
            self.counts[group] = [tried + 1, passed + report.passed]


if __name__ == "__main__":
    counter = _Counter()
    code = pytest.main([__file__, "-q", "-p", "no:cacheprovider", *sys.argv[1:]], plugins=[counter])
    print(f"\n{'group':<32}{'tried':>7}{'passed':>8}")
    for group, (tried, passed) in sorted(counter.counts.items()):
        print(f"{group:<32}{tried:>7}{passed:>8}")
    total = [sum(c[i] for c in counter.counts.values()) for i in (0, 1)]
    print(f"{'all':<32}{total[0]:>7}{total[1]:>8}")
    sys.exit(code)
