"""Policy checkpoints loaded with their processors, the way LeRobot's commands build them: any LeRobot
policy (to act, e.g. the collector's actor), a pi_star_recap one (its critics value and label datasets), or
one rebuilt the way `lerobot-train --policy.path` fine-tunes it."""

from __future__ import annotations

from pathlib import Path


class CheckpointError(ValueError):
    """A checkpoint that exists but cannot serve the command, with what it holds instead."""


def load_policy(path: str | Path, device: str | None = None):
    """Any LeRobot policy checkpoint (a `pretrained_model` folder) with its pre/post-processors."""
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    from ..configuration_pi_star_recap import PiStarRECAPConfig

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path} is not a policy checkpoint (no config.json); pass the `pretrained_model` folder, "
            "e.g. outputs/train/<run>/checkpoints/last/pretrained_model."
        )
    config = PiStarRECAPConfig.from_pretrained(path)  # any policy type; ours migrated
    if device is not None:
        config.device = device
    policy = get_policy_class(config.type).from_pretrained(path, config=config)
    policy.eval()
    preprocessor, postprocessor = make_pre_post_processors(
        config,
        pretrained_path=str(path),
        preprocessor_overrides={"device_processor": {"device": config.device}},
    )
    return policy, preprocessor, postprocessor


def load_for_fine_tuning(checkpoint: str | Path, root: str | Path, device: str = "cpu", **config_overrides):
    """The policy and processors `lerobot-train --policy.path=<checkpoint>` builds to fine-tune on the
    dataset at `root` (LeRobot 0.6.1's lerobot_train.py: make_policy, then the checkpoint's processors with
    the new dataset's statistics as overrides), e.g. to check that stage 2 starts acting like stage 1."""
    from lerobot.datasets import LeRobotDatasetMetadata
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    from ..configuration_pi_star_recap import MOVED, PiStarRECAPConfig

    checkpoint = Path(checkpoint)
    meta = LeRobotDatasetMetadata(f"local/{Path(root).name}", root=root)
    config = PiStarRECAPConfig.from_pretrained(checkpoint)
    config.pretrained_path = checkpoint
    config.device = device
    # Overrides by a field's flat or grouped name (state_clip or normalization.state_clip).
    for name, value in config_overrides.items():
        group, _, field = MOVED.get(name, name).rpartition(".")
        owner = getattr(config, group) if group else config
        if not hasattr(owner, field):
            raise TypeError(f"load_for_fine_tuning: PiStarRECAPConfig has no option {name!r}.")
        setattr(owner, field, value)
    policy = make_policy(cfg=config, ds_meta=meta)
    norm_map = policy.config.normalization_mapping
    preprocessor, postprocessor = make_pre_post_processors(
        policy_cfg=config,
        pretrained_path=checkpoint,
        dataset_stats=meta.stats,
        preprocessor_overrides={
            "device_processor": {"device": device},
            "normalizer_processor": {
                "stats": meta.stats,
                "features": {**policy.config.input_features, **policy.config.output_features},
                "norm_map": norm_map,
            },
        },
        postprocessor_overrides={
            "unnormalizer_processor": {
                "stats": meta.stats,
                "features": policy.config.output_features,
                "norm_map": norm_map,
            }
        },
    )
    policy.eval()
    return policy, preprocessor, postprocessor


def load_recap_policy(path: str | Path, device: str | None = None):
    """A pi_star_recap checkpoint with its processors (offline evaluation and labelling need its critics)."""
    policy, preprocessor, postprocessor = load_policy(path, device)
    if policy.config.type != "pi_star_recap":
        raise CheckpointError(
            f"{path} holds a '{policy.config.type}' policy; this command needs pi_star_recap."
        )
    return policy, preprocessor, postprocessor
