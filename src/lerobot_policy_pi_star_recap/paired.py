"""Success rates of policies evaluated on the same env seeds: confidence intervals and paired tests.

Two arms run on the same seeds share each episode's difficulty, so their difference is judged on the
pairs: McNemar's exact test on the discordant episodes (one arm succeeded, the other not) and a paired
bootstrap interval of the difference in success rate.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import binomtest

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
