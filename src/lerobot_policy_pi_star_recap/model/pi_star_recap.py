"""The pi*0.6 RECAP model on plain tensors: backbone -> critic -> conditioner -> flow-matching expert.

One training step (`forward`) reads top to bottom:
  1. the backbone encodes [camera images, task tokens, state] of frame t once (and of frame t+H, without
     gradient, when the critic bootstraps from it);
  2. the critic, on (detached) backbone features, fits its targets and gives the advantage A;
  3. the conditioner turns A into the expert's condition (dropped for some samples, so the unconditional
     policy is learned too) and into loss weights (data type, and exp(A / beta) for AWR);
  4. the expert's flow-matching loss over the actions the frame's controller executed.
`sample` draws an action chunk conditioned on `advantage_scale`, with guidance `cfg_beta`.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..configuration_pi_star_recap import PiStarRECAPConfig
from ..errors import RecapDataError
from ..schema import AUTO, INTERVENTION
from .action_expert import FlowMatching
from .backbone import Backbone, Prefix, VLMBackbone
from .conditioning import AdvantageConditioner
from .critics import CriticBatch, CriticOutput, make_critic
from .flow import Flow
from .inputs import Observation, RecapTargets

# Large primes that mix (noise seed, update, rank, run seed) into one generator seed.
SEED_MIXERS = (1, 1_000_003, 7_919, 104_729)


def recorded_chunk(actions: Tensor, action_pad: Tensor) -> Tensor:
    """The critics' action input (B, H * A): the recorded chunk, flattened, its padding zeroed."""
    return actions.masked_fill(action_pad[..., None], 0.0).flatten(1).float()


def masked_mean(hidden: Tensor, mask: Tensor) -> Tensor:
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def training_seed(noise_seed: int, update: int, rank: int, run_seed: int) -> int:
    """One generator seed per (checkpointed noise seed, update, data-parallel rank, run seed)."""
    parts = (noise_seed, update, rank, run_seed)
    return sum(m * p for m, p in zip(SEED_MIXERS, parts, strict=True)) % 2**63


def build_base(
    config: PiStarRECAPConfig, state_dim: int, action_dim: int, load_vlm_weights: bool
) -> tuple[Backbone, Flow]:
    """(backbone, flow) of `config.base_model`: this package's VLM backbone and action expert ("native"),
    or LeRobot's pi05, whose VLM and Gemma expert are one model (the flow drives the backbone's expert)."""
    if config.base_model == "pi05":
        from .pi05_base import Pi05Backbone, Pi05Flow

        backbone = Pi05Backbone(config, load_vlm_weights)
        return backbone, Pi05Flow(config, backbone, action_dim)
    backbone = VLMBackbone(
        config.vlm_model_name,
        config.backbone.vision_model_name,
        config.backbone.vlm_config,
        state_dim,
        load_vlm_weights,
        positions_from_mask=config.backbone.tokenizer_padding == "longest",
    )
    config.backbone.vlm_config = backbone.vlm_config
    return backbone, FlowMatching(config, action_dim, backbone.hidden_size)


def _read_loaded_buffers(model: PiStarRECAP, incompatible_keys: object) -> None:
    """load_state_dict post-hook: the host copies follow the buffers just loaded."""
    model.read_buffers()


class PiStarRECAP(nn.Module):
    def __init__(self, config: PiStarRECAPConfig, state_dim: int, action_dim: int, load_vlm_weights: bool):
        super().__init__()
        self.config = config
        self.method = config.method
        self.action_dim = action_dim
        self.backbone, self.flow = build_base(config, state_dim, action_dim, load_vlm_weights)
        self.conditioner = AdvantageConditioner(config, self.flow.condition_width)
        self.critic = make_critic(
            config, self.backbone.hidden_size + state_dim, config.chunk_size * action_dim
        )
        # Scales that must survive checkpoints (and be identical on every rank).
        self.register_buffer("return_scale", torch.tensor(config.critic.return_normalizer or 1.0))
        self.register_buffer("value_support", torch.tensor([-1.0, 0.0]))
        self.register_buffer("num_updates", torch.tensor(0, dtype=torch.long))
        # Training noise comes from a generator seeded by (noise_seed, num_updates), both saved in the
        # checkpoint, so a resumed run draws exactly the noise the uninterrupted run would have drawn.
        self.register_buffer("noise_seed", torch.randint(0, 2**62, (), dtype=torch.long))
        # The run's seed (lerobot-train seeds torch before building the policy): a fine-tune of a checkpoint
        # draws new noise for every --seed, while a resumed run (same seed) draws the same noise again.
        self.run_seed = torch.initial_seed()
        self.read_buffers()
        self.register_load_state_dict_post_hook(_read_loaded_buffers)  # checkpoints, resume
        self.freeze()

    def read_buffers(self) -> None:
        """Host copies of the buffers a training step needs as Python numbers (the generator seed's parts,
        the value support), read here, when they are set or loaded, instead of in every step: each read
        would make the step wait for the GPU. `after_step` keeps the update count in step with its buffer."""
        self.updates = int(self.num_updates)
        self.noise_seed_value = int(self.noise_seed)
        low, high = self.value_support.tolist()
        self.support_bounds = (low, high)

    def set_return_range(self, return_scale: float, min_return: float, max_return: float) -> None:
        """A fresh model's return normalisation (unless the config fixes one) and value support, from the
        Monte-Carlo returns of its first dataset."""
        if self.config.critic.return_normalizer is None:
            self.return_scale.fill_(return_scale)
        low = -1.0 if min_return < 0 else 0.0
        high = 1.0 if max_return > 0 else 0.0
        self.value_support.copy_(torch.tensor([low, high if high > low else low + 1.0]))
        self.read_buffers()

    def freeze(self) -> None:
        """Stop gradients to the parts the config keeps fixed (vision encoder, VLM, or all but the expert;
        in the value-only stage the expert and its condition, and the backbone unless the critics train it)."""
        config = self.config
        frozen: list[nn.Module] = []
        if config.freeze_vision_encoder:
            frozen += self.backbone.vision_modules
        if config.freeze_vlm:
            frozen += self.backbone.vlm_modules
        if config.train_expert_only:
            frozen += self.backbone.encoder_modules
        if not config.train_policy:
            frozen += [m for m in (self.flow, self.conditioner) if m is not None]
            if not config.critic.backbone_grad:
                frozen.append(self.backbone)
        for module in frozen:
            module.requires_grad_(False)

    def param_groups(self) -> list[dict]:
        """One optimizer group per learning rate: the policy (policy_lr), the advantage condition
        (policy_lr x condition_lr_multiplier) and the critic's own groups (q_lr, v_lr); empty groups left out."""
        config = self.config
        embedding = self.conditioner.embedding
        condition = [p for p in embedding.parameters() if p.requires_grad] if embedding is not None else []
        apart = {id(p) for p in self.critic.parameters()} | {id(p) for p in condition}
        policy = [p for p in self.parameters() if p.requires_grad and id(p) not in apart]
        groups = [
            {"params": policy, "lr": config.policy_lr, "name": "policy"},
            {
                "params": condition,
                "lr": config.policy_lr * config.optim.condition_lr_multiplier,
                "name": "condition",
            },
            *self.critic.param_groups(config),
        ]
        return [g for g in groups if g["params"]]

    # --- Shared by training and inference --------------------------------------------------------
    def encode(self, observation: Observation) -> Prefix:
        """The backbone's hidden states (B, L', D) and mask (B, L') (and its cache, for pi05)."""
        batch_size = observation.tokens.shape[0]
        present = [torch.ones(batch_size, dtype=torch.bool, device=observation.tokens.device)] * len(
            observation.images
        )
        return self.backbone(
            observation.images, present, observation.tokens, observation.mask, observation.state
        )

    def critic_features(self, prefix: Prefix, state: Tensor | None) -> Tensor:
        """Critic input (B, D + S): the mean backbone hidden state plus the raw (normalised) state."""
        parts = [masked_mean(prefix.hidden, prefix.mask).float()]
        if state is not None:
            parts.append(state.float())
        return torch.cat(parts, -1)

    # --- Training --------------------------------------------------------------------------------
    def forward(
        self,
        observation: Observation,
        following: Observation | None,
        actions: Tensor,
        action_pad: Tensor,
        targets: RecapTargets,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Per-sample loss (B,) and the stats to log, for frames t (and t+H in `following`)."""
        prefix = self.encode(observation)
        features = self.critic_features(prefix, observation.state)
        critic = self.critic(self._critic_batch(features, following, actions, action_pad, targets))
        if not self.method.train_policy:  # value-only stage
            return critic.loss, critic.stats
        policy_loss, stats = self.policy_loss(prefix, actions, action_pad, targets, critic)
        return policy_loss + critic.loss, {**critic.stats, **stats}

    def _critic_batch(
        self,
        features: Tensor,
        following: Observation | None,
        actions: Tensor,
        action_pad: Tensor,
        targets: RecapTargets,
    ) -> CriticBatch:
        next_features = None
        if self.critic.needs_next_features:
            if following is None:
                raise RecapDataError(
                    "pi_star_recap needs the observation at t+H to bootstrap its critics, but the batch has a "
                    "single frame; train through lerobot-train (which reads observation_delta_indices)."
                )
            with torch.no_grad():
                next_features = self.critic_features(self.encode(following), following.state)
        return CriticBatch(
            features=features if self.config.critic.backbone_grad else features.detach(),
            next_features=next_features,
            chunk=recorded_chunk(actions, action_pad),
            targets=targets,
            scale=self.return_scale,
            support=self.support_bounds,
        )

    def policy_loss(
        self,
        prefix: Prefix,
        actions: Tensor,
        action_pad: Tensor,
        targets: RecapTargets,
        critic: CriticOutput,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Weighted flow-matching loss per sample, over the actions the frame's own controller executed."""
        generator = self.training_generator(actions.device)
        weights = self.data_type_weights(targets)
        condition, weights, stats = self.conditioner(
            critic.advantage, critic.indicator, targets.intervention, weights, generator, prefix.hidden.dtype
        )
        noise = self.flow.sample_noise((*actions.shape[:2], self.flow.noise_dim), actions, generator)
        time = self.flow.sample_time(actions.shape[0], actions.device, generator)
        error = self.flow.loss(prefix, actions, condition, noise, time)  # (B, H)
        # A chunk that starts on an expert frame ends where the policy takes back over (and vice versa).
        horizon = torch.arange(actions.shape[1], device=actions.device)
        valid = (~action_pad & (horizon < targets.segment_left[:, None])).float()
        flow_loss = (error * valid).sum(1) / valid.sum(1).clamp_min(1.0)
        stats["policy_loss"] = weights * flow_loss
        stats["flow_loss"] = flow_loss
        return weights * flow_loss, stats

    def data_type_weights(self, targets: RecapTargets) -> Tensor:
        """demo / auto / intervention weights; within an intervention episode, frames the robot drove
        itself count as autonomous and only the expert's frames (intervention mask) as interventions."""
        config = self.config
        data_type = targets.data_type
        weights = torch.full_like(targets.intervention, config.demo_weight)
        weights = torch.where((data_type == AUTO) | (data_type == INTERVENTION), config.auto_weight, weights)
        weights = torch.where(targets.intervention > 0.5, config.intervention_weight, weights)
        if config.success_only:
            weights = weights * (targets.success > 0.5).float()
        return weights

    def training_generator(self, device: torch.device) -> torch.Generator:
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        seed = training_seed(self.noise_seed_value, self.updates, rank, self.run_seed)
        return torch.Generator(device=device).manual_seed(seed)

    def after_step(self) -> None:
        """After each optimizer step: the critic's own update (e.g. target networks), then count."""
        self.critic.after_step(self.config)
        self.num_updates += 1
        self.updates += 1

    # --- Inference -------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, observation: Observation, noise: Tensor | None = None) -> Tensor:
        """A (B, chunk_size, action_dim) chunk of normalised actions."""
        prefix = self.encode(observation)
        batch_size = prefix.hidden.shape[0]
        shape = (batch_size, self.config.chunk_size, self.flow.noise_dim)
        like = prefix.hidden.new_empty(0, dtype=self.flow.noise_dtype or prefix.hidden.dtype)
        x_1 = noise.to(like.device, like.dtype) if noise is not None else self.flow.sample_noise(shape, like)
        conditional, unconditional = self.conditioner.inference_conditions(batch_size, prefix.hidden)
        return self.flow.sample(prefix, x_1, conditional, unconditional)

    @torch.no_grad()
    def values(self, observation: Observation, chunk: Tensor | None) -> dict[str, Tensor]:
        """Critic outputs in return units (value; min Q of `chunk` for IQL)."""
        features = self.critic_features(self.encode(observation), observation.state)
        return self.critic.predict(features, chunk, self.return_scale, self.support_bounds)
