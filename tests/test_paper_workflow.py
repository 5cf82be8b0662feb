"""The paper-faithful mode: distributional value + indicator, jointly and as staged CLIs."""

import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import cli_output, run_tool
from synthetic import TINY_CLI, attach_table, episode_columns, make_batch, make_dataset, tiny_config

from lerobot_policy_pi_star_recap import PiStarRECAPPolicy
from lerobot_policy_pi_star_recap.commands.value import _call_all, fold_training_episodes
from lerobot_policy_pi_star_recap.errors import RecapDataError
from lerobot_policy_pi_star_recap.evaluation.policy_loading import load_recap_policy
from lerobot_policy_pi_star_recap.evaluation.predictions import label_indicators, predict_episodes
from lerobot_policy_pi_star_recap.rl.advantage import episode_advantage


def test_joint_paper_mode_trains_value_and_conditions_on_the_indicator():
    torch.manual_seed(0)
    config = tiny_config(
        advantage_estimator="mc_distributional", advantage_n_step=3, critic={"value_num_bins": 21}, v_lr=3e-3
    )
    policy = PiStarRECAPPolicy(config)
    attach_table(
        policy,
        episode_columns(
            ["demo", "auto", "intervention", "auto"], length=10, successes=[True, False, True, False]
        ),
    )
    policy.train()
    optimizer = torch.optim.AdamW(policy.get_optim_params())
    batch = make_batch(config, index=[0, 3, 12, 17, 24, 27, 33, 38])
    history = []
    for _ in range(40):  # v_loss is ~0.40x its first value by step 40 (and ~0.39x at step 80)
        loss, metrics = policy(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        policy.update()
        history.append(metrics["v_loss"])
        assert 0.0 <= metrics["positive_fraction"] <= 1.0
    assert history[-1] < 0.5 * history[0]
    assert "q_loss" not in metrics  # the paper has no Q function


def test_episode_advantage_hand_computed():
    values = np.array([-0.9, -0.5, -0.4, -0.2])
    rewards = np.array([-0.1, -0.1, -0.1, 0.0])
    # N=2: t=0: -0.2 + V2 - V0 = -0.2 - 0.4 + 0.9 = 0.3; t=1: -0.2 + V3 - V1 = 0.1;
    # t=2, 3: no bootstrap past the end: G_t - V_t = -0.1 + 0.4 = 0.3, 0 + 0.2 = 0.2
    np.testing.assert_allclose(episode_advantage(values, rewards, 2), [0.3, 0.1, 0.3, 0.2])
    np.testing.assert_allclose(episode_advantage(values, rewards, None), [0.6, 0.3, 0.3, 0.2])


def test_episode_advantage_truncated_and_cut_at_takeover():
    values = np.array([-0.9, -0.5, -0.4, -0.2])
    rewards = np.array([-0.1, -0.1, -0.1, -1.0])  # a time-out: the last reward is the failure penalty
    # truncated: windows stop at the last frame and bootstrap V(o_3) = -0.2 instead of counting -1.0
    # N=2: t=0: -0.2 + V2 - V0 = 0.3; t=1: -0.2 + V3 - V1 = 0.1; t=2: -0.1 + V3 - V2 = 0.1; t=3: 0
    np.testing.assert_allclose(episode_advantage(values, rewards, 2, terminal=False), [0.3, 0.1, 0.1, 0.0])
    # the same as a terminal failure: t=2: -1.1 + 0.4 = -0.7; t=3: -1.0 + 0.2 = -0.8
    np.testing.assert_allclose(episode_advantage(values, rewards, 2, terminal=True), [0.3, 0.1, -0.7, -0.8])
    # the expert takes over at frame 1: frame 0's window stops there (-0.1 + V1 - V0 = 0.3)
    controller = np.array([0, 1, 1, 1])
    advantage = episode_advantage(values, rewards, 2, terminal=False, controller=controller)
    np.testing.assert_allclose(advantage, [0.3, 0.1, 0.1, 0.0])
    rewards = np.array([-0.1, -0.1, -0.1, 0.0])
    np.testing.assert_allclose(
        episode_advantage(values, rewards, None, True, controller), [0.3, 0.3, 0.3, 0.2]
    )


def test_label_indicators_fraction_and_forced_interventions():
    advantage = np.arange(20.0)
    task = np.zeros(20, dtype=int)
    intervention = np.zeros(20)
    intervention[0] = 1
    indicator, thresholds = label_indicators(advantage, task, intervention, positive_fraction=0.3)
    assert indicator[14:].sum() == 6 and indicator[1:14].sum() == 0 and indicator[0] == 1
    with pytest.raises(RecapDataError, match="all advantages of task 0 are equal"):
        label_indicators(np.zeros(10), np.zeros(10, dtype=int), np.zeros(10), 0.3)


def test_label_indicators_threshold_per_value_function():
    """Two cross-fitted value functions with offsets of +10 and -10: each labels its own top 30%."""
    advantage = np.r_[np.arange(10.0) + 10, np.arange(10.0) - 10]
    labeller = np.r_[np.zeros(10, dtype=int), np.ones(10, dtype=int)]
    task, intervention = np.zeros(20, dtype=int), np.zeros(20)
    indicator, thresholds = label_indicators(advantage, task, intervention, 0.3, labeller)
    assert indicator[:10].sum() == 3 and indicator[10:].sum() == 3
    assert indicator[7:10].all() and indicator[17:].all() and len(thresholds) == 2
    shared, _ = label_indicators(advantage, task, intervention, 0.3)
    assert shared[10:].sum() == 0  # one shared threshold: the second fold gets no positives


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_folds_train_in_parallel_with_their_own_logs(tmp_path):
    """`value-train --jobs 2`: both folds run at once (each waits for the other to have started), each
    with one compute thread and its output in <output_dir>/fold<k>.log."""
    started = [tmp_path / f"started{k}" for k in range(2)]
    commands = [
        _python(
            f"import os, pathlib, time; pathlib.Path({str(started[k])!r}).touch(); "
            f"print('threads', os.environ['OMP_NUM_THREADS']); deadline = time.time() + 20\n"
            f"while not pathlib.Path({str(started[1 - k])!r}).exists(): assert time.time() < deadline; time.sleep(0.05)"
        )
        for k in range(2)
    ]
    assert _call_all(commands, tmp_path / "value", jobs=2) == 0
    for k in range(2):
        assert (tmp_path / "value" / f"fold{k}.log").read_text().strip() == "threads 1"


def test_a_failing_fold_stops_the_others_and_returns_its_exit_code(tmp_path):
    marker = tmp_path / "slow_fold_finished"
    slow = _python(f"import pathlib, time; time.sleep(30); pathlib.Path({str(marker)!r}).touch()")
    start = time.monotonic()
    assert _call_all([slow, _python("raise SystemExit(3)"), slow], tmp_path / "value", jobs=2) == 3
    assert time.monotonic() - start < 15  # fold 1's failure did not wait for fold 0
    time.sleep(0.5)
    assert not marker.exists() and not (tmp_path / "value" / "fold2.log").exists()  # killed, never started


def test_fold_training_episodes_hold_out_each_fold_once():
    folds = fold_training_episodes([0, 1, 2, 3, 4, 5, 6], 3)
    assert folds == [[1, 2, 4, 5], [0, 2, 3, 5, 6], [0, 1, 3, 4, 6]]
    held_out = [set(range(7)) - set(f) for f in folds]
    assert set().union(*held_out) == set(range(7)) and sum(map(len, held_out)) == 7


@pytest.mark.slow
def test_staged_value_train_label_then_policy(tmp_path, capsys):
    """value-train --folds 2 -> value-label with both folds (each episode valued by the fold that did not
    train on it) -> lerobot-train on the labels."""
    types = ["demo", "auto", "intervention", "auto", "demo", "auto"]
    root = make_dataset(tmp_path / "data", types, length=10, successes=[True, False, True, False, True, True])
    before = _digest(root)
    value_out = tmp_path / "value"
    printed, _ = cli_output(
        capsys,
        "value-train",
        "--folds=2",
        "--jobs=2",
        "--dataset.repo_id=local/data",
        f"--dataset.root={root}",
        f"--output_dir={value_out}",
        "--steps=4",
        "--batch_size=8",
        "--policy.critic.value_num_bins=21",
        "--policy.advantage_n_step=3",
        *TINY_CLI,
    )
    folds = [value_out / f"fold{k}" / "checkpoints" / "last" / "pretrained_model" for k in range(2)]
    assert "value-label --value.path" in printed
    labelled = tmp_path / "labelled"
    printed, _ = cli_output(
        capsys, "value-label", "--value.path", *folds, f"--input={root}", f"--output={labelled}"
    )
    assert "3-step" in printed and "threshold" in printed and "in-sample" not in printed
    assert _digest(root) == before  # the source is untouched

    frames = pd.concat(pd.read_parquet(p) for p in sorted((labelled / "data").rglob("*.parquet")))
    # Fold k never saw episodes k, k+2, k+4; their values must be fold k's predictions.
    for k, checkpoint in enumerate(folds):
        policy, preprocessor, _ = load_recap_policy(checkpoint, "cpu")
        held_out = [k, k + 2, k + 4]
        for prediction in predict_episodes(policy, preprocessor, "local/data", root, held_out):
            rows = frames.set_index("index").loc[prediction.index]
            np.testing.assert_allclose(rows["value"].to_numpy(), prediction.value, rtol=1e-5, atol=1e-6)

    indicator = frames["advantage_indicator"].to_numpy()
    mask = frames["intervention_mask"].to_numpy()
    assert set(np.unique(indicator)) <= {0.0, 1.0}
    assert indicator[mask].all()  # human corrections are positive
    non_forced = indicator[~mask]
    assert abs(non_forced.mean() - 0.3) < 0.1
    assert np.isfinite(frames["value"]).all() and np.isfinite(frames["advantage"]).all()

    # One fold alone labels its own training episodes in-sample: allowed, with a warning.
    printed, _ = cli_output(
        capsys, "value-label", f"--value.path={folds[0]}", f"--input={root}", f"--output={tmp_path / 'one'}"
    )
    assert "in-sample" in printed
    # The same fold twice leaves its training episodes without an out-of-sample value: refused.
    _, refused = cli_output(
        capsys, "value-label", "--value.path", folds[0], folds[0], f"--input={root}",
        f"--output={tmp_path / 'two'}", returncode=2,
    )  # fmt: skip
    assert "seen by every value checkpoint" in refused
    assert not (tmp_path / "two").exists()

    # refuses to overwrite without --overwrite
    _, refused = cli_output(
        capsys, "value-label", f"--value.path={folds[0]}", f"--input={root}", f"--output={labelled}",
        returncode=2,
    )  # fmt: skip
    assert "already exists" in refused

    policy_out = tmp_path / "policy"
    run_tool(
        "lerobot-train",
        "--policy.type=pi_star_recap",
        "--dataset.repo_id=local/labelled",
        f"--dataset.root={labelled}",
        f"--output_dir={policy_out}",
        "--steps=2",
        "--batch_size=8",
        "--policy.advantage_source=dataset",
        "--policy.advantage_estimator=mc_distributional",
        "--policy.use_advantage_weighting=false",
        *TINY_CLI,
        cwd=tmp_path,
    )
    policy = PiStarRECAPPolicy.from_pretrained(policy_out / "checkpoints" / "last" / "pretrained_model")
    assert not policy.model.critic.has_value and policy.model.conditioner.embedding is not None


def test_dataset_source_without_labels_is_refused(tmp_path):
    root = make_dataset(tmp_path / "data", ["demo", "auto"], length=6)
    from lerobot_policy_pi_star_recap.data.recap_table import RecapTable

    policy = PiStarRECAPPolicy(tiny_config(advantage_source="dataset"))
    with pytest.raises(RecapDataError, match="value-label"):
        policy.attach_dataset(RecapTable.from_dataset_root(root, chunk_size=4, discount=0.99, n_step=3))


def test_frames_before_takeovers_are_forced_negative():
    from lerobot_policy_pi_star_recap.rl.advantage import frames_before_takeovers

    controller = np.array([0, 0, 0, 0, 1, 1, 0, 1, 0])
    assert frames_before_takeovers(controller, 2).tolist() == [0, 0, 1, 1, 0, 0, 1, 0, 0]
    assert not frames_before_takeovers(controller, 0).any()
    advantage = np.arange(9.0)  # the top 30% (frames 7, 8 and 6) would be positive
    indicator, _ = label_indicators(
        advantage,
        np.zeros(9, dtype=int),
        controller,
        0.3,
        forced_negative=frames_before_takeovers(controller, 2),
    )
    # frame 6 precedes a takeover: negative; expert frames 4, 5, 7 stay forced positive
    assert indicator.tolist() == [0, 0, 0, 0, 1, 1, 0, 1, 1]


def test_value_label_missing_source_is_one_line(tmp_path, capsys):
    _, refused = cli_output(
        capsys, "value-label", "--value.path", tmp_path, "--input=/nonexistent",
        f"--output={tmp_path / 'out'}", returncode=2,
    )  # fmt: skip
    assert "pi-star-recap value-label: error:" in refused and "/nonexistent" in refused
    assert not (tmp_path / "out").exists()
