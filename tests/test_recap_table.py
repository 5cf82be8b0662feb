"""Per-frame RECAP targets from dataset columns, against hand-computed episodes, and bad-input errors."""

import numpy as np
import pytest
import torch
from synthetic import episode_columns, make_dataset

from lerobot_policy_pi_star_recap.data.columns import RecapColumns, read_recap_columns
from lerobot_policy_pi_star_recap.data.recap_table import RecapTable
from lerobot_policy_pi_star_recap.errors import RecapDataError
from lerobot_policy_pi_star_recap.rl.returns import window_cuts, window_targets


def _targets(rewards, horizon, gamma, terminal, controller=None):
    cuts = window_cuts(len(rewards), terminal, controller)
    return window_targets(np.asarray(rewards, dtype=float), horizon, gamma, cuts)


def test_window_targets_terminal_episode():
    # rewards -1, -1, -1, 0 ; gamma 0.5 ; H 2
    reward_sum, discount, index = _targets([-1.0, -1.0, -1.0, 0.0], 2, 0.5, terminal=True)
    np.testing.assert_allclose(reward_sum, [-1.5, -1.5, -1.0, 0.0])
    np.testing.assert_allclose(discount, [0.25, 0.25, 0.0, 0.0])
    assert index.tolist() == [2, 3, 3, 3]


def test_window_targets_truncated_episode_bootstraps_from_last_frame():
    reward_sum, discount, index = _targets([-1.0, -1.0, -1.0, -1.0], 2, 0.5, terminal=False)
    # t=2: r_2 + 0.5 V(s_3); t=3: V(s_3) (the last observation is the only one left)
    np.testing.assert_allclose(reward_sum, [-1.5, -1.5, -1.0, 0.0])
    np.testing.assert_allclose(discount, [0.25, 0.25, 0.5, 1.0])
    assert index.tolist() == [2, 3, 3, 3]


def test_window_cuts_stop_at_changes_of_controller():
    # policy 0-2, expert 3-4, policy 5 (terminal): windows end at 3, 5 and the end (6)
    assert window_cuts(6, True, np.array([0, 0, 0, 1, 1, 0])).tolist() == [3, 3, 3, 5, 5, 6]
    assert window_cuts(6, False, np.array([0, 0, 0, 1, 1, 0])).tolist() == [3, 3, 3, 5, 5, 5]
    reward_sum, discount, index = _targets([-1.0] * 6, 4, 1.0, True, np.array([0, 0, 0, 1, 1, 0]))
    assert reward_sum.tolist() == [-3.0, -2.0, -1.0, -2.0, -1.0, -1.0]
    assert discount.tolist() == [1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert index.tolist() == [3, 3, 3, 5, 5, 5]


def test_table_targets_types_and_masks():
    columns = episode_columns(["demo", "intervention", "auto"], length=6, successes=[True, True, False])
    table = RecapTable(columns, chunk_size=2, discount=1.0, n_step=3)
    out = table.lookup(torch.arange(18))
    assert out.data_type.tolist() == [0] * 6 + [2] * 6 + [1] * 6
    assert out.intervention.tolist() == [0] * 6 + [0, 0, 0, 1, 1, 1] + [0] * 6
    assert out.success.tolist() == [1.0] * 12 + [0.0] * 6
    # failure episode: rewards -1 x5 then -6; undiscounted Monte-Carlo returns
    assert out.mc_return[12:].tolist() == [-11.0, -10.0, -9.0, -8.0, -7.0, -6.0]
    assert out.mc_return[:6].tolist() == [-5.0, -4.0, -3.0, -2.0, -1.0, 0.0]
    # N=3 step sums without bootstrap in the last N frames
    assert out.nstep_reward[:6].tolist() == [-3.0, -3.0, -3.0, -2.0, -1.0, 0.0]
    assert out.nstep_bootstrap[:6].tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert out.chunk_reward[:6].tolist() == [-2.0, -2.0, -2.0, -2.0, -1.0, 0.0]
    assert table.return_scale == 11.0


def test_lookup_outside_the_table_is_an_error():
    table = RecapTable(episode_columns(["demo"], length=4), chunk_size=2, discount=0.9, n_step=2)
    with pytest.raises(RecapDataError, match="not in the RECAP table"):
        table.lookup(torch.tensor([7]))


def test_unknown_data_type_is_rejected():
    columns = episode_columns(["demo"], length=4)
    columns.data_type = np.array(["demo", "demo", "teleop", "demo"])
    with pytest.raises(RecapDataError, match="teleop"):
        from lerobot_policy_pi_star_recap.data.columns import encode_data_types

        encode_data_types(columns.data_type, "test")


def test_nan_reward_is_rejected_with_its_frames():
    columns = episode_columns(["demo"], length=4)
    columns.reward = np.array([-1.0, np.nan, -1.0, 0.0])
    with pytest.raises(RecapDataError, match=r"reward is NaN.*\[1\]"):
        RecapTable(columns, chunk_size=2, discount=0.9, n_step=2)


def test_done_before_episode_end_is_rejected():
    columns = episode_columns(["demo", "demo"], length=4)
    columns.done = np.array([False, True, False, True, False, False, False, True])
    with pytest.raises(RecapDataError, match="done=True before the last frame"):
        RecapTable(columns, chunk_size=2, discount=0.9, n_step=2)


def test_missing_rewards_explain_how_to_fix():
    columns = episode_columns(["demo"], length=4)
    columns.reward = None
    with pytest.raises(RecapDataError, match="pi-star-recap annotate"):
        RecapTable(columns, chunk_size=2, discount=0.9, n_step=2)
    # plain BC does not need them
    RecapTable(columns, chunk_size=2, discount=0.9, n_step=2, need_rewards=False)


def test_read_columns_from_a_lerobot_dataset(tmp_path):
    root = make_dataset(tmp_path / "ds", ["demo", "intervention"], length=6)
    columns = read_recap_columns(root)
    assert isinstance(columns, RecapColumns)
    assert columns.data_type.tolist() == [0] * 6 + [2] * 6
    assert columns.reward.tolist() == ([-1.0] * 5 + [0.0]) * 2
    assert columns.intervention.tolist() == [0] * 6 + [0, 0, 0, 1, 1, 1]
    assert columns.done.sum() == 2


def test_not_a_dataset_root(tmp_path):
    with pytest.raises(RecapDataError, match="no data files"):
        read_recap_columns(tmp_path)


def test_failed_episodes_are_truncations_by_default():
    """A failure (time-out) bootstraps from its last frame instead of counting -C_fail in the window."""
    columns = episode_columns(["demo", "auto"], length=6, successes=[True, False])
    out = RecapTable(columns, chunk_size=2, discount=1.0, n_step=3).lookup(torch.arange(12))
    # success: terminal, no bootstrap in the last N frames
    assert out.nstep_bootstrap[:6].tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    # failure (rewards -1 x5, then -6 on the last frame): windows stop at frame 5 and bootstrap V(o_5)
    assert out.nstep_reward[6:].tolist() == [-3.0, -3.0, -3.0, -2.0, -1.0, 0.0]
    assert out.nstep_bootstrap[6:].tolist() == [1.0] * 6
    assert out.chunk_reward[6:].tolist() == [-2.0, -2.0, -2.0, -2.0, -1.0, 0.0]
    assert out.mc_return[6:].tolist() == [-11.0, -10.0, -9.0, -8.0, -7.0, -6.0]  # value target unchanged
    terminal = RecapTable(columns, chunk_size=2, discount=1.0, n_step=3, timeouts_truncate=False)
    out = terminal.lookup(torch.arange(12))
    assert out.nstep_reward[6:].tolist() == [-3.0, -3.0, -3.0, -8.0, -7.0, -6.0]
    assert out.nstep_bootstrap[6:].tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]


def test_truncated_column_marks_truncations():
    columns = episode_columns(["demo"], length=4, successes=[True])
    columns.truncated = np.array([False, False, False, True])
    out = RecapTable(columns, chunk_size=2, discount=1.0, n_step=2).lookup(torch.arange(4))
    assert out.nstep_bootstrap.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_segment_left_counts_frames_until_the_controller_changes():
    columns = episode_columns(["intervention"], length=6, successes=[True])
    columns.intervention = np.array([0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    out = RecapTable(columns, chunk_size=3, discount=1.0, n_step=2).lookup(torch.arange(6))
    assert out.segment_left.tolist() == [2, 1, 2, 1, 2, 1]
