"""The training monitor: TensorBoard steps and values under other step counting than lerobot-train's (an
own loop with gradient accumulation, log_freq not dividing the steps), where it finds lerobot-train's
output dir and log_freq, what it warns about once, and no frame inspection anywhere in the package."""

from __future__ import annotations

import gc
import json
import logging
import math
from pathlib import Path

import pytest
import torch
from synthetic import attach_table, episode_columns, make_batch, tiny_config

from lerobot_policy_pi_star_recap import PiStarRECAPPolicy
from lerobot_policy_pi_star_recap.training.monitor import TrainingMonitor

README_METRICS = ("v_loss", "q_loss", "policy_loss", "advantage_mean")
SRC = Path(__file__).resolve().parents[1] / "src"


def make_policy(**overrides) -> PiStarRECAPPolicy:
    torch.manual_seed(0)
    policy = PiStarRECAPPolicy(tiny_config(**overrides)).train()
    attach_table(policy, episode_columns(["demo", "auto", "intervention", "demo"], length=10))
    return policy


def scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_under_gradient_accumulation(tmp_path):
    """Two forwards per optimizer step, log_freq=3 over 7 steps: TensorBoard gets steps 3 and 6 only, each
    the mean over that window's forwards, which is also what the log step's forwards return as floats."""
    policy = make_policy(runtime={"tensorboard_dir": str(tmp_path / "tb")})
    policy.monitor.log_freq = 3
    optimizer = torch.optim.AdamW(policy.get_optim_params(), lr=1e-4)
    batches = [make_batch(policy.config, [0, 12, 25, 35], seed=s) for s in range(2)]
    losses, returned = [], {}
    for step in range(1, 8):
        optimizer.zero_grad()
        for batch in batches:  # gradient accumulation
            loss, metrics = policy(batch)
            (loss / len(batches)).backward()
            losses.append(loss.item())
        if step % 3 == 0:  # the second forward of a log step has the whole window
            returned[step] = metrics
        optimizer.step()
        policy.update()
    written = scalars(tmp_path / "tb")
    for name in (*README_METRICS, "loss", "lr/policy", "lr/q", "lr/v", "policy_loss/intervention"):
        assert [step for step, _ in written[name]] == [3, 6], name
    for step, value in written["loss"]:
        window = losses[2 * (step - 3) : 2 * step]
        assert value == pytest.approx(sum(window) / len(window), rel=1e-5)
        assert returned[step]["loss"] == pytest.approx(value, rel=1e-6)
        assert all(isinstance(returned[step][name], float) for name in README_METRICS)
    for group in ("policy", "q"):  # each parameter group's own rate
        rate = getattr(policy.config, f"{group}_lr")
        assert [value for _, value in written[f"lr/{group}"]] == pytest.approx([rate, rate])


def test_lerobot_train_arguments_are_read_as_lerobot_parses_them(tmp_path, monkeypatch):
    policy = make_policy()
    monkeypatch.setattr("sys.argv", ["lerobot-train", f"--output_dir={tmp_path / 'run'}", "--log_freq", "7"])
    monitor = TrainingMonitor(policy.config, policy.parameters)
    assert (monitor.log_freq, monitor.tensorboard_dir()) == (7, tmp_path / "run" / "tensorboard")
    # --resume: lerobot-train reads everything from the run's saved train_config.json
    saved = tmp_path / "train_config.json"
    saved.write_text(json.dumps({"output_dir": str(tmp_path / "old"), "log_freq": 5}))
    monkeypatch.setattr("sys.argv", ["lerobot-train", "--resume=true", f"--config_path={saved}"])
    monitor = TrainingMonitor(policy.config, policy.parameters)
    assert (monitor.log_freq, monitor.tensorboard_dir()) == (5, tmp_path / "old" / "tensorboard")
    monkeypatch.setattr("sys.argv", ["lerobot-train"])  # LeRobot's defaults; its own timestamped folder
    monitor = TrainingMonitor(policy.config, policy.parameters)
    assert (monitor.log_freq, monitor.tensorboard_dir()) == (200, None)
    policy.config.runtime.tensorboard_dir = str(tmp_path / "own")
    assert monitor.tensorboard_dir() == tmp_path / "own"


def test_an_unknown_output_dir_is_named_once(monkeypatch, caplog):
    monkeypatch.setattr("sys.argv", ["lerobot-train"])
    policy = make_policy()
    policy.monitor.log_freq = 1
    optimizer = torch.optim.AdamW(policy.get_optim_params())
    batch = make_batch(policy.config, [0, 12])
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            loss, metrics = policy(batch)
            loss.backward()
            optimizer.step()
            policy.update()
    warnings = [r.message for r in caplog.records if "TensorBoard logging is off" in r.message]
    assert len(warnings) == 1 and "--output_dir" in warnings[0] and "tensorboard_dir" in warnings[0]
    assert math.isfinite(metrics["policy_loss"])


def test_learning_rates_come_only_from_the_policys_optimizer(tmp_path):
    policy = make_policy(runtime={"tensorboard_dir": str(tmp_path / "tb")})
    policy.monitor.log_freq = 1
    other = torch.nn.Linear(2, 2)
    other_optimizer = torch.optim.SGD([{"params": other.parameters(), "name": "policy"}], lr=0.5)
    optimizer = torch.optim.AdamW(policy.get_optim_params(), lr=1e-4)
    loss, _ = policy(make_batch(policy.config, [0, 12]))
    (loss + other(torch.ones(2)).sum()).backward()
    other_optimizer.step()
    optimizer.step()
    policy.update()
    assert scalars(tmp_path / "tb")["lr/policy"] == [(1, pytest.approx(policy.config.policy_lr))]


def test_the_optimizer_hooks_go_with_the_policy():
    from torch.optim import optimizer as optim

    def hooks() -> tuple[int, int]:
        gc.collect()  # policies of earlier tests
        return len(optim._global_optimizer_pre_hooks), len(optim._global_optimizer_post_hooks)

    before = hooks()
    policy = make_policy(runtime={"on_nonfinite": "skip"})
    policy(make_batch(policy.config, [0, 12]))  # the first training batch hooks the optimizers
    assert hooks() == (before[0] + 1, before[1] + 1)
    del policy
    assert hooks() == before


def test_no_frame_inspection_in_the_package():
    for path in SRC.rglob("*.py"):
        text = path.read_text()
        assert "_getframe" not in text and "currentframe" not in text, path
