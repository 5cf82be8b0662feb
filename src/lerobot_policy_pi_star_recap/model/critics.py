"""Where the policy's advantage comes from, behind one interface (`Critic`):

  IQLCritics           IQL's twin Q(s, a_{t:t+H}) and expectile V(s), A = min Q_target - V
  DistributionalValue  the paper's categorical V(s) over normalised returns, A = N-step or full return - V
  DatasetAdvantage     advantages / indicators written into the dataset by `pi-star-recap value-label`
  NoAdvantage          plain (weighted) behaviour cloning

Each takes backbone features and the frame's RECAP targets (rewards already divided by the return
scale) and returns a `CriticOutput`: per-sample loss, the advantage the policy uses, logged stats. The
twin Q networks are one batched ensemble (one matmul per layer for both members), and their
Polyak-averaged copy is the target network that `after_step` moves after each optimizer step.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from ..configuration_pi_star_recap import PiStarRECAPConfig
from ..errors import RecapDataError
from ..rl.advantage import nstep_advantage
from ..rl.iql import asymmetric_l2_loss, chunked_q_target
from ..rl.value_bins import distributional_value_loss, expected_value
from .inputs import RecapTargets


class EnsembleLinear(nn.Module):
    """`members` independent linear layers evaluated with one batched matmul: (E, B, in) -> (E, B, out)."""

    def __init__(self, members: int, in_dim: int, out_dim: int):
        super().__init__()
        bound = in_dim**-0.5
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(members, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleMLP(nn.Module):
    """MLP with LayerNorm after each hidden layer (stabilises value learning), batched over members."""

    def __init__(self, members: int, in_dim: int, hidden_dim: int, depth: int, out_dim: int):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * depth
        self.hidden = nn.ModuleList(
            EnsembleLinear(members, a, b) for a, b in zip(dims[:-1], dims[1:], strict=True)
        )
        self.out = EnsembleLinear(members, dims[-1], out_dim)
        self.members = members

    def forward(self, x: Tensor) -> Tensor:
        x = x.unsqueeze(0).expand(self.members, *x.shape) if x.dim() == 2 else x
        for layer in self.hidden:
            x = layer(x)
            x = F.gelu(F.layer_norm(x, x.shape[-1:]))
        return self.out(x)


@dataclass
class CriticBatch:
    """What every critic is trained from; returns and rewards are divided by `scale` inside."""

    features: Tensor  # (B, F) frame t, detached unless critic_backbone_grad
    next_features: Tensor | None  # (B, F) frame t+H for bootstrapping (no gradient), if the critic needs it
    chunk: Tensor  # (B, H * A) the recorded action chunk, padding zeroed
    targets: RecapTargets  # of the batch's frames, rewards raw
    scale: Tensor  # return normaliser
    support: tuple[float, float]  # value support (low, high), in normalised return units


@dataclass
class CriticOutput:
    loss: Tensor  # (B,) summed critic losses
    advantage: Tensor | None  # (B,) detached; None for plain behaviour cloning
    # (B,) the 0/1 indicator the data gives each frame, NaN where it gives none (dataset labels only): the
    # condition takes it as is, and computes one from the advantage elsewhere.
    indicator: Tensor | None = None
    stats: dict[str, Tensor] = field(default_factory=dict)


class Critic(nn.Module):
    """The interface: a loss and an advantage per frame, parameter groups, an after-step update."""

    needs_next_features = False  # whether `CriticBatch.next_features` (frame t+H) must be encoded
    has_value = False  # whether `predict` can score frames

    def forward(self, batch: CriticBatch) -> CriticOutput:
        raise NotImplementedError

    def predict(self, features: Tensor, chunk: Tensor | None, scale: Tensor, support: tuple[float, float]):
        raise RuntimeError("this policy has no critics (it was trained as plain behaviour cloning).")

    def param_groups(self, config: PiStarRECAPConfig) -> list[dict]:
        return []

    def after_step(self, config: PiStarRECAPConfig) -> None:
        """Called once per optimizer step."""


class NoAdvantage(Critic):
    """Plain (data-type weighted) behaviour cloning: no critic, no advantage."""

    def forward(self, batch: CriticBatch) -> CriticOutput:
        return CriticOutput(batch.features.new_zeros(batch.features.shape[0]), None)


class DatasetAdvantage(Critic):
    """The paper's staged workflow: advantages come from the columns `value-label` wrote."""

    def forward(self, batch: CriticBatch) -> CriticOutput:
        """The indicator where the dataset has one, else its advantage (NaN marks an absent column: the
        table refuses non-finite labels, and the policy a dataset with neither column)."""
        indicator, advantage = batch.targets.indicator, batch.targets.advantage
        source = torch.where(torch.isnan(indicator), advantage, indicator)
        return CriticOutput(batch.features.new_zeros(batch.features.shape[0]), source, indicator)


class IQLCritics(Critic):
    """Q(s, a_{t:t+H}) twins, their target copy and V(s), trained as in IQL with chunked backups."""

    needs_next_features = True
    has_value = True

    def __init__(self, config: PiStarRECAPConfig, feature_dim: int, chunk_dim: int):
        super().__init__()
        hidden, depth = config.critic.hidden_dim, config.critic.depth
        self.q = EnsembleMLP(2, feature_dim + chunk_dim, hidden, depth, 1)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.v = EnsembleMLP(1, feature_dim, hidden, depth, 1)
        self.expectile = config.iql_expectile

    def value(self, features: Tensor) -> Tensor:
        return self.v(features)[0, :, 0]

    def q_values(self, features: Tensor, chunk: Tensor, target: bool = False) -> Tensor:
        """(2, B) Q values of both members."""
        net = self.q_target if target else self.q
        return net(torch.cat([features, chunk], dim=-1))[..., 0]

    def forward(self, batch: CriticBatch) -> CriticOutput:
        """Next value, update Q towards the chunked backup, update V by expectile regression on min Q_target."""
        if batch.next_features is None:
            raise RecapDataError("IQL critics need the observation at t+H to bootstrap their Q target.")
        with torch.no_grad():
            next_value = self.value(batch.next_features)
        reward_sum = batch.targets.chunk_reward / batch.scale
        target = chunked_q_target(reward_sum, batch.targets.chunk_discount, next_value)
        q_loss = (self.q_values(batch.features, batch.chunk) - target).square().mean(0)
        with torch.no_grad():
            target_q = self.q_values(batch.features, batch.chunk, target=True).min(0).values
        value = self.value(batch.features)
        v_loss = asymmetric_l2_loss(target_q - value, self.expectile)
        stats = {"q_loss": q_loss, "v_loss": v_loss, "value": value.detach()}
        return CriticOutput(q_loss + v_loss, (target_q - value).detach(), stats=stats)

    @torch.no_grad()
    def predict(self, features, chunk, scale, support) -> dict[str, Tensor]:
        out = {"value": self.value(features) * scale}
        if chunk is not None:
            out["q"] = self.q_values(features, chunk).min(0).values * scale
        return out

    def param_groups(self, config: PiStarRECAPConfig) -> list[dict]:
        return [
            {"params": list(self.q.parameters()), "lr": config.q_lr, "name": "q"},
            {"params": list(self.v.parameters()), "lr": config.v_lr, "name": "v"},
        ]

    @torch.no_grad()
    def after_step(self, config: PiStarRECAPConfig) -> None:
        """Polyak-average the target Q networks towards the online ones."""
        for target, online in zip(self.q_target.parameters(), self.q.parameters(), strict=True):
            target.lerp_(online, config.critic.target_update_rate)


class DistributionalValue(Critic):
    """The paper's value function: a categorical distribution over `num_bins` normalised returns."""

    has_value = True

    def __init__(self, config: PiStarRECAPConfig, feature_dim: int):
        super().__init__()
        self.v = EnsembleMLP(
            1, feature_dim, config.critic.hidden_dim, config.critic.depth, config.critic.value_num_bins
        )
        self.smoothing = config.critic.value_target_smoothing
        # Only an N-step advantage while training the policy reads V(o_{t+N}); see config.bootstrap_horizon.
        self.needs_next_features = config.bootstrap_horizon is not None

    def logits(self, features: Tensor) -> Tensor:
        return self.v(features)[0]

    def value(self, features: Tensor, low: float, high: float) -> Tensor:
        return expected_value(self.logits(features), low, high)

    def forward(self, batch: CriticBatch) -> CriticOutput:
        """Cross-entropy against the discretised Monte-Carlo return; A = N-step (or full) return - V."""
        low, high = batch.support
        targets, scale = batch.targets, batch.scale
        logits = self.logits(batch.features)
        v_loss = distributional_value_loss(logits, targets.mc_return / scale, low, high, self.smoothing)
        value = expected_value(logits.detach(), low, high)
        if batch.next_features is not None:
            with torch.no_grad():
                next_value = self.value(batch.next_features, low, high)
            advantage = nstep_advantage(
                targets.nstep_reward / scale, targets.nstep_bootstrap, next_value, value
            )
        else:
            advantage = targets.mc_return / scale - value
        return CriticOutput(v_loss, advantage.detach(), stats={"v_loss": v_loss, "value": value})

    @torch.no_grad()
    def predict(self, features, chunk, scale, support) -> dict[str, Tensor]:
        return {"value": self.value(features, *support) * scale}

    def param_groups(self, config: PiStarRECAPConfig) -> list[dict]:
        return [{"params": list(self.v.parameters()), "lr": config.v_lr, "name": "v"}]


def make_critic(config: PiStarRECAPConfig, feature_dim: int, chunk_dim: int) -> Critic:
    """The critic `config.method` names (see the module docstring)."""
    kind = config.method.critic
    if kind == "iql":
        return IQLCritics(config, feature_dim, chunk_dim)
    if kind == "distributional":
        return DistributionalValue(config, feature_dim)
    return DatasetAdvantage() if kind == "dataset" else NoAdvantage()
