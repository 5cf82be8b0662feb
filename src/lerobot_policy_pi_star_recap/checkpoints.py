"""Loading policy checkpoints: any LeRobot policy (to act, e.g. the collector's actor), a pi_star_recap one
(its critics value datasets), or one rebuilt the way `lerobot-train --policy.path` fine-tunes it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import Tensor, nn


class CheckpointError(ValueError):
    """A checkpoint that exists but cannot serve the command, with what it holds instead."""


def checkpoint_weights(
    name_or_path: str | Path, revision: str | None = None, what: str = "pi_star_recap checkpoint"
) -> Path:
    """model.safetensors of a local checkpoint directory or a hub repo, or a clear error (never None)."""
    path = Path(name_or_path)
    if path.is_dir():
        weights = path / "model.safetensors"
    else:
        from huggingface_hub import hf_hub_download

        try:
            weights = Path(hf_hub_download(str(name_or_path), "model.safetensors", revision=revision))
        except Exception as e:  # offline, unknown repo, no access
            raise FileNotFoundError(
                f"{name_or_path} is neither a local {what} directory nor a reachable hub repo with "
                f"model.safetensors ({e})."
            ) from e
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} does not exist: {path} is not a {what} directory.")
    return weights


def load_weights_strictly(
    module: nn.Module,
    weights: Path,
    mismatch: str,
    rename: Callable[[dict[str, Tensor]], dict[str, Tensor]] = dict,
    may_lack: Callable[[str], bool] = lambda name: False,
    fresh: tuple[str, ...] = (),
) -> dict[str, Tensor]:
    """Every tensor of `module` from the safetensors file `weights`, or an error naming what differs (no
    silent random init): `rename` maps the file's names to the module's, `may_lack` names tensors the file
    may leave out, and tensors under the `fresh` prefixes may be missing or extra. Tied tensors (e.g. a
    VLM's embedding and output layer) are saved once, under one of their names. Returns what was loaded."""
    from safetensors.torch import load_file

    try:
        saved = load_file(str(weights), device="cpu")
    except Exception as e:  # safetensors raises several error types for damaged files
        raise RuntimeError(
            f"{weights} is truncated or corrupted ({e}); use another checkpoint (e.g. an earlier step)."
        ) from e
    saved = rename(saved)
    own = module.state_dict()
    loaded_storage = {own[k].data_ptr() for k in saved if k in own}
    missing = [
        k
        for k in own
        if k not in saved
        and own[k].data_ptr() not in loaded_storage
        and not may_lack(k)
        and not k.startswith(fresh)
    ]
    unexpected = [k for k in saved if k not in own and not k.startswith(fresh)]
    resized = [
        k for k, v in saved.items() if k in own and own[k].shape != v.shape and not k.startswith(fresh)
    ]
    if missing or unexpected or resized:
        raise RuntimeError(
            f"{weights} {mismatch}: missing {missing[:5]}, unexpected {unexpected[:5]}, other shapes {resized[:5]}."
        )
    module.load_state_dict(saved, strict=False)
    return saved


def load_policy(path: str | Path, device: str | None = None):
    """Any LeRobot policy checkpoint (a `pretrained_model` folder) with its pre/post-processors."""
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    from .configuration_pi_star_recap import PiStarRECAPConfig

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

    from .configuration_pi_star_recap import PiStarRECAPConfig

    checkpoint = Path(checkpoint)
    meta = LeRobotDatasetMetadata(f"local/{Path(root).name}", root=root)
    config = PiStarRECAPConfig.from_pretrained(checkpoint)
    config.pretrained_path = checkpoint
    config.device = device
    for name, value in config_overrides.items():
        setattr(config, name, value)
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
