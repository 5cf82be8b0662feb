"""PNG plots of what the critics see: value along episodes, advantage per data type, calibration."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..schema import DATA_TYPES  # noqa: E402

OUTCOME_COLORS = {1.0: "tab:green", 0.0: "tab:red"}
TITLE_CHARS_PER_INCH = 8  # characters of matplotlib's default 12 pt title that fit in one inch


def plot_values_along_episodes(
    episodes, returns: list[np.ndarray], path: Path, max_episodes: int = 12
) -> Path:
    """Value (solid) and the actual return (dashed) along episodes, coloured by outcome."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for episode, episode_return in list(zip(episodes, returns, strict=True))[:max_episodes]:
        color = OUTCOME_COLORS.get(episode.success, "tab:gray")
        steps = np.arange(len(episode.value))
        ax.plot(steps, episode.value, color=color, alpha=0.8)
        ax.plot(steps, episode_return, color=color, alpha=0.4, linestyle="--")
    ax.plot([], [], color="tab:green", label="successful episode")
    ax.plot([], [], color="tab:red", label="failed episode")
    ax.plot([], [], color="black", linestyle="--", label="actual return")
    ax.set_xlabel("step in episode")
    ax.set_ylabel("value (return units)")
    ax.set_title("Value function along episodes")
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_advantage_by_type(
    advantages: dict[str, np.ndarray], path: Path, title: str = "Advantage per data type"
) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4))
    finite = [a[np.isfinite(a)] for a in advantages.values() if len(a)]
    if finite and np.concatenate(finite).size:
        values = np.concatenate(finite)
        bins = np.linspace(values.min(), values.max() + 1e-9, 40)
        for name in DATA_TYPES:
            if name in advantages and len(advantages[name]):
                ax.hist(
                    advantages[name],
                    bins=bins,
                    alpha=0.5,
                    density=True,
                    label=f"{name} ({len(advantages[name])})",
                )
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("advantage")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def plot_calibration(bins: list[dict], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    predicted = [b["predicted"] for b in bins]
    actual = [b["actual"] for b in bins]
    low, high = min(predicted + actual), max(predicted + actual)
    ax.plot([low, high], [low, high], color="gray", linestyle=":")
    ax.plot(predicted, actual, marker="o")
    ax.set_xlabel("predicted value (bin mean)")
    ax.set_ylabel("actual return (bin mean)")
    ax.set_title("Value calibration")
    return _save(fig, path)


def plot_bars(
    labels: list[str],
    values: list[float],
    errors: list[float] | list[list[float]] | None,
    ylabel: str,
    title: str,
    path: Path,
    value_format: str = ".2f",
) -> Path:
    """Bars with error bars: `errors` symmetric (one per bar) or [below, above] lists (e.g. a 95% CI)."""
    width = max(4, 1.2 * len(labels))
    fig, ax = plt.subplots(figsize=(width, 4))
    ax.bar(labels, values, yerr=errors, capsize=4, color="tab:blue", alpha=0.8)
    for i, v in enumerate(values):
        ax.text(i + 0.06, v, f"{v:{value_format}}", ha="left", va="bottom")
    ax.set_ylabel(ylabel)
    # wrapped to the figure's width, so a long title (task, episodes, CI) is not cut at the edges
    ax.set_title("\n".join(textwrap.wrap(title, int(width * TITLE_CHARS_PER_INCH))))
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
