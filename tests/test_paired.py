"""Paired success-rate statistics against hand-computed values."""

import numpy as np
import pytest

from lerobot_policy_pi_star_recap.paired import paired_difference, wilson_interval


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
