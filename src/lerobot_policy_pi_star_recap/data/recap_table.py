"""RECAP fields of a dataset: read, validate, and turn into per-frame training targets.

LeRobot's processor pipeline drops dataset columns it does not know (`data_type`, `reward`,
`intervention_mask`, ...) and only windows `next.reward`, so the policy reads these columns itself, once,
from the dataset files, and looks them up by the global frame `index` that every batch carries.
Everything that depends on several frames (chunk returns, Monte-Carlo returns, N-step sums) is
precomputed here per frame, so a training step is a gather.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from ..errors import RecapDataError
from ..model.inputs import RecapTargets
from ..rl.returns import reverse_discounted_cumsum, window_cuts, window_targets
from ..schema import DATA_TYPES, DEMO, INTERVENTION
from .checks import DatasetReport, check_dataset, column_problems
from .columns import RecapColumns, episode_is_terminal


def validate_columns(columns: RecapColumns, where: str, need_rewards: bool) -> None:
    """Reject data that would silently train wrong (the errors of `checks.column_problems`:
    missing rewards, NaNs, `done` before an episode ends, contradictory types and masks, ...)."""
    DatasetReport(where, column_problems(columns, need_rewards)).raise_errors()


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
        """The table of a local dataset once `checks` passed it: its errors refuse the dataset,
        its warnings and notes are logged once."""
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

    def lookup(self, index: torch.Tensor) -> RecapTargets:
        """Per-frame targets for a batch of global frame indices: a gather on the batch's device.

        Only the first lookup checks that the indices are frames of this table (`check_indices`, one read
        back to the host): the batches of a run all come from the dataset the table was built from, and a
        check on every batch would make every training step wait for the GPU."""
        if not self._indices_checked:
            self.check_indices(index)
            self._indices_checked = True
        position = index.long() - self.offset
        return RecapTargets(
            **{field.name: self._tensor(field.name, index.device)[position] for field in fields(RecapTargets)}
        )

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
