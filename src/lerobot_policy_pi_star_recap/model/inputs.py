"""What the tensor model takes: one frame's backbone inputs (`Observation`) and its RECAP targets
(`RecapTargets`), both already on the batch's device. The data layer builds the targets
(`data.recap_table.RecapTable.lookup`); the model never reads a dataset."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class Observation:
    """The backbone's inputs for one frame, already normalised and tokenised."""

    images: list[Tensor]  # one (B, 3, H, W) tensor per camera
    tokens: Tensor  # (B, L) task tokens
    mask: Tensor  # (B, L) which tokens are real
    state: Tensor | None  # (B, S) normalised robot (and environment) state


@dataclass(frozen=True, slots=True)
class RecapTargets:
    """Per-frame RECAP targets of a batch, every field (B,). Rewards and returns are raw (the model divides
    them by its return scale); windows stop at the episode's end (see `rl.returns`).

    data_type: int64 code (`schema.DEMO` / `AUTO` / `INTERVENTION`); intervention: float 1.0 on frames an
    expert controlled; success: float 1 / 0 for the frame's episode, NaN where the dataset does not say;
    chunk_reward / chunk_discount: IQL's H-step reward sum and bootstrap discount (0: no bootstrap);
    mc_return: undiscounted Monte-Carlo return to the episode's end; nstep_reward / nstep_bootstrap: the
    paper's N-step sum and bootstrap factor; segment_left: int64 frames until the controller changes or
    the episode ends; advantage / indicator: `value-label`'s columns, NaN where absent.
    """

    data_type: Tensor
    intervention: Tensor
    success: Tensor
    chunk_reward: Tensor
    chunk_discount: Tensor
    mc_return: Tensor
    nstep_reward: Tensor
    nstep_bootstrap: Tensor
    segment_left: Tensor
    advantage: Tensor
    indicator: Tensor
