"""Critics on backbone features: IQL's twin Q / expectile V, or the paper's distributional V.

The twin Q networks are one batched ensemble (one matmul per layer for both members), and their
Polyak-averaged copy is the target network that `PiStarRECAPPolicy.update()` moves after each step.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from .advantage import (
    asymmetric_l2_loss,
    chunked_q_target,
    distributional_value_loss,
    expected_value,
)


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


class IQLCritics(nn.Module):
    """Q(s, a_{t:t+H}) twins, their target copy and V(s), trained as in IQL with chunked backups."""

    def __init__(self, feature_dim: int, chunk_dim: int, hidden_dim: int, depth: int):
        super().__init__()
        self.q = EnsembleMLP(2, feature_dim + chunk_dim, hidden_dim, depth, 1)
        self.q_target = copy.deepcopy(self.q).requires_grad_(False)
        self.v = EnsembleMLP(1, feature_dim, hidden_dim, depth, 1)

    def value(self, features: Tensor) -> Tensor:
        return self.v(features)[0, :, 0]

    def q_values(self, features: Tensor, chunk: Tensor, target: bool = False) -> Tensor:
        """(2, B) Q values of both members."""
        net = self.q_target if target else self.q
        return net(torch.cat([features, chunk], dim=-1))[..., 0]

    def losses(
        self,
        features: Tensor,
        chunk: Tensor,
        reward_sum: Tensor,
        bootstrap_discount: Tensor,
        next_value: Tensor,
        expectile: float,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per-sample (q_loss, v_loss), the advantage min Q_target - V, and V itself."""
        target = chunked_q_target(reward_sum, bootstrap_discount, next_value.detach())
        q_loss = (self.q_values(features, chunk) - target).square().mean(0)
        with torch.no_grad():
            target_q = self.q_values(features, chunk, target=True).min(0).values
        value = self.value(features)
        v_loss = asymmetric_l2_loss(target_q - value, expectile)
        return q_loss, v_loss, target_q - value.detach(), value.detach()

    @torch.no_grad()
    def update_target(self, rate: float) -> None:
        for target, online in zip(self.q_target.parameters(), self.q.parameters(), strict=True):
            target.lerp_(online, rate)


class DistributionalValue(nn.Module):
    """The paper's value function: a categorical distribution over `num_bins` normalised returns."""

    def __init__(self, feature_dim: int, hidden_dim: int, depth: int, num_bins: int):
        super().__init__()
        self.v = EnsembleMLP(1, feature_dim, hidden_dim, depth, num_bins)

    def logits(self, features: Tensor) -> Tensor:
        return self.v(features)[0]

    def value(self, features: Tensor, low: float, high: float) -> Tensor:
        return expected_value(self.logits(features), low, high)

    def losses(
        self, features: Tensor, mc_return: Tensor, low: float, high: float, smoothing: str
    ) -> tuple[Tensor, Tensor]:
        """Per-sample cross-entropy against the discretised return, and the (detached) scalar value."""
        logits = self.logits(features)
        loss = distributional_value_loss(logits, mc_return, low, high, smoothing)
        return loss, expected_value(logits.detach(), low, high)
