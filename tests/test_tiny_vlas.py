"""The tiny stock SmolVLA and pi05 of tests/tiny_vlas.py work through LeRobot's own code paths: policy
construction, the policies' own processors, `lerobot-train`, and `lerobot-eval`-style checkpoint loading,
all offline."""

from pathlib import Path

import pytest
import torch
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.configs.policies import PreTrainedConfig
from lerobot.datasets import LeRobotDatasetMetadata
from lerobot.policies.factory import make_policy, make_pre_post_processors
from safetensors.torch import load_file
from synthetic import ACTION_DIM, IMAGE, STATE, STATE_DIM, make_dataset
from tiny_vlas import (
    PI05_CLI_FLAGS,
    PI05_IMAGE_SIZE,
    PI05_VOCAB,
    fake_hub_cache,
    lerobot_train,
    offline_hub,
    pi05_config,
    smolvla_backbone,
    smolvla_cli_flags,
    smolvla_config,
    tiny_pi05,
)

IMAGE_SIZE = PI05_IMAGE_SIZE  # one dataset serves both policies
RUN_PI05 = Path(__file__).parent / "tiny_pi05_run.py"
INPUTS = {
    IMAGE: PolicyFeature(FeatureType.VISUAL, (3, IMAGE_SIZE, IMAGE_SIZE)),
    STATE: PolicyFeature(FeatureType.STATE, (STATE_DIM,)),
}
OUTPUTS = {"action": PolicyFeature(FeatureType.ACTION, (ACTION_DIM,))}
# normalisation statistics for both MEAN_STD (SmolVLA) and QUANTILES (pi05)
STATS = {
    key: {
        "mean": torch.zeros(dim),
        "std": torch.ones(dim),
        "q01": -torch.ones(dim),
        "q99": torch.ones(dim),
    }
    for key, dim in ((STATE, STATE_DIM), ("action", ACTION_DIM))
}


@pytest.fixture(scope="module")
def hub(tmp_path_factory) -> Path:
    """A hub cache holding only the fake `google/paligemma-3b-pt-224` tokenizer."""
    return fake_hub_cache(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> Path:
    """The local SmolVLM folder stock SmolVLA loads as vlm_model_name."""
    return smolvla_backbone(tmp_path_factory.mktemp("smolvlm"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """Two 8-frame episodes with 32 px images: enough for 2 training steps of batch 2."""
    return make_dataset(
        tmp_path_factory.mktemp("data") / "ds", ["demo", "auto"], length=8, image_size=IMAGE_SIZE
    )


def frame() -> dict:
    """One raw observation, as a robot or environment hands it to the preprocessor."""
    return {
        STATE: torch.randn(STATE_DIM),
        IMAGE: torch.rand(3, IMAGE_SIZE, IMAGE_SIZE),
        "task": "push the block",
    }


def load_like_eval(checkpoint: Path, dataset: Path):
    """Policy and processors from a checkpoint the way lerobot-eval builds them (make_policy +
    make_pre_post_processors with pretrained_path); checks every saved weight was loaded."""
    config = PreTrainedConfig.from_pretrained(checkpoint)
    config.pretrained_path = checkpoint
    policy = make_policy(config, ds_meta=LeRobotDatasetMetadata("local/synthetic", root=dataset))
    saved, loaded = load_file(checkpoint / "model.safetensors"), policy.state_dict()
    assert set(saved) == set(loaded) and all(torch.equal(saved[k], loaded[k]) for k in saved)
    preprocessor, postprocessor = make_pre_post_processors(config, pretrained_path=str(checkpoint))
    return policy, preprocessor, postprocessor


def test_smolvla_runs_its_own_processors_offline(backbone, tmp_path):
    from lerobot.policies.smolvla import SmolVLAPolicy

    with offline_hub(tmp_path):  # an empty cache: nothing may come from the hub
        policy = SmolVLAPolicy(smolvla_config(backbone, INPUTS, OUTPUTS))
        preprocessor, postprocessor = make_pre_post_processors(policy.config, dataset_stats=STATS)
    assert sum(p.numel() for p in policy.parameters()) < 2_000_000
    batch = preprocessor(frame())
    assert (
        batch["observation.language.tokens"].max()
        < policy.model.vlm_with_expert.vlm.config.text_config.vocab_size
    )
    action = postprocessor(policy.select_action(batch))
    assert action.shape == (1, ACTION_DIM) and torch.isfinite(action).all()


def test_pi05_runs_its_own_processors_offline(hub):
    from lerobot.policies.pi05 import PI05Policy

    with tiny_pi05():
        policy = PI05Policy(pi05_config(INPUTS, OUTPUTS))
    assert sum(p.numel() for p in policy.parameters()) < 1_000_000
    with offline_hub(hub):
        preprocessor, postprocessor = make_pre_post_processors(policy.config, dataset_stats=STATS)
    batch = preprocessor(frame())
    tokens = batch["observation.language.tokens"]
    assert tokens.max() < PI05_VOCAB and batch["observation.language.attention_mask"].sum() < tokens.shape[1]
    action = postprocessor(policy.select_action(batch))
    assert action.shape == (1, ACTION_DIM) and torch.isfinite(action).all()


@pytest.mark.slow
def test_smolvla_trains_with_lerobot_train_and_loads_like_eval(backbone, dataset, tmp_path):
    checkpoint = lerobot_train(
        "lerobot-train", *smolvla_cli_flags(backbone, IMAGE_SIZE), dataset=dataset, output=tmp_path / "out"
    )
    with offline_hub(tmp_path / "empty_hub"):
        policy, preprocessor, postprocessor = load_like_eval(checkpoint, dataset)
    assert type(policy).__name__ == "SmolVLAPolicy"
    action = postprocessor(policy.select_action(preprocessor(frame())))
    assert action.shape == (1, ACTION_DIM) and torch.isfinite(action).all()


@pytest.mark.slow
def test_pi05_trains_with_lerobot_train_and_loads_like_eval(hub, dataset, tmp_path):
    with offline_hub(hub):  # the subprocess inherits the environment variables
        checkpoint = lerobot_train(
            "python", RUN_PI05, "train", *PI05_CLI_FLAGS, dataset=dataset, output=tmp_path / "out"
        )
        with tiny_pi05():
            policy, preprocessor, postprocessor = load_like_eval(checkpoint, dataset)
    assert type(policy).__name__ == "PI05Policy"
    action = postprocessor(policy.select_action(preprocessor(frame())))
    assert action.shape == (1, ACTION_DIM) and torch.isfinite(action).all()
