"""Where do the advantage indicators of a labelled dataset fall, under each labelling rule?

Recomputes the N-step advantage from the `value` column that `pi-star-recap value-label` wrote (no model,
seconds) under the old rules and under each fix, and reports, per rule, the share of positive frames by
data type, in the stall before each takeover, in the tails of failed episodes, and per cross-fitting
fold. Known ground truth: expert frames should be positive (they are forced), the stall frames that
triggered a takeover and the tails of failed episodes should not.

    python benchmarks/label_quality.py outputs/demo/data/mixed1_labelled --folds 2 \\
        --output benchmarks/results/label_quality_push-v3.json

With `--operators-from DEMOS` (a collection made with `collect --operators`, which the labelled dataset
copies) it reports the labels as `value-label` wrote them against the operators' ground truth instead: the
share of positive frames and the mean advantage per operator profile, on paused and detour frames against
the other frames (a user's data would call them hesitations and detours), and per cross-fitting fold.

    python benchmarks/label_quality.py outputs/mixed_quality/pick-place-v3/data_seed0/data/demos_labelled \\
        --operators-from outputs/mixed_quality/pick-place-v3/data_seed0/data/demos \\
        --output benchmarks/results/mixed_quality/pick-place-v3/data_seed0/label_quality.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from lerobot_policy_pi_star_recap.data.columns import read_recap_columns
from lerobot_policy_pi_star_recap.data.recap_table import RecapTable
from lerobot_policy_pi_star_recap.evaluation.predictions import label_indicators
from lerobot_policy_pi_star_recap.rl.advantage import episode_advantage, frames_before_takeovers

# (name, failed episodes truncated, windows cut at takeovers, threshold per fold, frames negative before a
# takeover); the first four are cumulative, the last row is the cut that was tried and is off by default.
RULES = [
    ("before: terminal time-outs, one threshold", False, False, False, 0),
    ("+ time-outs truncated", True, False, False, 0),
    ("+ threshold per fold", True, False, True, 0),
    ("+ 20 frames before a takeover negative (demo)", True, False, True, 20),
    ("(tried) windows cut at takeovers instead", True, True, True, 0),
]


def value_column(root: Path) -> tuple[np.ndarray, np.ndarray]:
    table = pq.ParquetDataset(sorted((root / "data").glob("**/*.parquet"))).read(columns=["index", "value"])
    table = table.sort_by("index")
    value = table.column("value").combine_chunks()
    if str(value.type).startswith(("list", "fixed_size_list")):
        value = value.flatten()
    return np.asarray(table.column("index").to_numpy()), np.asarray(value.to_numpy(), dtype=np.float64)


def label(columns, value: np.ndarray, n_step: int, fraction: float, folds: int, rule: tuple) -> np.ndarray:
    _, truncate, cut, per_fold, before = rule
    table = RecapTable(columns, chunk_size=1, discount=1.0, n_step=n_step, timeouts_truncate=truncate)
    position = columns.index - table.offset
    advantage = np.empty(len(value))
    forced_negative = np.zeros(len(value), dtype=bool)
    starts = np.flatnonzero(np.r_[True, columns.episode_index[1:] != columns.episode_index[:-1]])
    for start, end in zip(starts, np.r_[starts[1:], len(value)], strict=True):
        rows = slice(start, end)
        advantage[rows] = episode_advantage(
            value[rows],
            table.reward[position[rows]].astype(np.float64),
            n_step,
            terminal=bool(table.terminal[position[start]]),
            controller=table.intervention[position[rows]] if cut else None,
        )
        forced_negative[rows] = frames_before_takeovers(table.intervention[position[rows]], before)
    labeller = columns.episode_index % folds if per_fold else None
    indicator, _ = label_indicators(
        advantage, columns.task_index, table.intervention[position], fraction, labeller, forced_negative
    )
    return indicator > 0.5, advantage


def report(columns, table: RecapTable, positive: np.ndarray, advantage: np.ndarray, folds: int) -> dict:
    position = columns.index - table.offset
    expert = table.intervention[position] > 0.5
    episode, data_type = columns.episode_index, columns.data_type
    stall = np.zeros(len(positive), dtype=bool)
    tail = np.zeros(len(positive), dtype=bool)
    early_failure = np.zeros(len(positive), dtype=bool)
    for e in np.unique(episode):
        rows = np.flatnonzero(episode == e)
        stall[rows] = frames_before_takeovers(expert[rows], 20)
        if table.success[position[rows[0]]] == 0.0:
            from_end = len(rows) - 1 - np.arange(len(rows))
            tail[rows[from_end < 50]] = True
            early_failure[rows[from_end >= 50]] = True
    tail &= ~expert
    early_failure &= ~expert

    def share(selection: np.ndarray) -> dict:
        return {
            "frames": int(selection.sum()),
            "positive": float(positive[selection].mean()) if selection.any() else None,
            "share_of_all_positives": float(positive[selection].sum() / max(positive.sum(), 1)),
        }

    out = {
        "positive_fraction": float(positive.mean()),
        "demo frames": share(data_type == 0),
        "autonomous frames": share(data_type == 1),
        "policy frames of corrected episodes": share((data_type == 2) & ~expert),
        "expert frames (ground truth: positive)": share(expert),
        "20 stall frames before a takeover (ground truth: negative)": share(stall),
        "last 50 frames of failed episodes": share(tail),
        "frames 50+ steps before a failure's end": share(early_failure),
    }
    for fold in range(folds):
        rows = (episode % folds == fold) & ~expert
        out[f"non-expert frames valued by fold {fold}"] = {
            "frames": int(rows.sum()),
            "positive": float(positive[rows].mean()),
            "mean_advantage": float(advantage[rows].mean()),
        }
    return out


def written_labels(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(episode index, advantage, indicator > 0.5) per frame as `value-label` wrote them, in index order."""
    files = sorted((root / "data").glob("**/*.parquet"))
    table = pq.ParquetDataset(files).read(
        columns=["index", "episode_index", "advantage", "advantage_indicator"]
    )
    table = table.sort_by("index")

    def flat(name: str) -> np.ndarray:
        column = table.column(name).combine_chunks()
        if str(column.type).startswith(("list", "fixed_size_list")):
            column = column.flatten()
        return np.asarray(column.to_numpy(), dtype=np.float64)

    episode = np.asarray(table.column("episode_index").to_numpy())
    return episode, flat("advantage"), flat("advantage_indicator") > 0.5


def operator_report(labelled: Path, demos: Path, folds: int) -> dict:
    """Written labels against the operators' ground truth: per profile, on paused / detour frames and the
    other frames of the same episodes, per fold."""
    from lerobot_policy_pi_star_recap.data.writing import episode_records

    records = episode_records(demos)
    if records is None:
        raise SystemExit(f"error: {demos} has no meta/recap_collect.json (collect --operators writes it).")
    episode, advantage, positive = written_labels(labelled)
    if len(records) != len(np.unique(episode)):
        raise SystemExit(f"error: {labelled} has {len(np.unique(episode))} episodes, {demos} {len(records)}.")
    operator = np.empty(len(episode), dtype=object)
    paused = np.zeros(len(episode), dtype=bool)
    detour = np.zeros(len(episode), dtype=bool)
    for e, record in enumerate(records):
        rows = np.flatnonzero(episode == e)
        operator[rows] = record.get("operator")
        paused[rows[record.get("pause_frames", [])]] = True
        detour[rows[record.get("detour_frames", [])]] = True

    def share(selection: np.ndarray) -> dict:
        return {
            "frames": int(selection.sum()),
            "positive": float(positive[selection].mean()) if selection.any() else None,
            "mean_advantage": float(advantage[selection].mean()) if selection.any() else None,
        }

    out = {"positive_fraction": float(positive.mean())}
    for name in dict.fromkeys(r.get("operator") for r in records):
        mine = operator == name
        out[f"{name} operator"] = share(mine)
        if (mine & (paused | detour)).any():
            out[f"{name}: paused frames"] = share(mine & paused)
            out[f"{name}: detour frames"] = share(mine & detour)
            out[f"{name}: other frames"] = share(mine & ~paused & ~detour)
    out["all paused frames"] = share(paused)
    out["all detour frames"] = share(detour)
    out["frames neither paused nor detour"] = share(~paused & ~detour)
    for fold in range(folds):
        out[f"frames valued by fold {fold}"] = share(episode % folds == fold)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", type=Path, help="a dataset written by `pi-star-recap value-label`")
    parser.add_argument("--folds", type=int, default=2, help="value-train --folds used to label it")
    parser.add_argument("--n-step", type=int, default=50)
    parser.add_argument("--positive-fraction", type=float, default=0.3)
    parser.add_argument("--output", type=Path, default=None, help="write the report as JSON here")
    parser.add_argument(
        "--operators-from",
        type=Path,
        default=None,
        help="the `collect --operators` dataset the labelled one copies: report the written labels per profile",
    )
    args = parser.parse_args()
    if args.operators_from is not None:
        result = operator_report(args.root, args.operators_from, args.folds)
        print("| frames | count | positive | mean advantage |\n|---|---|---|---|")
        for key, entry in result.items():
            if isinstance(entry, dict) and entry["frames"]:
                print(
                    f"| {key} | {entry['frames']} | {entry['positive']:.0%} | {entry['mean_advantage']:+.3f} |"
                )
        print(f"positive fraction: {result['positive_fraction']:.0%}")
        if args.output:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            report = {"dataset": str(args.root), "demos": str(args.operators_from), "labels": result}
            args.output.write_text(json.dumps(report, indent=2))
        return

    columns = read_recap_columns(args.root)
    index, value = value_column(args.root)
    if not np.array_equal(index, columns.index):
        raise SystemExit(f"error: {args.root}: the value column does not cover every frame.")
    table = RecapTable(columns, chunk_size=1, discount=1.0, n_step=args.n_step)
    results = {}
    for rule in RULES:
        positive, advantage = label(columns, value, args.n_step, args.positive_fraction, args.folds, rule)
        results[rule[0]] = report(columns, table, positive, advantage, args.folds)
    keys = [k for k in results[RULES[0][0]] if k != "positive_fraction"]
    print("| frames | " + " | ".join(r[0] for r in RULES) + " |")
    print("|---" * (len(RULES) + 1) + "|")
    for key in keys:
        cells = []
        for rule in RULES:
            entry = results[rule[0]][key]
            cells.append("-" if entry["positive"] is None else f"{entry['positive']:.0%}")
        print(f"| {key} ({results[RULES[0][0]][key]['frames']}) | " + " | ".join(cells) + " |")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"dataset": str(args.root), "rules": results}, indent=2))


if __name__ == "__main__":
    main()
