"""`pi-star-recap annotate`: hand-computed RECAP fields, an untouched source, atomic output, clear errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import annotate, make_source, read_frames, run_cli, tree_hashes

from lerobot_policy_pi_star_recap.data.recap_table import RecapTable

BOOL = {"dtype": "bool", "shape": (1,), "names": None}
FLOAT = {"dtype": "float32", "shape": (1,), "names": None}
LENGTHS = [3, 4, 2]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Three episodes (3, 4, 2 frames) with intervention flags and a sparse HIL-SERL-style reward."""
    extra = {
        "intervention": (BOOL, [[0, 0, 0], [0, 0, 1, 1], [1, 0]]),
        "next.reward": (FLOAT, [[0, 0, 1], [0, 0, 0, 0], [0, 1]]),
    }
    return make_source(tmp_path_factory.mktemp("annotate") / "source", LENGTHS, extra)


@pytest.fixture(scope="module")
def plain_source(tmp_path_factory):
    """The same episodes without any flag, reward or success column."""
    return make_source(tmp_path_factory.mktemp("annotate") / "plain", LENGTHS)


def test_mapping_and_success_list_give_the_hand_computed_fields(plain_source, tmp_path, capsys):
    dst = tmp_path / "labelled"
    df = annotate(plain_source, dst, "--types", "0=demo,1=auto,2=intervention", "--success-episodes", "0,2")
    assert df["data_type"].tolist() == ["demo"] * 3 + ["auto"] * 4 + ["intervention"] * 2
    # -1 per step; last frame 0 on success, -C_fail on failure; C_fail = longest episode = 4.
    assert df["reward"].tolist() == [-1, -1, 0, -1, -1, -1, -4, -1, 0]
    assert df["done"].tolist() == [False, False, True, False, False, False, True, False, True]
    # No flag column: an episode typed intervention counts as expert-controlled throughout.
    assert df["intervention_mask"].tolist() == [False] * 7 + [True] * 2
    assert df["next.success"].tolist() == [False, False, True, False, False, False, False, False, True]
    # The rest of the data is copied unchanged.
    source = read_frames(plain_source)
    np.testing.assert_array_equal(np.stack(df["observation.state"]), np.stack(source["observation.state"]))

    # Stats of the new columns exist, so LeRobot normalisation and the policy's reader work.
    stats = json.loads((dst / "meta" / "stats.json").read_text())
    assert stats["reward"]["min"] == [-4.0] and stats["reward"]["max"] == [0.0]
    assert stats["done"]["mean"] == pytest.approx([3 / 9])
    table = RecapTable.from_dataset_root(dst, chunk_size=2, discount=1.0, n_step=2)
    assert table.summary()["frames_intervention"] == 2
    assert table.mc_return[:3].tolist() == [-2, -1, 0]
    out = capsys.readouterr().out
    assert "intervention" in out and "66.7%" in out  # 2 of 3 episodes succeeded


def test_flags_become_types_and_mask_and_a_last_frame_rule_gives_success(source, tmp_path):
    args = ["--types-from-intervention", "--success-rule", "next.reward>=1", "--c-fail", "10"]
    df = annotate(source, tmp_path / "labelled", *args)
    assert df["data_type"].tolist() == ["auto"] * 3 + ["intervention"] * 6
    assert df["intervention_mask"].tolist() == [False, False, False, False, False, True, True, True, False]
    assert df["reward"].tolist() == [-1, -1, 0, -1, -1, -1, -10, -1, 0]
    assert df["next.success"].tolist() == [False, False, True, False, False, False, False, False, True]


def test_lerobot_intervention_flags_become_the_mask_and_the_raw_column_is_dropped(plain_source, tmp_path):
    """LeRobot's DAgger / HIL recordings (lerobot-rollout --strategy.type=dagger) carry a raw per-frame
    `intervention` column. annotate turns it into intervention_mask and drops it: the output has the
    features of any other annotated dataset (demos recorded without takeovers), so the two merge."""
    flags = [[0, 0, 0], [0, 0, 1, 1], [1, 0]]
    dagger = make_source(tmp_path / "rollout_dagger", LENGTHS, {"intervention": (BOOL, flags)})
    rollouts = annotate(dagger, tmp_path / "rollouts", "--types-from-intervention", "--all-success")
    assert "intervention" not in rollouts.columns
    assert rollouts["intervention_mask"].tolist() == [bool(f) for episode in flags for f in episode]
    assert "intervention" not in json.loads((tmp_path / "rollouts/meta/info.json").read_text())["features"]
    assert "intervention" not in json.loads((tmp_path / "rollouts/meta/stats.json").read_text())

    annotate(plain_source, tmp_path / "demos", "--type", "demo", "--all-success")
    out = tmp_path / "mixed"
    assert run_cli("merge", "--inputs", tmp_path / "demos", tmp_path / "rollouts", "--output", out) == 0
    mixed = read_frames(out)
    assert "intervention" not in mixed.columns
    assert mixed["intervention_mask"].tolist() == [False] * 9 + rollouts["intervention_mask"].tolist()


def test_types_file_and_success_file(plain_source, tmp_path):
    types = tmp_path / "types.txt"
    types.write_text("# episode type\n0 auto\n1-2 = demo\n")
    successes = tmp_path / "successes.json"
    successes.write_text("[1]")
    df = annotate(
        plain_source, tmp_path / "labelled", "--types-file", types, "--success-episodes-file", successes
    )
    assert df["data_type"].tolist() == ["auto"] * 3 + ["demo"] * 6
    assert df["reward"].tolist() == [-1, -1, -4, -1, -1, -1, 0, -1, -4]


def test_existing_recap_columns_are_replaced(tmp_path, plain_source):
    first = tmp_path / "first"
    annotate(plain_source, first, "--all-success")
    second = tmp_path / "second"
    df = annotate(first, second, "--type", "auto", "--success-episodes", "1")
    assert df["data_type"].tolist() == ["auto"] * 9
    assert df["reward"].tolist() == [-1, -1, -4, -1, -1, -1, 0, -1, -4]
    # With no outcome option the outcome comes from next.success, which the last run wrote.
    df = annotate(second, tmp_path / "third", "--type", "demo", "--c-fail", "7")
    assert df["reward"].tolist() == [-1, -1, -7, -1, -1, -1, 0, -1, -7]


def test_annotate_and_training_read_the_same_success_column(tmp_path):
    """With both `success` and `next.success` present and disagreeing, annotate and the policy's reader
    must pick the same one (they once had the aliases in opposite orders)."""
    extra = {
        "success": (BOOL, [[0, 0, 1], [0, 0, 0, 0], [0, 0]]),  # says episode 0 succeeded
        "next.success": (BOOL, [[0, 0, 0], [0, 0, 0, 1], [0, 0]]),  # says episode 1 succeeded
    }
    src = make_source(tmp_path / "both", LENGTHS, extra)
    read = RecapTable.from_dataset_root(src, chunk_size=2, discount=1.0, n_step=2, need_rewards=False)
    df = annotate(src, tmp_path / "labelled", "--type", "demo")
    annotated = df.groupby("episode_index")["next.success"].any().tolist()
    assert annotated == [False, True, False]
    assert [bool(read.success[read.episode_index == e][0]) for e in range(3)] == annotated
    # The annotated copy keeps the source's stale `success`; training must read annotate's column.
    table = RecapTable.from_dataset_root(tmp_path / "labelled", chunk_size=2, discount=1.0, n_step=2)
    assert [bool(table.success[table.episode_index == e][0]) for e in range(3)] == annotated


def _tampered(root, tmp_path, column, row, value):
    copy = tmp_path / "tampered"
    shutil.copytree(root, copy)
    path = sorted((copy / "data").glob("*/*.parquet"))[0]
    table = pq.read_table(path)
    values = table.column(column).to_pylist()
    values[row] = value
    index = table.schema.get_field_index(column)
    table = table.set_column(
        index, table.schema.field(index), pa.array(values, type=table.schema.field(index).type)
    )
    pq.write_table(table, path)
    return copy


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--types", "0-3=demo", "--all-success"], "episodes [3] that the dataset does not have"),
        (["--types", "0-2=expert", "--all-success"], "unknown type 'expert'"),
        (["--types", "0-1=demo", "--all-success"], "no type for episodes [2]"),
        (["--type", "demo", "--success-episodes", "0,7"], "episodes [7] that the dataset does not have"),
        (["--type", "demo"], "no success column"),
        (["--types-from-intervention", "--all-success"], "needs an intervention flag column"),
        (["--type", "demo", "--success-rule", "reward is high"], "expected COLUMN[INDEX] OP NUMBER"),
        (["--type", "demo", "--success-column", "next.success"], "'next.success' is not a feature"),
    ],
)
def test_bad_labels_are_rejected(plain_source, tmp_path, capsys, args, message):
    dst = tmp_path / "labelled"
    assert run_cli("annotate", "--input", plain_source, "--output", dst, *args) == 2
    assert message in capsys.readouterr().err
    assert not dst.exists()


@pytest.mark.parametrize(
    ("column", "row", "value", "message"),
    [
        ("observation.state", 4, [1.0, float("nan"), 2.0], "'observation.state' has NaN or infinite values"),
        ("next.reward", 2, float("inf"), "'next.reward' has NaN or infinite values"),
        ("timestamp", 5, 0.05, "episode 1: timestamps are not increasing at frame 2"),
        ("timestamp", 6, float("nan"), "'timestamp' has NaN or infinite values"),
    ],
)
def test_bad_data_is_rejected(source, tmp_path, capsys, column, row, value, message):
    bad = _tampered(source, tmp_path, column, row, value)
    dst = tmp_path / "labelled"
    assert run_cli("annotate", "--input", bad, "--output", dst, "--type", "demo", "--all-success") == 2
    assert message in capsys.readouterr().err
    assert not dst.exists()


def test_existing_target_needs_overwrite_and_the_source_is_never_a_target(plain_source, tmp_path, capsys):
    dst = tmp_path / "labelled"
    dst.mkdir()
    (dst / "keep.txt").write_text("user data")
    assert run_cli("annotate", "--input", plain_source, "--output", dst, "--all-success") == 2
    assert "already exists" in capsys.readouterr().err
    assert (dst / "keep.txt").read_text() == "user data"

    assert run_cli("annotate", "--input", plain_source, "--output", dst, "--all-success", "--overwrite") == 0
    assert not (dst / "keep.txt").exists() and (dst / "meta" / "info.json").is_file()

    before = tree_hashes(plain_source)
    for target in (plain_source, plain_source / "inside"):
        assert (
            run_cli("annotate", "--input", plain_source, "--output", target, "--all-success", "--overwrite")
            == 2
        )
        assert "overlaps the input" in capsys.readouterr().err
    assert tree_hashes(plain_source) == before


def test_a_crash_leaves_no_output(plain_source, tmp_path, monkeypatch):
    import lerobot.datasets.dataset_tools as tools

    def crash(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(tools, "recompute_stats", crash)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RuntimeError, match="disk full"):
        run_cli("annotate", "--input", plain_source, "--output", out / "labelled", "--all-success")
    assert list(out.iterdir()) == [], "a half-written dataset or temp folder was left behind"


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ("annotate", ["--types-from-intervention", "--success-rule", "--c-fail", "(default: -1.0)"]),
        ("collect", ["--mode", "--trigger", "--handback-steps", "--layout", "(default: 200)"]),
        ("merge", ["--inputs", "--output", "--overwrite"]),
    ],
)
def test_data_commands_explain_their_flags(command, flags, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(command, "--help")
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert all(flag in text for flag in flags)
