"""What a dataset holds for RECAP, and every problem in it, before anything trains on it.

Datasets written by other tools follow the documented columns (docs/data.md, `schema.py`) with their own
conventions, and most mistakes in them do not crash training: they train something other than what was
meant (an `inf` action, an intervention mask on a demo). `pi-star-recap check`, training
(`RecapTable.from_dataset_root`), `value-train`, `value-label` and `annotate` all call these checks, so the
same data gets the same verdict everywhere. Each finding has a level:

- error: training would be wrong or impossible; the commands refuse the dataset, naming the fix;
- warning: a contradiction that has one reading; the product applies it and says which;
- note: unusual but legal data; what was assumed.

Only parquet columns and `meta/` are read (no image or video decoding), so a large dataset takes seconds.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..errors import RecapDataError
from ..schema import (
    ADVANTAGE,
    AUTO,
    DATA_TYPE,
    DATA_TYPES,
    DEMO,
    DONE,
    INDICATOR,
    INTERVENTION,
    INTERVENTION_MASK,
    REWARD,
    SUCCESS,
    TASK,
    TRUNCATED,
)
from .columns import RecapColumns, episode_is_terminal, read_recap_columns
from .writing import EpisodeSummary, format_summary

ERROR, WARNING, NOTE = "error", "warning", "note"
LEVELS = (ERROR, WARNING, NOTE)
SHOWN = 5  # frames or episodes a message names
HOW_TO_ANNOTATE = (
    "Add the RECAP fields with `pi-star-recap annotate --input <dataset> --output <new dataset> ...` "
    "(see `pi-star-recap annotate --help`)"
)
EDIT_FRAMES = (
    "Fix or drop those frames (`lerobot-edit-dataset --operation.type=delete_episodes` drops whole "
    "episodes), then recompute the stats."
)
# The column each RecapColumns field is read from, by its canonical name.
COLUMN_NAMES = {
    "data_type": DATA_TYPE.name,
    "reward": REWARD.name,
    "done": DONE.name,
    "intervention": INTERVENTION_MASK.name,
    "success": SUCCESS.name,
    "truncated": TRUNCATED.name,
    "advantage": ADVANTAGE.name,
    "indicator": INDICATOR.name,
}
STALE_META = "meta/ is stale: re-export the dataset with LeRobot's tools, or drop those episodes."
# Datasets whose warnings and notes this process has logged: training builds its table once, but
# value-label reads the dataset once before and once per value checkpoint.
_LOGGED: set[str] = set()


@dataclass(frozen=True)
class Problem:
    level: str  # ERROR, WARNING or NOTE
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.message}"


@dataclass(frozen=True)
class Episodes:
    """The runs of equal `episode_index` among frames in global-index order (at least one frame)."""

    ids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray

    @classmethod
    def of(cls, episode_index: np.ndarray) -> Episodes:
        starts = np.flatnonzero(np.r_[True, episode_index[1:] != episode_index[:-1]])
        return cls(episode_index[starts], starts, np.r_[starts[1:], len(episode_index)])

    @property
    def lengths(self) -> np.ndarray:
        return self.ends - self.starts

    @property
    def frame(self) -> np.ndarray:
        """Each frame's position in its episode."""
        return np.arange(self.ends[-1]) - np.repeat(self.starts, self.lengths)

    @property
    def last(self) -> np.ndarray:
        """Per frame: whether it is its episode's last."""
        last = np.zeros(self.ends[-1], dtype=bool)
        last[self.ends - 1] = True
        return last

    def count(self, flags: np.ndarray) -> np.ndarray:
        return np.add.reduceat(flags.astype(np.int64), self.starts)

    def varies(self, values: np.ndarray) -> np.ndarray:
        """Per episode: whether `values` (NaN ignored) take more than one value in it."""
        values = values.astype(np.float64)
        high, low = np.fmax.reduceat(values, self.starts), np.fmin.reduceat(values, self.starts)
        return ~np.isnan(high) & (high != low)

    def returns(self, reward: np.ndarray) -> tuple[float, float, float]:
        """The lowest and highest undiscounted return to an episode's end (the paper's value target), and
        the return scale a fresh policy divides them by (the largest |return|)."""
        before = np.cumsum(reward) - reward  # sum over all earlier frames
        total = np.add.reduceat(reward, self.starts)
        episode = np.repeat(np.arange(len(self.starts)), self.lengths)
        returns = total[episode] - (before - before[self.starts][episode])
        return float(returns.min()), float(returns.max()), float(np.abs(returns).max()) or 1.0

    def named(self, which: np.ndarray) -> str:
        """'[3, 7, ...]': the ids of the episodes where `which` (per episode) is True."""
        ids = self.ids[which]
        return f"{ids[:SHOWN].tolist()}"[:-1] + (", ...]" if len(ids) > SHOWN else "]")


def _frames(rows: np.ndarray, index: np.ndarray, episode: np.ndarray, frame: np.ndarray) -> str:
    shown = rows[:SHOWN]
    places = ", ".join(f"episode {episode[r]} frame {frame[r]}" for r in shown)
    return f"global indices {index[shown].tolist()} ({places}{', ...' if len(rows) > SHOWN else ''})"


def nonfinite_problem(
    name: str, values: np.ndarray, index: np.ndarray, episode: np.ndarray, frame: np.ndarray
) -> Problem | None:
    """An error naming the first frames where `values` (one row per frame) hold NaN or infinity: a single
    non-finite action or state turns the normalisation statistics, and then every loss, into NaN."""
    values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
    bad = ~np.isfinite(values).all(axis=1)
    if not bad.any():
        return None
    kinds = [
        kind
        for kind, hit in (("NaN", np.isnan(values)), ("+inf", values == np.inf), ("-inf", values == -np.inf))
        if hit.any()
    ]
    count = int(bad.sum())
    return Problem(
        ERROR,
        f"{name!r} has NaN or infinite values in {count} frame{'s' * (count > 1)}: {name} is "
        f"{' or '.join(kinds)} at {_frames(np.flatnonzero(bad), index, episode, frame)}. {EDIT_FRAMES}",
    )


# --- The RECAP columns ------------------------------------------------------------------------------
def structure_problems(columns: RecapColumns) -> list[Problem]:
    """Frames that cannot be grouped into episodes: nothing else can be checked (or trained) then."""
    n = len(columns.index)
    if n == 0:
        return [Problem(ERROR, "the dataset has no frames.")]
    arrays = {COLUMN_NAMES.get(f.name, f.name): getattr(columns, f.name) for f in fields(columns)}
    wrong = [f"{name} has {len(v)} values" for name, v in arrays.items() if v is not None and len(v) != n]
    if wrong:
        return [
            Problem(
                ERROR,
                f"{'; '.join(wrong)} for {n} frames: each RECAP field holds one value per frame (shape (1,)); "
                "rewrite those columns with one value per frame.",
            )
        ]
    unique, counts = np.unique(columns.index, return_counts=True)
    if (counts > 1).any():
        return [
            Problem(
                ERROR,
                f"duplicate frame indices: {int((counts > 1).sum())} values of `index` appear more than once "
                f"(first {unique[counts > 1][:SHOWN].tolist()}); the dataset's `index` column is corrupt. "
                "Number the frames once each, 0..N-1 (re-export the dataset with LeRobot's tools).",
            )
        ]
    ids, runs = np.unique(Episodes.of(columns.episode_index).ids, return_counts=True)
    if (runs > 1).any():
        return [
            Problem(
                ERROR,
                f"the frames of episodes {ids[runs > 1][:SHOWN].tolist()} are not contiguous in `index` (other "
                "episodes' frames lie between them); give each episode consecutive global indices.",
            )
        ]
    return []


def column_problems(
    columns: RecapColumns, need_rewards: bool = True, timeouts_truncate: bool = True
) -> list[Problem]:
    """Every problem in the RECAP columns as the policy reads them (`read_recap_columns`).

    `need_rewards`: the policy trains critics (False for plain behaviour cloning); `timeouts_truncate`:
    the policy option of that name, which decides how failed episodes' ends are read."""
    structure = structure_problems(columns)
    if structure:
        return structure
    episodes = Episodes.of(columns.episode_index)
    frame, last = episodes.frame, episodes.last
    problems = []
    if columns.reward is None and need_rewards:
        problems.append(
            Problem(
                ERROR,
                f"no reward column (looked for {list(REWARD.columns)}); the RECAP critics need rewards. "
                f"{HOW_TO_ANNOTATE}, or train plain behaviour cloning with "
                "--policy.use_advantage_weighting=false --policy.use_advantage_conditioning=false.",
            )
        )
    problems += [
        problem
        for name in ("reward", "intervention", "advantage", "indicator")
        if getattr(columns, name) is not None
        and (
            problem := nonfinite_problem(
                COLUMN_NAMES[name], getattr(columns, name), columns.index, columns.episode_index, frame
            )
        )
    ]
    if columns.done is not None and (columns.done & ~last).any():
        early = episodes.count(columns.done & ~last) > 0
        problems.append(
            Problem(
                ERROR,
                f"done=True before the last frame of episodes {episodes.named(early)}; `done` marks episode "
                "termination and may only be set on an episode's final frame: clear it on the other frames, "
                "or split the episodes where it is set.",
            )
        )
    problems += _episode_type_problems(columns, episodes)
    problems += _success_problems(columns, episodes, last)
    if columns.reward is not None and need_rewards and np.isfinite(columns.reward).all():
        problems += _end_problems(columns, episodes, timeouts_truncate)
        problems += _reward_problems(columns, episodes, last)
    single = episodes.lengths == 1
    if single.any():
        problems.append(
            Problem(
                NOTE,
                f"{int(single.sum())} episodes of one frame ({episodes.named(single)}): they train, with the "
                "action chunk padded after their only frame and no multi-step backup.",
            )
        )
    return problems


def _episode_type_problems(columns: RecapColumns, episodes: Episodes) -> list[Problem]:
    """Contradictions between an episode's type and its frames' types or intervention mask."""
    problems = []
    codes = columns.data_type
    mixed = episodes.varies(codes)
    if mixed.any():
        start, end = episodes.starts[mixed][0], episodes.ends[mixed][0]
        change = start + 1 + int(np.flatnonzero(codes[start + 1 : end] != codes[start])[0])
        problems.append(
            Problem(
                ERROR,
                f"data_type changes inside episodes {episodes.named(mixed)} (episode {episodes.ids[mixed][0]}: "
                f"{DATA_TYPES[codes[start]]}, then {DATA_TYPES[codes[change]]} from frame {change - start}); "
                "a type belongs to a whole episode. Give each episode one type: 'intervention' for a rollout "
                "in which an expert took over (its frames marked in intervention_mask), else 'auto' or 'demo'.",
            )
        )
    kind = codes[episodes.starts]
    if columns.intervention is None:
        if (kind == INTERVENTION).any():
            problems.append(
                Problem(
                    NOTE,
                    f"no intervention_mask column (looked for {list(INTERVENTION_MASK.columns)}): every frame "
                    f"of the {int((kind == INTERVENTION).sum())} intervention episodes is read as expert-driven.",
                )
            )
        return problems
    expert = episodes.count(columns.intervention > 0.5)
    on_demo = (kind == DEMO) & (expert > 0)
    if on_demo.any():
        problems.append(
            Problem(
                ERROR,
                f"demo episodes {episodes.named(on_demo)} have intervention_mask=True on "
                f"{int(expert[on_demo].sum())} frames: masked frames train as expert corrections "
                "(intervention_weight, always a positive indicator), while a demo is expert-driven throughout, "
                "and the two readings train differently. Set intervention_mask False on demo episodes, or type "
                "them 'intervention' if an expert took over a policy's rollout (annotate: "
                "--types-from-intervention).",
            )
        )
    on_auto = (kind == AUTO) & (expert > 0)
    if on_auto.any():
        problems.append(
            Problem(
                WARNING,
                f"auto episodes {episodes.named(on_auto)} have intervention_mask=True on "
                f"{int(expert[on_auto].sum())} frames: those frames train as expert corrections (the mask wins), "
                "as in an 'intervention' episode; type these episodes 'intervention' to say so.",
            )
        )
    unmasked = (kind == INTERVENTION) & (expert == 0)
    if unmasked.any():
        problems.append(
            Problem(
                WARNING,
                f"intervention episodes {episodes.named(unmasked)} have no frame with intervention_mask=True: "
                "they train as autonomous rollouts; mark the frames the expert drove, or type them 'auto'.",
            )
        )
    return problems


def _success_problems(columns: RecapColumns, episodes: Episodes, last: np.ndarray) -> list[Problem]:
    if columns.success is None:
        return [
            Problem(
                NOTE,
                f"no success column (looked for {list(SUCCESS.columns)}): episode outcomes are unknown, so "
                "episode ends are read from `done` alone and success rates are n/a.",
            )
        ]
    problems = []
    if not episodes.count(columns.success).any():
        problems.append(
            Problem(
                NOTE,
                f"no episode succeeded (the success flags of all {len(episodes.ids)} episodes are False): the "
                "value function learns only how long and how badly episodes fail, so the labels carry no "
                "success signal; add successful episodes (e.g. demos) if the task can be done.",
            )
        )
    # A flag on every frame is a per-episode outcome (a plain `success` column); a flag that starts or
    # stops before the end says the episode went on after it succeeded.
    early = (episodes.count(columns.success & ~last) > 0) & episodes.varies(columns.success)
    if early.any():
        problems.append(
            Problem(
                WARNING,
                f"episodes {episodes.named(early)} set the success flag before their last frame (LeRobot's "
                "next.success is True only there): each counts as successful and ends terminally at its last "
                "frame, so the frames after the flag train as if success were still ahead. Cut those episodes "
                "at the success, or set the flag only on the last frame.",
            )
        )
    return problems


def episode_ends(columns: RecapColumns, episodes: Episodes, timeouts_truncate: bool) -> dict[str, np.ndarray]:
    """Per episode: its outcome (1, 0, NaN when unknown), whether RecapTable reads its end as terminal
    (`episode_is_terminal`), and why not: an explicit truncation, a failure read as a time-out, or no
    `done` on the last frame."""
    count = len(episodes.ids)
    success = (
        np.full(count, np.nan) if columns.success is None else (episodes.count(columns.success) > 0) * 1.0
    )
    done = np.ones(count, bool) if columns.done is None else columns.done[episodes.ends - 1]
    flagged = np.zeros(count, bool) if columns.truncated is None else columns.truncated[episodes.ends - 1]
    terminal = np.array(
        [episode_is_terminal(*end, timeouts_truncate) for end in zip(done, success, flagged, strict=True)]
    )
    timeout = ~flagged & timeouts_truncate & (success == 0.0)
    return {
        "success": success,
        "terminal": terminal,
        "flagged": flagged,
        "timeout": timeout,
        "no_done": ~terminal & ~flagged & ~timeout,
    }


def describe_ends(ends: dict[str, np.ndarray]) -> str:
    """'3 terminal, 1 truncated (1 failed, read as time-outs by timeouts_truncate)'."""
    reasons = [
        f"{int(ends['flagged'].sum())} with a truncated flag",
        f"{int(ends['timeout'].sum())} failed, read as time-outs by timeouts_truncate",
        f"{int(ends['no_done'].sum())} without done on the last frame",
    ]
    why = ", ".join(r for r in reasons if not r.startswith("0 "))
    terminal = int(ends["terminal"].sum())
    return f"{terminal} terminal, {len(ends['terminal']) - terminal} truncated" + (f" ({why})" if why else "")


def _end_problems(columns: RecapColumns, episodes: Episodes, timeouts_truncate: bool) -> list[Problem]:
    """How episode ends are read when `done` is missing or incomplete."""
    ends = episode_ends(columns, episodes, timeouts_truncate)
    if columns.done is None:
        return [
            Problem(
                NOTE,
                f"no done column (looked for {list(DONE.columns)}): each episode ends at its last frame in "
                f"episode_index; ends read as {describe_ends(ends)}.",
            )
        ]
    if not columns.done.any():
        return [
            Problem(
                WARNING,
                "done is never True: every episode's end is read as a truncation (V of its last frame is "
                "bootstrapped), successful ones included; set done=True on the last frame of each episode that "
                "ended, or drop the column to read ends from the success flags.",
            )
        ]
    if ends["no_done"].any():
        return [
            Problem(
                WARNING,
                f"episodes {episodes.named(ends['no_done'])} lack done=True on their last frame: read as "
                "truncated (V of the last frame is bootstrapped); set done on the last frame of the episodes "
                "that ended.",
            )
        ]
    return []


def _reward_problems(columns: RecapColumns, episodes: Episodes, last: np.ndarray) -> list[Problem]:
    """Rewards off the documented convention: one step reward, the outcome on each episode's last frame."""
    varying = episodes.varies(np.where(last, np.nan, columns.reward))
    if not varying.any():
        return []
    start, end = episodes.starts[varying][0], episodes.ends[varying][0]
    values = ", ".join(f"{v:g}" for v in np.unique(columns.reward[start : end - 1])[:SHOWN])
    low, high, scale = episodes.returns(columns.reward)
    return [
        Problem(
            NOTE,
            f"rewards vary within {int(varying.sum())} episodes before their last frame (episode "
            f"{episodes.ids[varying][0]}: {values}), off the documented convention (one step reward, the "
            f"outcome on the last frame); they are used as given: returns from {low:g} to {high:g}, return "
            f"scale {scale:g} (set --policy.critic.return_normalizer to keep one scale across datasets).",
        )
    ]


def describe(columns: RecapColumns, need_rewards: bool, timeouts_truncate: bool) -> str:
    """Episodes, successes, frames and expert frames per type as the policy reads them; with rewards, how
    episode ends are read and the range of returns."""
    episodes = Episodes.of(columns.episode_index)
    ends = episode_ends(columns, episodes, timeouts_truncate)
    masked = columns.data_type == INTERVENTION if columns.intervention is None else columns.intervention > 0.5
    rows = zip(
        columns.data_type[episodes.starts],
        ends["success"],
        episodes.lengths,
        episodes.count(masked),
        strict=True,
    )
    table = format_summary(
        [
            EpisodeSummary(
                DATA_TYPES[kind], None if np.isnan(success) else bool(success), int(length), int(n)
            )
            for kind, success, length, n in rows
        ]
    )
    lines = [f"{len(episodes.ids)} episodes, {len(columns.index)} frames", table]
    if columns.reward is not None and need_rewards:
        lines.append(f"episode ends: {describe_ends(ends)}")
        if np.isfinite(columns.reward).all():
            low, high, scale = episodes.returns(columns.reward)
            lines.append(f"returns: {low:g} to {high:g}, return scale {scale:g}")
    return "\n".join(lines)


# --- The files ------------------------------------------------------------------------------------
def _list_like(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)


def _element(kind: pa.DataType) -> pa.DataType:
    while _list_like(kind):
        kind = kind.value_type
    return kind


def _is_number(kind: pa.DataType) -> bool:
    return pa.types.is_integer(kind) or pa.types.is_floating(kind)


# What the policy's reader accepts per kind of column: a test of the (list element) type, and its words.
KINDS = {
    "integer": (pa.types.is_integer, "integers"),
    "number": (_is_number, "numbers (float32)"),
    "flag": (lambda t: pa.types.is_boolean(t) or _is_number(t), "booleans"),
    "type": (
        lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t),
        f"strings {list(DATA_TYPES)} (or their codes 0, 1, 2)",
    ),
}
FIELD_KINDS = (
    (DATA_TYPE, "type"),
    (REWARD, "number"),
    (DONE, "flag"),
    (INTERVENTION_MASK, "flag"),
    (SUCCESS, "flag"),
    (TRUNCATED, "flag"),
    (ADVANTAGE, "number"),
    (INDICATOR, "number"),
    (TASK, "integer"),
)


def policy_vectors(schema: pa.Schema, info: dict) -> list[str]:
    """The numeric columns the policy feeds its networks: `action` and every non-image `observation.*`
    (declared in meta/info.json, or numeric in the data files)."""
    features = info.get("features", {})
    return [
        name
        for name in schema.names
        if (name == "action" or name.startswith("observation."))
        and features.get(name, {}).get("dtype") not in ("image", "video", "string")
        and (name in features or _is_number(_element(schema.field(name).type)))
    ]


def column_type_problems(schema: pa.Schema, info: dict) -> list[Problem]:
    """Columns of the wrong type: the reader would fail on them or silently convert them."""
    names = schema.names
    wanted = [(name, "integer") for name in ("index", "episode_index") if name in names]
    wanted += [(f.find(names), kind) for f, kind in FIELD_KINDS if f.find(names)]
    wanted += [(name, "number") for name in policy_vectors(schema, info)]
    return [
        Problem(
            ERROR,
            f"column {name!r} holds {schema.field(name).type} values, but the policy reads it as "
            f"{KINDS[kind][1]}: rewrite it with that type (docs/data.md lists the RECAP fields).",
        )
        for name, kind in wanted
        if not KINDS[kind][0](_element(schema.field(name).type))
    ]


def layout_problems(schema: pa.Schema, info: dict) -> list[Problem]:
    """Columns LeRobot's loader or the policy needs that the data files lack, or that meta/ disagrees on."""
    names = schema.names
    problems = []
    if "action" not in names:
        problems.append(
            Problem(ERROR, "no 'action' column: the policy learns to predict it; record the robot's actions.")
        )
    features = info.get("features", {})
    absent = sorted(k for k, spec in features.items() if k not in names and spec.get("dtype") != "video")
    if absent:
        problems.append(
            Problem(
                ERROR,
                f"meta/info.json declares {absent} but the data files have no such columns: LeRobot reads "
                "them as None and the first training batch fails. Write those columns, or remove them from "
                "the features of meta/info.json (and from meta/stats.json).",
            )
        )
    undeclared = sorted(set(names) - set(features)) if features else []
    if undeclared:
        problems.append(
            Problem(
                ERROR,
                f"the data files have columns {undeclared} that meta/info.json does not declare: LeRobot "
                "refuses to load them (column names don't match). Declare them in meta/info.json, or drop "
                "those columns.",
            )
        )
    return problems


def _vector_problems(
    table: pa.Table, names: list[str], info: dict, columns: RecapColumns, frame: np.ndarray
) -> list[Problem]:
    """Per policy column: missing values, frames whose width is not the declared shape, NaN / infinity."""
    problems = []
    features = info.get("features", {})
    for name in names:
        values = table.column(name).combine_chunks()
        if values.null_count:
            problems.append(Problem(ERROR, f"column {name!r} has {values.null_count} missing (null) values."))
            continue
        if _list_like(values.type):
            widths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
            declared = features.get(name, {}).get("shape")
            width = int(np.prod(declared)) if declared else int(widths[0])
            off = np.flatnonzero(widths != width)
            if len(off):
                problems.append(
                    Problem(
                        ERROR,
                        f"{name!r} has {widths[off[0]]} values instead of {width} in {len(off)} frames, first "
                        f"at {_frames(off, columns.index, columns.episode_index, frame)}; every frame needs the "
                        "shape meta/info.json declares: fix those frames, or the declared shape.",
                    )
                )
                continue
            values = values.flatten().to_numpy(zero_copy_only=False).reshape(len(widths), -1)
        else:
            values = values.to_numpy(zero_copy_only=False)
        problem = nonfinite_problem(name, values, columns.index, columns.episode_index, frame)
        if problem:
            problems.append(problem)
    return problems


def _meta_problems(
    root: Path, info: dict, episode_index: np.ndarray, task_index: np.ndarray
) -> list[Problem]:
    """Data files that disagree with meta/: LeRobot's loader finds frames and prompts through meta/."""
    problems = []
    in_data = dict(zip(*(a.tolist() for a in np.unique(episode_index, return_counts=True)), strict=True))
    files = sorted((root / "meta" / "episodes").glob("*/*.parquet"))
    if files:
        listed = pq.ParquetDataset(files).read(columns=["episode_index", "length"])
        lengths = dict(zip(*(listed.column(c).to_pylist() for c in ("episode_index", "length")), strict=True))
        empty = sorted(set(lengths) - set(in_data))
        if empty:
            problems.append(
                Problem(
                    ERROR,
                    f"episodes {empty[:SHOWN]} are listed in meta/episodes but have no frames in data/ "
                    f"(empty episodes); {STALE_META}",
                )
            )
        differ = [e for e, count in in_data.items() if lengths.get(e) != count]
        if differ:
            problems.append(
                Problem(
                    ERROR,
                    f"episodes {differ[:SHOWN]} have other lengths in data/ than in meta/episodes (episode "
                    f"{differ[0]}: {in_data[differ[0]]} frames, listed {lengths.get(differ[0], 'not at all')}); "
                    f"{STALE_META}",
                )
            )
    elif info.get("total_frames") not in (None, len(episode_index)):
        problems.append(
            Problem(
                ERROR,
                f"meta/info.json says total_frames={info['total_frames']} but data/ holds "
                f"{len(episode_index)} frames; {STALE_META}",
            )
        )
    tasks = root / "meta" / "tasks.parquet"
    if not tasks.is_file():
        problems.append(
            Problem(
                ERROR,
                "no meta/tasks.parquet: LeRobot gives each frame its task (the policy's prompt) from there; "
                "write it (task_index -> task) or re-export the dataset.",
            )
        )
        return problems
    known = set(pq.read_table(tasks, columns=["task_index"]).column("task_index").to_pylist())
    unknown = sorted(set(np.unique(task_index).tolist()) - known)
    if unknown:
        problems.append(
            Problem(
                ERROR,
                f"task_index {unknown[:SHOWN]} of {int(np.isin(task_index, unknown).sum())} frames are not in "
                f"meta/tasks.parquet (it lists {sorted(known)[:SHOWN]}): every frame's prompt comes from there; "
                "add the tasks or fix task_index.",
            )
        )
    return problems


# --- The report -----------------------------------------------------------------------------------
@dataclass
class DatasetReport:
    """The findings of one dataset, its columns as the policy reads them, and a printable summary."""

    where: str
    problems: list[Problem] = field(default_factory=list)
    columns: RecapColumns | None = None
    summary: str = ""

    def of(self, level: str) -> list[Problem]:
        return [p for p in self.problems if p.level == level]

    @property
    def errors(self) -> list[Problem]:
        return self.of(ERROR)

    def raise_errors(self) -> None:
        """Refuse the dataset with its first error (the others are counted)."""
        errors = self.errors
        if errors:
            more = len(errors) - 1
            more = f" ({more} more: `pi-star-recap check --input {self.where}` lists them)" if more else ""
            raise RecapDataError(f"{self.where}: {errors[0].message}{more}")

    def enforce(self) -> RecapColumns:
        """Raise on errors, else log each warning and note (once per dataset and process) and return the
        columns."""
        self.raise_errors()
        key = str(Path(self.where).expanduser().resolve())
        if key not in _LOGGED:
            _LOGGED.add(key)
            for problem in self.problems:
                logging.warning(f"{self.where}: {problem}")
        return self.columns

    def format(self) -> str:
        """The summary, then one line per finding, errors first."""
        counts = [(len(self.of(level)), level) for level in LEVELS]
        lines = [self.summary] if self.summary else []
        if self.problems:
            lines.append(", ".join(f"{n} {level}{'s' * (n != 1)}" for n, level in counts) + ":")
            lines += [str(p) for level in LEVELS for p in self.of(level)]
        else:
            lines.append("No problems found.")
        return "\n".join(lines)


def check_dataset(
    root: str | Path, need_rewards: bool = True, timeouts_truncate: bool = True
) -> DatasetReport:
    """Read a local LeRobot v3 dataset's columns the way the policy will and check them all (arguments as
    in `column_problems`)."""
    root = Path(root)
    report = DatasetReport(str(root))
    files = sorted((root / "data").glob("**/*.parquet"))
    info_path = root / "meta" / "info.json"
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    schema = pq.read_schema(files[0]) if files else None
    if schema is not None:
        report.problems += column_type_problems(schema, info)
        if report.errors:
            return report
        report.problems += layout_problems(schema, info)
    try:
        columns = read_recap_columns(root)
    except RecapDataError as error:
        report.problems.append(Problem(ERROR, str(error).removeprefix(f"{root}: ")))
        return report
    report.columns = columns
    report.problems += column_problems(columns, need_rewards, timeouts_truncate)
    if structure_problems(columns):
        return report
    if DATA_TYPE.find(schema.names) is None:
        report.problems.append(
            Problem(NOTE, "no data_type column: every episode is read as 'demo' (expert demonstrations).")
        )
    vectors = policy_vectors(schema, info)
    table = pq.ParquetDataset(files).read(columns=[*vectors, "index", "task_index"]).sort_by("index")
    report.problems += _vector_problems(
        table, vectors, info, columns, Episodes.of(columns.episode_index).frame
    )
    report.problems += _meta_problems(
        root, info, columns.episode_index, table.column("task_index").to_numpy()
    )
    report.summary = f"{root}: {describe(columns, need_rewards, timeouts_truncate)}"
    return report
