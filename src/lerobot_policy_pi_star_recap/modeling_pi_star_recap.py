"""`PiStarRECAPPolicy`: the LeRobot adapter over the tensor model `model.pi_star_recap.PiStarRECAP`.

The adapter parses LeRobot batches (and checks them), finds each frame's RECAP targets in the attached
dataset table, queues actions, and saves and loads checkpoints (strictly, upgrading older key names);
`PiStarRECAP` computes (see its module for the training step), and owns its parameter groups and freezing.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import deque
from pathlib import Path

import numpy as np
import torch
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.utils.constants import (
    ACTION,
    OBS_ENV_STATE,
    OBS_LANGUAGE_ATTENTION_MASK,
    OBS_LANGUAGE_TOKENS,
    OBS_STATE,
)
from torch import Tensor, nn

from .configuration_pi_star_recap import PiStarRECAPConfig
from .data.recap_table import RecapTable
from .errors import RecapDataError
from .model.inputs import Observation, RecapTargets
from .model.pi_star_recap import PiStarRECAP, recorded_chunk
from .model.weights import checkpoint_weights, load_weights_strictly
from .training.monitor import TrainingMonitor

# Where checkpoints written before the adapter / model split kept their tensors (old prefix -> new).
LEGACY_KEYS = (
    ("backbone.", "model.backbone."),
    ("expert.", "model.flow.expert."),
    ("advantage_embedding.", "model.conditioner.embedding."),
    ("critics.", "model.critic."),
    ("advantage_mean", "model.conditioner.advantage_mean"),
    ("advantage_var", "model.conditioner.advantage_var"),
    ("indicator_threshold", "model.conditioner.indicator_threshold"),
    ("advantage_updates", "model.conditioner.advantage_updates"),
    ("return_scale", "model.return_scale"),
    ("value_support", "model.value_support"),
    ("num_updates", "model.num_updates"),
    ("noise_seed", "model.noise_seed"),
)


def upgrade_key(name: str) -> str:
    """A tensor name of an older checkpoint in today's layout (names already current are kept)."""
    for old, new in LEGACY_KEYS:
        if name == old or (old.endswith(".") and name.startswith(old)):
            return new + name[len(old) :]
    return name


def current_and_next(x: Tensor, frame_dims: int) -> tuple[Tensor, Tensor | None]:
    """Split an observation window (B, 2, ...) into the current and the bootstrap frame."""
    if x.dim() == frame_dims + 1:
        return x[:, 0], x[:, -1]
    return x, None


def fresh_modules(saved: PiStarRECAPConfig, requested: PiStarRECAPConfig) -> tuple[str, ...]:
    """Modules a checkpoint cannot provide because the requested config adds (or changes) them, e.g. stage 2
    turning RECAP's critics and conditioning on over a behaviour-cloning stage 1."""
    fresh = []
    if saved.method.critic != requested.method.critic:
        fresh.append("model.critic.")
    if (saved.method.condition == "none") != (requested.method.condition == "none"):
        fresh.append("model.conditioner.embedding.")
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
    if config.normalization.keep_pretrained_stats:
        saved = checkpoint_normalization_stats(checkpoint)
        replaced = {k: saved[k] for k in keys if k in saved}
    else:
        floored = floor_state_std(config, dataset_meta.stats)
        replaced = {k: floored[k] for k in keys if k in floored}
    for key, stats in replaced.items():
        dataset_meta.stats[key] = {**dataset_meta.stats.get(key, {}), **stats}
    if config.normalization.keep_pretrained_stats and replaced:
        logging.info(
            f"pi_star_recap: normalising {sorted(replaced)} with the statistics of {checkpoint} "
            "(keep_pretrained_stats=true), not those of the new dataset."
        )


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
        self.model = PiStarRECAP(config, state_dim, self.action_dim, load_vlm_weights)

        self.recap_table: RecapTable | None = None
        if dataset_meta is not None and getattr(dataset_meta, "root", None) is not None:
            check_dataset_matches(config, dataset_meta)
            self.attach_dataset(RecapTable.from_dataset_root(dataset_meta.root, **self._table_kwargs()))
        self.monitor = TrainingMonitor(config, self.parameters)
        if config.runtime.compile_model:
            # In place (nn.Module.compile), so parameter names and checkpoints stay the eager model's.
            self.model.backbone.compile(mode=config.runtime.compile_mode)
            self.model.flow.expert.compile(mode=config.runtime.compile_mode)
        self.reset()

    # --- Data ------------------------------------------------------------------------------------
    def _table_kwargs(self) -> dict:
        return {
            "chunk_size": self.config.chunk_size,
            "discount": self.config.iql_discount,
            "n_step": self.config.advantage_n_step,
            "need_rewards": self.config.trains_critics,
            "timeouts_truncate": self.config.critic.timeouts_truncate,
        }

    def attach_dataset(self, table: RecapTable) -> None:
        """Use `table` for the RECAP targets of training batches (looked up by the batch's `index`)."""
        config = self.config
        if config.method.critic == "dataset" and not table.has_advantage:
            raise RecapDataError(
                f"{table.where}: advantage_source='dataset' but the dataset has no 'advantage' / "
                "'advantage_indicator' columns; label it first with `pi-star-recap value-label`."
            )
        if config.success_only and not table.has_success:
            raise RecapDataError(
                f"{table.where}: success_only=true needs a success column ('success' or 'next.success')."
            )
        self.recap_table = table
        if table.has_rewards and not self.model.updates:  # a fresh policy: its first dataset sets the scales
            self.model.set_return_range(table.return_scale, table.min_return, table.max_return)
        logging.info(f"pi_star_recap: RECAP data {table.summary()}")

    def _recap_targets(self, batch: dict[str, Tensor]) -> RecapTargets:
        if self.recap_table is None:
            raise RecapDataError(
                "pi_star_recap was built without a dataset, so it cannot find the RECAP fields of training "
                "batches: create it through lerobot's make_policy(cfg, ds_meta=dataset.meta) or call "
                "policy.attach_dataset(RecapTable.from_dataset_root(root, ...)) (RecapTable: "
                "lerobot_policy_pi_star_recap.data.recap_table)."
            )
        if "index" not in batch:
            raise RecapDataError("training batches need LeRobot's global frame 'index' to find RECAP fields.")
        return self.recap_table.lookup(batch["index"])

    def observation(self, batch: dict[str, Tensor]) -> tuple[Observation, Observation | None]:
        """Frame t (and, for training windows, the bootstrap frame) of a batch, with clear errors."""
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
        images, next_images = [], []
        for key in self.image_keys:
            now, later = current_and_next(batch[key], frame_dims=4)
            if now.shape[1] != 3:
                raise ValueError(f"pi_star_recap: {key} must be (B, 3, H, W) RGB, got {tuple(now.shape)}.")
            images.append(now)
            next_images.append(later)
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
        tokens, mask = batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK]
        current = Observation(images, tokens, mask, self._clip_state(states))
        if all(x is None for x in next_images + next_states):
            return current, None
        return current, Observation(next_images, tokens, mask, self._clip_state(next_states))

    def _clip_state(self, states: list[Tensor]) -> Tensor | None:
        """Concatenated normalised state, clamped to +-state_clip: states far outside the training data
        (z-scores in the tens) reach the network bounded."""
        if not states:
            return None
        state, clip = torch.cat(states, -1), self.config.normalization.state_clip
        return state if clip is None else state.clamp(-clip, clip)

    def _actions(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        actions = batch[ACTION]
        if actions.shape[-1] != self.action_dim:
            raise ValueError(
                f"pi_star_recap: actions have {actions.shape[-1]} dims but the policy was built for "
                f"{self.action_dim}."
            )
        pad = batch.get(f"{ACTION}_is_pad")
        return actions, pad if pad is not None else torch.zeros(
            actions.shape[:2], dtype=torch.bool, device=actions.device
        )

    # --- Training --------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor], reduction: str = "mean") -> tuple[Tensor, dict]:
        targets = self._recap_targets(batch)
        current, following = self.observation(batch)
        actions, action_pad = self._actions(batch)
        per_sample, stats = self.model(current, following, actions, action_pad, targets)
        loss = per_sample.mean() if reduction == "mean" else per_sample
        if not self.training:  # e.g. lerobot-train's eval batches: not part of the training window
            return loss, self.monitor.batch_means(stats, targets.data_type, loss)
        # This batch's metrics as device tensors; floats (the window's means) on log steps only.
        metrics, finite = self.monitor.record(stats, targets.data_type, loss, step=self.model.updates + 1)
        if self.config.runtime.on_nonfinite == "skip":
            # A bad batch's loss reads 0; its gradient is zeroed at the optimizer step (see the monitor).
            loss = torch.where(finite, loss, torch.zeros_like(loss))
        return loss, metrics

    def update(self) -> None:
        """Called by lerobot-train after each optimizer step: move the target Q networks, count, log."""
        self.model.after_step()
        self.monitor.after_update(self.model.updates)

    def get_optim_params(self) -> list[dict]:
        """Parameter groups so that q_lr, v_lr, policy_lr and the condition's rate are real learning rates
        of one optimizer (the scheduler scales every group's rate by the same factor)."""
        return self.model.param_groups()

    # --- Inference -------------------------------------------------------------------------------
    def reset(self) -> None:
        self._action_queue: deque[Tensor] = deque(maxlen=self.config.n_action_steps)

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict[str, Tensor], noise: Tensor | None = None, **kwargs) -> Tensor:
        """Sample a (B, chunk_size, action_dim) chunk (normalised) with `num_inference_steps` Euler steps."""
        self.eval()
        return self.model.sample(self.observation(batch)[0], noise)

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
        chunk = recorded_chunk(*self._actions(batch)) if ACTION in batch else None
        return self.model.values(self.observation(batch)[0], chunk)

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
        weights = checkpoint_weights(pretrained_name_or_path, kwargs.get("revision"))
        if config is None:
            config = PiStarRECAPConfig.from_pretrained(weights.parent)
        if not isinstance(config, PiStarRECAPConfig):
            raise ValueError(
                f"{pretrained_name_or_path} holds a '{config.type}' policy, not pi_star_recap; load it with "
                f"lerobot's make_policy / its own policy class."
            )
        saved = PiStarRECAPConfig.from_pretrained(weights.parent)
        if saved.backbone.tokenizer_padding != config.backbone.tokenizer_padding:
            raise ValueError(
                f"{pretrained_name_or_path} was trained with tokenizer_padding={saved.backbone.tokenizer_padding!r}, not "
                f"{config.backbone.tokenizer_padding!r}: the option changes the positions the language model sees, and the "
                "checkpoint's saved processor keeps its own padding. Fine-tune with the checkpoint's value."
            )
        kwargs = {k: v for k, v in kwargs.items() if k == "dataset_meta"}
        policy = cls(config, load_vlm_weights=False, **kwargs)
        fresh = fresh_modules(saved, config)
        load_weights(policy, weights, fresh)
        for prefix in fresh:
            logging.warning(
                f"pi_star_recap: '{prefix.rstrip('.')}' is not in {weights} (trained with other advantage options): "
                "it starts from a fresh initialisation."
            )
        if "model.critic." in fresh:
            policy.model.conditioner.advantage_updates.zero_()  # advantage statistics restart with the critics
        if kwargs.get("dataset_meta") is not None:
            pin_normalization_stats(config, kwargs["dataset_meta"], weights.parent)
        policy.to(config.device)
        policy.eval()
        return policy


def load_weights(policy: nn.Module, weights: Path, fresh: tuple[str, ...]) -> None:
    """Every tensor from `weights` (older key names upgraded), except those of `fresh` modules."""
    load_weights_strictly(
        policy,
        weights,
        "does not match this pi_star_recap config (was it saved with other options: backbone, expert size?)",
        rename=lambda saved: {upgrade_key(k): v for k, v in saved.items()},
        fresh=fresh,
    )
