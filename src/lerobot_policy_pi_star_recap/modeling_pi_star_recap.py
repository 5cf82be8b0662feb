"""pi*0.6 RECAP policy: a VLM backbone, a flow-matching action expert conditioned on the advantage, and
critics (IQL twin Q / expectile V, or the paper's distributional V) that supply that advantage.

One training step (`forward`):
  1. the backbone encodes [camera images, task tokens, state] once;
  2. the critics, on detached backbone features, fit their targets and give the advantage A(s, a);
  3. the expert's flow-matching loss is weighted by data type (demo / auto / intervention) and, when
     enabled, by exp(A / temperature); the expert is conditioned on A (or on the binary indicator
     A > eps), with the condition dropped for some samples so the unconditional policy is learned too.
Inference (`predict_action_chunk`) conditions on `advantage_scale` and can apply classifier-free
guidance with `cfg_beta`.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections import deque
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from huggingface_hub import hf_hub_download
from lerobot.configs import PreTrainedConfig
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.utils.constants import (
    ACTION,
    OBS_ENV_STATE,
    OBS_LANGUAGE_ATTENTION_MASK,
    OBS_LANGUAGE_TOKENS,
    OBS_STATE,
)
from safetensors.torch import load_model as load_safetensors_into
from torch import Tensor, nn

from .action_expert import ActionExpert, AdvantageEmbedding
from .advantage import advantage_indicator, awr_weights, nstep_advantage
from .backbone import VLMBackbone
from .configuration_pi_star_recap import PiStarRECAPConfig
from .critics import DistributionalValue, IQLCritics
from .recap_data import AUTO, INTERVENTION, RecapDataError, RecapTable
from .training_monitor import TrainingMonitor

STATS_MOMENTUM = 0.01  # EMA rate of the advantage statistics (mean, std, indicator threshold)


def masked_mean(hidden: Tensor, mask: Tensor) -> Tensor:
    weights = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0)


def current_and_next(x: Tensor, frame_dims: int) -> tuple[Tensor, Tensor | None]:
    """Split an observation window (B, 2, ...) into the current and the bootstrap frame."""
    if x.dim() == frame_dims + 1:
        return x[:, 0], x[:, -1]
    return x, None


def fresh_modules(saved: PiStarRECAPConfig, requested: PiStarRECAPConfig) -> tuple[str, ...]:
    """Modules a checkpoint cannot provide because the requested config adds (or changes) them, e.g. stage 2
    turning RECAP's critics and conditioning on over a behaviour-cloning stage 1."""
    fresh = []
    if (saved.trains_critics, saved.advantage_estimator) != (
        requested.trains_critics,
        requested.advantage_estimator,
    ):
        fresh.append("critics.")
    if saved.use_advantage_conditioning != requested.use_advantage_conditioning:
        fresh.append("advantage_embedding.")
    return tuple(fresh)


def check_dataset_matches(config: PiStarRECAPConfig, dataset_meta) -> None:
    """Fail before training when the dataset's features disagree with the policy, or hold NaN / inf."""
    features = dataset_meta.features
    for key, feature in {**config.input_features, **config.output_features}.items():
        if key not in features:
            raise RecapDataError(
                f"{dataset_meta.root}: the policy expects '{key}' but the dataset has no such feature "
                f"(it has {sorted(k for k in features if k.startswith(('observation', 'action')))}). "
                "Use a dataset recorded with the same robot and cameras, or --rename_map."
            )
        shape = tuple(features[key]["shape"])
        if features[key]["dtype"] not in ("image", "video") and shape != tuple(feature.shape):
            raise RecapDataError(
                f"{dataset_meta.root}: '{key}' has shape {shape} in the dataset but {tuple(feature.shape)} in the "
                "policy (a checkpoint trained on another robot?). Train from scratch on this dataset instead."
            )
        stats = (dataset_meta.stats or {}).get(key, {})
        bad = [
            name
            for name in ("min", "max", "mean", "std")
            if name in stats and not np.isfinite(np.asarray(stats[name])).all()
        ]
        if bad:
            raise RecapDataError(
                f"{dataset_meta.root}: '{key}' contains NaN or infinite values (its dataset statistics {bad} are "
                "not finite). Find and drop the bad frames, then recompute the stats."
            )


def pin_normalization_stats(config: PiStarRECAPConfig, dataset_meta, checkpoint: Path) -> None:
    """Make lerobot-train normalise a fine-tune with the checkpoint's statistics (keep_pretrained_stats).

    lerobot-train builds the policy, then its processors from `dataset_meta.stats`, which override the
    stats saved with the checkpoint: stage 2 would see states scaled differently from stage 1 and decode
    its actions with other stats. The statistics the policy normalises are therefore replaced, in the
    dataset metadata lerobot-train holds, by the checkpoint's (or, with keep_pretrained_stats=false, the
    dataset's with the std floor). On --resume the checkpoint's stats win in LeRobot anyway."""
    from .processor_pi_star_recap import checkpoint_normalization_stats, floor_state_std

    if dataset_meta.stats is None:
        return
    keys = {**config.input_features, **config.output_features}
    if config.keep_pretrained_stats:
        saved = checkpoint_normalization_stats(checkpoint)
        replaced = {k: saved[k] for k in keys if k in saved}
    else:
        floored = floor_state_std(config, dataset_meta.stats)
        replaced = {k: floored[k] for k in keys if k in floored}
    for key, stats in replaced.items():
        dataset_meta.stats[key] = {**dataset_meta.stats.get(key, {}), **stats}
    if config.keep_pretrained_stats and replaced:
        logging.info(
            f"pi_star_recap: normalising {sorted(replaced)} with the statistics of {checkpoint} "
            "(keep_pretrained_stats=true), not those of the new dataset."
        )


def distributed_mean(x: Tensor) -> Tensor:
    """Average over data-parallel ranks so running statistics stay identical on every rank."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        x = x.clone()
        dist.all_reduce(x)
        x /= dist.get_world_size()
    return x


class PiStarRECAPPolicy(PreTrainedPolicy):
    config_class = PiStarRECAPConfig
    name = "pi_star_recap"

    def __init__(
        self,
        config: PiStarRECAPConfig,
        dataset_meta=None,
        load_vlm_weights: bool = True,
        **kwargs,
    ):
        """`dataset_meta` (passed by lerobot's make_policy) locates the dataset whose RECAP columns
        (data type, rewards, interventions) the policy reads; `load_vlm_weights=False` builds the VLM from
        the config stored in a checkpoint instead of downloading weights the checkpoint already holds."""
        super().__init__(config)
        config.validate_features()
        self.config = config
        self.image_keys = sorted(config.image_features)
        self.state_keys = [k for k in (OBS_STATE, OBS_ENV_STATE) if k in config.input_features]
        state_dim = sum(config.input_features[k].shape[0] for k in self.state_keys)
        self.action_dim = config.action_feature.shape[0]

        self.backbone = VLMBackbone(
            config.vlm_model_name, config.vision_model_name, config.vlm_config, state_dim, load_vlm_weights
        )
        config.vlm_config = self.backbone.vlm_config
        width = config.expert_width
        self.expert = ActionExpert(
            self.action_dim,
            config.chunk_size,
            self.backbone.hidden_size,
            width,
            config.expert_depth,
            config.expert_heads,
            config.expert_mlp_ratio,
        )
        self.advantage_embedding = AdvantageEmbedding(width) if config.use_advantage_conditioning else None

        feature_dim = self.backbone.hidden_size + state_dim
        self.critics: IQLCritics | DistributionalValue | None = None
        if config.trains_critics:
            if config.advantage_estimator == "iql":
                self.critics = IQLCritics(
                    feature_dim,
                    config.chunk_size * self.action_dim,
                    config.critic_hidden_dim,
                    config.critic_depth,
                )
            else:
                self.critics = DistributionalValue(
                    feature_dim, config.critic_hidden_dim, config.critic_depth, config.value_num_bins
                )

        # Scales that must survive checkpoints (and be identical on every rank).
        self.register_buffer("return_scale", torch.tensor(config.return_normalizer or 1.0))
        self.register_buffer("value_support", torch.tensor([-1.0, 0.0]))
        self.register_buffer("advantage_mean", torch.tensor(0.0))
        self.register_buffer("advantage_var", torch.tensor(1.0))
        self.register_buffer("indicator_threshold", torch.tensor(0.0))
        self.register_buffer("num_updates", torch.tensor(0, dtype=torch.long))
        self.register_buffer("advantage_updates", torch.tensor(0, dtype=torch.long))
        # Training noise comes from a generator seeded by (noise_seed, num_updates), both saved in the
        # checkpoint, so a resumed run draws exactly the noise the uninterrupted run would have drawn.
        self.register_buffer("noise_seed", torch.randint(0, 2**62, (), dtype=torch.long))
        # The run's seed (lerobot-train seeds torch before building the policy): a fine-tune of a checkpoint
        # draws new noise for every --seed, while a resumed run (same seed) draws the same noise again.
        self.run_seed = torch.initial_seed()

        self.recap_table: RecapTable | None = None
        if dataset_meta is not None and getattr(dataset_meta, "root", None) is not None:
            check_dataset_matches(config, dataset_meta)
            self.attach_dataset(RecapTable.from_dataset_root(dataset_meta.root, **self._table_kwargs()))
        self.monitor = TrainingMonitor(config)
        self._apply_freezing()
        if config.compile_model:
            # In place (nn.Module.compile), so parameter names and checkpoints stay the eager model's.
            self.backbone.compile(mode=config.compile_mode)
            self.expert.compile(mode=config.compile_mode)
        self.reset()

    # --- Data ------------------------------------------------------------------------------------
    def _table_kwargs(self) -> dict:
        return {
            "chunk_size": self.config.chunk_size,
            "discount": self.config.iql_discount,
            "n_step": self.config.advantage_n_step,
            "need_rewards": self.config.trains_critics,
            "timeouts_truncate": self.config.timeouts_truncate,
        }

    def attach_dataset(self, table: RecapTable) -> None:
        """Use `table` for the RECAP targets of training batches (looked up by the batch's `index`)."""
        config = self.config
        if config.advantage_source == "dataset" and config.uses_advantage and not table.has_advantage:
            raise RecapDataError(
                f"{table.where}: advantage_source='dataset' but the dataset has no 'advantage' / "
                "'advantage_indicator' columns; label it first with `pi-star-recap value-label`."
            )
        if config.success_only and not table.has_success:
            raise RecapDataError(
                f"{table.where}: success_only=true needs a success column ('success' or 'next.success')."
            )
        self.recap_table = table
        if table.has_rewards and not self.num_updates.item():
            # A fresh policy takes its return normalisation and value support from its first dataset.
            if config.return_normalizer is None:
                self.return_scale.fill_(table.return_scale)
            low = -1.0 if table.min_return < 0 else 0.0
            high = 1.0 if table.max_return > 0 else 0.0
            self.value_support.copy_(torch.tensor([low, high if high > low else low + 1.0]))
        logging.info(f"pi_star_recap: RECAP data {table.summary()}")

    def _recap_targets(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.recap_table is None:
            raise RecapDataError(
                "pi_star_recap was built without a dataset, so it cannot find the RECAP fields of training "
                "batches: create it through lerobot's make_policy(cfg, ds_meta=dataset.meta) or call "
                "policy.attach_dataset(RecapTable.from_dataset_root(root, ...))."
            )
        if "index" not in batch:
            raise RecapDataError("training batches need LeRobot's global frame 'index' to find RECAP fields.")
        return self.recap_table.lookup(batch["index"])

    def _observation(self, batch: dict[str, Tensor]) -> tuple[dict, dict | None]:
        """Current (and, for windows, bootstrap) inputs of the backbone, with clear errors for bad input."""
        missing = [k for k in self.image_keys + self.state_keys if k not in batch]
        if missing:
            raise KeyError(
                f"pi_star_recap: the batch lacks {missing}; this policy was trained with cameras "
                f"{self.image_keys} and state {self.state_keys}. Rename inputs with --rename_map or "
                "feed the same cameras."
            )
        if OBS_LANGUAGE_TOKENS not in batch:
            raise KeyError(
                "pi_star_recap: no language tokens in the batch; run observations through the policy's "
                "preprocessor (make_pre_post_processors), which tokenizes the 'task' string."
            )
        current: dict = {"images": [], "tokens": batch[OBS_LANGUAGE_TOKENS]}
        following: dict = {"images": [], "tokens": batch[OBS_LANGUAGE_TOKENS]}
        for key in self.image_keys:
            now, later = current_and_next(batch[key], frame_dims=4)
            if now.shape[1] != 3:
                raise ValueError(f"pi_star_recap: {key} must be (B, 3, H, W) RGB, got {tuple(now.shape)}.")
            current["images"].append(now)
            following["images"].append(later)
        states, next_states = [], []
        for key in self.state_keys:
            now, later = current_and_next(batch[key], frame_dims=2)
            expected = self.config.input_features[key].shape[0]
            if now.shape[-1] != expected:
                raise ValueError(
                    f"pi_star_recap: {key} has {now.shape[-1]} dims but the policy was built for {expected}; "
                    "use a checkpoint trained on this robot's state, or retrain."
                )
            states.append(now)
            next_states.append(later)
        current["state"] = self._clip_state(torch.cat(states, -1)) if states else None
        current["mask"] = batch[OBS_LANGUAGE_ATTENTION_MASK]
        if all(x is None for x in following["images"] + next_states):
            return current, None
        following["state"] = self._clip_state(torch.cat(next_states, -1)) if states else None
        following["mask"] = current["mask"]
        return current, following

    def _clip_state(self, state: Tensor) -> Tensor:
        """Normalised state clamped to +-state_clip: states far outside the training data (z-scores in the
        tens) reach the network bounded."""
        clip = self.config.state_clip
        return state if clip is None else state.clamp(-clip, clip)

    def _encode(self, observation: dict) -> tuple[Tensor, Tensor]:
        batch_size = observation["tokens"].shape[0]
        present = [torch.ones(batch_size, dtype=torch.bool, device=observation["tokens"].device)] * len(
            observation["images"]
        )
        return self.backbone(
            observation["images"], present, observation["tokens"], observation["mask"], observation["state"]
        )

    def _critic_features(self, prefix: Tensor, prefix_mask: Tensor, state: Tensor | None) -> Tensor:
        """Critic input: the mean backbone hidden state plus the raw (normalised) state."""
        parts = [masked_mean(prefix, prefix_mask).float()]
        if state is not None:
            parts.append(state.float())
        return torch.cat(parts, -1)

    # --- Training --------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor], reduction: str = "mean") -> tuple[Tensor, dict]:
        config = self.config
        targets = self._recap_targets(batch)
        current, following = self._observation(batch)
        prefix, prefix_mask = self._encode(current)
        features = self._critic_features(prefix, prefix_mask, current["state"])
        actions = batch[ACTION]
        action_pad = batch.get(
            f"{ACTION}_is_pad", torch.zeros(actions.shape[:2], dtype=torch.bool, device=actions.device)
        )
        if actions.shape[-1] != self.action_dim:
            raise ValueError(
                f"pi_star_recap: actions have {actions.shape[-1]} dims but the policy was built for "
                f"{self.action_dim}."
            )

        critic_loss, advantage, stats = self._critic_step(targets, features, following, actions, action_pad)
        per_sample = torch.zeros_like(critic_loss)
        if config.train_policy:
            per_sample, policy_stats = self._policy_step(
                targets, prefix, prefix_mask, actions, action_pad, advantage
            )
            stats.update(policy_stats)
        loss_per_sample = per_sample + critic_loss
        loss = loss_per_sample.mean() if reduction == "mean" else loss_per_sample
        logged = self.monitor.record(stats, targets["data_type"], loss)  # raises on non-finite by default
        if not math.isfinite(logged["loss"]):
            # on_nonfinite=skip: a loss with exactly zero gradient, so the bad batch changes nothing
            # but the optimizer's momentum.
            loss = torch.zeros_like(loss) + sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
        return loss, logged

    def _critic_step(
        self, targets: dict, features: Tensor, following: dict | None, actions: Tensor, action_pad: Tensor
    ) -> tuple[Tensor, Tensor | None, dict]:
        """Critic losses (per sample) and the advantage the policy uses (None for plain BC)."""
        config = self.config
        batch_size = features.shape[0]
        zero = features.new_zeros(batch_size)
        stats: dict[str, Tensor] = {}
        if not config.trains_critics:
            if config.advantage_source == "dataset" and config.uses_advantage:
                return zero, self._dataset_advantage(targets), stats
            return zero, None, stats

        critic_in = features if config.critic_backbone_grad else features.detach()
        scale = self.return_scale
        next_features = None
        if config.bootstrap_horizon is not None:
            if following is None:
                raise RecapDataError(
                    "pi_star_recap needs the observation at t+H to bootstrap its critics, but the batch has a "
                    "single frame; train through lerobot-train (which reads observation_delta_indices)."
                )
            with torch.no_grad():
                next_prefix, next_mask = self._encode(following)
                next_features = self._critic_features(next_prefix, next_mask, following["state"])

        if config.advantage_estimator == "iql":
            with torch.no_grad():
                next_value = self.critics.value(next_features)
            chunk = actions.masked_fill(action_pad[..., None], 0.0).flatten(1).float()
            q_loss, v_loss, advantage, value = self.critics.losses(
                critic_in,
                chunk,
                targets["chunk_reward"] / scale,
                targets["chunk_discount"],
                next_value,
                config.iql_expectile,
            )
            stats["q_loss"] = q_loss
        else:
            low, high = self.value_support.tolist()
            v_loss, value = self.critics.losses(
                critic_in, targets["mc_return"] / scale, low, high, config.value_target_smoothing
            )
            if config.advantage_horizon == "n_step" and next_features is not None:
                with torch.no_grad():
                    next_value = self.critics.value(next_features, low, high)
                advantage = nstep_advantage(
                    targets["nstep_reward"] / scale, targets["nstep_bootstrap"], next_value, value
                )
            else:
                advantage = targets["mc_return"] / scale - value
            q_loss = zero
        stats["v_loss"] = v_loss
        stats["value"] = value
        return q_loss + v_loss, advantage.detach(), stats

    def _dataset_advantage(self, targets: dict) -> Tensor:
        """Advantage from the columns `value-label` wrote: the indicator if present, else the raw advantage."""
        indicator, advantage = targets["indicator"], targets["advantage"]
        source = indicator if not torch.isnan(indicator).any() else advantage
        if torch.isnan(source).any():
            raise RecapDataError("some frames have no advantage label; re-run `pi-star-recap value-label`.")
        return source

    def _update_advantage_stats(self, advantage: Tensor) -> None:
        """EMA of the advantage's mean / variance and of the indicator's quantile threshold (all ranks)."""
        quantile = torch.quantile(advantage.float(), 1.0 - self.config.indicator_positive_fraction)
        batch_stats = distributed_mean(
            torch.stack([advantage.mean(), advantage.var(unbiased=False), quantile])
        )
        momentum = 1.0 if self.advantage_updates.item() == 0 else STATS_MOMENTUM
        self.advantage_updates += 1
        for buffer, value in zip(
            (self.advantage_mean, self.advantage_var, self.indicator_threshold), batch_stats, strict=True
        ):
            buffer.lerp_(value.to(buffer.dtype), momentum)

    def _condition_value(self, advantage: Tensor, targets: dict) -> Tensor:
        """What the expert is conditioned on: the binary indicator (paper) or the standardised advantage."""
        if (
            self.config.advantage_estimator == "mc_distributional"
            or self.config.advantage_source == "dataset"
        ):
            if self.config.advantage_source == "dataset" and not torch.isnan(targets["indicator"]).any():
                return targets["indicator"]
            return advantage_indicator(advantage, self.indicator_threshold, targets["intervention"])
        standardised = self._standardise(advantage).clamp(-3.0, 3.0)
        # The paper's rule for human corrections, in continuous form: a corrected frame is labelled with at
        # least the advantage the policy is asked for at inference, whatever happened after the correction.
        corrected = targets["intervention"] > 0.5
        return torch.where(corrected, standardised.clamp(min=self.config.advantage_scale), standardised)

    def _standardise(self, advantage: Tensor) -> Tensor:
        """Advantage in units of its running standard deviation, centred on its running mean."""
        return (advantage - self.advantage_mean) / self.advantage_var.sqrt().clamp_min(1e-3)

    def _policy_step(
        self,
        targets: dict,
        prefix: Tensor,
        prefix_mask: Tensor,
        actions: Tensor,
        action_pad: Tensor,
        advantage: Tensor | None,
    ) -> tuple[Tensor, dict]:
        config = self.config
        batch_size = actions.shape[0]
        generator = self._step_generator(actions.device)
        weights = self._data_type_weights(targets)
        stats: dict[str, Tensor] = {}
        condition = torch.zeros(batch_size, config.expert_width, device=actions.device, dtype=prefix.dtype)
        if advantage is not None and config.uses_advantage:
            advantage = advantage.float()
            if self.training:
                self._update_advantage_stats(advantage)
            stats["advantage"] = advantage
            if config.use_advantage_weighting:
                # Standardised so the temperature means the same for any reward scale, and divided by the
                # batch mean so the weights reshape the loss without changing its overall size.
                awr = awr_weights(
                    self._standardise(advantage), config.iql_temperature, config.advantage_weight_clip
                )
                awr = awr / awr.mean().clamp_min(1e-8)
                weights = weights * awr
                stats["awr_weight"] = awr
            if config.use_advantage_conditioning:
                value = self._condition_value(advantage, targets)
                keep = (
                    torch.rand(batch_size, device=actions.device, generator=generator)
                    >= config.conditioning_dropout
                )
                condition = self.advantage_embedding(value, keep)
                stats["condition"] = value

        noise = torch.randn(actions.shape, device=actions.device, dtype=actions.dtype, generator=generator)
        # Flow time ~ Beta(1.5, 1) (pi0: more weight on noisy times), by inverse CDF: t = u^(1/1.5).
        uniform = torch.rand(batch_size, device=actions.device, generator=generator)
        time = uniform.pow(1 / 1.5) * 0.999 + 0.001
        noisy = time[:, None, None] * noise + (1 - time[:, None, None]) * actions
        prefix_kv, attention_mask = self.expert.prefix_cache(prefix, prefix_mask)
        velocity = self.expert(noisy, time, condition, prefix_kv, attention_mask)
        error = (velocity.float() - (noise - actions).float()).square().mean(-1)
        # Only the actions the controller of frame t executed: a chunk that starts on an expert frame ends
        # where the policy takes back over (and vice versa).
        same_controller = (
            torch.arange(actions.shape[1], device=actions.device) < targets["segment_left"][:, None]
        )
        valid = (~action_pad & same_controller).float()
        flow_loss = (error * valid).sum(1) / valid.sum(1).clamp_min(1.0)
        stats["policy_loss"] = weights * flow_loss
        stats["flow_loss"] = flow_loss
        return weights * flow_loss, stats

    def _step_generator(self, device: torch.device) -> torch.Generator:
        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
        seed = (
            int(self.noise_seed) + 1_000_003 * int(self.num_updates) + 7_919 * rank + 104_729 * self.run_seed
        )
        return torch.Generator(device=device).manual_seed(seed % 2**63)

    def _data_type_weights(self, targets: dict) -> Tensor:
        """demo / auto / intervention weights; within an intervention episode, frames the robot drove
        itself count as autonomous and only the expert's frames (intervention mask) as interventions."""
        config = self.config
        data_type = targets["data_type"]
        weights = torch.full_like(targets["intervention"], config.demo_weight)
        weights = torch.where(data_type == AUTO, config.auto_weight, weights)
        weights = torch.where(data_type == INTERVENTION, config.auto_weight, weights)
        weights = torch.where(targets["intervention"] > 0.5, config.intervention_weight, weights)
        if config.success_only:
            weights = weights * (targets["success"] > 0.5).float()
        return weights

    def update(self) -> None:
        """Called by lerobot-train after each optimizer step: move the target Q networks, log, count."""
        if isinstance(self.critics, IQLCritics):
            self.critics.update_target(self.config.target_update_rate)
        self.num_updates += 1
        self.monitor.after_update(self, int(self.num_updates.item()))

    def get_optim_params(self) -> list[dict]:
        """Parameter groups so that q_lr, v_lr and policy_lr are real learning rates of one optimizer."""
        groups = []
        critic_ids: set[int] = set()
        if self.critics is not None:
            if isinstance(self.critics, IQLCritics):
                groups.append(
                    {"params": list(self.critics.q.parameters()), "lr": self.config.q_lr, "name": "q"}
                )
            groups.append({"params": list(self.critics.v.parameters()), "lr": self.config.v_lr, "name": "v"})
            critic_ids = {id(p) for p in self.critics.parameters()}
        policy = [p for p in self.parameters() if p.requires_grad and id(p) not in critic_ids]
        groups.insert(0, {"params": policy, "lr": self.config.policy_lr, "name": "policy"})
        return [g for g in groups if g["params"]]

    def _apply_freezing(self) -> None:
        config = self.config
        frozen: list[nn.Module] = []
        if config.freeze_vision_encoder:
            frozen += self.backbone.vision_modules
        if config.freeze_vlm:
            frozen += self.backbone.vlm_modules
        if config.train_expert_only:
            frozen.append(self.backbone)
        if not config.train_policy:  # value-only stage: the expert gets no loss
            frozen += [m for m in (self.expert, self.advantage_embedding) if m is not None]
            if not config.critic_backbone_grad:
                frozen.append(self.backbone)
        for module in frozen:
            module.requires_grad_(False)

    # --- Inference -------------------------------------------------------------------------------
    def reset(self) -> None:
        self._action_queue: deque[Tensor] = deque(maxlen=self.config.n_action_steps)

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict[str, Tensor], noise: Tensor | None = None, **kwargs) -> Tensor:
        """Sample a (B, chunk_size, action_dim) chunk (normalised) with `num_inference_steps` Euler steps."""
        self.eval()
        current, _ = self._observation(batch)
        prefix, prefix_mask = self._encode(current)
        prefix_kv, attention_mask = self.expert.prefix_cache(prefix, prefix_mask)
        batch_size = prefix.shape[0]
        shape = (batch_size, self.config.chunk_size, self.action_dim)
        x = (
            noise.to(prefix.device, prefix.dtype)
            if noise is not None
            else torch.randn(shape, device=prefix.device, dtype=prefix.dtype)
        )
        conditional, unconditional = self._inference_conditions(batch_size, prefix)
        steps = self.config.num_inference_steps
        for step in range(steps):
            time = torch.full((batch_size,), 1.0 - step / steps, device=x.device)
            velocity = self._guided_velocity(x, time, conditional, unconditional, prefix_kv, attention_mask)
            x = x - velocity / steps
        return x

    def _inference_conditions(self, batch_size: int, prefix: Tensor) -> tuple[Tensor, Tensor | None]:
        width = self.config.expert_width
        if self.advantage_embedding is None:
            return prefix.new_zeros(batch_size, width), None
        value = torch.full((batch_size,), self.config.advantage_scale, device=prefix.device)
        keep = torch.ones(batch_size, dtype=torch.bool, device=prefix.device)
        return self.advantage_embedding(value, keep), self.advantage_embedding(value, ~keep)

    def _guided_velocity(
        self,
        x: Tensor,
        time: Tensor,
        conditional: Tensor,
        unconditional: Tensor | None,
        prefix_kv: list[tuple[Tensor, Tensor]],
        attention_mask: Tensor,
    ) -> Tensor:
        """v_u + beta (v_c - v_u); beta = 1 is plain conditional sampling, beta = 0 unconditional."""
        beta = self.config.cfg_beta
        if unconditional is None or beta == 1.0:
            return self.expert(x, time, conditional, prefix_kv, attention_mask)
        if beta == 0.0:
            return self.expert(x, time, unconditional, prefix_kv, attention_mask)
        # Both velocities in one batched pass over the shared prefix cache.
        doubled_kv = [(torch.cat([k, k]), torch.cat([v, v])) for k, v in prefix_kv]
        both = self.expert(
            torch.cat([x, x]),
            torch.cat([time, time]),
            torch.cat([conditional, unconditional]),
            doubled_kv,
            torch.cat([attention_mask, attention_mask]),
        )
        v_conditional, v_unconditional = both.chunk(2)
        return v_unconditional + beta * (v_conditional - v_unconditional)

    @torch.no_grad()
    def select_action(self, batch: dict[str, Tensor], noise: Tensor | None = None, **kwargs) -> Tensor:
        """One action per call; a new chunk is sampled every n_action_steps calls."""
        if not self._action_queue:
            chunk = self.predict_action_chunk(batch, noise=noise)
            self._action_queue.extend(chunk[:, : self.config.n_action_steps].transpose(0, 1))
        return self._action_queue.popleft()

    @torch.no_grad()
    def predict_values(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Critic outputs for a batch (value; and min Q of the recorded chunk for IQL), in return units."""
        if self.critics is None:
            raise RuntimeError("this policy has no critics (it was trained as plain behaviour cloning).")
        current, _ = self._observation(batch)
        prefix, prefix_mask = self._encode(current)
        features = self._critic_features(prefix, prefix_mask, current["state"])
        scale = self.return_scale
        if isinstance(self.critics, IQLCritics):
            out = {"value": self.critics.value(features) * scale}
            if ACTION in batch:
                actions = batch[ACTION]
                pad = batch.get(
                    f"{ACTION}_is_pad",
                    torch.zeros(actions.shape[:2], dtype=torch.bool, device=actions.device),
                )
                chunk = actions.masked_fill(pad[..., None], 0.0).flatten(1).float()
                out["q"] = self.critics.q_values(features, chunk).min(0).values * scale
            return out
        low, high = self.value_support.tolist()
        return {"value": self.critics.value(features, low, high) * scale}

    # --- Checkpoints -----------------------------------------------------------------------------
    def _save_pretrained(self, save_directory: Path, state_dict: dict[str, Tensor] | None = None) -> None:
        """Write config and weights under temporary names, then rename: a crash mid-save never leaves a
        truncated model.safetensors behind (and lerobot-train only moves `last` after a full save)."""
        save_directory = Path(save_directory)
        staging = save_directory / ".saving"
        staging.mkdir(parents=True, exist_ok=True)
        try:
            super()._save_pretrained(staging, state_dict=state_dict)
            for path in sorted(staging.iterdir(), key=lambda p: p.suffix == ".json"):  # weights first
                os.replace(path, save_directory / path.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @classmethod
    def from_pretrained(
        cls, pretrained_name_or_path: str | Path, *, config: PiStarRECAPConfig | None = None, **kwargs
    ) -> PiStarRECAPPolicy:
        """Load a checkpoint strictly: every weight must come from model.safetensors (no silent random
        init), and the VLM is built from the config stored in the checkpoint (no weight download)."""
        path = Path(pretrained_name_or_path)
        if path.is_dir():
            weights = path / "model.safetensors"
        else:
            try:
                weights = Path(
                    hf_hub_download(
                        str(pretrained_name_or_path), "model.safetensors", revision=kwargs.get("revision")
                    )
                )
            except Exception as e:  # offline, unknown repo, no access
                raise FileNotFoundError(
                    f"{pretrained_name_or_path} is neither a local checkpoint directory nor a reachable hub "
                    f"repo with model.safetensors ({e})."
                ) from e
        if not weights.is_file():
            raise FileNotFoundError(
                f"{weights} does not exist: {path} is not a pi_star_recap checkpoint directory."
            )
        if config is None:
            config = PreTrainedConfig.from_pretrained(weights.parent)
        if not isinstance(config, PiStarRECAPConfig):
            raise ValueError(
                f"{pretrained_name_or_path} holds a '{config.type}' policy, not pi_star_recap; load it with "
                f"lerobot's make_policy / its own policy class."
            )
        kwargs = {k: v for k, v in kwargs.items() if k == "dataset_meta"}
        policy = cls(config, load_vlm_weights=False, **kwargs)
        try:
            # load_model (not load_file + load_state_dict) understands tied weights saved once.
            missing, unexpected = load_safetensors_into(policy, str(weights), strict=False, device="cpu")
        except Exception as e:  # safetensors raises several error types for damaged files
            raise RuntimeError(
                f"{weights} is truncated or corrupted ({e}); use another checkpoint (e.g. an earlier step)."
            ) from e
        fresh = fresh_modules(PreTrainedConfig.from_pretrained(pretrained_name_or_path), config)
        missing_elsewhere = [k for k in missing if not k.startswith(fresh)]
        unexpected_elsewhere = [k for k in unexpected if not k.startswith(fresh)]
        if missing_elsewhere or unexpected_elsewhere:
            raise RuntimeError(
                f"{weights} does not match this pi_star_recap config: missing {missing_elsewhere[:5]}, unexpected "
                f"{unexpected_elsewhere[:5]}. Was it saved with other options (backbone, expert size)?"
            )
        for prefix in fresh:
            logging.warning(
                f"pi_star_recap: '{prefix.rstrip('.')}' is not in {weights} (trained with other advantage options): "
                "it starts from a fresh initialisation."
            )
        if "critics." in fresh:
            policy.advantage_updates.zero_()  # advantage statistics restart with the new critics
        if kwargs.get("dataset_meta") is not None:
            pin_normalization_stats(config, kwargs["dataset_meta"], weights.parent)
        policy.to(config.device)
        policy.eval()
        return policy
