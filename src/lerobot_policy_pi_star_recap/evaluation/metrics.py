"""Offline evaluation numbers: how well the critics track returns, separate outcomes, and how the
advantage and the sampled actions look per data type. Pure numpy over `EpisodePredictions`."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from ..rl.returns import return_discount, reverse_discounted_cumsum
from ..schema import DATA_TYPES
from .predictions import EpisodePredictions


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    positives, negatives = labels.sum(), (1 - labels).sum()
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def calibration(predicted: np.ndarray, actual: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Mean prediction vs mean target in equal-count bins of the prediction."""
    order = np.argsort(predicted)
    return [
        {
            "predicted": float(predicted[rows].mean()),
            "actual": float(actual[rows].mean()),
            "frames": int(len(rows)),
        }
        for rows in np.array_split(order, min(bins, len(order)))
        if len(rows)
    ]


def episode_returns(episode: EpisodePredictions, discount: float) -> np.ndarray:
    return reverse_discounted_cumsum(episode.reward.astype(np.float64), discount)


def summarize(
    episodes: list[EpisodePredictions],
    estimator: str,
    discount: float,
    n_step: int | None,
    cut_at_takeovers: bool = False,
) -> dict:
    """The offline-evaluation report (JSON-ready)."""
    gamma = return_discount(estimator, discount)
    returns = np.concatenate([episode_returns(e, gamma) for e in episodes])
    value = np.concatenate([e.value for e in episodes])
    data_type = np.concatenate([e.data_type for e in episodes])
    has_value = np.isfinite(value).all()
    report: dict = {
        "episodes": len(episodes),
        "frames": int(len(value)),
        "estimator": estimator,
        "return_discount": gamma,
    }
    known = [e for e in episodes if np.isfinite(e.success)]
    if known:
        report["success_rate"] = float(np.mean([e.success for e in known]))

    if has_value:
        report["value"] = {
            "pearson_vs_return": pearson(value, returns),
            "mean_abs_error": float(np.abs(value - returns).mean()),
            "calibration": calibration(value, returns),
        }
        if all(e.q is not None for e in episodes):
            q = np.concatenate([e.q for e in episodes])
            report["q"] = {
                "pearson_vs_return": pearson(q, returns),
                "mean_abs_error": float(np.abs(q - returns).mean()),
            }
        advantage = np.concatenate([e.advantage(estimator, n_step, cut_at_takeovers) for e in episodes])
        if len(known) == len(episodes):
            report["success_separation"] = _separation(episodes)
    else:
        advantage = np.full(len(value), np.nan)

    action_mse = (
        np.concatenate([e.action_mse for e in episodes]) if episodes[0].action_mse is not None else None
    )
    per_type = {}
    for code, name in enumerate(DATA_TYPES):
        rows = data_type == code
        if not rows.any():
            continue
        entry: dict = {"frames": int(rows.sum())}
        if action_mse is not None:
            entry["action_mse"] = float(action_mse[rows].mean())
        if has_value:
            entry["value_mean"] = float(value[rows].mean())
            entry["advantage_mean"] = float(advantage[rows].mean())
            entry["advantage_std"] = float(advantage[rows].std())
            entry["advantage_positive_fraction"] = float((advantage[rows] > 0).mean())
        per_type[name] = entry
    report["per_data_type"] = per_type
    if action_mse is not None:
        report["action_mse"] = float(action_mse.mean())
    return report


def _separation(episodes: list[EpisodePredictions]) -> dict:
    """How well the value tells successful from failed episodes."""
    labels = np.array([e.success for e in episodes])
    start = np.array([e.value[0] for e in episodes])
    mean = np.array([e.value.mean() for e in episodes])
    frame_values = np.concatenate([e.value for e in episodes])
    frame_labels = np.concatenate([np.full(len(e.value), e.success) for e in episodes])
    out = {"successful_episodes": int(labels.sum()), "failed_episodes": int((1 - labels).sum())}
    if labels.all() or not labels.any():
        return out
    out.update(
        start_value_success=float(start[labels == 1].mean()),
        start_value_failure=float(start[labels == 0].mean()),
        mean_value_success=float(mean[labels == 1].mean()),
        mean_value_failure=float(mean[labels == 0].mean()),
        auc_episode_mean_value=roc_auc(mean, labels),
        auc_frame_value=roc_auc(frame_values, frame_labels),
    )
    return out


def format_table(report: dict) -> str:
    """A short plain-text table of the report for the console."""
    lines = [f"{report['episodes']} episodes, {report['frames']} frames ({report['estimator']} critics)"]
    if "success_rate" in report:
        lines.append(f"success rate in data: {report['success_rate']:.2f}")
    if "value" in report:
        lines.append(
            f"value vs return: pearson {report['value']['pearson_vs_return']:.3f}, "
            f"MAE {report['value']['mean_abs_error']:.3f}"
        )
    if "q" in report:
        lines.append(
            f"Q vs return:     pearson {report['q']['pearson_vs_return']:.3f}, MAE {report['q']['mean_abs_error']:.3f}"
        )
    separation = report.get("success_separation", {})
    if "auc_episode_mean_value" in separation:
        lines.append(
            f"value separates outcomes: AUC {separation['auc_episode_mean_value']:.3f} (episode mean), start value "
            f"{separation['start_value_success']:.3f} success vs {separation['start_value_failure']:.3f} failure"
        )
    header = f"{'data type':<13}{'frames':>8}{'action MSE':>12}{'adv mean':>10}{'adv std':>9}{'A>0':>7}"
    lines += [header, "-" * len(header)]
    for name, entry in report["per_data_type"].items():
        lines.append(
            f"{name:<13}{entry['frames']:>8}{entry.get('action_mse', float('nan')):>12.4f}"
            f"{entry.get('advantage_mean', float('nan')):>10.3f}{entry.get('advantage_std', float('nan')):>9.3f}"
            f"{entry.get('advantage_positive_fraction', float('nan')):>7.2f}"
        )
    return "\n".join(lines)
