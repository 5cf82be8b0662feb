"""`pi-star-recap merge`: collection iterations -> one training dataset, with clear errors for mismatches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import collect_args, make_source, read_frames, run_cli, tree_hashes
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from lerobot_policy_pi_star_recap.data.recap_table import RecapTable

BOOL = {"dtype": "bool", "shape": (1,), "names": None}


@pytest.fixture(scope="module")
def rollouts(tmp_path_factory):
    """2 degraded-expert episodes of drawer-open-v3, recorded like `collected_demo` (32 px, full state)."""
    out = tmp_path_factory.mktemp("merge") / "drawer_auto"
    assert run_cli(*collect_args(out, "auto", "drawer-open-v3", 2, "--episode-length=40")) == 0
    return out


def test_merge_keeps_every_episode_and_its_recap_fields(collected_demo, rollouts, tmp_path, capsys):
    before = {root: tree_hashes(root) for root in (collected_demo, rollouts)}
    out = tmp_path / "iteration_1"
    assert run_cli("merge", "--inputs", collected_demo, rollouts, "--output", out) == 0

    merged = LeRobotDataset("local/iteration_1", root=out)
    demo, auto = LeRobotDataset("a", root=collected_demo), LeRobotDataset("b", root=rollouts)
    assert merged.meta.total_episodes == demo.meta.total_episodes + auto.meta.total_episodes == 5
    assert merged.meta.total_frames == demo.meta.total_frames + auto.meta.total_frames
    assert set(merged.meta.tasks.index) == {"Push the puck to a goal", "Open a drawer"}
    assert merged[len(merged) - 1]["task"] == "Open a drawer"

    rows = read_frames(out)
    for column in ("data_type", "reward", "done", "intervention_mask", "next.success"):
        expected = pd.concat([read_frames(collected_demo)[column], read_frames(rollouts)[column]]).tolist()
        assert rows[column].tolist() == expected, column
    assert rows["index"].tolist() == list(range(len(rows)))
    assert rows.groupby("episode_index")["data_type"].first().tolist() == ["demo"] * 3 + ["auto"] * 2

    counts = RecapTable.from_dataset_root(out, chunk_size=4, discount=0.99, n_step=4).summary()
    assert counts["episodes"] == 5 and counts["frames_demo"] == demo.meta.total_frames
    assert merged.meta.stats["reward"]["min"][0] == min(rows["reward"])
    assert "demo                  3" in capsys.readouterr().out
    assert {root: tree_hashes(root) for root in (collected_demo, rollouts)} == before


def test_raw_intervention_flags_next_to_the_mask_are_dropped(tmp_path, capsys):
    """A dataset annotated before annotate dropped LeRobot's raw `intervention` column still carries it next
    to intervention_mask, which holds the same flags: merge drops it, so such a dataset merges with one
    that never had it. An input without intervention_mask keeps its flags (annotate still needs them)."""
    import json

    from lerobot.datasets.dataset_tools import modify_features

    flags = [[0, 0, 1], [1, 1]]
    plain = make_source(tmp_path / "plain", [3, 2])
    assert run_cli("annotate", "--input", plain, "--output", tmp_path / "demos", "--all-success") == 0
    flagged = make_source(tmp_path / "flagged", [3, 2], {"takeover": (BOOL, flags)})
    labelled = tmp_path / "labelled"
    args = ["--intervention-column", "takeover", "--types-from-intervention", "--all-success"]
    assert run_cli("annotate", "--input", flagged, "--output", labelled, *args) == 0
    rollouts = tmp_path / "rollouts"
    old = modify_features(  # what annotate wrote before: LeRobot's flags kept next to the mask
        LeRobotDataset("local/labelled", root=labelled),
        add_features={"intervention": (np.array([f for e in flags for f in e], bool), BOOL)},
        output_dir=rollouts,
        repo_id="local/rollouts",
    )
    assert {"intervention", "intervention_mask"} <= set(old.meta.features)

    out = tmp_path / "mixed"
    assert run_cli("merge", "--inputs", tmp_path / "demos", rollouts, "--output", out) == 0
    assert "intervention" not in json.loads((out / "meta" / "info.json").read_text())["features"]
    assert "intervention" not in json.loads((out / "meta" / "stats.json").read_text())
    mixed = read_frames(out)
    assert "intervention" not in mixed.columns
    assert mixed["intervention_mask"].tolist() == [False] * 5 + [bool(f) for e in flags for f in e]
    assert "intervention" in read_frames(rollouts).columns  # inputs are only read

    unlabelled = make_source(tmp_path / "unlabelled", [3, 2], {"intervention": (BOOL, flags)})
    assert run_cli("merge", "--inputs", unlabelled, plain, "--output", out, "--overwrite") == 2
    assert "annotate each input first" in capsys.readouterr().err


def test_mismatched_inputs_are_rejected(collected_demo, rollouts, tmp_path, capsys):
    small = tmp_path / "small_images"
    assert run_cli(*collect_args(small, "demo", "push-v3", 1, "--episode-length=5", "--image-size=16")) == 0
    unlabelled, labelled = make_source(tmp_path / "unlabelled", [2]), tmp_path / "labelled"
    assert run_cli("annotate", "--input", unlabelled, "--output", labelled, "--all-success") == 0
    cases = [
        ([collected_demo, small], "feature 'observation.images.corner2' differs"),
        ([labelled, unlabelled], "Label both with the RECAP fields first"),
        ([collected_demo, labelled], "has fps=10 but"),
        ([collected_demo, collected_demo], "lists a dataset twice"),
        ([collected_demo, tmp_path / "missing"], "does not exist"),
    ]
    for inputs, message in cases:
        out = tmp_path / "merged"
        assert run_cli("merge", "--inputs", *inputs, "--output", out) == 2
        assert message in capsys.readouterr().err
        assert not out.exists()

    out = tmp_path / "taken"
    out.mkdir()
    assert run_cli("merge", "--inputs", collected_demo, rollouts, "--output", out) == 2
    assert "already exists" in capsys.readouterr().err
