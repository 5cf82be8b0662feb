"""RECAP fields of a dataset: read, validate, and turn into per-frame training targets.

LeRobot's processor pipeline drops dataset columns it does not know (`data_type`, `reward`,
`intervention_mask`, ...) and only windows `next.reward`, so the policy reads these columns itself, once,
from the dataset files, and looks them up by the global frame `index` that every batch carries.
Everything that depends on several frames (chunk returns, Monte-Carlo returns, N-step sums) is
precomputed here per frame, so a training step is a gather.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from .advantage import reverse_discounted_cumsum, window_cuts, window_targets
from .schema import (
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


class RecapDataError(ValueError):
    """A dataset that cannot be trained on with RECAP, with what is wrong and how to fix it."""


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


def validate_columns(columns: RecapColumns, where: str, need_rewards: bool) -> None:
    """Reject data that would silently train wrong (the errors of `dataset_checks.column_problems`:
    missing rewards, NaNs, `done` before an episode ends, contradictory types and masks, ...)."""
    from .dataset_checks import DatasetReport, column_problems

    DatasetReport(where, column_problems(columns, need_rewards)).raise_errors()


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


class RecapTable:
    """Per-frame RECAP targets of one dataset, indexed by the dataset's global frame index.

    Rewards are raw here; the policy rescales them with its own `return_scale`.
    """

    def __init__(
        self,
        columns: RecapColumns,
        chunk_size: int,
        discount: float,
        n_step: int,
        where: str = "dataset",
        need_rewards: bool = True,
        timeouts_truncate: bool = True,
    ):
        validate_columns(columns, where, need_rewards)
        self.where = where
        self.has_rewards = columns.reward is not None
        self.has_success = columns.success is not None
        self.has_advantage = columns.advantage is not None or columns.indicator is not None

        n = len(columns.index)
        offset = int(columns.index.min())
        size = int(columns.index.max()) - offset + 1
        self.offset = offset
        position = columns.index - offset
        self.valid = np.zeros(size, dtype=bool)
        self.valid[position] = True

        def full(fill, dtype) -> np.ndarray:
            return np.full(size, fill, dtype=dtype)

        self.reward = full(0.0, np.float32)
        self.data_type = full(DEMO, np.int64)
        self.intervention = full(0.0, np.float32)
        self.task_index = full(0, np.int64)
        self.episode_index = full(-1, np.int64)
        self.success = full(np.nan, np.float32)
        self.chunk_reward = full(0.0, np.float32)
        self.chunk_discount = full(0.0, np.float32)
        self.mc_return = full(0.0, np.float32)
        self.nstep_reward = full(0.0, np.float32)
        self.nstep_bootstrap = full(0.0, np.float32)
        # Frames from t to the next change of controller (policy <-> expert) or the episode's end: the
        # part of an action chunk that the controller of frame t really executed.
        self.segment_left = full(1, np.int64)
        self.advantage = full(np.nan, np.float32)
        self.indicator = full(np.nan, np.float32)

        self.data_type[position] = columns.data_type
        self.task_index[position] = columns.task_index
        self.episode_index[position] = columns.episode_index
        intervention = (
            columns.intervention > 0.5
            if columns.intervention is not None
            else columns.data_type == INTERVENTION
        )
        self.intervention[position] = intervention.astype(np.float32)
        if columns.advantage is not None:
            self.advantage[position] = columns.advantage
        if columns.indicator is not None:
            self.indicator[position] = columns.indicator

        starts = np.flatnonzero(np.r_[True, columns.episode_index[1:] != columns.episode_index[:-1]])
        ends = np.r_[starts[1:], n]
        self.episode_lengths = ends - starts
        self.max_abs_return = 0.0
        self.min_return, self.max_return = 0.0, 0.0
        self.terminal = full(True, bool)  # per frame: its episode ends in a terminal state
        for start, end in zip(starts, ends, strict=True):
            frames = position[start:end]
            length = end - start
            self.segment_left[frames] = window_cuts(length, True, intervention[start:end]) - np.arange(length)
            if columns.success is not None:
                self.success[frames] = float(columns.success[start:end].any())
            if not self.has_rewards:
                continue
            rewards = columns.reward[start:end]
            self.reward[frames] = rewards
            terminal = episode_is_terminal(
                True if columns.done is None else bool(columns.done[end - 1]),
                float(self.success[frames[0]]),
                columns.truncated is not None and bool(columns.truncated[end - 1]),
                timeouts_truncate,
            )
            self.terminal[frames] = terminal
            # The bootstrap observation is LeRobot's o_{t+H}, clamped to the last frame: windows are cut
            # only at the episode's end here (value-label also cuts them at changes of controller).
            cuts = window_cuts(length, terminal)
            reward_sum, bootstrap, _ = window_targets(rewards, chunk_size, discount, cuts)
            self.chunk_reward[frames] = reward_sum
            self.chunk_discount[frames] = bootstrap
            # The paper's value target: undiscounted Monte-Carlo return to the episode's end.
            mc = reverse_discounted_cumsum(rewards, 1.0)
            self.mc_return[frames] = mc
            nstep_sum, nstep_bootstrap, _ = window_targets(rewards, n_step, 1.0, cuts)
            self.nstep_reward[frames] = nstep_sum
            self.nstep_bootstrap[frames] = nstep_bootstrap
            self.min_return = min(self.min_return, float(mc.min()))
            self.max_return = max(self.max_return, float(mc.max()))
            self.max_abs_return = max(self.max_abs_return, float(np.abs(mc).max()))
        self.num_tasks = int(columns.task_index.max()) + 1
        self._tensors: dict[str, torch.Tensor] = {}
        self._indices_checked = False

    @classmethod
    def from_dataset_root(cls, root: str | Path, **kwargs) -> RecapTable:
        """The table of a local dataset once `dataset_checks` passed it: its errors refuse the dataset,
        its warnings and notes are logged once."""
        from .dataset_checks import check_dataset

        report = check_dataset(root, kwargs.get("need_rewards", True), kwargs.get("timeouts_truncate", True))
        return cls(report.enforce(), where=str(root), **kwargs)

    @property
    def return_scale(self) -> float:
        """Divisor that maps the dataset's Monte-Carlo returns into [-1, 1] (the paper's normalisation)."""
        return self.max_abs_return if self.max_abs_return > 0 else 1.0

    def _tensor(self, name: str, device: torch.device) -> torch.Tensor:
        tensor = self._tensors.get(name)
        if tensor is None or tensor.device != device:
            tensor = torch.as_tensor(getattr(self, name), device=device)
            self._tensors[name] = tensor
        return tensor

    def lookup(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-frame targets for a batch of global frame indices: a gather on the batch's device.

        Only the first lookup checks that the indices are frames of this table (`check_indices`, one read
        back to the host): the batches of a run all come from the dataset the table was built from, and a
        check on every batch would make every training step wait for the GPU."""
        if not self._indices_checked:
            self.check_indices(index)
            self._indices_checked = True
        position = index.long() - self.offset
        names = (
            "data_type",
            "intervention",
            "task_index",
            "episode_index",
            "success",
            "chunk_reward",
            "chunk_discount",
            "mc_return",
            "nstep_reward",
            "nstep_bootstrap",
            "segment_left",
            "advantage",
            "indicator",
        )
        return {name: self._tensor(name, index.device)[position] for name in names}

    def check_indices(self, index: torch.Tensor) -> None:
        """Raise unless every index is a frame of this table (reads the indices back to the host)."""
        position = index.detach().cpu().long().numpy() - self.offset
        inside = (position >= 0) & (position < len(self.valid))
        if not (inside.all() and self.valid[position[inside]].all()):
            raise RecapDataError(
                f"frame indices {position.min() + self.offset}..{position.max() + self.offset} are not in the "
                f"RECAP table of {self.where}; the policy was built for another dataset."
            )

    def summary(self) -> dict[str, float | int]:
        """Counts per data type and success rate, for logs."""
        data_type = self.data_type[self.valid]
        out: dict[str, float | int] = {
            f"frames_{name}": int((data_type == i).sum()) for i, name in enumerate(DATA_TYPES)
        }
        out["episodes"] = len(self.episode_lengths)
        success = self.success[self.valid]
        if not np.isnan(success).all():
            out["success_rate_frames"] = float(np.nanmean(success))
        out["return_scale"] = self.return_scale
        return out
