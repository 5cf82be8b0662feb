"""benchmarks/speed.py's timing protocol without models: interleaved runs, per-pair ratio statistics, the
sanity verdict, and the verdict in the JSON and markdown it writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from synthetic import load_benchmark

speed = load_benchmark("speed")


def test_ratios_are_taken_per_pair_not_between_medians():
    ratios = speed.pair_ratios([2.0, 4.0, 6.0], [1.0, 2.0, 2.0])
    np.testing.assert_allclose(ratios, [2.0, 2.0, 3.0])
    # Here the ratio of the two medians is 4 / 2 = 2 as well; these timings show where they part: the
    # medians give 3 / 1 = 3, while two of the three pairs ran A and B alike (median pair ratio 1).
    np.testing.assert_allclose(speed.pair_ratios([1.0, 3.0, 3.0], [1.0, 1.0, 3.0]), [1.0, 3.0, 1.0])
    with pytest.raises(ValueError, match="pairs"):
        speed.pair_ratios([1.0, 2.0], [1.0])


def test_summary_of_three_ratios_by_hand():
    summary = speed.ratio_summary([2.0, 2.0, 3.0], seed=0)
    # numpy's linear percentiles on 3 sorted values sit at positions p * (3 - 1): the 25th at 0.5
    # (between 2 and 2: 2), the 75th at 1.5 (halfway between 2 and 3: 2.5).
    assert summary["median"] == 2.0
    assert summary["iqr_low"] == 2.0
    assert summary["iqr_high"] == 2.5
    assert summary["pairs"] == 3
    # A resample's median is 3 when at least two of its three draws are the 3: probability
    # 3 (1/3)^2 (2/3) + (1/3)^3 = 7/27 ~ 26%, more than 2.5%, so the interval spans both values.
    assert (summary["ci_low"], summary["ci_high"]) == (2.0, 3.0)


def test_summary_of_four_ratios_by_hand():
    summary = speed.ratio_summary([4.0, 1.0, 3.0, 2.0], seed=0)
    # Sorted 1, 2, 3, 4: the 25th percentile at position 0.75 (1.75), the 75th at 2.25 (3.25).
    assert summary["median"] == 2.5
    assert summary["iqr_low"] == pytest.approx(1.75)
    assert summary["iqr_high"] == pytest.approx(3.25)
    assert 1.0 <= summary["ci_low"] <= summary["median"] <= summary["ci_high"] <= 4.0


def test_bootstrap_is_seeded_and_collapses_on_equal_ratios():
    ratios = [0.9, 1.1, 0.95, 1.3, 1.0, 0.85, 1.05]
    assert speed.ratio_summary(ratios, seed=3) == speed.ratio_summary(ratios, seed=3)
    constant = speed.ratio_summary([0.6] * 5, seed=0)
    assert constant["ci_low"] == constant["ci_high"] == constant["median"] == pytest.approx(0.6)


def test_sanity_check_fires_on_a_drifting_pair_only():
    drifting = speed.ratio_summary([1.08, 1.12, 1.10, 1.09, 1.11], seed=0)
    steady = speed.ratio_summary([0.99, 1.01, 1.00, 0.98, 1.02], seed=0)
    assert speed.sanity_verdict(drifting) == speed.NOISY == "noisy, do not quote"
    assert speed.sanity_verdict(steady) == speed.QUOTABLE
    tolerance = speed.SANITY_TOLERANCE
    medians = [1 - 1.2 * tolerance, 1 - 0.8 * tolerance, 1 + 0.8 * tolerance, 1 + 1.2 * tolerance]
    verdicts = [speed.sanity_verdict({"median": m}) for m in medians]
    assert verdicts == [speed.NOISY, speed.QUOTABLE, speed.QUOTABLE, speed.NOISY]
    assert speed.sanity_verdict(drifting, tolerance=0.2) == speed.QUOTABLE


def test_models_run_in_turns_after_a_shared_warm_up(monkeypatch):
    """Fake timed functions on a fake clock: A takes 2 s, B 1 s, and each records when it ran."""
    clock, calls = [0.0], []
    monkeypatch.setattr(speed, "perf_counter", lambda: clock[0])

    def timed(name: str, cost: float):
        def run():
            calls.append(name)
            clock[0] += cost

        return run

    a_times, b_times = speed.interleaved_times(timed("a", 2.0), timed("b", 1.0), repeats=3, warmup=2)
    assert calls == ["a", "b"] * 5
    assert a_times == [2.0] * 3
    assert b_times == [1.0] * 3


def report(sanity_ratios: list[float]) -> dict:
    """A report of one chunk length whose sanity pair timed `sanity_ratios` and one model against pi05."""
    sanity = speed.ratio_summary(sanity_ratios)
    check = {"chunk": 16, "pair": list(speed.SANITY_PAIR), **sanity, "verdict": speed.sanity_verdict(sanity)}
    ratios = speed.ratio_summary([0.6, 0.62, 0.64])
    rows = [
        {"name": speed.BASE, "chunk": 16},
        {
            "name": "pi_star_recap policy-only",
            "chunk": 16,
            "ratios_vs_pi05": dict.fromkeys(speed.TIMED, ratios),
        },
    ]
    meta = {
        "size": "tiny",
        "device": "cpu",
        "dtype": "float32",
        "batch_size": 8,
        "threads": 1,
        "sanity_tolerance": speed.SANITY_TOLERANCE,
    }
    return speed.speed_report(meta, rows, [check])


def test_json_and_markdown_carry_the_verdict():
    noisy = report([1.08, 1.10, 1.12])
    assert json.loads(json.dumps(noisy))["verdict"] == speed.NOISY
    markdown = speed.markdown_report(noisy)
    assert f"**Verdict: {speed.NOISY}**" in markdown
    assert "1.10 (IQR 1.09-1.11" in markdown  # the sanity pair's median ratio with its spread
    assert "| pi_star_recap policy-only | 16 | 0.62 (IQR 0.61-0.63, 95% CI" in markdown
    assert speed.BASE not in markdown.split("| model |")[1]  # pi05 against itself is no ratio

    quiet = report([0.99, 1.0, 1.01])
    assert quiet["verdict"] == speed.QUOTABLE
    assert f"**Verdict: {speed.QUOTABLE}**" in speed.markdown_report(quiet)
