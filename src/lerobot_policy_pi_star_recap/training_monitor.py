"""Training metrics: the floats lerobot-train logs, non-finite checks, and TensorBoard event files.

LeRobot logs to the console and Weights & Biases only, and hands the policy neither its output
directory nor its optimizer. `lerobot-train` calls `policy.update()` from inside its `update_policy`
function, whose frame holds the optimizer and the step's gradient norm and whose caller holds the run's
`TrainPipelineConfig`; the monitor reads those from the calling frames (read-only), so the stock
training command writes TensorBoard logs without a patched LeRobot. Outside lerobot-train (own loops),
set `tensorboard_dir` and the monitor logs what it has.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from .schema import DATA_TYPES

# Per-sample statistics summarised for LeRobot's log line (mean over the batch).
LOGGED_MEANS = {
    "policy_loss": "policy_loss",
    "flow_loss": "flow_loss",
    "q_loss": "q_loss",
    "v_loss": "v_loss",
    "value": "value_mean",
    "advantage": "advantage_mean",
    "awr_weight": "awr_weight_mean",
}


def _find_in_callers(name: str, max_depth: int = 8) -> Any:
    """The nearest caller's local variable `name`, or None."""
    frame = inspect.currentframe()
    try:
        for _ in range(max_depth):
            frame = frame.f_back if frame is not None else None
            if frame is None:
                return None
            if name in frame.f_locals:
                return frame.f_locals[name]
        return None
    finally:
        del frame


def _is_main_process() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class TrainingMonitor:
    """Turns per-sample statistics into logged floats, and writes TensorBoard summaries every log step."""

    def __init__(self, config):
        self.config = config
        self._sums: dict[str, float] = defaultdict(float)
        self._counts: dict[str, float] = defaultdict(float)
        self._writer = None
        self._writer_failed = False
        self._log_freq: int | None = None

    # --- Per step --------------------------------------------------------------------------------
    def record(self, stats: dict[str, Tensor], data_type: Tensor, loss: Tensor) -> dict[str, float]:
        """Float metrics for LeRobot's log (same keys every step, so ranks reduce them in step)."""
        out: dict[str, float] = {}
        with torch.no_grad():
            for key, name in LOGGED_MEANS.items():
                if key in stats:
                    out[name] = stats[key].float().mean().item()
            if "advantage" in stats:
                out["advantage_std"] = stats["advantage"].float().std(unbiased=False).item()
            if "condition" in stats:
                out["positive_fraction"] = (stats["condition"] > 0).float().mean().item()
            out["loss"] = loss.float().mean().item()
            self._accumulate(stats, data_type, out)
        bad = [k for k, v in out.items() if not math.isfinite(v)]
        if bad:
            self._nonfinite(bad)
        return out

    def _accumulate(self, stats: dict[str, Tensor], data_type: Tensor, means: dict[str, float]) -> None:
        for name, value in means.items():
            self._sums[name] += value
            self._counts[name] += 1
        for code, type_name in enumerate(DATA_TYPES):
            mask = (data_type == code).float()
            count = mask.sum().item()
            for key in ("policy_loss", "advantage", "value"):
                if key in stats and stats[key].dim() == 1:
                    self._sums[f"{key}/{type_name}"] += (stats[key].float() * mask).sum().item()
                    self._counts[f"{key}/{type_name}"] += count
            if "condition" in stats:
                self._sums[f"positive_fraction/{type_name}"] += (
                    ((stats["condition"] > 0).float() * mask).sum().item()
                )
                self._counts[f"positive_fraction/{type_name}"] += count

    def _nonfinite(self, bad: list[str]) -> None:
        step = _find_in_callers("step", max_depth=12)
        where = f"at training step {step + 1}" if isinstance(step, int) else "in this training step"
        message = (
            f"pi_star_recap: non-finite {bad} {where}. Common causes: NaN/inf in the dataset (check with "
            "`pi-star-recap annotate`), a learning rate too high for the critics (q_lr / v_lr), or bf16 "
            "overflow. The last checkpoint on disk is untouched."
        )
        if self.config.on_nonfinite == "raise":
            raise FloatingPointError(message)
        logging.warning(message + " Skipping the batch (on_nonfinite=skip).")

    # --- After the optimizer step ----------------------------------------------------------------
    def after_update(self, policy, updates: int) -> None:
        optimizer = _find_in_callers("optimizer")
        grad_norm = _find_in_callers("grad_norm")
        if grad_norm is not None and not math.isfinite(float(grad_norm)):
            self._nonfinite(["grad_norm"])
        if optimizer is not None:
            for i, group in enumerate(optimizer.param_groups):
                name = group.get("name", str(i))
                self._sums[f"lr/{name}"] += group["lr"]
                self._counts[f"lr/{name}"] += 1
        if grad_norm is not None:
            self._sums["grad_norm"] += float(grad_norm)
            self._counts["grad_norm"] += 1
        train_step = _find_in_callers("step", max_depth=12)
        step = train_step + 1 if isinstance(train_step, int) else updates
        if step % self._resolve_log_freq() == 0:
            self.flush(step)

    def _resolve_log_freq(self) -> int:
        if self._log_freq is None:
            cfg = _find_in_callers("cfg", max_depth=12)
            self._log_freq = max(int(getattr(cfg, "log_freq", 0) or 0), 1) if cfg is not None else 100
        return self._log_freq

    def _tensorboard_dir(self) -> Path | None:
        if self.config.tensorboard_dir:
            return Path(self.config.tensorboard_dir)
        cfg = _find_in_callers("cfg", max_depth=12)
        output_dir = getattr(cfg, "output_dir", None)
        return Path(output_dir) / "tensorboard" if output_dir else None

    def flush(self, step: int) -> None:
        """Average what was accumulated since the last flush (over all ranks) and write it."""
        names = sorted(self._sums)
        if not names:
            return
        totals = torch.tensor([[self._sums[n], self._counts[n]] for n in names], dtype=torch.float64)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # Same metric names on every rank: per-type keys exist from the first step on.
            dist.all_reduce(totals)
        self._sums.clear()
        self._counts.clear()
        if not _is_main_process():
            return
        writer = self._get_writer()
        if writer is None:
            return
        for name, (total, count) in zip(names, totals.tolist(), strict=True):
            if count > 0:
                writer.add_scalar(name, total / count, step)
        writer.flush()

    def _get_writer(self):
        if self._writer is None and not self._writer_failed:
            log_dir = self._tensorboard_dir()
            if log_dir is None:
                self._writer_failed = True
                logging.info(
                    "pi_star_recap: no output dir known, TensorBoard logging is off (set tensorboard_dir)."
                )
                return None
            from torch.utils.tensorboard import SummaryWriter

            log_dir.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(log_dir=str(log_dir))
            logging.info(f"pi_star_recap: TensorBoard logs in {log_dir} (tensorboard --logdir {log_dir})")
        return self._writer
