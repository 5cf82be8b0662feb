"""Training metrics: summed on the device, read once per log step, printed by LeRobot and written to
TensorBoard; non-finite checks at the same read.

A read of a device tensor on the host (`.item()`, `float()`, an `if` on a tensor) waits for the GPU to
finish everything queued before it, so a training step reads nothing: `record` adds the batch's sums and
counts to one device tensor and returns the batch's means as 0-dim tensors (LeRobot's MetricsTracker
skips values that are not numbers). On lerobot-train's log steps (every `log_freq` optimizer steps, which
the policy counts itself) the window is read once, summed over data-parallel ranks and returned as
floats, which LeRobot averages over its log window (here: that one value) and prints. `after_update`
writes the same window, with the optimizer's learning rates, to TensorBoard. Steps are the policy's own
optimizer-step count (`num_updates`, saved in checkpoints): lerobot-train's `step` from scratch and on
--resume, while a fine-tune (--policy.path) continues its checkpoint's count (its windows may then be
shifted against LeRobot's by that count modulo log_freq; each LeRobot window still holds one).

LeRobot hands the policy neither its output directory, its log frequency nor its optimizer. They come
from supported places only:
  output dir     `tensorboard_dir` when set (own loops), else lerobot-train's `--output_dir`, as LeRobot's
                 own `parser.parse_arg` reads it from the command line (or the `--config_path` JSON, which
                 --resume uses);
  log frequency  `monitor.log_freq` when set (own loops), else `--log_freq` read the same way, else
                 TrainPipelineConfig's default;
  learning rates a global optimizer step hook (`register_optimizer_step_post_hook`) that recognises the
                 optimizer holding this policy's parameters.
What cannot be found is named once in a warning. LeRobot prints the gradient norm; it is not repeated
here (it is a local of lerobot-train's `update_policy`).

Non-finite values are found where the window is read: `on_nonfinite=raise` raises at the first log step
after the bad batch, naming the metrics; `on_nonfinite=skip` gives the bad batch's loss the value 0 and
the optimizer step a zero gradient (both decided on the device), and warns at the next log step.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from lerobot.configs import parser
from lerobot.configs.train import TRAIN_CONFIG_NAME, TrainPipelineConfig
from torch import Tensor
from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

from ..configuration_pi_star_recap import PiStarRECAPConfig
from ..schema import DATA_TYPES

# Per-sample statistics summarised for LeRobot's log line (mean over the batch).
LOGGED_MEANS = {
    "policy_loss": "policy_loss",
    "flow_loss": "flow_loss",
    "q_loss": "q_loss",
    "v_loss": "v_loss",
    "value": "value_mean",
    "advantage": "advantage_mean",
    "awr_weight": "awr_weight_mean",
    "positive": "positive_fraction",  # condition > 0
}
# Statistics also averaged per data type (TensorBoard only), e.g. "policy_loss/intervention".
PER_TYPE = ("policy_loss", "advantage", "value", "positive")
DEFAULT_LOG_FREQ = {f.name: f.default for f in dataclasses.fields(TrainPipelineConfig)}["log_freq"]


def lerobot_train_arg(name: str) -> str | None:
    """lerobot-train's `--name` as LeRobot's parser reads it: from the command line, else from the
    `--config_path` JSON (a resumed run's only argument besides --resume); None when neither sets it."""
    value = parser.parse_arg(name)
    config_path = parser.parse_arg("config_path")
    if value is not None or config_path is None:
        return value
    path = Path(config_path)
    try:
        saved = json.loads((path / TRAIN_CONFIG_NAME if path.is_dir() else path).read_text()).get(name)
    except (OSError, ValueError):  # a hub id, or not a lerobot-train config
        return None
    return None if saved is None else str(saved)


def _logged(names: list[str], values: Sequence) -> dict:
    """The metrics of LeRobot's log line: the means, not the per-type statistics ("name/type")."""
    return {name: value for name, value in zip(names, values, strict=True) if "/" not in name}


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _is_main_process() -> bool:
    return not _distributed() or dist.get_rank() == 0


def _weak_hook(method: Callable[[torch.optim.Optimizer], None]) -> Callable:
    """A global optimizer step hook calling `method(optimizer)` that does not keep the method's object
    (a monitor, and with it its policy) alive."""
    reference = weakref.WeakMethod(method)

    def hook(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
        bound = reference()
        if bound is not None:
            bound(optimizer)

    return hook


class TrainingMonitor:
    """The window of training metrics since the last log step, on the device; reads it on log steps."""

    def __init__(self, config: PiStarRECAPConfig, parameters: Callable[[], Iterator[Tensor]]):
        """`parameters`: the policy's parameters, to recognise the optimizer that trains them."""
        self.config = config
        self._parameters = parameters
        self._log_freq: int | None = None
        self._names: list[str] = []
        self._totals: Tensor | None = None  # (3, metrics): sums, counts, non-finite batches
        self._window: dict[str, float] | None = None  # the last read, while no batch came after it
        self._window_start = 0  # optimizer steps done when the window started
        self._skipped: Tensor | None = None  # optimizer steps whose gradient was dropped, in total
        self._skipped_reported = 0
        self._learning_rates: dict[str, list] = defaultdict(lambda: [0.0, 0])
        self._optimizers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._started = False
        self._writer = None
        self._warned: set[str] = set()

    # --- Log steps -------------------------------------------------------------------------------
    @property
    def log_freq(self) -> int:
        """Optimizer steps per log step: lerobot-train's `--log_freq` (or its default) unless set here."""
        if self._log_freq is None:
            value = lerobot_train_arg("log_freq")
            self._log_freq = int(value) if value is not None else DEFAULT_LOG_FREQ
        return self._log_freq

    @log_freq.setter
    def log_freq(self, value: int) -> None:
        self._log_freq = value

    def is_log_step(self, step: int) -> bool:
        """Whether optimizer step `step` (counted from 1, as lerobot-train's `step` after it) is a log step."""
        return self.log_freq > 0 and step % self.log_freq == 0

    # --- Per batch -------------------------------------------------------------------------------
    @torch.no_grad()
    def batch_metrics(
        self, stats: dict[str, Tensor], data_type: Tensor, loss: Tensor
    ) -> tuple[list[str], Tensor, Tensor]:
        """(names, values, weights) of one batch, on the device: means (weight 1) and sums per data type
        (weight: the type's frame count in the batch)."""
        columns = {key: stats[key].float() for key in LOGGED_MEANS if key in stats}
        if "condition" in stats:
            columns["positive"] = (stats["condition"] > 0).float()
        names = [LOGGED_MEANS[key] for key in columns]
        means = [torch.stack(list(columns.values())).mean(1)]
        if "advantage" in columns:
            names.append("advantage_std")
            means.append(columns["advantage"].std(unbiased=False)[None])
        names.append("loss")
        means.append(loss.detach().float().mean()[None])
        values = torch.cat(means)
        typed = [key for key in PER_TYPE if key in columns]
        names += [f"{LOGGED_MEANS[key].removesuffix('_mean')}/{name}" for key in typed for name in DATA_TYPES]
        # (B, types), by comparison: F.one_hot reads the codes' range back on some devices
        one_hot = (data_type[:, None] == torch.arange(len(DATA_TYPES), device=data_type.device)).float()
        type_sums = torch.stack([columns[key] for key in typed]) @ one_hot  # (typed, types)
        weights = torch.cat([torch.ones_like(values), one_hot.sum(0).repeat(len(typed))])
        return names, torch.cat([values, type_sums.flatten()]), weights

    def batch_means(self, stats: dict[str, Tensor], data_type: Tensor, loss: Tensor) -> dict[str, Tensor]:
        """This batch's means, as 0-dim device tensors, without adding it to the window (e.g. eval batches)."""
        return _logged(*self.batch_metrics(stats, data_type, loss)[:2])

    def record(
        self, stats: dict[str, Tensor], data_type: Tensor, loss: Tensor, step: int
    ) -> tuple[dict[str, Tensor | float], Tensor]:
        """Add a training batch of optimizer step `step` (from 1) to the window. Returns its metrics (this
        batch's means as 0-dim tensors; on a log step the window's means as floats, read once) and whether
        they are all finite (a 0-dim bool tensor on the device, not read)."""
        if not self._started:
            self._start(step)
        names, values, weights = self.batch_metrics(stats, data_type, loss)
        with torch.no_grad():
            finite = torch.isfinite(values)
            self._add(
                names, torch.stack([values.where(finite, 0.0), weights.where(finite, 0.0), (~finite).float()])
            )
        self._window = None
        if self.is_log_step(step):
            self._window = self.read(step)
            return _logged(list(self._window), list(self._window.values())), finite.all()
        return _logged(names, values), finite.all()

    def _add(self, names: list[str], batch: Tensor) -> None:
        if names != self._names:  # the first batch (the names are the same for every batch of a run)
            old_names, old = self._names, self._totals
            self._names, self._totals = names, batch.new_zeros(batch.shape)
            for i, name in enumerate(names):
                if name in old_names:
                    self._totals[:, i] = old[:, old_names.index(name)]
        self._totals += batch

    # --- Log steps: one read ---------------------------------------------------------------------
    def read(self, step: int) -> dict[str, float]:
        """The window's means over all ranks (one read back to the host, the same on every rank); raises
        or warns about non-finite values, as `on_nonfinite` says."""
        if self._totals is None:
            return {}
        totals = self._totals
        if _distributed():
            totals = totals.clone()
            dist.all_reduce(totals)
        parts = [totals.flatten()]
        if self._skipped is not None:  # the same on every rank: decided on all-reduced gradients
            parts.append(self._skipped.float()[None])
        host = torch.cat(parts).tolist()
        count = len(self._names)
        sums, weights, bad = host[:count], host[count : 2 * count], host[2 * count : 3 * count]
        skipped = int(host[3 * count]) if len(host) > 3 * count else 0
        self._check(step, {n: b for n, b in zip(self._names, bad, strict=True) if b > 0}, skipped)
        return {n: s / w for n, s, w in zip(self._names, sums, weights, strict=True) if w > 0}

    def _check(self, step: int, bad: dict[str, float], skipped_total: int) -> None:
        skipped, self._skipped_reported = skipped_total - self._skipped_reported, skipped_total
        if not bad and not skipped:
            return
        found = []
        if bad:
            metrics = [name for name in bad if "/" not in name] or list(bad)
            found.append(
                f"non-finite {metrics} in {int(max(bad.values()))} batch(es) of training steps "
                f"{self._window_start + 1} to {step}"
            )
        if skipped:  # counted at optimizer steps, after this window's last forward was read
            found.append(f"a non-finite gradient in {skipped} optimizer step(s) before step {step}")
        message = (
            f"pi_star_recap: {'; '.join(found)}. Common causes: NaN/inf in the dataset (check with "
            "`pi-star-recap check`), a learning rate too high for the critics (q_lr / v_lr), or bf16 overflow."
        )
        if self.config.runtime.on_nonfinite == "raise":
            raise FloatingPointError(
                f"{message} Checkpoints saved before training step {self._window_start + 1} hold no weights "
                "these batches touched (lerobot-train checks a log step before it saves)."
            )
        logging.warning(message + " Those batches changed no weights (on_nonfinite=skip).")

    def after_update(self, step: int) -> None:
        """After optimizer step `step` (from 1): on a log step, write the window (read by this step's
        forward, or now) and the learning rates to TensorBoard, and start the next window."""
        if not self.is_log_step(step):
            return
        window = self._window if self._window is not None else self.read(step)
        learning_rates = {f"lr/{name}": float(total) / n for name, (total, n) in self._learning_rates.items()}
        if not learning_rates:
            self._warn_once(
                "lr",
                "pi_star_recap: no learning rates for TensorBoard: no torch.optim optimizer holding this "
                "policy's parameters has stepped (an optimizer over copies of them, e.g. FSDP's, is not "
                "recognised).",
            )
        self._write({**window, **learning_rates}, step)
        if self._totals is not None:
            self._totals.zero_()
        self._window, self._window_start = None, step
        self._learning_rates.clear()

    # --- Optimizer hooks -------------------------------------------------------------------------
    def _start(self, step: int) -> None:
        """At the first training batch (of optimizer step `step`; > 1 in a resumed run): global optimizer
        step hooks (removed with the monitor) for the learning rates of each step and, with
        on_nonfinite=skip, to drop non-finite gradients."""
        self._window_start = step - 1
        if self.log_freq <= 0:
            self._warn_once(
                "log_freq",
                f"pi_star_recap: log_freq={self.log_freq}: no log steps, so no metrics are read, checked "
                "for non-finite values or written to TensorBoard; set log_freq > 0.",
            )
        hooks = [register_optimizer_step_post_hook(_weak_hook(self._after_optimizer_step))]
        if self.config.runtime.on_nonfinite == "skip":
            hooks.append(register_optimizer_step_pre_hook(_weak_hook(self._drop_nonfinite_gradient)))
        for handle in hooks:
            weakref.finalize(self, handle.remove)
        self._started = True

    def _trains_this_policy(self, optimizer: torch.optim.Optimizer) -> bool:
        known = self._optimizers.get(optimizer)
        if known is None:
            own = {id(p) for p in self._parameters()}
            known = any(id(p) in own for group in optimizer.param_groups for p in group["params"])
            self._optimizers[optimizer] = known
        return known

    def _after_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self._trains_this_policy(optimizer):
            for i, group in enumerate(optimizer.param_groups):
                total = self._learning_rates[group.get("name", str(i))]
                total[0] += group["lr"]  # a float (a tensor learning rate stays on the device)
                total[1] += 1

    def _drop_nonfinite_gradient(self, optimizer: torch.optim.Optimizer) -> None:
        """on_nonfinite=skip: zero the whole gradient of a step where any of it is not finite (after DDP's
        all-reduce, so every rank drops the same steps), decided on the device."""
        if not self._trains_this_policy(optimizer):
            return
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return
        bad = ~torch.nn.utils.get_total_norm(grads).isfinite()
        for grad in grads:
            grad.masked_fill_(bad, 0.0)
        self._skipped = bad.long() if self._skipped is None else self._skipped + bad

    # --- TensorBoard -----------------------------------------------------------------------------
    def _write(self, values: dict[str, float], step: int) -> None:
        if not values or not _is_main_process():
            return
        writer = self._tensorboard_writer()
        if writer is None:
            return
        for name, value in values.items():
            writer.add_scalar(name, value, step)
        writer.flush()

    def tensorboard_dir(self) -> Path | None:
        """`tensorboard_dir`, else lerobot-train's `<output_dir>/tensorboard`, else None."""
        if self.config.runtime.tensorboard_dir:
            return Path(self.config.runtime.tensorboard_dir)
        output_dir = lerobot_train_arg("output_dir")
        return Path(output_dir) / "tensorboard" if output_dir else None

    def _tensorboard_writer(self):
        if self._writer is None:
            log_dir = self.tensorboard_dir()
            if log_dir is None:
                self._warn_once(
                    "dir",
                    "pi_star_recap: TensorBoard logging is off: no output directory is known (lerobot-train "
                    "without --output_dir picks a timestamped folder the policy cannot see). Pass "
                    "--output_dir to lerobot-train, or set --policy.runtime.tensorboard_dir (tensorboard_dir in own "
                    "training loops).",
                )
                return None
            from torch.utils.tensorboard import SummaryWriter

            log_dir.mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(log_dir=str(log_dir))
            logging.info(f"pi_star_recap: TensorBoard logs in {log_dir} (tensorboard --logdir {log_dir})")
        return self._writer

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned and _is_main_process():
            self._warned.add(key)
            logging.warning(message)
