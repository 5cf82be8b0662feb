"""Small synthetic inputs for the policy tests: configs, RECAP tables, batches and LeRobot datasets."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from lerobot.configs import FeatureType, PolicyFeature

from lerobot_policy_pi_star_recap import PiStarRECAPConfig
from lerobot_policy_pi_star_recap.configuration_pi_star_recap import GROUPS
from lerobot_policy_pi_star_recap.data.columns import RecapColumns
from lerobot_policy_pi_star_recap.data.recap_table import RecapTable
from lerobot_policy_pi_star_recap.model.backbone import tiny_tokenizer

IMAGE = "observation.images.cam"
STATE = "observation.state"
STATE_DIM, ACTION_DIM, IMAGE_SIZE = 5, 3, 32
TINY_GROUPS = {"expert": dict(width=64, depth=2, heads=4), "critic": dict(hidden_dim=64)}
TINY_CLI = [
    "--policy.expert.width=64",
    "--policy.expert.depth=2",
    "--policy.expert.heads=4",
    "--policy.critic.hidden_dim=64",
    "--policy.chunk_size=4",
    "--policy.n_action_steps=4",
    "--policy.device=cpu",
    "--policy.push_to_hub=false",
    "--wandb.enable=false",
    "--num_workers=0",
]
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(name: str) -> ModuleType:
    """A script of benchmarks/ (not a package) imported as a module, so its helpers can be tested; the
    folder joins sys.path as it does when the script runs, so scripts can import each other."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.append(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"{name}_bench", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


def merged(*layers: dict) -> dict:
    """Config keyword arguments layered (later wins); an option group given as a dict is updated key by key,
    so `critic={"value_num_bins": 21}` keeps the tiny critic width."""
    out: dict = {}
    for layer in layers:
        for key, value in layer.items():
            out[key] = {**out.get(key, {}), **value} if key in GROUPS and isinstance(value, dict) else value
    return out


def option(name: str, value: object) -> dict:
    """The keyword argument of PiStarRECAPConfig that sets the option at dotted path `name` ("expert.width")."""
    group, _, field = name.rpartition(".")
    return {group: GROUPS[group](**{field: value})} if group else {name: value}


def tiny_config(**overrides) -> PiStarRECAPConfig:
    """A CPU-sized config; option groups may be given as dicts of their fields (see `merged`)."""
    defaults = dict(
        device="cpu",
        chunk_size=4,
        n_action_steps=4,
        input_features={
            IMAGE: PolicyFeature(FeatureType.VISUAL, (3, IMAGE_SIZE, IMAGE_SIZE)),
            STATE: PolicyFeature(FeatureType.STATE, (STATE_DIM,)),
        },
        output_features={"action": PolicyFeature(FeatureType.ACTION, (ACTION_DIM,))},
        **TINY_GROUPS,
    )
    values = merged(defaults, overrides)
    groups = {k: GROUPS[k](**v) for k, v in values.items() if k in GROUPS and isinstance(v, dict)}
    return PiStarRECAPConfig(**{**values, **groups})


def episode_columns(types: list[str], length: int = 10, successes: list[bool] | None = None) -> RecapColumns:
    """Episodes of `length` frames with the paper's rewards; intervention episodes have the expert on
    their second half."""
    successes = successes if successes is not None else [True] * len(types)
    n = len(types) * length
    episode = np.repeat(np.arange(len(types)), length)
    step = np.tile(np.arange(length), len(types))
    codes = np.array([{"demo": 0, "auto": 1, "intervention": 2}[t] for t in types])[episode]
    last = step == length - 1
    success = np.array(successes)[episode]
    reward = np.where(last, np.where(success, 0.0, -float(length)), -1.0)
    return RecapColumns(
        index=np.arange(n),
        episode_index=episode,
        task_index=np.zeros(n, dtype=np.int64),
        data_type=codes,
        reward=reward,
        done=last,
        intervention=((codes == 2) & (step >= length // 2)).astype(np.float64),
        success=last & success,
    )


def attach_table(policy, columns: RecapColumns) -> RecapTable:
    config = policy.config
    table = RecapTable(
        columns, chunk_size=config.chunk_size, discount=config.iql_discount, n_step=config.advantage_n_step
    )
    policy.attach_dataset(table)
    return table


def make_batch(config: PiStarRECAPConfig, index: list[int], seed: int = 0, window: bool = True) -> dict:
    """A preprocessed training batch whose actions are a fixed function of the state (learnable)."""
    generator = torch.Generator().manual_seed(seed)
    batch_size = len(index)
    frames = 2 if window else 1
    state = torch.randn(batch_size, frames, STATE_DIM, generator=generator)
    images = torch.rand(batch_size, frames, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    steps = torch.arange(config.chunk_size).float()[None, :, None]
    actions = torch.tanh(state[:, :1, :ACTION_DIM] + 0.1 * steps)
    tokens = tiny_tokenizer()(
        ["push the block"] * batch_size, padding="max_length", max_length=16, return_tensors="pt"
    )
    batch = {
        IMAGE: images if window else images[:, 0],
        STATE: state if window else state[:, 0],
        "action": actions,
        "action_is_pad": torch.zeros(batch_size, config.chunk_size, dtype=torch.bool),
        "index": torch.tensor(index),
        "observation.language.tokens": tokens["input_ids"],
        "observation.language.attention_mask": tokens["attention_mask"],
    }
    return batch


def observation(batch: dict) -> dict:
    """The single-frame inference inputs of a training batch."""
    out = {k: v for k, v in batch.items() if k.startswith("observation.")}
    for key in (IMAGE, STATE):
        if out[key].dim() == (5 if key == IMAGE else 3):
            out[key] = out[key][:, 0]
    return out


def make_dataset(
    root: Path,
    types: list[str],
    length: int = 12,
    image_size: int = 16,
    fps: int = 10,
    successes: list[bool] | None = None,
    state_scale: float = 1.0,
    state_shift: float = 0.0,
) -> Path:
    """A local LeRobotDataset (v3, images stored as PNG) with the RECAP fields (README, Data Format) and
    the paper's rewards (-1 per step, 0 at success, -length at failure); states ~ N(state_shift,
    state_scale^2)."""
    successes = successes if successes is not None else [True] * len(types)
    from lerobot.datasets import LeRobotDataset

    shutil.rmtree(root, ignore_errors=True)
    features = {
        STATE: {"dtype": "float32", "shape": (STATE_DIM,), "names": None},
        "action": {"dtype": "float32", "shape": (ACTION_DIM,), "names": None},
        IMAGE: {
            "dtype": "image",
            "shape": (image_size, image_size, 3),
            "names": ["height", "width", "channels"],
        },
        "data_type": {"dtype": "string", "shape": (1,), "names": None},
        "reward": {"dtype": "float32", "shape": (1,), "names": None},
        "done": {"dtype": "bool", "shape": (1,), "names": None},
        "intervention_mask": {"dtype": "bool", "shape": (1,), "names": None},
        "next.success": {"dtype": "bool", "shape": (1,), "names": None},
    }
    dataset = LeRobotDataset.create(
        "local/synthetic", fps=fps, features=features, root=root, use_videos=False
    )
    rng = np.random.default_rng(0)
    for data_type, success in zip(types, successes, strict=True):
        for t in range(length):
            last = t == length - 1
            state = (state_shift + state_scale * rng.normal(size=STATE_DIM)).astype(np.float32)
            dataset.add_frame(
                {
                    STATE: state,
                    "action": np.tanh(state[:ACTION_DIM]),
                    IMAGE: rng.integers(0, 255, (image_size, image_size, 3), dtype=np.uint8),
                    "data_type": data_type,
                    "reward": np.array([(0.0 if success else -float(length)) if last else -1.0], np.float32),
                    "done": np.array([last]),
                    "next.success": np.array([last and success]),
                    "intervention_mask": np.array([data_type == "intervention" and t >= length // 2]),
                    "task": "push the block",
                }
            )
        dataset.save_episode()
    dataset.finalize()
    return root
