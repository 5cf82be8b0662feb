"""The action expert: a transformer that predicts the flow-matching velocity of an action chunk.

Action tokens attend to each other (self-attention) and to the backbone's hidden states
(cross-attention). The cross-attention keys and values of the backbone prefix are computed once per
observation (`prefix_cache`) and reused by every Euler step, so sampling a chunk costs one backbone pass
plus `num_inference_steps` small passes over `chunk_size` tokens. The flow time and the advantage
condition enter every block through adaptive layer norm (DiT-style shift / scale / gate).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from . import flow
from .backbone import Prefix


def sinusoidal_embedding(time: Tensor, dim: int, min_period: float = 4e-3, max_period: float = 4.0) -> Tensor:
    """Sine-cosine embedding of the flow time t in [0, 1] (periods as in pi0)."""
    fraction = torch.linspace(0.0, 1.0, dim // 2, device=time.device, dtype=torch.float32)
    period = min_period * (max_period / min_period) ** fraction
    angle = 2 * math.pi * time.float()[:, None] / period[None, :]
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key_value = nn.Linear(width, 2 * width)
        self.out = nn.Linear(width, width)

    def split_heads(self, x: Tensor) -> Tensor:
        batch, length, width = x.shape
        return x.view(batch, length, self.heads, width // self.heads).transpose(1, 2)

    def keys_values(self, context: Tensor) -> tuple[Tensor, Tensor]:
        key, value = self.key_value(context).chunk(2, dim=-1)
        return self.split_heads(key), self.split_heads(value)

    def forward(self, x: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None) -> Tensor:
        out = F.scaled_dot_product_attention(self.split_heads(self.query(x)), key, value, attn_mask=mask)
        return self.out(out.transpose(1, 2).flatten(2))


class ExpertBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.self_norm = nn.LayerNorm(width, elementwise_affine=False)
        self.self_attn = Attention(width, heads)
        self.cross_norm = nn.LayerNorm(width)
        self.cross_attn = Attention(width, heads)
        self.mlp_norm = nn.LayerNorm(width, elementwise_affine=False)
        self.mlp = nn.Sequential(
            nn.Linear(width, mlp_ratio * width),
            nn.GELU(approximate="tanh"),
            nn.Linear(mlp_ratio * width, width),
        )
        # Zero-initialised so every block starts as the identity (DiT's adaLN-Zero).
        self.modulation = nn.Linear(width, 6 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(
        self, x: Tensor, condition: Tensor, prefix_kv: tuple[Tensor, Tensor], prefix_mask: Tensor
    ) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(condition).chunk(6, dim=-1)
        h = modulate(self.self_norm(x), shift1, scale1)
        x = x + gate1[:, None] * self.self_attn(h, *self.self_attn.keys_values(h))
        x = x + self.cross_attn(self.cross_norm(x), *prefix_kv, mask=prefix_mask)
        h = modulate(self.mlp_norm(x), shift2, scale2)
        return x + gate2[:, None] * self.mlp(h)


class ActionExpert(nn.Module):
    def __init__(
        self,
        action_dim: int,
        chunk_size: int,
        prefix_dim: int,
        width: int,
        depth: int,
        heads: int,
        mlp_ratio: int,
    ):
        super().__init__()
        self.width = width
        self.action_in = nn.Linear(action_dim, width)
        self.position = nn.Parameter(torch.randn(1, chunk_size, width) * 0.02)
        self.time_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.prefix_proj = nn.Sequential(nn.Linear(prefix_dim, width), nn.LayerNorm(width))
        self.blocks = nn.ModuleList(ExpertBlock(width, heads, mlp_ratio) for _ in range(depth))
        self.final_norm = nn.LayerNorm(width, elementwise_affine=False)
        self.final_modulation = nn.Linear(width, 2 * width)
        nn.init.zeros_(self.final_modulation.weight)
        nn.init.zeros_(self.final_modulation.bias)
        self.action_out = nn.Linear(width, action_dim)

    def prefix_cache(self, prefix: Tensor, prefix_mask: Tensor) -> tuple[list[tuple[Tensor, Tensor]], Tensor]:
        """Cross-attention keys/values of the backbone prefix for every block, computed once per observation."""
        context = self.prefix_proj(prefix)
        keys_values = [block.cross_attn.keys_values(context) for block in self.blocks]
        attention_mask = prefix_mask[:, None, None, :].bool()  # (B, 1, 1, L): which prefix tokens are real
        return keys_values, attention_mask

    def forward(
        self,
        noisy_actions: Tensor,
        time: Tensor,
        condition: Tensor,
        prefix_kv: list[tuple[Tensor, Tensor]],
        prefix_mask: Tensor,
    ) -> Tensor:
        """Velocity field v(x_t, t | observation, condition) for a chunk of noisy actions (B, H, A)."""
        x = self.action_in(noisy_actions) + self.position[:, : noisy_actions.shape[1]]
        condition = self.time_mlp(sinusoidal_embedding(time, self.width).to(x.dtype)) + condition
        for block, kv in zip(self.blocks, prefix_kv, strict=True):
            x = block(x, condition, kv, prefix_mask)
        shift, scale = self.final_modulation(condition).chunk(2, dim=-1)
        return self.action_out(modulate(self.final_norm(x), shift, scale))


class AdvantageEmbedding(nn.Module):
    """Embeds the advantage condition (a normalised advantage, or the 0/1 indicator) for the expert.

    A learned "null" embedding stands for "no condition": it is what conditioning dropout swaps in, and
    what classifier-free guidance uses for the unconditional velocity.
    """

    def __init__(self, width: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(1, width), nn.SiLU(), nn.Linear(width, width))
        # Zero-initialised output: adding conditioning to a trained expert (stage 2 over a BC stage 1)
        # starts from exactly the unconditioned policy instead of perturbing it.
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.null = nn.Parameter(torch.zeros(width))

    def forward(self, value: Tensor, keep: Tensor) -> Tensor:
        embedded = self.mlp(value[:, None].to(self.null.dtype))
        # torch.where keeps `null` in the graph every step, so DDP never sees it as unused.
        return torch.where(keep[:, None], embedded, self.null.expand_as(embedded))


class FlowMatching(nn.Module):
    """Flow matching on action chunks, on plain tensors.

    The formulas (interpolation, target, guidance, Euler steps) are `flow`'s; this class binds them to
    the expert and its prefix cache.
    """

    def __init__(self, config, action_dim: int, prefix_dim: int):
        super().__init__()
        self.config = config
        self.noise_dim = action_dim  # the width of the noise (and of the actions) the flow runs on
        self.condition_width = config.expert.width  # the width of the advantage condition it takes
        self.noise_dtype: torch.dtype | None = None  # None: the backbone's dtype
        self.expert = ActionExpert(
            action_dim,
            config.chunk_size,
            prefix_dim,
            config.expert.width,
            config.expert.depth,
            config.expert.heads,
            config.expert.mlp_ratio,
        )

    def sample_noise(
        self, shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        return torch.randn(shape, device=like.device, dtype=like.dtype, generator=generator)

    def sample_time(self, batch_size: int, device: torch.device, generator: torch.Generator) -> Tensor:
        return flow.sample_time(
            batch_size,
            self.config.expert.flow_time_alpha,
            self.config.expert.flow_time_min,
            device,
            generator,
        )

    def loss(self, prefix: Prefix, actions: Tensor, condition: Tensor, noise: Tensor, time: Tensor) -> Tensor:
        """Squared velocity error per action, (B, H): mean over action dims of (v_t - u_t)^2."""
        prefix_kv, attention_mask = self.expert.prefix_cache(prefix.hidden, prefix.mask)
        v_t = self.expert(flow.interpolate(noise, actions, time), time, condition, prefix_kv, attention_mask)
        return flow.velocity_error(v_t, noise, actions).mean(-1)

    def sample(
        self, prefix: Prefix, noise: Tensor, conditional: Tensor, unconditional: Tensor | None
    ) -> Tensor:
        """Actions (B, H, A) from noise with `num_inference_steps` Euler steps; the prefix is encoded once."""
        prefix_kv, attention_mask = self.expert.prefix_cache(prefix.hidden, prefix.mask)
        beta, steps = self.config.cfg_beta, self.config.num_inference_steps
        velocity = self.velocity(prefix_kv, attention_mask, self.guides(unconditional))
        return flow.integrate(velocity, noise, conditional, unconditional, beta, steps, batched=True)

    def guides(self, unconditional: Tensor | None) -> bool:
        """Whether sampling needs both the conditional and the unconditional velocity."""
        return unconditional is not None and self.config.cfg_beta not in (0.0, 1.0)

    def velocity(
        self, prefix_kv: list[tuple[Tensor, Tensor]], attention_mask: Tensor, guided: bool
    ) -> flow.Velocity:
        """The expert over one prefix cache; with `guided`, a doubled batch (both guidance velocities in one
        pass) runs over the cache repeated once, built here rather than at every Euler step."""
        batch_size = attention_mask.shape[0]
        if guided:
            doubled_kv = [(torch.cat([k, k]), torch.cat([v, v])) for k, v in prefix_kv]
            doubled_mask = torch.cat([attention_mask, attention_mask])

        def velocity(x_t: Tensor, time: Tensor, condition: Tensor) -> Tensor:
            if x_t.shape[0] == batch_size:
                return self.expert(x_t, time, condition, prefix_kv, attention_mask)
            return self.expert(x_t, time, condition, doubled_kv, doubled_mask)

        return velocity

    def guided_velocity(
        self,
        x_t: Tensor,
        time: Tensor,
        conditional: Tensor,
        unconditional: Tensor | None,
        prefix_kv: list[tuple[Tensor, Tensor]],
        attention_mask: Tensor,
    ) -> Tensor:
        """v_u + beta (v_c - v_u) at one time; beta = 1 is plain conditional sampling, beta = 0 unconditional."""
        velocity = self.velocity(prefix_kv, attention_mask, self.guides(unconditional))
        beta = self.config.cfg_beta
        return flow.guided_velocity(velocity, x_t, time, conditional, unconditional, beta, batched=True)
