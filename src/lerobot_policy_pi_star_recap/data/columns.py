"""The RECAP columns of a dataset as read from its files, before any check (`checks`) or target
(`recap_table`) is built from them: the layer both of those read, so neither imports the other back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
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


def encode_data_types(values: np.ndarray, where: str) -> np.ndarray:
    """Map `data_type` values (names or integer codes 0/1/2) to integer codes, rejecting unknown ones."""
    if values.dtype.kind in "iu":
        bad = sorted(set(np.unique(values).tolist()) - {DEMO, AUTO, INTERVENTION})
        if bad:
            raise RecapDataError(
                f"{where}: unknown data_type codes {bad}; integer codes must be 0 (demo), 1 (auto) "
                "or 2 (intervention)."
            )
        return values.astype(np.int64)
    names = np.asarray([str(v).strip() for v in values])
    bad = sorted(set(np.unique(names).tolist()) - set(DATA_TYPES))
    if bad:
        raise RecapDataError(f"{where}: unknown data_type values {bad}; allowed are {list(DATA_TYPES)}.")
    codes = np.zeros(len(names), dtype=np.int64)
    for code, name in enumerate(DATA_TYPES):
        codes[names == name] = code
    return codes


@dataclass
class RecapColumns:
    """The raw RECAP columns of a dataset, one entry per frame, ordered by global index."""

    index: np.ndarray
    episode_index: np.ndarray
    task_index: np.ndarray
    data_type: np.ndarray  # int codes
    reward: np.ndarray | None
    done: np.ndarray | None
    intervention: np.ndarray | None
    success: np.ndarray | None
    truncated: np.ndarray | None = None
    advantage: np.ndarray | None = None
    indicator: np.ndarray | None = None


def _column(table, name: str, dtype) -> np.ndarray:
    column = table.column(name)
    if column.null_count:
        raise RecapDataError(f"column '{name}' has {column.null_count} missing (null) values.")
    values = column.combine_chunks()
    if hasattr(values, "flatten") and str(values.type).startswith(("list", "fixed_size_list")):
        values = values.flatten()
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=dtype)


def read_recap_columns(root: str | Path) -> RecapColumns:
    """Read the RECAP columns of a local LeRobot (v3) dataset, without images."""
    root = Path(root)
    files = sorted((root / "data").glob("**/*.parquet"))
    if not files:
        raise RecapDataError(
            f"no data files under {root / 'data'}: is {root} a LeRobot v3 dataset root (meta/, data/)?"
        )
    names = pq.read_schema(files[0]).names
    wanted = {"index", "episode_index", "task_index"}
    fields = {
        "data_type": DATA_TYPE,
        "reward": REWARD,
        "done": DONE,
        "intervention": INTERVENTION_MASK,
        "success": SUCCESS,
        "truncated": TRUNCATED,
        "advantage": ADVANTAGE,
        "indicator": INDICATOR,
        "task": TASK,
    }
    keys = {key: field.find(names) for key, field in fields.items()}
    missing = wanted - set(names)
    if missing:
        raise RecapDataError(f"{root}: data files lack LeRobot's {sorted(missing)} columns.")
    columns = sorted(wanted | {k for k in keys.values() if k})
    table = pq.ParquetDataset(files).read(columns=columns)
    table = table.sort_by("index")
    if table.num_rows == 0:
        raise RecapDataError(f"{root}: the dataset has no frames.")

    def optional(key: str, dtype) -> np.ndarray | None:
        return None if keys[key] is None else _column(table, keys[key], dtype)

    if keys["data_type"] is None:
        data_type = np.zeros(table.num_rows, dtype=np.int64)
    else:
        raw = table.column(keys["data_type"])
        if raw.null_count:
            raise RecapDataError(f"{root}: column 'data_type' has {raw.null_count} missing values.")
        raw = raw.combine_chunks()
        if str(raw.type).startswith(("list", "fixed_size_list")):
            raw = pc.list_flatten(raw)
        data_type = encode_data_types(np.asarray(raw.to_numpy(zero_copy_only=False)), f"{root}")
    return RecapColumns(
        index=_column(table, "index", np.int64),
        episode_index=_column(table, "episode_index", np.int64),
        task_index=_column(table, keys["task"], np.int64),
        data_type=data_type,
        reward=optional("reward", np.float64),
        done=optional("done", bool),
        intervention=optional("intervention", np.float64),
        success=optional("success", bool),
        truncated=optional("truncated", bool),
        advantage=optional("advantage", np.float64),
        indicator=optional("indicator", np.float64),
    )


def episode_is_terminal(
    done_last: bool, success: float, truncated_last: bool, timeouts_truncate: bool
) -> bool:
    """Whether an episode's end is terminal (nothing to bootstrap after it) or a truncation.

    A `truncated` flag on the last frame marks a truncation. Without one, an episode that did not succeed
    ended because time ran out (the collector's episodes end only at success or at the length limit), so
    with `timeouts_truncate` it is a truncation: a value that cannot see the time left cannot predict the
    failure penalty of the last frames, and counting it made failure tails look better than the rest of
    the episode. Episodes without `done` or success information are terminal.
    """
    if truncated_last:
        return False
    if timeouts_truncate and success == 0.0:
        return False
    return bool(done_last)
