"""The flow-matching formulas every base shares, one home each, on plain tensors.

Convention (pi0's): t = 1 is noise and t = 0 the actions, x_t = t * noise + (1 - t) * actions, and the
velocity the expert regresses is u_t = dx_t / dt = noise - actions. Sampling integrates from t = 1 to 0 with
LeRobot's Euler loop (`euler_integrate`, the one stock pi05 samples with), optionally with
classifier-free guidance v_u + beta (v_c - v_u).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from lerobot.policies.common.flow_matching import euler_integrate
from torch import Tensor

from .backbone import Prefix

# A velocity field over (x_t, time, condition): the expert with a prefix already bound.
Velocity = Callable[[Tensor, Tensor, Tensor], Tensor]


class Flow(Protocol):
    """What the model needs of a base's action expert (`action_expert.FlowMatching`, `pi05_base.Pi05Flow`)."""

    noise_dim: int  # the width of the noise (and of the padded actions) the flow runs on
    condition_width: int  # the width of the advantage condition it takes
    noise_dtype: torch.dtype | None  # None: the backbone's dtype

    def sample_noise(
        self, shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None = None
    ) -> Tensor: ...

    def sample_time(self, batch_size: int, device: torch.device, generator: torch.Generator) -> Tensor: ...

    def loss(self, prefix: Prefix, actions: Tensor, condition: Tensor, noise: Tensor, time: Tensor) -> Tensor:
        """Squared velocity error per action (B, H)."""

    def sample(
        self, prefix: Prefix, noise: Tensor, conditional: Tensor, unconditional: Tensor | None
    ) -> Tensor:
        """Actions (B, H, A) from noise."""


def sample_time(
    batch_size: int, alpha: float, time_min: float, device: torch.device, generator: torch.Generator
) -> Tensor:
    """t ~ Beta(alpha, 1) by inverse CDF (t = u^(1/alpha); pi0: more weight on noisy times), kept in
    [time_min, 1]; the same for every base."""
    u = torch.rand(batch_size, device=device, generator=generator)
    return u.pow(1 / alpha) * (1 - time_min) + time_min


def interpolate(noise: Tensor, actions: Tensor, time: Tensor) -> Tensor:
    """x_t = t * noise + (1 - t) * actions, with one time per sample (B,)."""
    t = time[:, None, None]
    return t * noise + (1 - t) * actions


def velocity_target(noise: Tensor, actions: Tensor) -> Tensor:
    """u_t = noise - actions, the velocity x_t moves with (in float32, where the loss is taken)."""
    return (noise - actions).float()


def velocity_error(velocity: Tensor, noise: Tensor, actions: Tensor) -> Tensor:
    """(v_t - u_t)^2 per element, in float32."""
    return (velocity.float() - velocity_target(noise, actions)).square()


def guided_velocity(
    velocity: Velocity,
    x_t: Tensor,
    time: Tensor,
    conditional: Tensor,
    unconditional: Tensor | None,
    beta: float,
    batched: bool,
) -> Tensor:
    """Classifier-free guidance v_u + beta (v_c - v_u); beta = 1 is plain conditional sampling (one pass),
    beta = 0 unconditional. `batched`: both velocities in one pass over a doubled batch (`velocity` then
    gets 2B samples), else two passes."""
    if unconditional is None or beta == 1.0:
        return velocity(x_t, time, conditional)
    if beta == 0.0:
        return velocity(x_t, time, unconditional)
    if batched:
        both = velocity(
            torch.cat([x_t, x_t]), torch.cat([time, time]), torch.cat([conditional, unconditional])
        )
        v_conditional, v_unconditional = both.chunk(2)
    else:
        v_unconditional = velocity(x_t, time, unconditional)
        v_conditional = velocity(x_t, time, conditional)
    return v_unconditional + beta * (v_conditional - v_unconditional)


def integrate(
    velocity: Velocity,
    noise: Tensor,
    conditional: Tensor,
    unconditional: Tensor | None,
    beta: float,
    steps: int,
    batched: bool,
) -> Tensor:
    """Actions from noise: `steps` Euler steps of the guided velocity from t = 1 to t = 0."""

    def step(x_t: Tensor, time: Tensor) -> Tensor:
        return guided_velocity(velocity, x_t, time, conditional, unconditional, beta, batched)

    return euler_integrate(step, noise, steps)
