"""Generated sweep over dataset content: each fault a dataset written by another tool can have, with the
outcome `data.checks` must give it (error, warning, note, or ok), plus `pi-star-recap check` on a
representative few.

Every case edits a copy of one tiny LeRobot dataset written with the RECAP fields (demo, auto,
intervention, demo; the auto episode failed) the way a user would: its parquet columns or its `meta/`
files. The generic cases come from `schema.RECAP_FEATURES` and the dataset's own numeric policy columns
(a column missing, of another type, of shape (2,), NaN / +inf / -inf), so a new RECAP field is swept
without editing this file; the others are the faults of issue 45 and their neighbours.
`python tests/test_dataset_sweep.py` runs the sweep and prints cases and passes per outcome (the table in
docs/reliability.md).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_cli
from synthetic import make_dataset

from lerobot_policy_pi_star_recap.data.checks import LEVELS, check_dataset
from lerobot_policy_pi_star_recap.schema import DATA_TYPES, RECAP_FEATURES

TYPES, SUCCESSES, LENGTH = ["demo", "auto", "intervention", "demo"], [True, False, True, True], 8
Edit = Callable[[Path], None]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return make_dataset(
        tmp_path_factory.mktemp("content") / "base", TYPES, length=LENGTH, successes=SUCCESSES
    )


# --- Edits of a dataset's files ------------------------------------------------------------------------
def _data_file(root: Path) -> Path:
    (path,) = (root / "data").glob("*/*.parquet")
    return path


def rewrite(change: Callable[[pa.Table], pa.Table]) -> Edit:
    """An edit of the data file's table."""

    def edit(root: Path) -> None:
        path = _data_file(root)
        pq.write_table(change(pq.read_table(path)), path)

    return edit


def frames_of(table: pa.Table, episode: int, frames: range | None = None) -> np.ndarray:
    """Rows of `episode` (its `frames` only, when given)."""
    rows = table.column("episode_index").to_numpy() == episode
    if frames is not None:
        rows &= np.isin(table.column("frame_index").to_numpy(), list(frames))
    return rows


def put(name: str, values: Callable[[pa.Table], list], kind: pa.DataType | None = None) -> Edit:
    """Set (or add) column `name` to `values(table)`, of type `kind` (default: the column's own)."""

    def change(table: pa.Table) -> pa.Table:
        kind_ = kind or table.schema.field(name).type
        column = pa.array(values(table), type=kind_)
        if name in table.column_names:
            return table.set_column(table.schema.get_field_index(name), pa.field(name, kind_), column)
        return table.append_column(pa.field(name, kind_), column)

    return rewrite(change)


def assign(name: str, rows: Callable[[pa.Table], np.ndarray], value) -> Edit:
    """Column `name` set to `value` on `rows(table)`."""
    return put(
        name, lambda t: [value if r else v for v, r in zip(t.column(name).to_pylist(), rows(t), strict=True)]
    )


def declare(name: str, dtype: str) -> Edit:
    """Feature `name` declared in meta/info.json as `dtype`, shape (1,)."""

    def edit(root: Path) -> None:
        path = root / "meta" / "info.json"
        info = json.loads(path.read_text())
        info["features"][name] = {"dtype": dtype, "shape": [1], "names": None}
        path.write_text(json.dumps(info, indent=4))

    return edit


def add(name: str, values: Callable[[pa.Table], list], dtype: str) -> Edit:
    """A new column `name` of `dtype` in the data file, declared in meta/info.json."""
    return chain(put(name, values, pa.from_numpy_dtype(np.dtype(dtype))), declare(name, dtype))


def drop(name: str) -> Edit:
    """Column `name` removed from the data file and from meta/, as in a dataset written without it."""

    def forget(root: Path) -> None:
        for relative, entries in (
            ("meta/info.json", lambda d: d["features"]),
            ("meta/stats.json", lambda d: d),
        ):
            path = root / relative
            content = json.loads(path.read_text())
            entries(content).pop(name, None)  # string columns have no stats
            path.write_text(json.dumps(content, indent=4))

    return chain(rewrite(lambda table: table.drop_columns([name])), forget)


def keep(rows: Callable[[pa.Table], np.ndarray]) -> Edit:
    return rewrite(lambda table: table.filter(pa.array(rows(table))))


def sync_meta(root: Path) -> None:
    """Rewrite meta/episodes lengths and meta/info.json totals to match the data file (a consistent edit)."""
    data = pq.read_table(_data_file(root), columns=["episode_index"]).column("episode_index").to_numpy()
    (path,) = (root / "meta" / "episodes").glob("*/*.parquet")
    episodes = pq.read_table(path)
    lengths = np.array([(data == e).sum() for e in episodes.column("episode_index").to_pylist()])
    for name, values in (("length", lengths), ("dataset_to_index", np.cumsum(lengths))):
        episodes = episodes.set_column(episodes.schema.get_field_index(name), name, pa.array(values))
    pq.write_table(episodes, path)
    info = json.loads((root / "meta" / "info.json").read_text())
    info["total_frames"] = len(data)
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))


def chain(*edits: Edit) -> Edit:
    def edit(root: Path) -> None:
        for step in edits:
            step(root)

    return edit


def unlink(relative: str) -> Edit:
    return lambda root: (root / relative).unlink()


# --- Generated cases: every RECAP field, every numeric policy column -----------------------------------
# What the base dataset without each RECAP field gets; a new field must be added here. Without
# data_type every episode is a demo, so the intervention episode's mask contradicts its (assumed) type.
MISSING = {
    "data_type": ("error", "demo episodes [2] have intervention_mask=True"),
    "reward": ("error", "no reward column"),
    "done": ("note", "no done column"),
    "intervention_mask": ("note", "no intervention_mask column"),
    "next.success": ("note", "no success column"),
}
assert set(MISSING) == set(RECAP_FEATURES), "sweep every RECAP field: give MISSING its expected outcome"


def _retyped(dtype: str) -> tuple[tuple[pa.DataType, Callable], tuple[pa.DataType, Callable]]:
    """(a legal other encoding, a wrong type) of a RECAP field of `dtype`, each with its value converter."""
    if dtype == "string":
        return (pa.int64(), DATA_TYPES.index), (pa.float32(), lambda v: float(DATA_TYPES.index(v)))
    if dtype == "bool":
        return (pa.float32(), float), (pa.string(), str)
    return (pa.float64(), float), (pa.string(), str)


def mapped(name: str, convert: Callable, kind: pa.DataType) -> Edit:
    """Column `name` with `convert` applied to each value, stored as `kind`."""
    return put(name, lambda t: [convert(v) for v in t.column(name).to_pylist()], kind)


def generated_cases() -> list:
    cases = []
    for name, spec in RECAP_FEATURES.items():
        level, match = MISSING[name]
        cases.append(pytest.param(level, match, drop(name), id=f"{level}:{name} missing"))
        (legal, to_legal), (wrong, to_wrong) = _retyped(spec["dtype"])
        legal_edit = chain(
            mapped(name, to_legal, legal), declare(name, np.dtype(legal.to_pandas_dtype()).name)
        )
        cases.append(pytest.param("ok", None, legal_edit, id=f"ok:{name} as {legal}"))
        cases.append(
            pytest.param("error", "holds", mapped(name, to_wrong, wrong), id=f"error:{name} as {wrong}")
        )
        element = pa.string() if spec["dtype"] == "string" else pa.from_numpy_dtype(np.dtype(spec["dtype"]))
        pairs = mapped(name, lambda v: [v, v], pa.list_(element))
        cases.append(pytest.param("error", "one value per frame", pairs, id=f"error:{name} shape (2,)"))
    one_frame = lambda t: frames_of(t, 2, range(3, 4))  # noqa: E731
    for name in ("observation.state", "action", "reward"):
        for value in (np.nan, np.inf, -np.inf):
            edit = (
                assign(name, one_frame, value) if name == "reward" else assign_vector(name, one_frame, value)
            )
            match = f"'{name}' has NaN or infinite values in 1 frame:"
            cases.append(pytest.param("error", match, edit, id=f"error:{name}={value}"))
    return cases


def assign_vector(name: str, rows: Callable[[pa.Table], np.ndarray], value: float) -> Edit:
    """Entry 0 of vector column `name` set to `value` on `rows(table)`."""

    def values(table: pa.Table) -> list:
        out = table.column(name).to_pylist()
        for row in np.flatnonzero(rows(table)):
            out[row] = [value, *out[row][1:]]
        return out

    return put(name, values)


# --- The faults of issue 45 and their neighbours ---------------------------------------------------------
def _frames_where(condition: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]):
    """Rows by a condition on (global index, episode, frame)."""
    return lambda t: condition(*(t.column(c).to_numpy() for c in ("index", "episode_index", "frame_index")))


def last_frames(table: pa.Table) -> np.ndarray:
    episode = table.column("episode_index").to_numpy()
    return np.r_[episode[1:] != episode[:-1], True]


def _off_convention(table: pa.Table) -> list[float]:
    """The issue's rewards: -5.0 on every 7th frame."""
    reward = table.column("reward").to_numpy().copy()
    reward[table.column("index").to_numpy() % 7 == 6] = -5.0
    return reward.tolist()


one_frame_episode = chain(
    keep(lambda t: ~frames_of(t, 3, range(1, LENGTH))),
    assign("done", lambda t: frames_of(t, 3), True),
    assign("next.success", lambda t: frames_of(t, 3), True),
    assign("reward", lambda t: frames_of(t, 3), 0.0),
    sync_meta,
)
FAULTS = [
    ("ok", None, chain(), "the base dataset"),
    (
        "error",
        "unknown data_type values ['teleop']",
        assign("data_type", lambda t: frames_of(t, 1), "teleop"),
        "teleop",
    ),
    (
        "error",
        "reward is NaN at global indices [1, 2, 3, 4, 5]",
        assign("reward", _frames_where(lambda i, e, f: (i >= 1) & (i <= 5)), np.nan),
        "NaN reward on 5 frames",
    ),
    (
        "error",
        "1 missing (null) values",
        assign("reward", lambda t: frames_of(t, 1, range(2, 3)), None),
        "null reward",
    ),
    (
        "error",
        "'action' has NaN or infinite values in 1 frame: action is +inf at global indices [29]",
        assign_vector("action", lambda t: frames_of(t, 3, range(5, 6)), np.inf),
        "inf in one frame's action",
    ),
    (
        "error",
        "demo episodes [0] have intervention_mask=True on 3 frames",
        assign("intervention_mask", lambda t: frames_of(t, 0, range(2, 5)), True),
        "intervention mask on a demo episode",
    ),
    (
        "warning",
        "auto episodes [1] have intervention_mask=True",
        assign("intervention_mask", lambda t: frames_of(t, 1, range(2, 5)), True),
        "intervention mask on an auto episode",
    ),
    (
        "warning",
        "intervention episodes [2] have no frame with intervention_mask=True",
        assign("intervention_mask", lambda t: frames_of(t, 2), False),
        "intervention episode without a masked frame",
    ),
    (
        "error",
        "data_type changes inside episodes [1] (episode 1: auto, then demo from frame 4)",
        assign("data_type", lambda t: frames_of(t, 1, range(4, LENGTH)), "demo"),
        "data_type changing halfway through an episode",
    ),
    ("warning", "done is never True", assign("done", last_frames, False), "done False on every frame"),
    (
        "warning",
        "episodes [0] lack done=True on their last frame",
        assign("done", lambda t: frames_of(t, 0, range(LENGTH - 1, LENGTH)), False),
        "no done on one episode's last frame",
    ),
    (
        "error",
        "done=True before the last frame of episodes [2]",
        assign("done", lambda t: frames_of(t, 2, range(3, 4)), True),
        "done before the last frame",
    ),
    ("note", "no episode succeeded", assign("next.success", last_frames, False), "no successful episode"),
    (
        "warning",
        "episodes [0] set the success flag before their last frame",
        assign("next.success", lambda t: frames_of(t, 0, range(5, LENGTH)), True),
        "success flags before the last frame",
    ),
    (
        "ok",
        None,
        put("next.success", lambda t: [SUCCESSES[e] for e in t.column("episode_index").to_pylist()]),
        "success flag on every frame of successful episodes",
    ),
    (
        "note",
        "rewards vary within 4 episodes before their last frame (episode 0: -5, -1)",
        put("reward", _off_convention),
        "rewards off the convention (-5.0 on every 7th frame)",
    ),
    (
        "ok",
        None,
        put("reward", lambda t: [float(s) for s in t.column("next.success").to_pylist()]),
        "sparse reward: 1.0 on the success frame, else 0",
    ),
    (
        "ok",
        None,
        add("truncated", lambda t: (last_frames(t) & frames_of(t, 1)).tolist(), "bool"),
        "an explicit truncated flag on the failed episode",
    ),
    (
        "error",
        "duplicate frame indices",
        assign("index", _frames_where(lambda i, e, f: i == 5), 4),
        "duplicate index",
    ),
    (
        "error",
        "the frames of episodes [0, 1] are not contiguous",
        assign("episode_index", _frames_where(lambda i, e, f: i == 6), 1),
        "an episode's frames interleaved with another's",
    ),
    (
        "error",
        "episodes [3] are listed in meta/episodes but have no frames in data/",
        keep(lambda t: ~frames_of(t, 3)),
        "an empty episode",
    ),
    (
        "error",
        "episodes [3] have other lengths in data/ than in meta/episodes (episode 3: 6 frames, listed 8)",
        chain(
            keep(lambda t: ~frames_of(t, 3, range(6, LENGTH))),
            assign("done", lambda t: frames_of(t, 3, [5]), True),
        ),
        "frames removed without updating meta/",
    ),
    ("note", "1 episodes of one frame ([3])", one_frame_episode, "an episode of one frame"),
    ("error", "the dataset has no frames", keep(lambda t: np.zeros(t.num_rows, bool)), "no frames at all"),
    (
        "error",
        "task_index [5] of 8 frames are not in meta/tasks.parquet",
        assign("task_index", lambda t: frames_of(t, 2), 5),
        "a task missing from meta/tasks.parquet",
    ),
    ("error", "no meta/tasks.parquet", unlink("meta/tasks.parquet"), "no tasks file"),
    ("error", "no 'action' column", drop("action"), "no action column"),
    (
        "error",
        "meta/info.json declares ['done'] but the data files have no such columns",
        rewrite(lambda t: t.drop_columns(["done"])),
        "a declared column missing from the data",
    ),
    (
        "error",
        "the data files have columns ['success'] that meta/info.json does not declare",
        put("success", lambda t: t.column("next.success").to_pylist(), pa.bool_()),
        "an undeclared column in the data",
    ),
    (
        "error",
        "'action' has 2 values instead of 3 in 32 frames",
        put("action", lambda t: [a[:2] for a in t.column("action").to_pylist()], pa.list_(pa.float32(), 2)),
        "actions narrower than meta/info.json declares",
    ),
    (
        "error",
        "'advantage' has NaN or infinite values",
        add("advantage", _frames_where(lambda i, e, f: np.where(i == 3, np.nan, 0.0)), "float32"),
        "a NaN advantage label",
    ),
]
CASES = generated_cases() + [
    pytest.param(level, match, edit, id=f"{level}:{name}") for level, match, edit, name in FAULTS
]


def _edited(base: Path, tmp_path: Path, edit: Edit) -> Path:
    root = tmp_path / "data"
    shutil.copytree(base, root)
    edit(root)
    return root


@pytest.mark.parametrize(("level", "match", "edit"), CASES)
def test_dataset_content_gets_its_outcome(level, match, edit, base, tmp_path):
    """The worst finding is `level` and one finding of that level says `match`."""
    report = check_dataset(_edited(base, tmp_path, edit))
    worst = next((found for found in LEVELS if report.of(found)), "ok")
    assert worst == level, report.format()
    if match is not None:
        assert any(match in problem.message for problem in report.of(level)), report.format()


# --- The real command on a representative few -------------------------------------------------------------
COMMAND_CASES = [
    "ok:the base dataset",
    "error:inf in one frame's action",
    "error:intervention mask on a demo episode",
    "warning:done False on every frame",
    "note:rewards off the convention (-5.0 on every 7th frame)",
]


@pytest.mark.parametrize(
    ("level", "match", "edit"),
    [pytest.param(*case.values, id=f"check:{case.id}") for case in CASES if case.id in COMMAND_CASES],
)
def test_check_command_prints_the_summary_and_the_findings(level, match, edit, base, tmp_path, capsys):
    root = _edited(base, tmp_path, edit)
    capsys.readouterr()
    status = run_cli("check", "--input", root)
    out, err = capsys.readouterr()
    assert status == (2 if level == "error" else 0), out + err
    assert "type           episodes  successes" in out and "episode ends:" in out
    if level == "ok":
        assert "No problems found." in out and not err
        return
    assert any(line.startswith(f"{level}: ") and match in line for line in out.splitlines()), out
    if level == "error":
        assert err.strip().splitlines() == [
            f"pi-star-recap check: error: 1 error in {root}: training would refuse this dataset; fix them and "
            "check again."
        ]
    else:
        assert not err


if __name__ == "__main__":
    from test_bad_input_sweep import _Counter

    counter = _Counter()
    code = pytest.main([__file__, "-q", "-p", "no:cacheprovider", *sys.argv[1:]], plugins=[counter])
    print(f"\n{'outcome':<12}{'tried':>7}{'passed':>8}")
    for group, (tried, passed) in sorted(counter.counts.items()):
        print(f"{group:<12}{tried:>7}{passed:>8}")
    total = [sum(c[i] for c in counter.counts.values()) for i in (0, 1)]
    print(f"{'all':<12}{total[0]:>7}{total[1]:>8}")
    sys.exit(code)
