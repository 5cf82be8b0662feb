"""The dataset checks where each command reads a dataset: training (`RecapTable`), `value-train`,
`value-label`, `annotate` and a real `lerobot-train`; and `check_dataset` on a 100,000-frame dataset.

The outcome of each kind of content is swept in test_dataset_sweep.py; here the point is that every entry
point runs the same checks, refuses with one line, and logs warnings once."""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import TINY_POLICY, make_source, run_cli, run_tool
from synthetic import episode_columns, make_dataset
from test_dataset_sweep import assign_vector, drop, frames_of

from lerobot_policy_pi_star_recap.data.checks import check_dataset, column_problems
from lerobot_policy_pi_star_recap.data.recap_table import RecapTable
from lerobot_policy_pi_star_recap.errors import RecapDataError

BOOL = {"dtype": "bool", "shape": (1,), "names": None}
INF_ACTION = "'action' has NaN or infinite values in 1 frame: action is +inf at global indices [13]"


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    """Copies of a valid RECAP dataset: with an inf action, and without a done column."""
    work = tmp_path_factory.mktemp("checks")
    good = make_dataset(work / "good", ["demo", "auto"], length=8, successes=[True, False])
    out = {}
    for name, edit in (
        ("inf_action", assign_vector("action", lambda t: frames_of(t, 1, range(5, 6)), np.inf)),
        ("no_done", drop("done")),
    ):
        shutil.copytree(good, work / name)
        edit(work / name)
        out[name] = work / name
    return out


def _one_error_line(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"pi-star-recap {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_training_refuses_errors_and_logs_notes_once(datasets, caplog):
    with pytest.raises(RecapDataError, match=r"'action' has NaN or infinite values.*\(episode 1 frame 5\)"):
        RecapTable.from_dataset_root(datasets["inf_action"], chunk_size=2, discount=1.0, n_step=2)
    caplog.set_level(logging.WARNING)
    for _ in range(2):  # value-label reads a dataset once per value checkpoint
        RecapTable.from_dataset_root(datasets["no_done"], chunk_size=2, discount=1.0, n_step=2)
    logged = [r.getMessage() for r in caplog.records]
    assert logged == [
        f"{datasets['no_done']}: note: " + check_dataset(datasets["no_done"]).problems[0].message
    ]
    assert "no done column" in logged[0] and "1 terminal, 1 truncated" in logged[0]


def test_tables_built_from_columns_refuse_contradictions():
    columns = episode_columns(["demo", "intervention"], length=4)
    columns.intervention[:2] = 1.0  # an expert "took over" a demo
    with pytest.raises(RecapDataError, match=r"demo episodes \[0\] have intervention_mask=True on 2 frames"):
        RecapTable(columns, chunk_size=2, discount=1.0, n_step=2)
    columns = episode_columns(["demo", "auto"], length=4)
    columns.data_type[2:4] = 1  # demo, then auto, inside episode 0
    with pytest.raises(RecapDataError, match="data_type changes inside episodes"):
        RecapTable(columns, chunk_size=2, discount=1.0, n_step=2)


def test_an_episode_of_one_frame_is_one_note():
    columns = episode_columns(["demo", "demo"], length=4)
    for name, values in vars(columns).items():
        if values is not None:
            setattr(columns, name, values[:5])  # episode 1 keeps its first frame
    columns.reward[4], columns.done[4], columns.success[4] = 0.0, True, True
    problems = column_problems(columns)
    assert [(p.level, p.message.split(":")[0]) for p in problems] == [
        ("note", "1 episodes of one frame ([1])")
    ]


@pytest.mark.parametrize("folds", ["--folds=1", "--folds=2"])
def test_value_train_refuses_bad_data_in_one_line_before_lerobot_train(datasets, folds, tmp_path, capsys):
    out = tmp_path / "value"
    argv = ["value-train", folds, "--dataset.repo_id=local/x", f"--dataset.root={datasets['inf_action']}"]
    assert run_cli(*argv, f"--output_dir={out}", "--steps=4") == 2
    assert INF_ACTION in _one_error_line(capsys.readouterr().err, "value-train")
    assert not out.exists(), "lerobot-train ran"


def test_value_label_refuses_bad_data_before_loading_checkpoints(datasets, tmp_path, capsys):
    out = tmp_path / "labelled"
    argv = ["value-label", "--value.path", tmp_path, "--input", datasets["inf_action"]]  # no checkpoint
    assert run_cli(*argv, "--output", out) == 2
    assert INF_ACTION in _one_error_line(capsys.readouterr().err, "value-label")
    assert not out.exists()


@pytest.fixture(scope="module")
def flagged_source(tmp_path_factory) -> Path:
    """Three episodes without RECAP fields; episode 1 has intervention flags."""
    flags = {"intervention": (BOOL, [[0, 0, 0], [0, 1, 1, 0], [0, 0]])}
    return make_source(tmp_path_factory.mktemp("checks_annotate") / "source", [3, 4, 2], flags)


def test_annotate_refuses_flags_on_demo_episodes(flagged_source, tmp_path, capsys):
    out = tmp_path / "labelled"
    assert (
        run_cli("annotate", "--input", flagged_source, "--output", out, "--all-success") == 2
    )  # --type demo
    line = _one_error_line(capsys.readouterr().err, "annotate")
    assert (
        "demo episodes [1] have intervention_mask=True on 2 frames" in line
        and "--types-from-intervention" in line
    )
    assert not out.exists()


def test_annotate_warns_of_intervention_episodes_without_flags(flagged_source, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    types = "--types=0=auto,1-2=intervention"
    assert (
        run_cli("annotate", "--input", flagged_source, "--output", tmp_path / "out", types, "--all-success")
        == 0
    )
    warnings = [r.getMessage() for r in caplog.records if "warning:" in r.getMessage()]
    assert (
        len(warnings) == 1
        and "intervention episodes [2] have no frame with intervention_mask=True" in warnings[0]
    )


@pytest.mark.slow  # a real lerobot-train (it stops before the first step)
def test_lerobot_train_refuses_an_inf_action(datasets, tmp_path):
    result = run_tool(
        "lerobot-train",
        "--dataset.repo_id=local/inf_action",
        f"--dataset.root={datasets['inf_action']}",
        f"--output_dir={tmp_path / 'run'}",
        "--steps=4",
        "--batch_size=4",
        *TINY_POLICY,
        cwd=tmp_path,
        returncode=1,
    )
    assert f"RecapDataError: {datasets['inf_action']}: {INF_ACTION}" in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def write_columns_dataset(root: Path, episodes: int, length: int, state: int = 39, action: int = 4) -> Path:
    """A LeRobot v3 dataset of state / action / RECAP columns only (no images), written with pyarrow:
    `episodes` episodes of `length` frames, the paper's rewards, every third episode failed."""
    n = episodes * length
    episode, frame = np.repeat(np.arange(episodes), length), np.tile(np.arange(length), episodes)
    last, success = frame == length - 1, episode % 3 != 0
    rng = np.random.default_rng(0)

    def vectors(width: int) -> pa.FixedSizeListArray:
        return pa.FixedSizeListArray.from_arrays(rng.normal(size=n * width).astype(np.float32), width)

    data = {
        "observation.state": vectors(state),
        "action": vectors(action),
        "data_type": pa.array(np.array(["demo", "auto"])[episode % 2]),
        "reward": pa.array(np.where(last, np.where(success, 0.0, -length), -1.0).astype(np.float32)),
        "done": pa.array(last),
        "intervention_mask": pa.array(np.zeros(n, bool)),
        "next.success": pa.array(last & success),
        "timestamp": pa.array((frame / 10).astype(np.float32)),
        "frame_index": pa.array(frame),
        "episode_index": pa.array(episode),
        "index": pa.array(np.arange(n)),
        "task_index": pa.array(np.zeros(n, np.int64)),
    }
    (root / "data" / "chunk-000").mkdir(parents=True)
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    pq.write_table(pa.table(data), root / "data" / "chunk-000" / "file-000.parquet")
    pq.write_table(pa.table({"task_index": [0], "task": ["push the block"]}), root / "meta" / "tasks.parquet")
    lengths = np.full(episodes, length)
    pq.write_table(
        pa.table(
            {"episode_index": np.arange(episodes), "length": lengths, "dataset_to_index": np.cumsum(lengths)}
        ),
        root / "meta" / "episodes" / "chunk-000" / "file-000.parquet",
    )
    dims = {"observation.state": state, "action": action}
    features = {
        name: {
            "dtype": str(values.type.value_type if name in dims else values.type),
            "shape": [dims.get(name, 1)],
        }
        for name, values in data.items()
    }
    info = {
        "codebase_version": "v3.0",
        "fps": 10,
        "features": features,
        "total_frames": n,
        "total_episodes": episodes,
    }
    (root / "meta" / "info.json").write_text(json.dumps(info))
    return root


def test_a_100000_frame_dataset_is_checked_in_seconds(tmp_path):
    root = write_columns_dataset(tmp_path / "large", episodes=500, length=200)
    start = time.perf_counter()
    report = check_dataset(root)
    seconds = time.perf_counter() - start
    print(f"check_dataset: 100000 frames in {seconds:.2f} s")
    assert not report.problems, report.format()
    assert "500 episodes, 100000 frames" in report.summary and "333 terminal, 167 truncated" in report.summary
    assert seconds < 30
