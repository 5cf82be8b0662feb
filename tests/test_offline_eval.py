"""Offline evaluation: numbers against a hand computation, and the CLI's JSON and PNG outputs."""

import json

import numpy as np
import pytest
from conftest import cli_output, run_tool
from PIL import Image
from synthetic import TINY_CLI, make_dataset

from lerobot_policy_pi_star_recap.evaluation.metrics import roc_auc, summarize
from lerobot_policy_pi_star_recap.evaluation.predictions import EpisodePredictions


def _episode(i, values, rewards, success, data_type, q=None, mse=None):
    n = len(values)
    return EpisodePredictions(
        episode_index=i,
        index=np.arange(n) + 10 * i,
        data_type=np.full(n, data_type),
        intervention=np.zeros(n),
        task_index=np.zeros(n, dtype=int),
        reward=np.array(rewards, dtype=float),
        success=success,
        terminal=True,
        value=np.array(values, dtype=float),
        q=None if q is None else np.array(q, dtype=float),
        action_mse=None if mse is None else np.array(mse, dtype=float),
    )


def test_summary_matches_hand_computation():
    episodes = [
        _episode(0, [-2.0, -1.0, 0.0], [-1, -1, 0], 1.0, 0, q=[-1.5, -1.0, 0.5], mse=[0.1, 0.2, 0.3]),
        _episode(1, [-4.0, -3.0], [-1, -3], 0.0, 1, q=[-4.0, -2.0], mse=[1.0, 1.0]),
    ]
    report = summarize(episodes, estimator="iql", discount=1.0, n_step=None)
    # undiscounted returns: [-2, -1, 0] and [-4, -3]: the values are exact
    assert report["value"]["mean_abs_error"] == pytest.approx(0.0)
    assert report["value"]["pearson_vs_return"] == pytest.approx(1.0)
    demo, auto = report["per_data_type"]["demo"], report["per_data_type"]["auto"]
    assert demo["action_mse"] == pytest.approx(0.2) and auto["action_mse"] == pytest.approx(1.0)
    # advantage = Q - V: demo [0.5, 0, 0.5], auto [0, 1]
    assert demo["advantage_mean"] == pytest.approx(1 / 3) and auto["advantage_mean"] == pytest.approx(0.5)
    assert demo["advantage_positive_fraction"] == pytest.approx(2 / 3)
    separation = report["success_separation"]
    assert separation["start_value_success"] == -2.0 and separation["start_value_failure"] == -4.0
    assert separation["auc_episode_mean_value"] == 1.0
    assert report["success_rate"] == 0.5


def test_roc_auc_with_ties():
    assert roc_auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert roc_auc(np.array([1.0, 1.0]), np.array([0, 1])) == pytest.approx(0.5)


def test_a_checkpoint_of_another_policy_type_is_a_checkpoint_error(monkeypatch):
    """Library code raises a project error (printed by the command layer), never SystemExit."""
    from types import SimpleNamespace

    from lerobot_policy_pi_star_recap.evaluation import policy_loading

    other = SimpleNamespace(config=SimpleNamespace(type="act"))
    monkeypatch.setattr(policy_loading, "load_policy", lambda path, device=None: (other, None, None))
    with pytest.raises(policy_loading.CheckpointError, match="holds a 'act' policy; this command needs"):
        policy_loading.load_recap_policy("outputs/act/pretrained_model")


@pytest.mark.slow
def test_eval_cli_writes_json_and_plots(tmp_path, capsys):
    root = make_dataset(
        tmp_path / "data",
        ["demo", "auto", "intervention", "auto"],
        length=8,
        successes=[True, False, True, False],
    )
    out = tmp_path / "run"
    run_tool(
        "lerobot-train",
        "--policy.type=pi_star_recap",
        "--dataset.repo_id=local/data",
        f"--dataset.root={root}",
        f"--output_dir={out}",
        "--steps=2",
        "--batch_size=4",
        *TINY_CLI,
        cwd=tmp_path,
    )
    report_dir = tmp_path / "offline"
    printed, _ = cli_output(
        capsys,
        "eval",
        f"--policy.path={out}/checkpoints/last/pretrained_model",
        "--dataset.repo_id=local/data",
        f"--dataset.root={root}",
        "--eval.n_episodes=3",
        f"--output_dir={report_dir}",  # lerobot's spelling, a hidden alias of --output
    )
    assert "pearson" in printed and "intervention" in printed
    report = json.loads((report_dir / "offline_eval.json").read_text())
    assert report["episodes"] == 3 and report["episode_indices"] == [0, 2, 3]
    for key in ("value", "q", "per_data_type", "success_separation", "action_mse"):
        assert key in report, key
    for name in ("value_along_episodes", "advantage_by_type", "value_calibration"):
        with Image.open(report["plots"][name]) as image:
            assert image.format == "PNG" and image.size[0] > 100
