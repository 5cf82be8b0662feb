"""A training step reads nothing back from the device (each read waits for the GPU and stalls the launch
queue): for every mode a user can configure, one step between log steps (forward, backward, optimizer step,
`policy.update()`) makes at most MAX_SYNCS host syncs, and a log step reads its window once.

On CPU, `torch.cuda.set_sync_debug_mode` has nothing to report, so the Tensor methods that read a value
back to the host are wrapped with counters instead. `all()` / `any()` are not counted: they return
tensors, and only an `if` on them (`__bool__`, counted) reads back. Reads inside torch.optim itself (the
for-loop AdamW reads its CPU step counters) are not the policy's: the policy's own optimizer hooks, which
run inside `optimizer.step()`, are counted.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import episode_columns, make_batch, merged, tiny_config
from test_pi05_base import TINY_BASE

from lerobot_policy_pi_star_recap import PiStarRECAPPolicy
from lerobot_policy_pi_star_recap.data.recap_table import RecapTable

MAX_SYNCS = 2  # the budget; the policy needs none
READS = (
    "item",
    "tolist",
    "numpy",
    "cpu",
    "nonzero",
    "__bool__",
    "__int__",
    "__float__",
    "__index__",
    "__format__",
)
TORCH_OPTIM = str(Path(torch.optim.__file__).parent)
MODES: dict[str, dict] = {
    "recap (IQL conditioning, the default)": {},
    "recap, on_nonfinite=skip": {"runtime": {"on_nonfinite": "skip"}},
    "recap, prompts padded to the longest": {
        "backbone": {"tokenizer_padding": "longest"},
        "normalization": {"state_clip": 3.0},
    },
    "recap with advantage weighting": {"use_advantage_weighting": True},
    "awr": {"mode": "awr"},
    "paper, critic advantage": {"advantage_estimator": "mc_distributional", "advantage_n_step": 3},
    "paper, full return": {"advantage_estimator": "mc_distributional", "advantage_horizon": "full_return"},
    "paper, dataset advantage": {"mode": "paper"},
    "value only": {"advantage_estimator": "mc_distributional", "train_policy": False},
    "bc": {"mode": "bc"},
    "filtered bc": {"mode": "filtered_bc"},
    "pi05 base": TINY_BASE,
    "pi05 base, gradient checkpointing": merged(TINY_BASE, {"pi05": {"gradient_checkpointing": True}}),
}


class SyncCounter:
    """Counts calls of the Tensor methods that read device memory on the host, by caller."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.calls: Counter[str] = Counter()
        self.active = False
        for name in READS:
            monkeypatch.setattr(torch.Tensor, name, self._wrap(name, getattr(torch.Tensor, name)))

    def _wrap(self, name: str, method):
        def counted(tensor, *args, **kwargs):
            if self.active:
                caller = sys._getframe(1).f_code
                if not caller.co_filename.startswith(TORCH_OPTIM):
                    self.calls[f"{name} in {caller.co_filename}:{caller.co_name}"] += 1
            return method(tensor, *args, **kwargs)

        return counted

    def count(self, step) -> Counter[str]:
        self.calls.clear()
        self.active = True
        try:
            step()
        finally:
            self.active = False
        return Counter(self.calls)


def labelled_columns():
    columns = episode_columns(
        ["demo", "auto", "intervention", "demo"], length=10, successes=[True, False, True, True]
    )
    n = len(columns.index)
    columns.advantage = np.linspace(-2.0, 2.0, n)  # what `value-label` writes
    columns.indicator = (np.arange(n) % 3 == 0).astype(np.float64)
    return columns


def training_step(policy: PiStarRECAPPolicy, optimizer: torch.optim.Optimizer, batch: dict):
    def step() -> None:
        loss, _ = policy(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        policy.update()

    return step


def trained_policy(overrides: dict, log_freq: int) -> tuple[PiStarRECAPPolicy, torch.optim.Optimizer, dict]:
    torch.manual_seed(0)
    policy = PiStarRECAPPolicy(tiny_config(**overrides)).train()
    config = policy.config
    policy.attach_dataset(
        RecapTable(labelled_columns(), chunk_size=config.chunk_size, discount=config.iql_discount, n_step=3)
    )
    policy.monitor.log_freq = log_freq
    return (
        policy,
        torch.optim.AdamW(policy.get_optim_params(), lr=1e-4),
        make_batch(config, [0, 5, 12, 22, 27, 35]),
    )


@pytest.mark.parametrize("mode", list(MODES))
def test_a_training_step_makes_no_host_sync(mode, monkeypatch):
    policy, optimizer, batch = trained_policy(MODES[mode], log_freq=1000)
    step = training_step(policy, optimizer, batch)
    step()  # the first step does its one-time work (the first batch's indices are checked against the table)
    counter = SyncCounter(monkeypatch)
    syncs = counter.count(step)
    print(f"{mode}: {sum(syncs.values())} host syncs {dict(syncs)}")
    assert sum(syncs.values()) <= MAX_SYNCS, dict(syncs)


def test_a_log_step_reads_its_window_once(monkeypatch, tmp_path):
    policy, optimizer, batch = trained_policy(
        {"runtime": {"tensorboard_dir": str(tmp_path / "tb")}}, log_freq=2
    )
    step = training_step(policy, optimizer, batch)
    step()
    counter = SyncCounter(monkeypatch)
    syncs = counter.count(step)  # step 2: the forward reads the window; update() writes that read
    assert sum(syncs.values()) == 1 and all(call.startswith("tolist in") for call in syncs), dict(syncs)
