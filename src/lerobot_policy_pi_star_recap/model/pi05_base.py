"""LeRobot's pi05 as the base of pi_star_recap (`base_model="pi05"`): its PaliGemma VLM and Gemma action
expert, its pretrained weights (loaded strictly) and its input pipeline, with RECAP's parts added.

  prefix     images, then "Task: ..., State: ...;\\nAction: " tokens (pi05's processor), through the VLM once;
             its final hidden states feed the critics, its per-layer keys / values the expert.
  advantage  the conditioner's embedding is added to the expert's adaRMS conditioning (pi05's time MLP
             output), zero-initialised: the VLM prefix does not depend on it, so one prefix pass serves
             both expert passes of classifier-free guidance, and at initialisation the policy acts
             exactly as stock pi05 with the same weights and noise.
  flow       stock pi05 code: `denoise_step` over the cached prefix, `euler_integrate`, its 32-d padded
             actions; training regresses the same velocity through the cache (or, with gradient
             checkpointing, through stock pi05's joint forward pass).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import patch

import torch
from lerobot.policies.common.vla_utils import (
    make_att_2d_masks,
    pad_vector,
    prepare_attention_masks_4d,
    resize_with_pad_torch,
)
from lerobot.policies.pi05 import modeling_pi05
from lerobot.policies.pi05.configuration_pi05 import PI05Config
from torch import Tensor, nn

from ..configuration_pi_star_recap import PiStarRECAPConfig
from . import flow
from .backbone import Prefix
from .weights import checkpoint_weights, load_weights_strictly

# "tiny": both Gemmas 64 wide x 2 layers (8 heads: pi05's training attention hard-codes 8, modeling_pi05
# line ~121), a 1-layer 32-wide SigLIP with 16 px patches, a 512-token vocabulary; ~350K parameters.
TINY_GEMMA = dict(width=64, depth=2, mlp_dim=128, num_heads=8, num_kv_heads=1, head_dim=8)
TINY_SIGLIP = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, patch_size=16)
TINY_SIGLIP_MLP = 64
TINY_VOCAB = 512


@contextmanager
def pi05_sizes(size: str) -> Iterator[None]:
    """While active, stock pi05 (`PI05Pytorch`, `PI05Policy`) builds models of `size`: "full" changes
    nothing, "tiny" patches the sizes stock code hard-codes (its Gemma variants, SigLIP and vocabulary)."""
    if size == "full":
        yield
        return
    from transformers.models.auto import CONFIG_MAPPING

    gemma = modeling_pi05.GemmaConfig(**TINY_GEMMA)

    def paligemma_config(*args, **kwargs):
        config = CONFIG_MAPPING["paligemma"](*args, **kwargs)
        for name, value in TINY_SIGLIP.items():
            setattr(config.vision_config, name, value)
        return config

    def expert_config(**kwargs):
        return CONFIG_MAPPING["gemma"](**{**kwargs, "vocab_size": TINY_VOCAB})

    class TinyPaliGemma(modeling_pi05.PaliGemmaForConditionalGenerationWithPiGemma):
        # stock code writes these on the config after building it, so they are overridden here
        def __init__(self, config) -> None:
            config.vision_config.intermediate_size = TINY_SIGLIP_MLP
            config.vision_config.projection_dim = config.text_config.hidden_size
            config.text_config.vocab_size = TINY_VOCAB
            super().__init__(config)

    with patch.multiple(
        modeling_pi05,
        get_gemma_config=lambda variant: gemma,
        CONFIG_MAPPING={"paligemma": paligemma_config, "gemma": expert_config},
        PaliGemmaForConditionalGenerationWithPiGemma=TinyPaliGemma,
    ):
        yield


def pi05_config(config: PiStarRECAPConfig) -> PI05Config:
    """The stock PI05Config our pi05 base is built from (what `--policy.type=pi05` would use)."""
    size = config.pi05.image_resolution
    return PI05Config(
        chunk_size=config.chunk_size,
        n_action_steps=config.n_action_steps,
        num_inference_steps=config.num_inference_steps,
        image_resolution=(size, size),
        dtype=config.dtype,
        freeze_vision_encoder=config.freeze_vision_encoder,
        train_expert_only=config.train_expert_only or config.freeze_vlm,
        gradient_checkpointing=config.pi05.gradient_checkpointing,
        tokenizer_max_length=config.backbone.tokenizer_max_length,
        compile_model=False,
        device=config.device,
        push_to_hub=False,
    )


class ConditionedPI05:
    """Stock pi05 as its own `denoise_step` and `forward` see it, with `condition` (B, expert width) added
    to the expert's adaRMS conditioning (pi05's time MLP output): with a zero condition every output is
    bit-identical to stock pi05's.

    Stock pi05 computes that conditioning inside `embed_suffix`, which its `denoise_step` and `forward`
    call with (actions, time) only: LeRobot leaves no argument through which a condition could reach it.
    Rather than a copy of those two stock methods, or state set on the shared model for one call, the stock
    methods run on this per-call view of the model: every attribute is the model's, except
    `embed_suffix`, which adds the condition it was built with."""

    denoise_step = modeling_pi05.PI05Pytorch.denoise_step
    forward = modeling_pi05.PI05Pytorch.forward

    def __init__(self, pi05: modeling_pi05.PI05Pytorch, condition: Tensor):
        self.pi05 = pi05
        self.condition = condition

    def __getattr__(self, name: str):
        return getattr(self.pi05, name)

    def embed_suffix(self, noisy_actions: Tensor, timestep: Tensor):
        action_emb, pad_masks, att_masks, adarms_cond = self.pi05.embed_suffix(noisy_actions, timestep)
        return action_emb, pad_masks, att_masks, adarms_cond + self.condition.to(adarms_cond.dtype)


@dataclass
class Pi05Cache:
    """What the pi05 expert needs besides the prefix's hidden states."""

    pi05: modeling_pi05.PI05Pytorch  # the stock model whose expert continues this prefix
    past_key_values: object | None  # the VLM's per-layer keys / values; None under gradient checkpointing
    images: list[Tensor]  # pi05's inputs, for its joint forward pass when there is no cache
    image_masks: list[Tensor]
    tokens: Tensor
    token_mask: Tensor


class Pi05Backbone(nn.Module):
    """pi05's VLM (and, registered with it, its Gemma expert: one stock `PI05Pytorch`, key `pi05.`)."""

    def __init__(self, config: PiStarRECAPConfig, load_weights: bool):
        super().__init__()
        self.pi05_config = pi05_config(config)
        with pi05_sizes(config.pi05.size):
            self.pi05 = modeling_pi05.PI05Pytorch(self.pi05_config)
        vlm_with_expert = self.pi05.paligemma_with_expert
        # Stock pi05 switches to eager attention on its first sample; set it once so that training and
        # inference (in any order) run the same attention code.
        vlm_with_expert.paligemma.model.language_model.config._attn_implementation = "eager"
        vlm_with_expert.gemma_expert.model.config._attn_implementation = "eager"
        # pi05 never decodes text: its two output heads get no gradient (DDP would call them unused).
        vlm_with_expert.paligemma.lm_head.requires_grad_(False)
        vlm_with_expert.gemma_expert.lm_head.requires_grad_(False)
        if config.pi05.gradient_checkpointing:
            self.pi05.gradient_checkpointing_enable()
        self.hidden_size = vlm_with_expert.paligemma.config.text_config.hidden_size
        self.expert_width = self.pi05.action_in_proj.out_features
        if load_weights and config.base_path is not None:
            load_pi05_weights(self.pi05, config.base_path)
        elif load_weights:
            logging.warning("pi_star_recap: base_model='pi05' without base_path: pi05 has random weights.")

    @property
    def vision_modules(self) -> list[nn.Module]:
        return [self.pi05.paligemma_with_expert.paligemma.model.vision_tower]

    @property
    def vlm_modules(self) -> list[nn.Module]:
        return [self.pi05.paligemma_with_expert.paligemma]

    @property
    def encoder_modules(self) -> list[nn.Module]:
        """What `train_expert_only` freezes: the VLM (the expert lives in the same stock model)."""
        return self.vlm_modules

    def pixels(self, image: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> pi05's input: resized with padding to its resolution, in [-1, 1]."""
        size = self.pi05_config.image_resolution
        image = image.float().permute(0, 2, 3, 1)
        if image.shape[1:3] != size:
            image = resize_with_pad_torch(image, *size)
        return (image * 2.0 - 1.0).permute(0, 3, 1, 2)

    def forward(
        self,
        images: list[Tensor],
        image_masks: list[Tensor],
        tokens: Tensor,
        token_mask: Tensor,
        state: Tensor | None,
    ) -> Prefix:
        """One VLM pass over [images, prompt tokens] (the state is in the prompt: pi05's processor writes it
        there); hidden states (B, L, W_vlm), pad mask (B, L) and the keys / values the expert attends to."""
        images = [self.pixels(image) for image in images]
        token_mask = token_mask.bool()
        cache = Pi05Cache(self.pi05, None, images, image_masks, tokens, token_mask)
        embeds, pad_masks, att_masks = self.pi05.embed_prefix(images, image_masks, tokens, token_mask)
        language = self.pi05.paligemma_with_expert.paligemma.model.language_model
        if self.training and language.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16:
            embeds = embeds.to(torch.bfloat16)  # as stock pi05's training forward
        attention = prepare_attention_masks_4d(make_att_2d_masks(pad_masks, att_masks))
        position_ids = torch.cumsum(pad_masks, dim=1) - 1
        checkpointed = self.pi05.gradient_checkpointing_enabled and self.training
        with torch.no_grad() if checkpointed else nullcontext():
            (hidden, _), past_key_values = self.pi05.paligemma_with_expert.forward(
                attention_mask=attention,
                position_ids=position_ids,
                past_key_values=None,
                inputs_embeds=[embeds, None],
                use_cache=not checkpointed,
            )
        cache.past_key_values = past_key_values
        return Prefix(hidden, pad_masks, cache)


class Pi05Flow(nn.Module):
    """Flow matching with pi05's expert, on plain tensors. The expert's weights live in the backbone (saved
    once, under `backbone.`): each prefix brings the model that continues it (`Pi05Cache.pi05`)."""

    def __init__(self, config: PiStarRECAPConfig, backbone: Pi05Backbone, action_dim: int):
        super().__init__()
        self.config = config
        self.action_dim = action_dim
        self.noise_dim = backbone.pi05_config.max_action_dim  # pi05 flows over 32-d padded actions
        self.condition_width = backbone.expert_width
        self.noise_dtype: torch.dtype | None = torch.float32  # pi05 keeps noise and time in float32

    def sample_noise(
        self, shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        return torch.randn(shape, device=like.device, dtype=torch.float32, generator=generator)

    def sample_time(self, batch_size: int, device: torch.device, generator: torch.Generator) -> Tensor:
        config = self.config  # the defaults are pi05's own Beta(1.5, 1)
        return flow.sample_time(
            batch_size, config.expert.flow_time_alpha, config.expert.flow_time_min, device, generator
        )

    def loss(self, prefix: Prefix, actions: Tensor, condition: Tensor, noise: Tensor, time: Tensor) -> Tensor:
        """Squared velocity error per action, (B, H), over the real (unpadded) action dims."""
        actions = pad_vector(actions, self.noise_dim)
        cache: Pi05Cache = prefix.cache
        pi05 = ConditionedPI05(cache.pi05, condition.float())
        if cache.past_key_values is None:  # gradient checkpointing: stock pi05's joint pass
            error = pi05.forward(
                cache.images, cache.image_masks, cache.tokens, cache.token_mask, actions, noise, time
            )
        else:
            x_t = flow.interpolate(noise, actions, time)
            v_t = pi05.denoise_step(prefix.mask, cache.past_key_values, x_t, time)
            error = flow.velocity_error(v_t, noise, actions)
        return error[..., : self.action_dim].mean(-1)

    def sample(
        self, prefix: Prefix, noise: Tensor, conditional: Tensor, unconditional: Tensor | None
    ) -> Tensor:
        """Actions (B, H, A) from 32-d noise with pi05's Euler integration over the one prefix pass."""
        cache: Pi05Cache = prefix.cache

        def velocity(x_t: Tensor, time: Tensor, condition: Tensor) -> Tensor:
            pi05 = ConditionedPI05(cache.pi05, condition.float())
            return pi05.denoise_step(prefix.mask, cache.past_key_values, x_t, time)

        config = self.config
        actions = flow.integrate(
            velocity,
            noise,
            conditional,
            unconditional,
            config.cfg_beta,
            config.num_inference_steps,
            batched=False,
        )
        return actions[..., : self.action_dim]


def load_pi05_weights(pi05: modeling_pi05.PI05Pytorch, name_or_path: str | Path) -> None:
    """Every tensor of a pi05 checkpoint (local folder or hub repo with model.safetensors) into `pi05`,
    strictly: stock `PI05Policy.from_pretrained` prints a warning and returns a random (or partly loaded)
    model when the file is missing or keys differ; this raises, naming what is missing."""

    def stock_names(saved: dict[str, Tensor]) -> dict[str, Tensor]:
        """stock pi05's own key fixes (older openpi names, the adaRMS norms, a missing embed_tokens)"""
        fixed = modeling_pi05.PI05Policy._fix_pytorch_state_dict_keys(
            SimpleNamespace(model=pi05), saved, None
        )
        return {k.removeprefix("model."): v for k, v in fixed.items()}

    weights = checkpoint_weights(name_or_path, what="pi05 checkpoint")
    fixed = load_weights_strictly(
        pi05,
        weights,
        "does not fit a pi05 of this size (is it a pi05 checkpoint, e.g. lerobot/pi05_base, and does "
        "--policy.pi05.size match it?)",
        rename=stock_names,
        # pi05 never decodes text: a checkpoint may leave out its (untrained) output heads
        may_lack=lambda name: name.endswith("lm_head.weight"),
    )
    logging.warning(
        f"pi_star_recap: pi05 weights loaded from {weights} ({len(fixed)} tensors); the modules pi05 lacks "
        "start fresh: the advantage embedding (zero-initialised, so the policy acts as the checkpoint) "
        "and the critics."
    )
