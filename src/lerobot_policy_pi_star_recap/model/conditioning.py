"""From the critic's advantage to what the action expert sees: the condition and the loss weights.

`AdvantageConditioner` owns the advantage's running statistics (mean, variance, the quantile threshold of
the binary indicator), standardisation, the condition embedding and the AWR weights, so the training
step only asks it for (condition, weights) and inference for the conditional / unconditional inputs.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..configuration_pi_star_recap import PiStarRECAPConfig
from ..rl.advantage import advantage_indicator
from ..rl.iql import awr_weights
from .action_expert import AdvantageEmbedding


def distributed_mean(x: Tensor) -> Tensor:
    """Average over data-parallel ranks so running statistics stay identical on every rank."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        x = x.clone()
        dist.all_reduce(x)
        x /= dist.get_world_size()
    return x


class AdvantageConditioner(nn.Module):
    def __init__(self, config: PiStarRECAPConfig, width: int):
        """`width`: the size of the condition the action expert takes (its time-conditioning width)."""
        super().__init__()
        self.config = config
        self.method = config.method
        self.width = width
        self.embedding = AdvantageEmbedding(width) if self.method.condition != "none" else None
        self.binary = self.method.condition == "binary"
        self.register_buffer("advantage_mean", torch.tensor(0.0))
        self.register_buffer("advantage_var", torch.tensor(1.0))
        self.register_buffer("indicator_threshold", torch.tensor(0.0))
        self.register_buffer("advantage_updates", torch.tensor(0, dtype=torch.long))

    def standardise(self, advantage: Tensor) -> Tensor:
        """Advantage in units of its running standard deviation, centred on its running mean."""
        std = self.advantage_var.sqrt().clamp_min(self.config.conditioning.advantage_std_floor)
        return (advantage - self.advantage_mean) / std

    def update_stats(self, advantage: Tensor) -> None:
        """EMA of the advantage's mean / variance and of the indicator's quantile threshold (all ranks)."""
        quantile = torch.quantile(advantage, 1.0 - self.config.conditioning.indicator_positive_fraction)
        batch_stats = distributed_mean(
            torch.stack([advantage.mean(), advantage.var(unbiased=False), quantile])
        )
        # The first batch sets the statistics; chosen on the device, so the step reads nothing back.
        momentum = torch.where(
            self.advantage_updates == 0, 1.0, self.config.conditioning.advantage_stats_momentum
        )
        self.advantage_updates += 1
        for buffer, value in zip(
            (self.advantage_mean, self.advantage_var, self.indicator_threshold), batch_stats, strict=True
        ):
            buffer.lerp_(value.to(buffer.dtype), momentum.to(buffer.dtype))

    def condition_value(self, advantage: Tensor, given: Tensor | None, intervention: Tensor) -> Tensor:
        """The binary indicator (paper) or the standardised, clamped advantage (IQL). `given`: the critic's
        per-frame indicator (NaN where it has none), taken as is (`CriticOutput.indicator`); `intervention`:
        1.0 on frames an expert controlled (`RecapTargets.intervention`)."""
        if self.binary:
            computed = advantage_indicator(advantage, self.indicator_threshold, intervention)
            return computed if given is None else torch.where(torch.isnan(given), computed, given)
        clip = self.config.conditioning.advantage_clip
        standardised = self.standardise(advantage).clamp(-clip, clip)
        # The paper's rule for human corrections, in continuous form: a corrected frame is labelled with at
        # least the advantage the policy is asked for at inference, whatever happened after the correction.
        corrected = intervention > 0.5
        return torch.where(corrected, standardised.clamp(min=self.config.advantage_scale), standardised)

    def forward(
        self,
        advantage: Tensor | None,
        given: Tensor | None,
        intervention: Tensor,
        weights: Tensor,
        generator: torch.Generator,
        dtype: torch.dtype,
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """(condition (B, width), loss weights (B,), stats) for one training batch; `given` and
        `intervention` as in `condition_value`."""
        config, method = self.config, self.method
        batch_size = weights.shape[0]
        condition = torch.zeros(batch_size, self.width, device=weights.device, dtype=dtype)
        stats: dict[str, Tensor] = {}
        if advantage is None or not method.uses_advantage:
            return condition, weights, stats
        advantage = advantage.float()
        if self.training:
            self.update_stats(advantage)
        stats["advantage"] = advantage
        if method.weighting == "awr":
            # Standardised so the temperature means the same for any reward scale, and divided by the batch
            # mean so the weights reshape the loss without changing its overall size.
            awr = awr_weights(
                self.standardise(advantage), config.iql_temperature, config.conditioning.advantage_weight_clip
            )
            awr = awr / awr.mean().clamp_min(1e-8)
            weights = weights * awr
            stats["awr_weight"] = awr
        if self.embedding is not None:
            value = self.condition_value(advantage, given, intervention)
            keep = (
                torch.rand(batch_size, device=weights.device, generator=generator)
                >= config.conditioning.dropout
            )
            condition = self.embedding(value, keep)
            stats["condition"] = value
            if self.binary:
                unconditional = config.conditioning.unconditional_negative_weight
                if unconditional is None:
                    unconditional = config.conditioning.negative_weight
                negative = torch.where(keep, config.conditioning.negative_weight, unconditional)
                weights = weights * torch.where(value > 0.5, 1.0, negative)
        return condition, weights, stats

    def inference_conditions(self, batch_size: int, like: Tensor) -> tuple[Tensor, Tensor | None]:
        """(conditional, unconditional) expert inputs at `advantage_scale`; None when not conditioned."""
        if self.embedding is None:
            return like.new_zeros(batch_size, self.width), None
        value = torch.full((batch_size,), self.config.advantage_scale, device=like.device)
        keep = torch.ones(batch_size, dtype=torch.bool, device=like.device)
        return self.embedding(value, keep), self.embedding(value, ~keep)
