"""`pi-star-recap annotate`: write a NEW LeRobot dataset with the RECAP fields of an existing one.

Per episode the user picks the data type (one type for all, a mapping, or "intervention if the episode
has an intervention flag") and the outcome (a success column, a list of successful episodes, a rule on
the last frame, or all successful); the paper's rewards, `done`, `intervention_mask` and `next.success`
follow. A raw intervention flag column (LeRobot's DAgger / HIL `intervention`, HIL-SERL's
`complementary_info.is_intervention`, or `--intervention-column`) becomes `intervention_mask` and is not
copied: the output has the features of any other annotated dataset, so it merges with demonstrations
recorded without takeovers. LeRobot's dataset tools copy the source (videos are copied, not re-encoded)
and stats are recomputed; the source is only read.
"""

from __future__ import annotations

import argparse
import json
import logging
import operator
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.checks import DatasetReport, column_problems, nonfinite_problem
from ..data.writing import DatasetToolError
from ..schema import (
    DATA_TYPE,
    DATA_TYPES,
    DONE,
    INTERVENTION_MASK,
    RAW_INTERVENTION_FLAGS,
    RECAP_FEATURES,
    REWARD,
    SUCCESS,
)
from .common import HelpFormatter, add_option, report_errors

COMPARISONS = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
RULE = re.compile(
    r"^\s*(?P<column>[^\s\[<>=!]+)\s*(?:\[(?P<item>\d+)\])?\s*(?P<op>>=|<=|==|!=|>|<)\s*(?P<value>\S+)\s*$"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "annotate",
        help="write a new dataset with RECAP fields (data_type, reward, done, intervention_mask, next.success)",
        description=(
            "Label an existing local LeRobot v3 dataset for RECAP and write the result as a NEW dataset "
            "(the source is never modified). Rewards follow the pi*0.6 paper: -1 per step, the last frame "
            "0 on success and -C_fail on failure. Existing columns of the same names are replaced; raw "
            "intervention flags (e.g. LeRobot's `intervention`) become intervention_mask and are dropped."
        ),
        formatter_class=HelpFormatter,
    )
    add_option(
        parser, "--input", "--src", required=True, type=Path, help="source dataset root (meta/, data/)"
    )
    add_option(
        parser, "--output", "--dst", required=True, type=Path, help="new dataset folder (must not exist)"
    )
    parser.add_argument(
        "--repo-id", default=None, help="repo id of the new dataset (default: local/<output name>)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")

    types = parser.add_argument_group("data type per episode (pick one; default: --type demo)")
    choice = types.add_mutually_exclusive_group()
    choice.add_argument("--type", choices=["demo", "auto", "intervention"], help="the same type for all")
    choice.add_argument("--types", help="mapping, e.g. '0-9=demo,10-14=auto,15=intervention'")
    choice.add_argument(
        "--types-file", type=Path, help='JSON {"0": "demo", ...} or lines \'EPISODE TYPE\' (ranges allowed)'
    )
    choice.add_argument(
        "--types-from-intervention",
        action="store_true",
        help="episodes with any intervention flag are 'intervention', the others --other-type",
    )
    types.add_argument(
        "--other-type", choices=["demo", "auto"], default="auto", help="unflagged episodes' type"
    )
    types.add_argument(
        "--intervention-column",
        default=None,
        help="per-frame intervention flags (default: the first of "
        f"{list(INTERVENTION_MASK.columns)} present); they become intervention_mask, and the raw "
        "column is not copied",
    )

    outcome = parser.add_argument_group("episode outcome (pick one; default: a success column if present)")
    choice = outcome.add_mutually_exclusive_group()
    choice.add_argument("--success-column", help="episode succeeded if this bool column is True on any frame")
    choice.add_argument("--success-episodes", help="successful episodes, e.g. '0,2,5-9' (all others failed)")
    choice.add_argument("--success-episodes-file", type=Path, help="JSON list or text of successful episodes")
    choice.add_argument(
        "--success-rule",
        help="rule on each episode's last frame, e.g. 'next.reward>=1' or 'observation.state[2]>0.1'",
    )
    choice.add_argument(
        "--all-success", action="store_true", help="every episode succeeded (e.g. teleop demos)"
    )

    reward = parser.add_argument_group("reward (pi*0.6 paper)")
    reward.add_argument(
        "--c-fail", type=float, default=None, help="failure penalty (default: longest episode)"
    )
    reward.add_argument("--step-reward", type=float, default=-1.0, help="reward of every frame but the last")
    reward.add_argument(
        "--success-reward", type=float, default=0.0, help="last-frame reward of a successful episode"
    )
    parser.set_defaults(run=run)


# --- Parsing of episode lists and mappings ---------------------------------------------------------
def parse_episode_ids(spec: str, where: str) -> list[int]:
    """'0,2,5-9' (commas or whitespace) -> [0, 2, 5, 6, 7, 8, 9]."""
    ids: list[int] = []
    for token in re.split(r"[,\s]+", spec.strip()):
        if not token:
            continue
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", token)
        if not match or (match.group(2) and int(match.group(2)) < int(match.group(1))):
            raise DatasetToolError(f"{where}: {token!r} is not an episode index or range like 3 or 5-9.")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        ids.extend(range(low, high + 1))
    return ids


def parse_type_mapping(pairs: list[tuple[str, str]], where: str) -> dict[int, str]:
    mapping: dict[int, str] = {}
    for episodes, data_type in pairs:
        data_type = data_type.strip()
        if data_type not in DATA_TYPES:
            raise DatasetToolError(
                f"{where}: unknown type {data_type!r} for {episodes}; allowed are {list(DATA_TYPES)}."
            )
        for episode in parse_episode_ids(episodes, where):
            if episode in mapping and mapping[episode] != data_type:
                raise DatasetToolError(
                    f"{where}: episode {episode} is mapped to both {mapping[episode]} and {data_type}."
                )
            mapping[episode] = data_type
    return mapping


def read_type_mapping(args: argparse.Namespace) -> dict[int, str] | None:
    if args.types is not None:
        pairs = []
        for item in filter(None, (p.strip() for p in args.types.split(","))):
            if "=" not in item:
                raise DatasetToolError(f"--types: {item!r} is not EPISODES=TYPE (e.g. 0-9=demo).")
            pairs.append(tuple(item.split("=", 1)))
        return parse_type_mapping(pairs, "--types")
    if args.types_file is not None:
        text = _read_text(args.types_file, "--types-file")
        if text.lstrip().startswith("{"):
            try:
                mapping = json.loads(text)
            except json.JSONDecodeError as error:
                raise DatasetToolError(f"--types-file {args.types_file}: invalid JSON ({error}).") from error
            return parse_type_mapping([(str(k), str(v)) for k, v in mapping.items()], str(args.types_file))
        pairs = []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = re.split(r"\s*[=,:\s]\s*", line, maxsplit=1)
            if len(parts) != 2:
                raise DatasetToolError(f"{args.types_file}:{number}: expected 'EPISODE TYPE', got {line!r}.")
            pairs.append((parts[0], parts[1]))
        return parse_type_mapping(pairs, str(args.types_file))
    return None


def _read_text(path: Path, flag: str) -> str:
    if not path.is_file():
        raise DatasetToolError(f"{flag} {path} does not exist.")
    return path.read_text()


# --- Reading and checking the source ----------------------------------------------------------------
@dataclass
class SourceFrames:
    """Per-frame metadata of the source in data-file row order (the order LeRobot's tools rewrite in)."""

    index: np.ndarray  # global frame index
    episode: np.ndarray
    frame: np.ndarray
    timestamp: np.ndarray
    columns: dict[str, np.ndarray]  # the extra columns asked for (flattened when shape (1,))


def _numeric(features: dict, name: str) -> bool:
    return features[name]["dtype"] not in ("image", "video", "string", "language")


def read_source(root: Path, features: dict, wanted: list[str]) -> SourceFrames:
    """Read metadata and `wanted` columns of every data file, rejecting NaN / infinite values anywhere in
    the numeric columns."""
    import pyarrow.parquet as pq

    files = sorted((root / "data").glob("*/*.parquet"))
    if not files:
        raise DatasetToolError(f"{root} has no data/*/*.parquet files; is it a complete LeRobot v3 dataset?")
    numeric = [name for name in features if _numeric(features, name)]  # timestamps included
    parts: dict[str, list[np.ndarray]] = {
        name: [] for name in ("index", "episode_index", "frame_index", "timestamp", *wanted)
    }
    for path in files:
        table = pq.read_table(path, columns=sorted(set(numeric) | set(parts)))
        where = [table.column(name).to_numpy() for name in ("index", "episode_index", "frame_index")]
        for name in numeric:
            problem = nonfinite_problem(name, _as_array(table.column(name)), *where)
            if problem:
                raise DatasetToolError(f"{root}: {problem.message}")
        for name in parts:
            parts[name].append(_as_array(table.column(name)))
    data = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    return SourceFrames(
        index=data.pop("index").astype(np.int64),
        episode=data.pop("episode_index").astype(np.int64),
        frame=data.pop("frame_index").astype(np.int64),
        timestamp=data.pop("timestamp").astype(np.float64),
        columns=data,
    )


def _as_array(column) -> np.ndarray:
    """A parquet column as numpy: scalars (N,), fixed-size lists (N, D)."""
    values = column.combine_chunks()
    if str(values.type).startswith(("list", "fixed_size_list", "large_list")):
        return np.stack(values.to_numpy(zero_copy_only=False)) if len(values) else np.zeros((0, 1))
    return values.to_numpy(zero_copy_only=False)


def episode_order(frames: SourceFrames) -> dict[int, np.ndarray]:
    """Episode -> its rows in frame order; rejects timestamps that do not increase within an episode."""
    order = np.lexsort((frames.frame, frames.episode))
    episodes = frames.episode[order]
    starts = np.flatnonzero(np.r_[True, episodes[1:] != episodes[:-1]])
    rows = dict(zip(episodes[starts].tolist(), np.split(order, starts[1:]), strict=True))
    for episode, idx in rows.items():
        steps = np.diff(frames.timestamp[idx])
        if (steps <= 0).any():
            at = int(np.flatnonzero(steps <= 0)[0]) + 1
            raise DatasetToolError(
                f"episode {episode}: timestamps are not increasing at frame {frames.frame[idx][at]} "
                f"({frames.timestamp[idx][at - 1]:.4f} s then {frames.timestamp[idx][at]:.4f} s); "
                "re-record or fix the episode's timestamps."
            )
    return rows


def check_episode_ids(ids: list[int] | set[int], known: set[int], what: str) -> None:
    unknown = sorted(set(ids) - known)
    if unknown:
        raise DatasetToolError(
            f"{what} names episodes {unknown[:10]}{' ...' if len(unknown) > 10 else ''} that the dataset does "
            f"not have (it has {len(known)} episodes, {min(known)}..{max(known)})."
        )


# --- Choosing types, outcomes and masks -------------------------------------------------------------
def success_source(args: argparse.Namespace, features: dict) -> tuple[str, str | None]:
    """(kind, column) of the outcome source."""
    if args.all_success:
        return "all", None
    if args.success_episodes is not None or args.success_episodes_file is not None:
        return "list", None
    if args.success_rule is not None:
        match = RULE.match(args.success_rule)
        if not match:
            raise DatasetToolError(
                f"--success-rule {args.success_rule!r}: expected COLUMN[INDEX] OP NUMBER, e.g. 'next.reward>=1'."
            )
        return "rule", match.group("column")
    column = args.success_column or SUCCESS.find(features)
    if column is None:
        raise DatasetToolError(
            f"the dataset has no success column ({list(SUCCESS.columns)}); say how episodes ended with "
            "--success-episodes, --success-episodes-file, --success-rule or --all-success."
        )
    return "column", column


def episode_successes(
    args: argparse.Namespace, kind: str, column: str | None, frames: SourceFrames, rows: dict[int, np.ndarray]
) -> dict[int, bool]:
    if kind == "all":
        return dict.fromkeys(rows, True)
    if kind == "list":
        spec = args.success_episodes
        if spec is None:
            text = _read_text(args.success_episodes_file, "--success-episodes-file")
            spec = ",".join(str(i) for i in json.loads(text)) if text.lstrip().startswith("[") else text
        ids = parse_episode_ids(spec, "--success-episodes")
        check_episode_ids(ids, set(rows), "--success-episodes")
        return {episode: episode in set(ids) for episode in rows}
    values = frames.columns[column]
    if kind == "column":
        return {episode: bool(np.asarray(values[idx]).astype(bool).any()) for episode, idx in rows.items()}
    match = RULE.match(args.success_rule)
    compare, threshold = COMPARISONS[match.group("op")], _number(match.group("value"))
    item = match.group("item")
    out = {}
    for episode, idx in rows.items():
        last = np.asarray(values[idx[-1]], dtype=np.float64).reshape(-1)
        if item is not None and int(item) >= len(last):
            raise DatasetToolError(f"--success-rule: {column} has {len(last)} entries, no index {item}.")
        if item is None and len(last) != 1:
            raise DatasetToolError(
                f"--success-rule: {column} has {len(last)} entries; pick one, e.g. {column}[0]."
            )
        out[episode] = bool(compare(last[int(item or 0)], threshold))
    return out


def _number(text: str) -> float:
    if text.lower() in ("true", "false"):
        return float(text.lower() == "true")
    try:
        return float(text)
    except ValueError as error:
        raise DatasetToolError(f"--success-rule: {text!r} is not a number.") from error


def episode_types(
    args: argparse.Namespace, flags: np.ndarray | None, rows: dict[int, np.ndarray]
) -> dict[int, str]:
    if args.types_from_intervention:
        if flags is None:
            raise DatasetToolError(
                "--types-from-intervention needs an intervention flag column "
                f"({list(INTERVENTION_MASK.columns)} or --intervention-column); this dataset has none."
            )
        return {e: "intervention" if flags[idx].any() else args.other_type for e, idx in rows.items()}
    mapping = read_type_mapping(args)
    if mapping is None:
        return dict.fromkeys(rows, args.type or "demo")
    check_episode_ids(list(mapping), set(rows), "the type mapping")
    missing = sorted(set(rows) - set(mapping))
    if missing:
        raise DatasetToolError(
            f"the type mapping has no type for episodes {missing[:10]}{' ...' if len(missing) > 10 else ''}; "
            "map every episode (ranges like 0-49=demo help)."
        )
    return mapping


def check_labels(src: Path, frames: SourceFrames, rows: dict[int, np.ndarray], new: dict) -> None:
    """The training-time checks on the labels about to be written, before anything is: a contradiction
    (e.g. intervention flags on episodes typed demo) is refused here, not at training."""
    from ..data.columns import RecapColumns, encode_data_types

    order = np.concatenate(list(rows.values()))
    labels = {name: values[order] for name, values in new.items()}
    columns = RecapColumns(
        index=frames.index[order],
        episode_index=frames.episode[order],
        task_index=np.zeros(len(order), dtype=np.int64),
        data_type=encode_data_types(labels[DATA_TYPE.name], str(src)),
        reward=labels[REWARD.name].astype(np.float64),
        done=labels[DONE.name].astype(bool),
        intervention=labels[INTERVENTION_MASK.name].astype(np.float64),
        success=labels[SUCCESS.name].astype(bool),
    )
    DatasetReport(str(src), column_problems(columns)).enforce()


# --- The command ------------------------------------------------------------------------------------
@report_errors("annotate")
def run(args: argparse.Namespace) -> int:
    from lerobot.datasets.dataset_tools import modify_features, recompute_stats
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from ..data.writing import (
        RewardScheme,
        atomic_output_dir,
        check_dataset_root,
        episode_columns,
        print_summary,
    )

    src = args.input.expanduser().resolve()
    check_dataset_root(src, "--input")
    features = json.loads((src / "meta" / "info.json").read_text())["features"]

    flag_column = args.intervention_column or INTERVENTION_MASK.find(features)
    kind, success_column = success_source(args, features)
    for name, flag in ((flag_column, "--intervention-column"), (success_column, "success column")):
        if name is not None and name not in features:
            raise DatasetToolError(f"{flag} {name!r} is not a feature of {src}; it has {sorted(features)}.")
    if kind == "rule" and not _numeric(features, success_column):
        raise DatasetToolError(f"--success-rule: {success_column!r} is not numeric.")
    wanted = sorted({c for c in (flag_column, success_column) if c is not None})
    frames = read_source(src, features, wanted)
    rows = episode_order(frames)

    flags = None
    if flag_column is not None:
        flags = (
            np.asarray(frames.columns[flag_column], dtype=np.float64).reshape(len(frames.episode), -1)[:, 0]
            > 0.5
        )
    types = episode_types(args, flags, rows)
    successes = episode_successes(args, kind, success_column, frames, rows)
    scheme = RewardScheme(args.step_reward, args.success_reward, args.c_fail).resolved(
        max(len(idx) for idx in rows.values())
    )

    n = len(frames.episode)
    new = {
        name: np.empty(n, dtype=object if spec["dtype"] == "string" else spec["dtype"])
        for name, spec in RECAP_FEATURES.items()
    }
    for episode, idx in rows.items():
        mask = flags[idx] if flags is not None else np.full(len(idx), types[episode] == "intervention")
        for name, values in episode_columns(
            len(idx), successes[episode], types[episode], mask, scheme
        ).items():
            new[name][idx] = values
    check_labels(src, frames, rows, new)

    source = LeRobotDataset(f"local/{src.name}", root=src)
    replaced = [name for name in RECAP_FEATURES if name in features]
    # The raw flags live on in intervention_mask; kept, they would be a feature demonstrations lack.
    raw_flags = [c for c in (*RAW_INTERVENTION_FLAGS, flag_column) if c in features and c not in replaced]
    dropped = list(dict.fromkeys(raw_flags))
    repo_id = args.repo_id or f"local/{args.output.name}"
    add = {name: (values, dict(RECAP_FEATURES[name])) for name, values in new.items()}
    with atomic_output_dir(args.output, args.overwrite, sources=[src]) as out:
        base = source
        if replaced or dropped:
            logging.info(f"replacing the source's {replaced} columns; {dropped} become intervention_mask")
            base = modify_features(
                source, remove_features=replaced + dropped, output_dir=out.parent / "stage", repo_id=repo_id
            )
        annotated = modify_features(base, add_features=add, output_dir=out, repo_id=repo_id)
        recompute_stats(annotated)
    print_summary(
        args.output,
        f"Annotated {len(rows)} episodes ({n} frames) of {src} -> {args.output} "
        f"(C_fail={scheme.failure_penalty:g}, success from {kind}{f' {success_column}' if success_column else ''}"
        f"{f', intervention_mask from {flag_column}' if flag_column in dropped else ''})",
    )
    return 0
