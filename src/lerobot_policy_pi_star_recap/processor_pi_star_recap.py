"""Pre/post-processing pipelines of pi_star_recap, following LeRobot's SmolVLA / pi05 layout.

RECAP columns (data type, rewards, interventions) are not carried through this pipeline: LeRobot's
batch conversion drops unknown columns, also when processors are reloaded from a checkpoint, so the
policy looks them up by the global frame `index`, which the pipeline keeps (see data/recap_table.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lerobot.configs import FeatureType, NormalizationMode
from lerobot.processor import (
    NewLineTaskProcessorStep,
    PolicyAction,
    PolicyProcessorPipeline,
    ProcessorStepRegistry,
    TokenizerProcessorStep,
    make_default_policy_processor_steps,
    make_policy_processor_pipelines,
)

from .configuration_pi_star_recap import PiStarRECAPConfig
from .model.backbone import load_tokenizer

PREPROCESSOR_FILE = "policy_preprocessor.json"
NORMALIZER_STEP = "normalizer_processor"


def floor_state_std(config: PiStarRECAPConfig, stats: dict | None) -> dict | None:
    """A copy of `stats` whose state std is at least `config.normalization.state_std_floor` (in the state's own units).

    A dimension that barely moves in the training episodes (an object resting on the table: std 0.003)
    otherwise turns every off-demonstration state into a z-score in the hundreds."""
    if not stats:
        return stats
    out = dict(stats)
    for key, feature in config.input_features.items():
        mode = config.normalization_mapping.get(feature.type.value)
        normalised_state = (
            feature.type in (FeatureType.STATE, FeatureType.ENV) and mode == NormalizationMode.MEAN_STD
        )
        if normalised_state and "std" in out.get(key, {}):
            std = np.asarray(out[key]["std"], dtype=np.float64)
            out[key] = {**out[key], "std": np.maximum(std, config.normalization.state_std_floor)}
    return out


def checkpoint_normalization_stats(checkpoint: Path) -> dict[str, dict[str, np.ndarray]]:
    """The normalisation statistics saved with a checkpoint's preprocessor (what it was trained with)."""
    from safetensors.numpy import load_file

    pipeline_file = checkpoint / PREPROCESSOR_FILE
    if not pipeline_file.is_file():
        raise FileNotFoundError(
            f"{pipeline_file} does not exist, so the checkpoint's normalisation statistics are unknown; "
            "pass --policy.normalization.keep_pretrained_stats=false to normalise with the new dataset's statistics."
        )
    steps = json.loads(pipeline_file.read_text())["steps"]
    state_files = [
        s["state_file"] for s in steps if s.get("registry_name") == NORMALIZER_STEP and "state_file" in s
    ]
    stats: dict[str, dict[str, np.ndarray]] = {}
    for name in state_files:
        for flat_key, value in load_file(str(checkpoint / name)).items():
            key, stat = flat_key.rsplit(".", 1)
            stats.setdefault(key, {})[stat] = value
    return stats


@dataclass
@ProcessorStepRegistry.register(name="pi_star_recap_tokenizer")
class PiStarRECAPTokenizerStep(TokenizerProcessorStep):
    """LeRobot's tokenizer step, loading the tokenizer that belongs to `vlm_model_name` (also "tiny",
    whose byte-level tokenizer is built in code), so the saved pipeline reloads offline."""

    def __post_init__(self) -> None:
        if self.tokenizer is None and self.tokenizer_name is None:
            raise ValueError("PiStarRECAPTokenizerStep needs tokenizer_name (the policy's vlm_model_name).")
        self.input_tokenizer = self.tokenizer or load_tokenizer(self.tokenizer_name)


def make_pi_star_recap_pre_post_processors(
    config: PiStarRECAPConfig,
    dataset_stats: dict[str, dict[str, torch.Tensor]] | None = None,
) -> tuple[
    PolicyProcessorPipeline[dict[str, Any], dict[str, Any]],
    PolicyProcessorPipeline[PolicyAction, PolicyAction],
]:
    """Rename -> batch -> newline-terminated task -> tokenize -> device -> normalise; and
    unnormalise -> cpu for actions. On a pi05 base, pi05's own order: rename -> batch -> normalise ->
    "Task: ..., State: ...;\nAction: " prompt -> tokenize -> device."""
    steps = make_default_policy_processor_steps(config, floor_state_std(config, dataset_stats))
    output_steps = [steps.unnormalize, steps.to_cpu]
    if config.base_model == "pi05":
        from lerobot.policies.pi05.processor_pi05 import Pi05PrepareStateTokenizerProcessorStep

        prompt_steps = [steps.normalize, Pi05PrepareStateTokenizerProcessorStep()]
        tokenizer, last = config.pi05.tokenizer, []
    else:
        prompt_steps, tokenizer, last = [NewLineTaskProcessorStep()], config.vlm_model_name, [steps.normalize]
    input_steps = [
        steps.rename_observations,
        steps.add_batch_dim,
        *prompt_steps,
        PiStarRECAPTokenizerStep(
            tokenizer_name=tokenizer,
            max_length=config.backbone.tokenizer_max_length,
            padding=config.backbone.tokenizer_padding if config.base_model == "native" else "max_length",
            padding_side="right",
        ),
        steps.to_device,
        *last,
    ]
    return make_policy_processor_pipelines(input_steps=input_steps, output_steps=output_steps)
