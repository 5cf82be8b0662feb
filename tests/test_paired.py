"""Paired success-rate statistics against hand-computed values."""

import json

import numpy as np
import pytest

from lerobot_policy_pi_star_recap.evaluation.success_stats import (
    clustered_difference,
    paired_difference,
    wilson_interval,
)


def test_wilson_interval_known_values():
    low, high = wilson_interval(30, 100)
    assert low == pytest.approx(0.2189, abs=1e-4) and high == pytest.approx(0.3958, abs=1e-4)
    assert wilson_interval(0, 3)[0] == 0.0 and wilson_interval(3, 3)[1] == 1.0  # exact, never past the rate


def test_paired_difference_counts_discordant_pairs():
    a = np.array([1, 1, 1, 0, 1, 0, 1, 1, 1, 1] * 10, dtype=bool)
    b = np.array([1, 0, 0, 0, 1, 0, 1, 0, 1, 1] * 10, dtype=bool)
    out = paired_difference(a, b)
    assert out["a_only"] == 30 and out["b_only"] == 0 and out["difference"] == pytest.approx(0.3)
    # McNemar exact: 30 discordant pairs all one way, p = 2 * 0.5^30
    assert out["mcnemar_p"] == pytest.approx(2 * 0.5**30)
    assert 0.2 < out["ci_low"] < 0.3 < out["ci_high"] < 0.4


def test_identical_arms_have_no_difference():
    a = np.array([1, 0] * 50, dtype=bool)
    out = paired_difference(a, a.copy())
    assert out["difference"] == 0 and out["ci_low"] == 0 and out["ci_high"] == 0 and out["mcnemar_p"] == 1.0
    with pytest.raises(ValueError, match="equal, non-empty"):
        paired_difference(a, a[:10])


def test_clustered_difference_one_run_is_the_paired_difference():
    a = np.array([1, 1, 0, 1] * 25, dtype=bool)
    b = np.array([1, 0, 0, 1] * 25, dtype=bool)
    one = clustered_difference([a], [b])
    flat = paired_difference(a, b)
    assert one["difference"] == pytest.approx(0.25) and one["per_run"] == [pytest.approx(0.25)]
    assert one["run_std"] == 0.0 and one["runs"] == 1 and one["episodes"] == 100
    # one run: the two-stage bootstrap is the episode bootstrap (same quantity, other random draws)
    assert one["ci_low"] == pytest.approx(flat["ci_low"], abs=0.03)
    assert one["ci_high"] == pytest.approx(flat["ci_high"], abs=0.03)
    # no spread between runs to measure: no t interval, and the result stays strict JSON (no NaN)
    assert one["t_ci_low"] is None and one["t_ci_high"] is None
    json.dumps(one, allow_nan=False)


def test_clustered_difference_widens_with_run_to_run_variance():
    """Run 1: a wins 40 of 100 pairs, runs 2-3: nothing. Pooled, +13.3 looks sure; over runs it is not."""
    base = np.zeros(100, dtype=bool)
    wins = np.array([True] * 40 + [False] * 60)
    out = clustered_difference([wins, base, base], [base, base, base])
    assert out["difference"] == pytest.approx(40 / 300)
    assert out["per_run"] == [pytest.approx(0.4), 0.0, 0.0]
    assert out["run_std"] == pytest.approx(np.std([0.4, 0, 0], ddof=1))
    assert out["pooled_ci_low"] > 0.09  # 40 / 0 discordant pairs: the pooled interval excludes 0
    assert out["ci_low"] == 0.0  # 8 of 27 run draws hold no run 1: the interval reaches 0
    assert out["ci_high"] > out["pooled_ci_high"]
    # t over the 3 runs' differences (0.4, 0, 0): mean 0.133, sd 0.231, t(0.975, 2) = 4.303
    assert out["t_ci_low"] == pytest.approx(0.1333 - 4.3027 * 0.2309 / np.sqrt(3), abs=1e-3)
    assert out["t_ci_high"] == pytest.approx(0.1333 + 4.3027 * 0.2309 / np.sqrt(3), abs=1e-3)
    with pytest.raises(ValueError, match="same, non-zero number of runs"):
        clustered_difference([wins], [base, base])


def test_clustered_difference_weighs_runs_equally():
    """A run of 300 episodes and one of 100: the difference is the runs' mean, not the episodes'."""
    big_a, big_b = np.ones(300, dtype=bool), np.zeros(300, dtype=bool)  # +1.0
    small = np.zeros(100, dtype=bool)  # 0.0
    out = clustered_difference([big_a, small], [big_b, small])
    assert out["difference"] == pytest.approx(0.5) and out["pooled_difference"] == pytest.approx(0.75)
    assert out["ci_low"] == pytest.approx(0.0) and out["ci_high"] == pytest.approx(1.0)
