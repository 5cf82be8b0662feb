"""Configuration of the pi*0.6 RECAP policy.

Two presets keep the interacting options in one place; explicit values always win over a preset:
  `mode`        which method trains (bc, filtered_bc, awr, recap = IQL conditioning, paper = value-label
                indicators): fills the estimator, the advantage source and the advantage-use flags;
  `iql_preset`  the IQL tuning table (conservative / balanced / exploratory): fills expectile and
                temperature.
The seed's options, the method switches and the fields LeRobot reads stay flat (`PiStarRECAPConfig(
iql_expectile=0.7)`, `--policy.iql_expectile=0.7`), so the documented constructor calls and command lines
keep working; the other knobs sit in named groups (`--policy.expert.width=128`). Validation is the tables
`CHOICES` and `RULES`; `PiStarRECAPConfig.from_pretrained` migrates config.json files of the earlier flat
layout (`migrate_flat_keys`).

Every field is described by the comment ending its line or the comment lines right above it (a group by
its class docstring): `python scripts/gen_config_doc.py` turns them into docs/configuration.md, and
tests/test_config_doc.py fails on a field without a description or on a stale page.
"""

import difflib
import functools
import json
import math
import operator
import tempfile
import types
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import torch
from lerobot.configs import NormalizationMode, PreTrainedConfig
from lerobot.optim import AdamWConfig, LRSchedulerConfig, OptimizerConfig
from torch.optim.lr_scheduler import LambdaLR

from .rl.method import Method

# The IQL tuning table (README, "Hyperparameter tuning"): (expectile tau, temperature beta).
IQL_PRESETS: dict[str, tuple[float, float]] = {
    "conservative": (0.8, 0.3),
    "balanced": (0.7, 0.5),
    "exploratory": (0.6, 0.7),
}
ADVANTAGE_ESTIMATORS = ("iql", "mc_distributional")
ADVANTAGE_HORIZONS = ("n_step", "full_return")
VALUE_TARGET_SMOOTHING = ("two_hot", "hl_gauss")
ADVANTAGE_SOURCES = ("critic", "dataset")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# What each `mode` fills (fields left at None): the flags that only make sense together.
MODES: dict[str, dict[str, object]] = {
    "bc": {"use_advantage_weighting": False, "use_advantage_conditioning": False},
    "filtered_bc": {
        "use_advantage_weighting": False,
        "use_advantage_conditioning": False,
        "success_only": True,
    },
    "awr": {
        "advantage_estimator": "iql",
        "use_advantage_weighting": True,
        "use_advantage_conditioning": False,
    },
    "recap": {"advantage_estimator": "iql", "advantage_source": "critic"},
    "paper": {"advantage_estimator": "mc_distributional", "advantage_source": "dataset"},
}
# Values of the mode-dependent fields that no mode (or the default, "recap") sets.
MODE_DEFAULTS: dict[str, object] = {
    "advantage_estimator": "iql",
    "advantage_source": "critic",
    "use_advantage_weighting": False,
    "use_advantage_conditioning": True,
    "success_only": False,
}


BASE_MODELS = ("native", "pi05")
NATIVE_NORMALIZATION = {
    "VISUAL": NormalizationMode.IDENTITY,
    "STATE": NormalizationMode.MEAN_STD,
    "ENV": NormalizationMode.MEAN_STD,
    "ACTION": NormalizationMode.MEAN_STD,
}
PI05_NORMALIZATION = {**NATIVE_NORMALIZATION, "STATE": NormalizationMode.QUANTILES,
                      "ACTION": NormalizationMode.QUANTILES}  # fmt: skip
PI05_SIZES = ("full", "tiny")
TOKENIZER_PADDINGS = ("longest", "max_length")
CHOICES: dict[str, tuple] = {
    "base_model": BASE_MODELS,
    "pi05.size": PI05_SIZES,
    "advantage_estimator": ADVANTAGE_ESTIMATORS,
    "advantage_horizon": ADVANTAGE_HORIZONS,
    "critic.value_target_smoothing": VALUE_TARGET_SMOOTHING,
    "advantage_source": ADVANTAGE_SOURCES,
    "dtype": ("float32", "bfloat16"),
    "runtime.on_nonfinite": ("raise", "skip"),
    "runtime.compile_mode": COMPILE_MODES,
    "backbone.tokenizer_padding": TOKENIZER_PADDINGS,
}
# (fields, valid(config, value), what a valid value is), checked after the presets are resolved; a field
# in a group is named by its dotted path.
RULES: tuple[tuple[str, Callable[[Any, Any], bool], str], ...] = (
    ("iql_expectile", lambda c, v: 0.0 < v < 1.0, "must lie in (0, 1), e.g. 0.7."),
    ("iql_temperature", lambda c, v: v > 0.0, "must be > 0 (exp(A / temperature))."),
    ("iql_discount", lambda c, v: 0.0 <= v <= 1.0, "must lie in [0, 1]."),
    (
        "chunk_size num_inference_steps advantage_n_step backbone.tokenizer_max_length expert.depth "
        "expert.heads expert.mlp_ratio critic.hidden_dim critic.depth optim.scheduler_decay_steps "
        "pi05.image_resolution",
        lambda c, v: v >= 1,
        "must be >= 1.",
    ),
    ("optim.scheduler_warmup_steps", lambda c, v: v >= 0, "must be >= 0."),
    ("optim.weight_decay optim.scheduler_decay_factor", lambda c, v: v >= 0.0, "must be >= 0."),
    ("optim.grad_clip_norm", lambda c, v: v > 0.0, "must be > 0 (0 would zero every gradient)."),
    ("n_action_steps", lambda c, v: 1 <= v <= c.chunk_size, "must be between 1 and chunk_size."),
    ("n_obs_steps", lambda c, v: v == 1, "only 1 is supported (the VLM sees the current frame)."),
    (
        "demo_weight auto_weight intervention_weight conditioning.negative_weight",
        lambda c, v: v >= 0.0,
        "loss weights must be >= 0.",
    ),
    (
        "q_lr v_lr policy_lr optim.condition_lr_multiplier",
        lambda c, v: v > 0.0,
        "learning rates must be > 0.",
    ),
    ("critic.target_update_rate", lambda c, v: 0.0 < v <= 1.0, "must lie in (0, 1]."),
    (
        "conditioning.advantage_weight_clip conditioning.advantage_clip conditioning.advantage_std_floor",
        lambda c, v: v > 0.0,
        "must be > 0.",
    ),
    ("conditioning.advantage_stats_momentum", lambda c, v: 0.0 < v <= 1.0, "must lie in (0, 1]."),
    ("expert.flow_time_alpha", lambda c, v: v > 0.0, "must be > 0 (t ~ Beta(alpha, 1))."),
    ("expert.flow_time_min", lambda c, v: 0.0 <= v < 1.0, "must lie in [0, 1)."),
    ("conditioning.dropout", lambda c, v: 0.0 <= v < 1.0, "must lie in [0, 1)."),
    ("cfg_beta", lambda c, v: v >= 0.0, "must be >= 0 (1 = no guidance)."),
    ("critic.value_num_bins", lambda c, v: v >= 2, "must be >= 2."),
    ("conditioning.indicator_positive_fraction", lambda c, v: 0.0 < v < 1.0, "must lie in (0, 1), e.g. 0.3."),
    ("expert.width", lambda c, v: v % c.expert.heads == 0, "must be divisible by expert.heads."),
    (
        "critic.return_normalizer normalization.state_clip",
        lambda c, v: v is None or v > 0,
        "must be > 0 or None.",
    ),
    ("conditioning.unconditional_negative_weight", lambda c, v: v is None or v >= 0, "must be >= 0 or None."),
    ("normalization.state_std_floor", lambda c, v: v >= 0.0, "must be >= 0 (0 disables the floor)."),
    (
        "runtime.compile_model",
        lambda c, v: not (v and c.base_model == "pi05"),
        "is not supported with base_model='pi05' yet; leave it false.",
    ),
    (
        "pi05.gradient_checkpointing",
        lambda c, v: not v or c.base_model == "pi05",
        "is implemented for base_model='pi05' only.",
    ),
    (
        "critic.backbone_grad",
        lambda c, v: not (v and c.pi05.gradient_checkpointing),
        "cannot be combined with pi05.gradient_checkpointing (the critics then read a no-grad prefix pass).",
    ),
)


# The runtime types a field of each annotated scalar type accepts: an int is a valid float, a bool (an int
# subclass in Python) is neither, so `chunk_size=True` or `cfg_beta="1"` fail here instead of deep inside.
SCALAR_TYPES: dict[type, tuple[type, ...]] = {int: (int,), float: (int, float), str: (str,), bool: (bool,)}


@functools.cache
def scalar_field_types(cls: type) -> dict[str, tuple[tuple[type, ...], bool]]:
    """(accepted types, None allowed) of each field of `cls` annotated as int, float, str or bool, optionally
    `| None`, by dotted path into its groups; other fields (dicts, lists, paths, features) are left to the
    code that fills them."""
    hints = typing.get_type_hints(cls)
    result = {}
    for f in fields(cls):
        hint = hints[f.name]
        if is_dataclass(hint):
            result.update({f"{f.name}.{name}": kind for name, kind in scalar_field_types(hint).items()})
            continue
        args = (
            typing.get_args(hint)
            if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
            else (hint,)
        )
        scalars = [a for a in args if a is not type(None)]
        if len(scalars) == 1 and scalars[0] in SCALAR_TYPES:
            result[f.name] = (SCALAR_TYPES[scalars[0]], type(None) in args)
    return result


@OptimizerConfig.register_subclass("pi_star_recap_adamw")
@dataclass
class PiStarRECAPAdamWConfig(AdamWConfig):
    """LeRobot's AdamW plus PyTorch's `fused` switch, which LeRobot's own AdamWConfig does not expose.

    The fused kernel updates a whole parameter group at once instead of looping over tensors in Python:
    on a 2-core CPU it cut the optimizer step of the tiny model (34M parameters, most of them the token
    embedding) from ~280 ms to ~40 ms, half of a training step (BENCHMARKS.md).
    """

    fused: bool = True

    def build(self, params) -> torch.optim.Optimizer:
        kwargs = asdict(self)
        kwargs.pop("grad_clip_norm")
        return torch.optim.AdamW(params, **kwargs)


@LRSchedulerConfig.register_subclass("pi_star_recap_cosine")
@dataclass
class PiStarRECAPCosineSchedulerConfig(LRSchedulerConfig):
    """Linear warm-up over exactly `num_warmup_steps`, then cosine decay to `decay_lr` at step
    min(num_decay_steps, the run's steps), constant after.

    LeRobot's cosine_decay_with_warmup shrinks the warm-up with the run (warm-up x steps / decay_steps:
    100 -> 2 steps for a 600-step fine-tune), so every short fine-tune started at peak learning rate with
    fresh Adam moments. Here the warm-up means what it says, however short the run.
    """

    num_warmup_steps: int
    num_decay_steps: int
    peak_lr: float
    decay_lr: float

    def build(self, optimizer: torch.optim.Optimizer, num_training_steps: int) -> LambdaLR:
        warmup = min(self.num_warmup_steps, num_training_steps)
        decay_end = max(min(self.num_decay_steps, num_training_steps), warmup + 1)
        floor = self.decay_lr / self.peak_lr

        def lr_lambda(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = min((step - warmup) / (decay_end - warmup), 1.0)
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        return LambdaLR(optimizer, lr_lambda, -1)


@dataclass
class Pi05Options:
    """The pi05 base (`base_model="pi05"`): LeRobot's pi05 (PaliGemma + Gemma expert) with its input pipeline;
    the critics read its VLM prefix and the advantage enters the expert's time conditioning (zero-initialised)."""

    size: str = "full"  # "full": pi05's own sizes (gemma_2b + gemma_300m); "tiny": CPU tests
    tokenizer: str = "google/paligemma-3b-pt-224"  # what pi05 tokenises with ("tiny": built in)
    image_resolution: int = 224  # pi05 resizes (with padding) every camera to this square size
    gradient_checkpointing: bool = False  # recompute activations in the backward pass (memory)


@dataclass
class BackboneOptions:
    """The native base's VLM (`vlm_model_name`): what else it loads and how prompts are tokenised."""

    vision_model_name: str = "google/siglip-base-patch16-224"  # the vision tower of a text-only LM
    # Architecture of the backbone, recorded on first load so checkpoints rebuild it without the hub.
    vlm_config: dict | None = None
    tokenizer_max_length: int = 48  # prompt tokens at most (longer prompts are truncated)
    # "max_length" pads every prompt to tokenizer_max_length, and the tokens after it (the state token)
    # sit at positions that count the padding (checkpoints from before this option). "longest" (native
    # base) pads each batch to its longest prompt and counts positions over real tokens only, so outputs
    # do not depend on the padding: the demo's 25-token prompt in a 48-token window made its training step
    # 1.26x slower; whether "longest" changes what RECAP learns is open (one demo run with it: 75%, two with
    # "max_length": 85% and 76%; BENCHMARKS.md). A pi05 base always pads to tokenizer_max_length.
    tokenizer_padding: str = "max_length"


@dataclass
class ExpertOptions:
    """The native flow-matching action expert: its size and the flow times it trains on."""

    width: int = 512  # hidden size of the expert's transformer
    depth: int = 6  # transformer blocks
    heads: int = 8  # attention heads (width must be divisible by heads)
    mlp_ratio: int = 4  # MLP hidden size = width x mlp_ratio
    # Flow time t ~ Beta(flow_time_alpha, 1), in [flow_time_min, 1] (pi0: more weight on noisy times).
    flow_time_alpha: float = 1.5
    flow_time_min: float = 1e-3  # smallest flow time trained on


@dataclass
class CriticOptions:
    """The critics (IQL Q / V, or the paper's distributional V) and the returns they learn."""

    hidden_dim: int = 256  # hidden size of the critic MLPs
    depth: int = 2  # hidden layers of the critic MLPs
    backbone_grad: bool = False  # let critic losses update the backbone
    target_update_rate: float = 0.005  # Polyak rate of the target Q networks
    # Rewards are divided by this so returns lie in [-1, 1] (the paper's per-task normalisation); None
    # takes the largest |return| of the first dataset the policy is trained on, kept across stages.
    return_normalizer: float | None = None
    # Episodes that end without success ran out of time: treat their end as a truncation (bootstrap from
    # the last observation) rather than a terminal failure whose penalty a time-blind value cannot predict.
    # A `truncated` / `next.truncated` column, where present, marks truncations explicitly.
    timeouts_truncate: bool = True
    # Bins of the distributional value over its return support (paper mode: distributional Monte-Carlo
    # value, binarised advantage, the "indicator").
    value_num_bins: int = 201
    value_target_smoothing: str = "hl_gauss"  # how a return becomes a target over the bins: two_hot, hl_gauss


@dataclass
class ConditioningOptions:
    """How the policy takes the advantage in: the standardised condition, the binary indicator, guidance
    dropout, the loss weight of negatives, and the clip of the AWR weight."""

    dropout: float = 0.3  # share of samples trained unconditionally (enables guidance)
    advantage_clip: float = 3.0  # the IQL condition is the advantage in stds, clamped to +-this
    advantage_std_floor: float = 1e-3  # lower bound on the running advantage std used to standardise
    advantage_stats_momentum: float = 0.01  # EMA rate of the advantage mean, variance and threshold
    # per-task quantile threshold -> this share of frames is positive
    indicator_positive_fraction: float = 0.3
    # Loss weight of frames whose indicator is 0 (binary conditioning). 1 is the paper: the negatives teach
    # the I=0 and unconditional policies. Lower keeps the I=1 policy from copying failures in states only
    # failed episodes reach (it interpolates across the condition there; measured in BENCHMARKS.md).
    negative_weight: float = 1.0
    # The same for the indicator-0 frames trained unconditionally (their condition dropped); None: negative_weight.
    # 1 with negative_weight 0 keeps the unconditional policy behaviour cloning on all data, so guidance
    # (cfg_beta > 1) still has a reference to push the I=1 policy away from.
    unconditional_negative_weight: float | None = None
    advantage_weight_clip: float = 100.0  # upper bound of the AWR weight exp(A / beta)


@dataclass
class OptimOptions:
    """AdamW and the learning-rate schedule; the per-module learning rates (q_lr, v_lr, policy_lr) stay flat."""

    # The advantage embedding learns at policy_lr x this: it starts at zero in a fine-tune of a trained
    # expert and must grow within a short stage 2 to move the velocity as far as the data's good and bad
    # actions differ.
    condition_lr_multiplier: float = 1.0
    weight_decay: float = 1e-10  # AdamW weight decay
    grad_clip_norm: float = 10.0  # clip the gradient to this global norm
    fused: bool = True  # PyTorch's fused AdamW kernel (CPU and CUDA); false: the for-loop AdamW
    # Warm-up over exactly this many steps (also in short fine-tunes), then cosine decay to
    # policy_lr x scheduler_decay_factor over min(scheduler_decay_steps, the run's --steps).
    scheduler_warmup_steps: int = 1_000
    scheduler_decay_steps: int = 30_000  # steps of the cosine decay (capped at the run's --steps)
    scheduler_decay_factor: float = 0.1  # final learning rate as a share of the peak


@dataclass
class RuntimeOptions:
    """How a run executes, not what it learns: compilation, non-finite handling, logging."""

    # What a non-finite metric or gradient does, found at the next log step (the step reads nothing back):
    # "raise" stops training there; "skip" zeroes the bad batches' gradients on the device and warns.
    on_nonfinite: str = "raise"
    # torch.compile the backbone and the action expert. Measured on a 2-core CPU (tiny size, after ~20 s of
    # compiling): one action chunk 0.4-0.65x the eager time, a training step 0.75-0.8x; see BENCHMARKS.md.
    compile_model: bool = False
    compile_mode: str = "default"  # torch.compile mode: default, reduce-overhead, max-autotune, ...
    tensorboard_dir: str | None = None  # None: <lerobot-train --output_dir>/tensorboard


@dataclass
class NormalizationOptions:
    """Statistics beyond LeRobot's `normalization_mapping`: which ones a fine-tune keeps, floors and clamps."""

    # Fine-tuning a checkpoint on another dataset (lerobot-train --policy.path=...): normalise with the
    # statistics the checkpoint was trained with, so stage 2 starts acting exactly like stage 1. LeRobot
    # would otherwise re-normalise states and actions with the new dataset's statistics.
    keep_pretrained_stats: bool = True
    state_std_floor: float = 1e-2  # lower bound on the std of normalised state dims, in their own units
    state_clip: float | None = None  # clamp normalised states to +-this many stds (None: no clamp)


# Where each option of the flat config of earlier releases (their config.json files) lives now. The
# seed's options, the method switches and the fields LeRobot itself reads (dtype, normalization_mapping)
# kept their flat names and are not listed.
MOVED: dict[str, str] = {
    "pi05_size": "pi05.size",
    "pi05_tokenizer": "pi05.tokenizer",
    "pi05_image_resolution": "pi05.image_resolution",
    "gradient_checkpointing": "pi05.gradient_checkpointing",
    "vision_model_name": "backbone.vision_model_name",
    "vlm_config": "backbone.vlm_config",
    "tokenizer_max_length": "backbone.tokenizer_max_length",
    "tokenizer_padding": "backbone.tokenizer_padding",
    "expert_width": "expert.width",
    "expert_depth": "expert.depth",
    "expert_heads": "expert.heads",
    "expert_mlp_ratio": "expert.mlp_ratio",
    "flow_time_alpha": "expert.flow_time_alpha",
    "flow_time_min": "expert.flow_time_min",
    "critic_hidden_dim": "critic.hidden_dim",
    "critic_depth": "critic.depth",
    "critic_backbone_grad": "critic.backbone_grad",
    "target_update_rate": "critic.target_update_rate",
    "return_normalizer": "critic.return_normalizer",
    "timeouts_truncate": "critic.timeouts_truncate",
    "value_num_bins": "critic.value_num_bins",
    "value_target_smoothing": "critic.value_target_smoothing",
    "conditioning_dropout": "conditioning.dropout",
    "advantage_clip": "conditioning.advantage_clip",
    "advantage_std_floor": "conditioning.advantage_std_floor",
    "advantage_stats_momentum": "conditioning.advantage_stats_momentum",
    "indicator_positive_fraction": "conditioning.indicator_positive_fraction",
    "negative_weight": "conditioning.negative_weight",
    "unconditional_negative_weight": "conditioning.unconditional_negative_weight",
    "advantage_weight_clip": "conditioning.advantage_weight_clip",
    "condition_lr_multiplier": "optim.condition_lr_multiplier",
    "weight_decay": "optim.weight_decay",
    "grad_clip_norm": "optim.grad_clip_norm",
    "fused_optimizer": "optim.fused",
    "scheduler_warmup_steps": "optim.scheduler_warmup_steps",
    "scheduler_decay_steps": "optim.scheduler_decay_steps",
    "scheduler_decay_factor": "optim.scheduler_decay_factor",
    "on_nonfinite": "runtime.on_nonfinite",
    "compile_model": "runtime.compile_model",
    "compile_mode": "runtime.compile_mode",
    "tensorboard_dir": "runtime.tensorboard_dir",
    "keep_pretrained_stats": "normalization.keep_pretrained_stats",
    "state_std_floor": "normalization.state_std_floor",
    "state_clip": "normalization.state_clip",
}
# Options of earlier releases that only one command read and that are now its flags; a checkpoint's value
# never changed the policy, so migrating a config.json drops them.
BECAME_FLAGS: dict[str, str] = {
    "cut_at_takeovers": "pi-star-recap value-label --cut-at-takeovers",
    "negative_before_takeover": "pi-star-recap value-label --negative-before-takeover",
}


@PreTrainedConfig.register_subclass("pi_star_recap")
@dataclass
class PiStarRECAPConfig(PreTrainedConfig):
    """The flat fields are the seed's options, the method switches and what LeRobot itself reads; the
    rest of the knobs sit in groups (`--policy.expert.width=128`, `PiStarRECAPConfig(expert=ExpertOptions(
    width=128))`). config.json files of the earlier flat layout load through `from_pretrained` (`migrate_flat_keys`)."""

    # --- Base model -----------------------------------------------------------------------------
    # "native": this package's VLM backbone (vlm_model_name) and flow-matching action expert (`expert`).
    # "pi05": LeRobot's pi05 (`pi05`), its pretrained weights read from base_path.
    base_model: str = "native"
    # pi05 base only: its pretrained weights (lerobot/pi05_base or a pi05 checkpoint folder), loaded
    # strictly; None builds pi05 with random weights (tests only).
    base_path: str | None = None
    pi05: Pi05Options = field(default_factory=Pi05Options)
    # A Hugging Face hub id or local directory of a VLM (PaliGemma, Gemma 3, Qwen2.5-VL, Qwen3-VL,
    # Idefics3 / SmolVLM) or of a text-only LM (e.g. google/gemma-2b-it, paired with
    # `backbone.vision_model_name`). "tiny" builds a small random-init PaliGemma-style model from configs:
    # no download, for demos and tests.
    vlm_model_name: str = "tiny"
    backbone: BackboneOptions = field(default_factory=BackboneOptions)
    freeze_vlm: bool = False  # freeze the whole VLM (vision tower, projector, language model)
    freeze_vision_encoder: bool = False  # freeze only the vision tower
    train_expert_only: bool = False  # train only the action expert (and the critics, which RECAP needs)

    # --- Action chunks and flow matching --------------------------------------------------------
    chunk_size: int = 16  # actions predicted per chunk (the flow-matching horizon H)
    n_action_steps: int = 16  # actions of each chunk executed before the next chunk is predicted
    num_inference_steps: int = 10  # Euler steps that integrate the flow from noise to actions
    expert: ExpertOptions = field(default_factory=ExpertOptions)

    # --- Method --------------------------------------------------------------------------------
    # bc | filtered_bc | awr | recap | paper (see MODES); None is "recap". Fills the fields below that are
    # left at None: advantage_estimator, advantage_source, use_advantage_*, success_only.
    mode: str | None = None

    # --- Critics (IQL) and advantage ------------------------------------------------------------
    advantage_estimator: str | None = None  # "iql" (joint IQL critics) or "mc_distributional" (pi*0.6 paper)
    # The IQL tuning table (see IQL_PRESETS): conservative, balanced, exploratory or None; fills
    # iql_expectile and iql_temperature left at None.
    iql_preset: str | None = "balanced"
    iql_expectile: float | None = None  # tau; None takes the preset's value
    iql_temperature: float | None = None  # beta in exp(A / beta); None takes the preset's value
    iql_discount: float = 0.99  # gamma, the discount of the critics' returns
    # "critic": advantages come from the critics trained in the same run (the joint IQL workflow).
    # "dataset": advantages / indicators come from columns written by `pi-star-recap value-label`.
    advantage_source: str | None = None
    train_policy: bool = True  # false trains only the value function (`pi-star-recap value-train`)
    advantage_horizon: str = "n_step"  # "n_step": sum_{k<N} r + V(o_{t+N}) - V(o_t); "full_return": G - V
    advantage_n_step: int = 50  # N of the "n_step" advantage horizon (paper mode and value-label)
    critic: CriticOptions = field(default_factory=CriticOptions)

    # --- RECAP data mixing ----------------------------------------------------------------------
    demo_weight: float = 1.0  # policy-loss weight of frames of demo episodes
    auto_weight: float = 1.0  # policy-loss weight of frames the robot drove (auto, intervention episodes)
    intervention_weight: float = 2.0  # policy-loss weight of frames the expert drove (intervention_mask)
    success_only: bool | None = None  # drop failed episodes from the policy loss (filtered BC)

    # --- Advantage use in the policy ------------------------------------------------------------
    # AWR weight exp(A / beta) on the flow-matching loss, A in units of its std. Off by default: RECAP
    # conditions on the advantage instead, and at beta = 0.5 the weights keep ~2% effective batch size.
    use_advantage_weighting: bool | None = None
    use_advantage_conditioning: bool | None = None  # condition the action expert on the advantage
    advantage_scale: float = 1.0  # advantage (in std units, IQL) the policy is conditioned on at inference
    cfg_beta: float = 1.0  # classifier-free guidance: v_u + beta (v_c - v_u); 1 = plain conditional
    conditioning: ConditioningOptions = field(default_factory=ConditioningOptions)

    # --- Optimisation and running ---------------------------------------------------------------
    q_lr: float = 3e-4  # learning rate of the Q critics (IQL)
    v_lr: float = 3e-4  # learning rate of the value network (IQL V or the distributional V)
    policy_lr: float = 3e-5  # learning rate of the backbone and the action expert; the schedule's peak
    optim: OptimOptions = field(default_factory=OptimOptions)
    dtype: str = "float32"  # "bfloat16" runs training under autocast (lerobot-train reads this field)
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)

    # --- Normalisation (LeRobot reads normalization_mapping) -------------------------------------
    # Normalisation mode per feature type (VISUAL, STATE, ENV, ACTION); a pi05 base defaults to pi05's own
    # (QUANTILES for state and action).
    normalization_mapping: dict[str, NormalizationMode] = field(
        default_factory=lambda: dict(NATIVE_NORMALIZATION)
    )
    normalization: NormalizationOptions = field(default_factory=NormalizationOptions)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.base_model == "pi05" and self.normalization_mapping == NATIVE_NORMALIZATION:
            # pi05's own (QUANTILES for state and action), so a pi05 checkpoint sees what it was trained on
            self.normalization_mapping = dict(PI05_NORMALIZATION)
        self._resolve_mode()
        self._resolve_iql_preset()
        self._validate()

    def _resolve_mode(self) -> None:
        if self.mode is not None and self.mode not in MODES:
            raise ValueError(
                f"PiStarRECAPConfig.mode={self.mode!r} is unknown; use one of {sorted(MODES)} or None."
            )
        # Remembered (not a field) so a checkpoint saves them unset: fine-tuning it with another --policy.mode
        # then follows that mode, while values given explicitly stay explicit.
        self._filled_by_preset: dict[str, object] = {}
        for name, value in {**MODE_DEFAULTS, **MODES[self.mode or "recap"]}.items():
            if getattr(self, name) is None:
                self._filled_by_preset[name] = value
                setattr(self, name, value)

    def _resolve_iql_preset(self) -> None:
        if self.iql_preset is not None and self.iql_preset not in IQL_PRESETS:
            raise ValueError(
                f"iql_preset={self.iql_preset!r} is unknown; use one of {sorted(IQL_PRESETS)} or None."
            )
        # Saved unset like the mode's fields, so `--policy.path=<ckpt> --policy.iql_preset=...` takes effect.
        preset = dict(
            zip(("iql_expectile", "iql_temperature"), IQL_PRESETS[self.iql_preset or "balanced"], strict=True)
        )
        for name, value in preset.items():
            if getattr(self, name) is None:
                self._filled_by_preset[name] = value
                setattr(self, name, value)

    def _save_pretrained(self, save_directory: Path) -> None:
        """Fields a preset (`mode`, `iql_preset`) filled are saved unset: the checkpoint records the preset,
        and loading it (or fine-tuning it with another preset) resolves them again."""
        # (a value changed since, e.g. by a script, is the caller's and is saved as such)
        resolved = {n: v for n, v in self._filled_by_preset.items() if getattr(self, n) == v}
        try:
            for name in resolved:
                setattr(self, name, None)
            super()._save_pretrained(save_directory)
        finally:
            for name, value in resolved.items():
                setattr(self, name, value)

    @classmethod
    def from_pretrained(cls, pretrained_name_or_path: str | Path, **kwargs: Any) -> PreTrainedConfig:
        """`PreTrainedConfig.from_pretrained` on a local checkpoint's config.json brought to today's layout
        (`migrate_flat_keys`) first; other policy types and hub ids load unchanged. (draccus decodes strictly
        and refuses a custom decoder on a choice class, so the migration cannot sit in the decoding.)"""
        config_file = Path(pretrained_name_or_path) / "config.json"
        raw = json.loads(config_file.read_text()) if config_file.is_file() else {}
        if raw.get("type") != PiStarRECAPConfig.get_choice_name(PiStarRECAPConfig):
            return PreTrainedConfig.from_pretrained(pretrained_name_or_path, **kwargs)
        with tempfile.TemporaryDirectory() as migrated:
            (Path(migrated) / "config.json").write_text(json.dumps(migrate_flat_keys(raw)))
            return PreTrainedConfig.from_pretrained(migrated, **kwargs)

    def _validate(self) -> None:
        for name, group in GROUPS.items():
            if not isinstance(getattr(self, name), group):
                raise ValueError(
                    f"PiStarRECAPConfig.{name}={getattr(self, name)!r}: must be a {group.__name__} "
                    f"(e.g. {name}={group.__name__}(...)), not {type(getattr(self, name)).__name__}."
                )
        for name, (accepted, optional) in scalar_field_types(type(self)).items():
            value = operator.attrgetter(name)(self)
            if not (value is None and optional) and (
                isinstance(value, bool) and bool not in accepted or not isinstance(value, accepted)
            ):
                expected = " or ".join(t.__name__ for t in accepted) + (" or None" if optional else "")
                raise ValueError(
                    f"PiStarRECAPConfig.{name}={value!r}: must be {expected}, not {type(value).__name__}."
                )
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(
                    f"PiStarRECAPConfig.{name}={value!r}: must be a finite number (not NaN or infinity)."
                )
        for name, choices in CHOICES.items():
            if operator.attrgetter(name)(self) not in choices:
                raise ValueError(
                    f"PiStarRECAPConfig.{name}={operator.attrgetter(name)(self)!r}: must be one of {choices}."
                )
        for names, ok, message in RULES:
            for name in names.split():
                value = operator.attrgetter(name)(self)
                if not ok(self, value):
                    raise ValueError(f"PiStarRECAPConfig.{name}={value!r}: {message}")

    # --- What the critics and the policy need --------------------------------------------------
    @property
    def method(self) -> Method:
        """What this config trains (critic, condition, weighting), decided in one place."""
        return Method.resolve(
            self.advantage_estimator,
            self.advantage_source,
            self.use_advantage_weighting,
            self.use_advantage_conditioning,
            self.train_policy,
        )

    @property
    def uses_advantage(self) -> bool:
        """Whether the policy loss depends on an advantage (otherwise it is plain weighted BC)."""
        return self.method.uses_advantage

    @property
    def trains_critics(self) -> bool:
        """Whether this run fits critics (for the policy's advantage, or as the value-only stage)."""
        return self.method.trains_critics

    @property
    def bootstrap_horizon(self) -> int | None:
        """Steps ahead at which a second observation is needed to bootstrap the critics, if any."""
        if not self.trains_critics:
            return None
        if self.method.critic == "iql":
            return self.chunk_size  # the Q target bootstraps from V(o_{t+H})
        # The distributional V learns from Monte-Carlo returns; only an N-step advantage needs o_{t+N}.
        if self.train_policy and self.advantage_horizon == "n_step":
            return self.advantage_n_step
        return None

    # --- LeRobot hooks -------------------------------------------------------------------------
    def validate_features(self) -> None:
        if self.action_feature is None:
            raise ValueError(
                "pi_star_recap needs an 'action' feature in the dataset (or environment) it is built for."
            )
        if not self.image_features and self.robot_state_feature is None and self.env_state_feature is None:
            raise ValueError(
                "pi_star_recap needs at least one camera ('observation.images.*') or a state "
                "('observation.state' / 'observation.environment_state') input."
            )

    def get_optimizer_preset(self) -> PiStarRECAPAdamWConfig:
        # The per-module learning rates (q_lr, v_lr, policy_lr) are set on the parameter groups.
        return PiStarRECAPAdamWConfig(
            lr=self.policy_lr,
            weight_decay=self.optim.weight_decay,
            grad_clip_norm=self.optim.grad_clip_norm,
            fused=self.optim.fused,
        )

    def get_scheduler_preset(self) -> PiStarRECAPCosineSchedulerConfig:
        return PiStarRECAPCosineSchedulerConfig(
            peak_lr=self.policy_lr,
            decay_lr=self.policy_lr * self.optim.scheduler_decay_factor,
            num_warmup_steps=self.optim.scheduler_warmup_steps,
            num_decay_steps=self.optim.scheduler_decay_steps,
        )

    @property
    def observation_delta_indices(self) -> list[int]:
        horizon = self.bootstrap_horizon
        return [0] if horizon is None else [0, horizon]

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range(self.chunk_size))

    @property
    def reward_delta_indices(self) -> None:
        # Rewards are read from the dataset by frame index (see data.recap_table.RecapTable): the documented
        # `reward` column is not one LeRobot windows, and whole-episode returns need more than a window.
        return None


# The option groups of PiStarRECAPConfig, by field name.
GROUPS: dict[str, type] = {
    f.name: f.type for f in fields(PiStarRECAPConfig) if isinstance(f.type, type) and is_dataclass(f.type)
}


def migrate_flat_keys(raw: dict[str, Any]) -> dict[str, Any]:
    """A config.json of the earlier flat layout in today's: each old key moved to its group (`MOVED`) and
    the options that became command flags dropped (`BECAME_FLAGS`). A value already in the group wins: it
    came from the command line (`--policy.path=<old checkpoint> --policy.expert.width=8`).

    Keys that are neither fields nor old names raise, saying where the option lives now."""
    migrated = {k: (dict(v) if k in GROUPS and isinstance(v, dict) else v) for k, v in raw.items()}
    for old, new in MOVED.items():
        if old in migrated:
            group, name = new.split(".")
            migrated.setdefault(group, {}).setdefault(name, migrated.pop(old))
    for old in BECAME_FLAGS:
        migrated.pop(old, None)
    known = {f.name for f in fields(PiStarRECAPConfig)} | {"type"}
    unknown = [k for k in migrated if k not in known]
    unknown += [
        f"{group}.{k}"
        for group, cls in GROUPS.items()
        if isinstance(migrated.get(group), dict)
        for k in migrated[group]
        if k not in {f.name for f in fields(cls)}
    ]
    if unknown:
        raise ValueError(
            "PiStarRECAPConfig has no option " + ", ".join(f"`{k}`{_hint(k)}" for k in unknown) + ". Options "
            "other than the seed's, the method switches, dtype and normalization_mapping sit in groups "
            f"({', '.join(GROUPS)}): write `--policy.<group>.<field>=...` on the command line and nest them "
            'as {"<group>": {"<field>": ...}} in a config.json (the table MOVED in '
            "configuration_pi_star_recap.py maps every old flat name to its place)."
        )
    return migrated


def _hint(key: str) -> str:
    """The closest option names, as ' (did you mean `...`?)', or nothing."""
    names = [f.name for f in fields(PiStarRECAPConfig) if f.name not in GROUPS]
    names += [f"{g}.{f.name}" for g, cls in GROUPS.items() for f in fields(cls)]
    close = difflib.get_close_matches(key, names, n=2)
    return f" (did you mean {' or '.join(f'`{c}`' for c in close)}?)" if close else ""
