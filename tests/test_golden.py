"""Golden behaviour: a checkpoint in the file layout of an earlier release gives the same losses, actions
and values to float32 round-off (TOLERANCE), for every mode, after any refactor.

tests/golden/golden.json holds, per mode, the checkpoint's config.json, the names / shapes / dtypes of its
tensors (exactly as `save_pretrained` wrote them), and the outputs that release computed. The weights are
not stored: every tensor is a fixed function of its name, so the same file can be rebuilt anywhere. To
regenerate (only when behaviour is meant to change, and say so in the commit):
`python tests/test_golden.py`.
"""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from synthetic import episode_columns, make_batch, observation, tiny_config

from lerobot_policy_pi_star_recap import PiStarRECAPPolicy
from lerobot_policy_pi_star_recap.data.columns import RecapColumns
from lerobot_policy_pi_star_recap.data.recap_table import RecapTable

GOLDEN = Path(__file__).parent / "golden" / "golden.json"
# float32 kernels differ by ~1e-6 between CPUs (AVX2 vs AVX-512 reduction orders: 1.4e-6 measured on an
# actions_beta1.5 entry of 0.36). Adam's first step is ~lr * sign(g), so a gradient of round-off size
# can move a parameter by a full lr: outputs after the step get a wider band (5.8e-5 measured on a q of
# 0.68). A change in behaviour moves these outputs by far more than either.
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}
AFTER_STEP_TOLERANCE = {"rtol": 1e-3, "atol": 1e-4}
BEFORE_STEP = ("loss", "metrics")
TYPES = ["demo", "auto", "intervention", "demo"]
INDEX = [0, 5, 12, 22, 27, 35]  # demo, demo, auto, intervention (robot), intervention (expert), demo
MODES: dict[str, dict] = {
    "iql": {},
    "paper": {"advantage_estimator": "mc_distributional", "advantage_n_step": 3},
    "paper_full_return": {"advantage_estimator": "mc_distributional", "advantage_horizon": "full_return"},
    "bc": {"use_advantage_weighting": False, "use_advantage_conditioning": False},
    "awr": {"use_advantage_weighting": True, "use_advantage_conditioning": False},
    "dataset": {"advantage_source": "dataset", "use_advantage_weighting": False},
    "value_only": {"advantage_estimator": "mc_distributional", "train_policy": False},
}


def golden_columns() -> RecapColumns:
    columns = episode_columns(TYPES, length=10, successes=[True, False, True, True])
    n = len(columns.index)
    columns.advantage = np.linspace(-2.0, 2.0, n)
    columns.indicator = (np.arange(n) % 3 == 0).astype(np.float64)
    return columns


def tensor_for(name: str, shape: list[int], dtype: str) -> torch.Tensor:
    """The value a golden checkpoint holds for tensor `name`: fixed by the name alone."""
    generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    if dtype.startswith("int"):
        return torch.randint(0, 1000, shape, generator=generator, dtype=getattr(torch, dtype))
    values = 0.1 * torch.randn(shape, generator=generator)
    if name.endswith("weight") and len(shape) == 1:  # a norm's scale
        values = 1.0 + values
    return values.to(getattr(torch, dtype))


def write_checkpoint(case: dict, directory: Path) -> Path:
    """A checkpoint directory with the golden config and name-determined weights."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(case["config"]))
    tensors = {name: tensor_for(name, spec["shape"], spec["dtype"]) for name, spec in case["tensors"].items()}
    for name, value in case["buffers"].items():
        tensors[name] = torch.tensor(value, dtype=tensors[name].dtype)
    save_file(tensors, str(directory / "model.safetensors"))
    return directory


def load_golden_policy(case: dict, directory: Path) -> PiStarRECAPPolicy:
    torch.manual_seed(0)  # the run seed the training noise mixes in
    policy = PiStarRECAPPolicy.from_pretrained(write_checkpoint(case, directory))
    policy.attach_dataset(
        RecapTable(
            golden_columns(),
            chunk_size=policy.config.chunk_size,
            discount=policy.config.iql_discount,
            n_step=policy.config.advantage_n_step,
        )
    )
    return policy


def outputs(policy: PiStarRECAPPolicy) -> dict[str, list]:
    """Per-sample losses before and after one optimizer step, sampled actions and values."""
    config = policy.config
    batch = make_batch(config, INDEX, seed=3)
    out: dict[str, list] = {}
    policy.train()
    per_sample, metrics = policy(batch, reduction="none")
    out["loss"] = per_sample.tolist()
    out["metrics"] = {k: metrics[k] for k in sorted(metrics)}
    optimizer = torch.optim.AdamW(policy.get_optim_params(), lr=1e-3)
    optimizer.zero_grad()
    per_sample.mean().backward()
    optimizer.step()
    policy.update()
    out["loss_after_step"] = policy(batch, reduction="none")[0].tolist()
    noise = torch.randn(
        len(INDEX), config.chunk_size, policy.action_dim, generator=torch.Generator().manual_seed(5)
    )
    for beta in (1.0, 1.5):
        config.cfg_beta = beta
        out[f"actions_beta{beta}"] = (
            policy.predict_action_chunk(observation(batch), noise=noise).flatten().tolist()
        )
    if config.trains_critics:
        out["values"] = {k: v.tolist() for k, v in sorted(policy.predict_values(batch).items())}
    return out


@pytest.mark.parametrize("mode", list(MODES))
def test_golden_checkpoint_behaves_as_recorded(mode, tmp_path):
    case = json.loads(GOLDEN.read_text())[mode]
    got = outputs(load_golden_policy(case, tmp_path / mode))
    expected = case["outputs"]
    assert sorted(got) == sorted(expected)
    for key, value in expected.items():
        tolerance = TOLERANCE if key in BEFORE_STEP else AFTER_STEP_TOLERANCE
        if isinstance(value, dict):
            assert set(value) <= set(got[key]), key
            for name in value:
                np.testing.assert_allclose(got[key][name], value[name], **tolerance, err_msg=name)
        else:
            np.testing.assert_allclose(got[key], value, **tolerance, err_msg=key)


def regenerate(directory: Path) -> None:
    golden = {}
    for mode, overrides in MODES.items():
        torch.manual_seed(0)
        saved = directory / f"{mode}_saved"
        PiStarRECAPPolicy(tiny_config(**overrides)).save_pretrained(saved)
        weights = load_file(str(saved / "model.safetensors"))
        case = {
            "config": json.loads((saved / "config.json").read_text()),
            "tensors": {
                k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
                for k, v in weights.items()
            },
            # counters, seeds and running statistics as saved; every other tensor is name-determined
            "buffers": {k: v.tolist() for k, v in weights.items() if v.numel() <= 2},
        }
        case["outputs"] = outputs(load_golden_policy(case, directory / mode))
        golden[mode] = case
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(golden, indent=1) + "\n")


if __name__ == "__main__":
    import tempfile

    sys.path.insert(0, str(Path(__file__).parent))
    with tempfile.TemporaryDirectory() as tmp:
        regenerate(Path(tmp))
    print(f"wrote {GOLDEN}")
