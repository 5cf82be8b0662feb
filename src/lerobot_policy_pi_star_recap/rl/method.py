"""What a configuration trains, decided once: which critic gives the advantage, how the action expert is
conditioned on it, and how it weights the loss. Every part that depends on the method reads this object
(`PiStarRECAPConfig.method`) instead of re-deriving it from the flags."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CriticKind = Literal["iql", "distributional", "dataset", "none"]
ConditionKind = Literal["none", "continuous", "binary"]
WeightingKind = Literal["data_type", "awr"]


@dataclass(frozen=True)
class Method:
    critic: CriticKind  # trained IQL Q / V, trained distributional V, dataset labels, or none (BC)
    condition: ConditionKind  # standardised advantage (IQL), the paper's 0/1 indicator, or none
    weighting: WeightingKind  # data-type weights alone, or times exp(A / beta) (AWR)
    train_policy: bool  # false: the value-only stage

    @classmethod
    def resolve(
        cls,
        estimator: str,
        source: str,
        weighting: bool,
        conditioning: bool,
        train_policy: bool,
    ) -> Method:
        """From the config's flags (after `mode` filled them)."""
        uses_advantage = weighting or conditioning
        if not train_policy or (uses_advantage and source == "critic"):
            critic: CriticKind = "iql" if estimator == "iql" else "distributional"
        elif uses_advantage and source == "dataset":
            critic = "dataset"
        else:
            critic = "none"
        condition: ConditionKind = "none"
        if conditioning:
            # The paper conditions on a binary indicator; the IQL path on the standardised advantage itself.
            binary = estimator == "mc_distributional" or source == "dataset"
            condition = "binary" if binary else "continuous"
        return cls(critic, condition, "awr" if weighting else "data_type", train_policy)

    @property
    def trains_critics(self) -> bool:
        """Whether this run fits critics (for the policy's advantage, or as the value-only stage)."""
        return self.critic in ("iql", "distributional")

    @property
    def uses_advantage(self) -> bool:
        """Whether the policy loss depends on an advantage (otherwise it is plain weighted BC)."""
        return self.condition != "none" or self.weighting == "awr"
