"""Real-robot paths, with recorded datasets and no hardware: a `lerobot-rollout --strategy.type=dagger`
dataset (bool `intervention`, videos) and a HIL-SERL dataset (`next.reward`, `next.done`,
`complementary_info.is_intervention`) become RECAP training sets with `pi-star-recap annotate`."""

from __future__ import annotations

import pytest
from conftest import TINY_POLICY, annotate, make_source, read_frames, run_tool

from lerobot_policy_pi_star_recap.data.recap_table import RecapTable

BOOL = {"dtype": "bool", "shape": (1,), "names": None}
FLOAT = {"dtype": "float32", "shape": (1,), "names": None}


@pytest.fixture(scope="module")
def dagger_recording(tmp_path_factory):
    """As lerobot-rollout's DAgger strategy records it: videos, and `intervention` True on the frames the
    human drove. Episode 0 is fully autonomous, episode 1 has a correction, episode 2 comes from the
    corrections-only mode (every frame human)."""
    flags = [[0] * 5, [0, 0, 1, 1, 1, 0], [1] * 4]
    root = tmp_path_factory.mktemp("real") / "rollout_towel"
    return make_source(root, [5, 6, 4], {"intervention": (BOOL, flags)}, video=True, fps=30)


@pytest.fixture(scope="module")
def dagger_recap(dagger_recording, tmp_path_factory):
    out = tmp_path_factory.mktemp("real") / "towel_recap"
    annotate(dagger_recording, out, "--types-from-intervention", "--success-episodes", "1,2")
    return out


def test_dagger_recording_becomes_a_recap_dataset(dagger_recording, dagger_recap):
    df = read_frames(dagger_recap)
    assert df["data_type"].tolist() == ["auto"] * 5 + ["intervention"] * 10
    # LeRobot's raw flags become the mask and are not copied (demos recorded without takeovers lack them)
    assert df["intervention_mask"].tolist() == read_frames(dagger_recording)["intervention"].tolist()
    assert "intervention" not in df.columns
    # C_fail = longest episode (6); episodes 1 and 2 succeeded.
    assert df["reward"].tolist() == [-1, -1, -1, -1, -6] + [-1] * 5 + [0] + [-1] * 3 + [0]
    assert (
        df.groupby("episode_index")["done"].apply(lambda d: d.tolist()[-1] and not any(d.tolist()[:-1])).all()
    )
    assert (dagger_recap / "videos").is_dir(), "videos are copied, not dropped"
    table = RecapTable.from_dataset_root(dagger_recap, chunk_size=2, discount=1.0, n_step=2)
    assert table.summary()["frames_intervention"] == 10 and table.intervention.sum() == 7


def test_hil_serl_recording_becomes_a_recap_dataset(tmp_path):
    extra = {
        "next.reward": (FLOAT, [[0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0]]),
        "next.done": (BOOL, [[0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 1]]),
        "complementary_info.is_intervention": (FLOAT, [[0, 0, 0], [0, 0, 1, 1, 1], [0, 0, 0, 0]]),
        "complementary_info.discrete_penalty": (FLOAT, [[0] * 3, [0] * 5, [0] * 4]),
    }
    source = make_source(tmp_path / "hil_serl", [3, 5, 4], extra)
    args = ["--types-from-intervention", "--success-rule", "next.reward>=1", "--c-fail", "20"]
    df = annotate(source, tmp_path / "hil_serl_recap", *args)
    assert df["data_type"].tolist() == ["auto"] * 3 + ["intervention"] * 5 + ["auto"] * 4
    flags = read_frames(source)["complementary_info.is_intervention"]
    assert df["intervention_mask"].tolist() == (flags > 0.5).tolist()
    assert "complementary_info.is_intervention" not in df.columns
    assert "complementary_info.discrete_penalty" in df.columns  # other columns are copied
    assert df["reward"].tolist() == [-1, -1, 0] + [-1] * 4 + [0] + [-1, -1, -1, -20]
    assert df["next.success"].tolist() == [False, False, True] + [False] * 4 + [True] + [False] * 4


@pytest.mark.slow
def test_annotated_dagger_recording_trains(dagger_recap, tmp_path):
    run_tool(
        "lerobot-train", "--dataset.repo_id=local/towel_recap", f"--dataset.root={dagger_recap}",
        f"--output_dir={tmp_path / 'run'}", "--steps=2", "--batch_size=4", "--save_freq=2", *TINY_POLICY,
        cwd=tmp_path,
    )  # fmt: skip
    assert (tmp_path / "run" / "checkpoints" / "last" / "pretrained_model" / "model.safetensors").is_file()
