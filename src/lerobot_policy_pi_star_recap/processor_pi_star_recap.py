"""Pre/post-processing pipelines of pi_star_recap, following LeRobot's SmolVLA / pi05 layout.

RECAP columns (data type, rewards, interventions) are not carried through this pipeline: LeRobot's
batch conversion drops unknown columns, also when processors are reloaded from a checkpoint, so the
policy looks them up by the global frame `index`, which the pipeline keeps (see recap_data.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from lerobot.processor import (
    NewLineTaskProcessorStep,
    PolicyAction,
    PolicyProcessorPipeline,
    ProcessorStepRegistry,
    TokenizerProcessorStep,
    make_default_policy_processor_steps,
    make_policy_processor_pipelines,
)

from .backbone import load_tokenizer
from .configuration_pi_star_recap import PiStarRECAPConfig


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
    unnormalise -> cpu for actions."""
    steps = make_default_policy_processor_steps(config, dataset_stats)
    input_steps = [
        steps.rename_observations,
        steps.add_batch_dim,
        NewLineTaskProcessorStep(),
        PiStarRECAPTokenizerStep(
            tokenizer_name=config.vlm_model_name,
            max_length=config.tokenizer_max_length,
            padding="max_length",
            padding_side="right",
        ),
        steps.to_device,
        steps.normalize,
    ]
    output_steps = [steps.unnormalize, steps.to_cpu]
    return make_policy_processor_pipelines(input_steps=input_steps, output_steps=output_steps)
