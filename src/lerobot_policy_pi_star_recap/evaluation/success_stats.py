"""Success rates of policies evaluated on the same env seeds: confidence intervals and paired tests.

Two arms run on the same seeds share each episode's difficulty, so their difference is judged on the
pairs: McNemar's exact test on the discordant episodes (one arm succeeded, the other not) and a paired
bootstrap interval of the difference in success rate.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest
from scipy.stats import t as student_t

Z_95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """95% Wilson score interval of a success rate (well behaved near 0 and 1, unlike the normal one)."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    if successes == 0:  # exact ends (the formula leaves rounding error of the order of 1e-17)
        return 0.0, float(centre + half)
    if successes == n:
        return float(centre - half), 1.0
    return float(centre - half), float(centre + half)


def paired_difference(
    a: np.ndarray, b: np.ndarray, resamples: int = 10_000, seed: int = 0
) -> dict[str, float | int]:
    """Success of `a` minus success of `b`, episode by episode on the same seeds: the difference, its 95%
    paired-bootstrap interval, the discordant counts and McNemar's exact two-sided p-value."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"paired arms need equal, non-empty episode lists; got {a.shape} and {b.shape}.")
    gain = int((a & ~b).sum())  # a succeeded where b failed
    loss = int((~a & b).sum())
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(a), size=(resamples, len(a)))
    boot = (a[rows].astype(float) - b[rows].astype(float)).mean(1)
    low, high = np.quantile(boot, [0.025, 0.975])
    p_value = binomtest(gain, gain + loss, 0.5).pvalue if gain + loss else 1.0
    return {
        "difference": float(a.mean() - b.mean()),
        "ci_low": float(low),
        "ci_high": float(high),
        "a_only": gain,
        "b_only": loss,
        "mcnemar_p": float(p_value),
        "episodes": len(a),
    }


def clustered_difference(
    runs_a: list[np.ndarray], runs_b: list[np.ndarray], resamples: int = 10_000, seed: int = 0
) -> dict[str, float | int | list[float]]:
    """Success of `a` minus success of `b` over independent runs, each paired on its own env seeds (e.g.
    demo runs with different seeds: each trains its own stage 1 and collects its own experience).

    Pooling the runs' episodes into one paired test treats the runs as fixed and hides how much the
    difference moves from one draw of the data to the next. Here every run weighs the same: the
    difference is the mean of the runs' differences, with two intervals that hold both sources of
    variance: a two-stage bootstrap (runs drawn with replacement, then episodes within each drawn run)
    and Student's t over the runs' differences (R - 1 degrees of freedom). With few runs the bootstrap
    covers less than 95% (3 runs have 10 distinct draws) and t is the safer of the two; both are
    returned, with the per-run differences and the pooled-episode interval for comparison."""
    if len(runs_a) != len(runs_b) or not runs_a:
        raise ValueError(
            f"need the same, non-zero number of runs per arm; got {len(runs_a)} and {len(runs_b)}."
        )
    per_run = [
        paired_difference(a, b, resamples=1)["difference"] for a, b in zip(runs_a, runs_b, strict=True)
    ]
    diffs = [
        np.asarray(a, dtype=float) - np.asarray(b, dtype=float) for a, b in zip(runs_a, runs_b, strict=True)
    ]
    rng = np.random.default_rng(seed)
    boot = np.empty(resamples)
    for i in range(resamples):
        drawn = [diffs[r] for r in rng.integers(0, len(diffs), size=len(diffs))]
        boot[i] = np.mean([d[rng.integers(0, len(d), size=len(d))].mean() for d in drawn])
    low, high = np.quantile(boot, [0.025, 0.975])
    mean = float(np.mean(per_run))
    run_std = float(np.std(per_run, ddof=1)) if len(per_run) > 1 else 0.0
    if len(per_run) > 1:
        half = float(student_t.ppf(0.975, len(per_run) - 1)) * run_std / np.sqrt(len(per_run))
        t_low, t_high = mean - half, mean + half
    else:  # one run: no spread between runs to measure (None, not NaN: results stay valid JSON)
        t_low = t_high = None
    pooled = paired_difference(np.concatenate(runs_a), np.concatenate(runs_b), resamples=resamples, seed=seed)
    return {
        "difference": mean,
        "ci_low": float(low),
        "ci_high": float(high),
        "t_ci_low": t_low,
        "t_ci_high": t_high,
        "per_run": per_run,
        "run_std": run_std,
        "runs": len(per_run),
        # the episodes pooled as if the runs were one (narrower: no run-to-run variance)
        "pooled_difference": pooled["difference"],
        "pooled_ci_low": pooled["ci_low"],
        "pooled_ci_high": pooled["ci_high"],
        "a_only": pooled["a_only"],
        "b_only": pooled["b_only"],
        "mcnemar_p": pooled["mcnemar_p"],
        "episodes": pooled["episodes"],
    }


SECONDS_PER_HOUR = 3600.0


def throughput(successes: np.ndarray, steps: np.ndarray, fps: float) -> float:
    """Successes per hour of robot time at `fps` control steps per second, the pi*0.6 paper's headline
    metric: every episode costs its steps, a failure its whole length (a robot would spend it)."""
    successes, steps = np.asarray(successes, dtype=float), np.asarray(steps, dtype=float)
    return float(successes.sum() / (steps.sum() / fps / SECONDS_PER_HOUR))


def _bootstrap_rows(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _episode_arrays(successes, steps) -> tuple[np.ndarray, np.ndarray]:
    successes, steps = np.asarray(successes, dtype=bool), np.asarray(steps, dtype=float)
    if successes.shape != steps.shape or successes.ndim != 1 or len(successes) == 0:
        raise ValueError(
            f"need one step count per episode; got {successes.shape} successes and {steps.shape} steps."
        )
    if (steps < 1).any():
        raise ValueError("every episode takes at least one step.")
    return successes, steps


def speed_summary(
    successes: np.ndarray, steps: np.ndarray, fps: float, resamples: int = 10_000, seed: int = 0
) -> dict[str, float | None]:
    """Throughput (successes per hour) and mean steps to success of one arm, each with a 95% bootstrap
    interval over episodes (steps to success over the successful episodes only; None without any)."""
    successes, steps = _episode_arrays(successes, steps)
    rows = _bootstrap_rows(len(steps), resamples, seed)
    per_hour = fps * SECONDS_PER_HOUR * successes[rows].sum(1) / steps[rows].sum(1)
    out: dict[str, float | None] = {
        "throughput_per_hour": throughput(successes, steps, fps),
        "throughput_ci": [float(q) for q in np.quantile(per_hour, [0.025, 0.975])],
        "mean_steps_to_success": None,
        "steps_to_success_ci": None,
    }
    won = steps[successes]
    if len(won):
        boot = won[_bootstrap_rows(len(won), resamples, seed)].mean(1)
        out["mean_steps_to_success"] = float(won.mean())
        out["steps_to_success_ci"] = [float(q) for q in np.quantile(boot, [0.025, 0.975])]
    return out


def paired_throughput(
    a_successes: np.ndarray,
    a_steps: np.ndarray,
    b_successes: np.ndarray,
    b_steps: np.ndarray,
    fps: float,
    resamples: int = 10_000,
    seed: int = 0,
) -> dict[str, float | None]:
    """Throughput of `a` against `b` on the same env seeds: the ratio a / b and the difference a - b
    (successes per hour), each with a 95% paired-bootstrap interval (the same episodes drawn for both
    arms). A ratio is None where `b` never succeeds; its interval ends are taken over the resamples
    where `b` succeeded at least once."""
    a_successes, a_steps = _episode_arrays(a_successes, a_steps)
    b_successes, b_steps = _episode_arrays(b_successes, b_steps)
    if len(a_steps) != len(b_steps):
        raise ValueError(f"paired arms need the same episodes; got {len(a_steps)} and {len(b_steps)}.")
    rows = _bootstrap_rows(len(a_steps), resamples, seed)
    rate = fps * SECONDS_PER_HOUR
    boot_a = rate * a_successes[rows].sum(1) / a_steps[rows].sum(1)
    boot_b = rate * b_successes[rows].sum(1) / b_steps[rows].sum(1)
    a, b = throughput(a_successes, a_steps, fps), throughput(b_successes, b_steps, fps)
    diff_low, diff_high = np.quantile(boot_a - boot_b, [0.025, 0.975])
    ratio = ratio_low = ratio_high = None
    if b > 0:
        ratio = a / b
        ratio_low, ratio_high = (
            float(q) for q in np.quantile(boot_a[boot_b > 0] / boot_b[boot_b > 0], [0.025, 0.975])
        )
    return {
        "throughput_a": a,
        "throughput_b": b,
        "throughput_difference": a - b,
        "throughput_difference_ci": [float(diff_low), float(diff_high)],
        "throughput_ratio": ratio,
        "throughput_ratio_ci": None if ratio is None else [ratio_low, ratio_high],
    }
