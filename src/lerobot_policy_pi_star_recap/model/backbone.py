"""The VLM backbone: camera images, the robot state and the task's tokens -> a sequence of hidden states.

Every supported family is used the same way: the family's own vision tower and projector embed each
camera image into the language model's embedding space (`get_image_features`), the task tokens go
through the model's embedding table, the state through a learned linear token, and the language model
runs once over [image tokens of every camera, task tokens, state token]. Only image preprocessing and
the location of the language model differ between families; that is all `FAMILIES` records.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForImageTextToText,
    AutoTokenizer,
    PreTrainedTokenizerFast,
)
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

TINY = "tiny"
SIGLIP_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
CLIP_MEAN_STD = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


@dataclass
class Prefix:
    """What a backbone hands the critics and the action expert for one batch of frames."""

    hidden: Tensor  # (B, L, D) hidden states over [image tokens, task tokens, (state token)]
    mask: Tensor  # (B, L) which positions are real
    cache: object | None = None  # a base's own per-layer keys / values (pi05), reused by its expert


class Backbone(Protocol):
    """What the model needs of a base's encoder (`VLMBackbone`, `pi05_base.Pi05Backbone`)."""

    hidden_size: int  # D of `Prefix.hidden`, the critics' feature width before the state

    def __call__(
        self,
        images: list[Tensor],
        image_masks: list[Tensor],
        tokens: Tensor,
        token_mask: Tensor,
        state: Tensor | None,
    ) -> Prefix: ...

    @property
    def vision_modules(self) -> list[nn.Module]:
        """What `freeze_vision_encoder` freezes."""

    @property
    def vlm_modules(self) -> list[nn.Module]:
        """What `freeze_vlm` freezes."""

    @property
    def encoder_modules(self) -> list[nn.Module]:
        """What `train_expert_only` freezes."""


@dataclass(frozen=True)
class Family:
    """How one VLM family is driven: where its language model lives and how its images are prepared."""

    language_model_path: str  # attribute path from the top-level model
    mean_std: tuple[tuple[float, ...], tuple[float, ...]]
    qwen_patches: bool = False  # Qwen-VL takes flattened patches plus a (t, h, w) grid
    image_sequence_dim: bool = False  # Idefics3 / SmolVLM take (B, num_images, C, H, W)


FAMILIES: dict[str, Family] = {
    "paligemma": Family("model.language_model", SIGLIP_MEAN_STD),
    "gemma3": Family("model.language_model", SIGLIP_MEAN_STD),
    "qwen2_5_vl": Family("model.language_model", CLIP_MEAN_STD, qwen_patches=True),
    "qwen3_vl": Family("model.language_model", CLIP_MEAN_STD, qwen_patches=True),
    "idefics3": Family("model.text_model", SIGLIP_MEAN_STD, image_sequence_dim=True),
    "smolvlm": Family("model.text_model", SIGLIP_MEAN_STD, image_sequence_dim=True),
}
TEXT_ONLY = "text_only"  # a plain language model plus a separate SigLIP vision tower
QWEN_IMAGE_SIZE = 224


class BackboneLoadError(RuntimeError):
    """The VLM named in the config cannot be loaded as asked (no silent random weights)."""


# --- The built-in tiny model ---------------------------------------------------------------------


def tiny_vlm_config() -> dict:
    """A ~1M-parameter PaliGemma-style VLM (SigLIP 96 px, patch 12, + Gemma width 128) for CPU demos."""
    vocab = 512
    return AutoConfig.for_model(
        "paligemma",
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 96,
            "patch_size": 12,
        },
        text_config={
            "model_type": "gemma",
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 64,
            "vocab_size": vocab,
        },
        projection_dim=128,
        image_token_id=vocab - 1,
        vocab_size=vocab,
    ).to_dict()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer built in code: every UTF-8 byte is a token, so it needs no vocabulary file."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    specials = ["<pad>", "<bos>", "<eos>", "<unk>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {token: i for i, token in enumerate(specials + sorted(alphabet))}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>", unk_token="<unk>"
    )


def load_tokenizer(vlm_model_name: str):
    """The tokenizer that belongs to `vlm_model_name` (hub id or local directory)."""
    if vlm_model_name == TINY:
        return tiny_tokenizer()
    try:
        return AutoTokenizer.from_pretrained(vlm_model_name)
    except (OSError, ValueError) as e:
        raise BackboneLoadError(
            f"cannot load the tokenizer of vlm_model_name={vlm_model_name!r}: {e}. Use a hub id you can "
            "download, a local directory saved with save_pretrained, or 'tiny' for the offline demo model."
        ) from e


# --- Loading -------------------------------------------------------------------------------------


def _fetch_config(name: str) -> dict:
    try:
        return AutoConfig.from_pretrained(name).to_dict()
    except (OSError, ValueError) as e:
        local = Path(name).expanduser()
        hint = "the directory has no config.json" if local.is_dir() else "not a local directory either"
        raise BackboneLoadError(
            f"vlm_model_name={name!r} cannot be loaded ({hint}): {e}. Pass a hub id you can download, a "
            "local directory written by save_pretrained, or 'tiny' (the built-in offline model)."
        ) from e


def _from_pretrained_strict(cls, name: str) -> nn.Module:
    """`from_pretrained` that raises instead of leaving weights missing from the checkpoint random."""
    try:
        model, info = cls.from_pretrained(name, output_loading_info=True)
    except (OSError, ValueError) as e:
        raise BackboneLoadError(f"cannot load weights of {name!r}: {e}") from e
    if info.get("missing_keys"):
        missing = sorted(info["missing_keys"])
        raise BackboneLoadError(
            f"{name!r} lacks weights for {len(missing)} parameters (e.g. {missing[:3]}); refusing to train "
            "from random weights. Check the checkpoint is complete."
        )
    return model


def _from_config(config: dict, auto_cls) -> nn.Module:
    config = dict(config)
    return auto_cls.from_config(AutoConfig.for_model(config.pop("model_type"), **config))


def _attribute(module: nn.Module, path: str) -> nn.Module:
    for name in path.split("."):
        module = getattr(module, name)
    return module


class VLMBackbone(nn.Module):
    """A Hugging Face VLM, plus a learned state token, producing the prefix the action expert reads."""

    def __init__(
        self,
        vlm_model_name: str,
        vision_model_name: str,
        vlm_config: dict | None,
        state_dim: int,
        load_weights: bool,
        positions_from_mask: bool = False,
    ):
        super().__init__()
        # True: positions count only real tokens, so a token's position (the state token's, after the
        # prompt) does not depend on how far the prompt was padded (tokenizer_padding="longest").
        self.positions_from_mask = positions_from_mask
        if vlm_config is None:
            vlm_config = self._resolve_config(vlm_model_name, vision_model_name)
        # Recorded in the policy config so a checkpoint rebuilds the same architecture offline.
        self.vlm_config = vlm_config
        load_weights = load_weights and vlm_model_name != TINY
        if TEXT_ONLY in vlm_config:
            self.family_name = TEXT_ONLY
            self.family = Family("text_model", SIGLIP_MEAN_STD)
            text_config, vision_config = vlm_config[TEXT_ONLY]["text"], vlm_config[TEXT_ONLY]["vision"]
            if load_weights:
                self.text_model = _from_pretrained_strict(AutoModel, vlm_model_name)
                self.vision_tower = _from_pretrained_strict(AutoModel, vision_model_name)
            else:
                self.text_model = _from_config(text_config, AutoModel)
                self.vision_tower = _from_config(vision_config, AutoModel)
            self.vision_tower = getattr(self.vision_tower, "vision_model", self.vision_tower)
            self.image_projector = nn.Linear(vision_config["hidden_size"], text_config["hidden_size"])
            self.hidden_size = text_config["hidden_size"]
            self.image_size = vision_config["image_size"]
        else:
            model_type = vlm_config["model_type"]
            if model_type not in FAMILIES:
                raise BackboneLoadError(
                    f"VLM family {model_type!r} is not supported; supported: {sorted(FAMILIES)} or a "
                    "text-only language model (paired with vision_model_name)."
                )
            self.family_name, self.family = model_type, FAMILIES[model_type]
            if load_weights:
                self.vlm = _from_pretrained_strict(AutoModelForImageTextToText, vlm_model_name)
            else:
                self.vlm = _from_config(vlm_config, AutoModelForImageTextToText)
            self.hidden_size = self.language_model.config.hidden_size
            vision = vlm_config["vision_config"]
            self.image_size = QWEN_IMAGE_SIZE if self.family.qwen_patches else vision["image_size"]
        # Text-only LMs keep their LM head out of the way: only hidden states are used.
        self.state_proj = nn.Linear(state_dim, self.hidden_size) if state_dim > 0 else None
        mean, std = self.family.mean_std
        self.register_buffer("image_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @staticmethod
    def _resolve_config(vlm_model_name: str, vision_model_name: str) -> dict:
        if vlm_model_name == TINY:
            return tiny_vlm_config()
        config = _fetch_config(vlm_model_name)
        if "vision_config" in config:
            return config
        logging.info(
            f"{vlm_model_name} is a text-only LM: pairing it with the vision tower {vision_model_name}"
        )
        vision = _fetch_config(vision_model_name)
        vision = vision.get("vision_config", vision)
        vision["model_type"] = (
            "siglip_vision_model" if "siglip" in vision.get("model_type", "") else vision["model_type"]
        )
        return {TEXT_ONLY: {"text": config, "vision": vision}}

    # --- Parts, for freezing ---------------------------------------------------------------------
    @property
    def language_model(self) -> nn.Module:
        # Looked up, not stored: a second attribute would save the same weights under two names.
        if self.family_name == TEXT_ONLY:
            return self.text_model
        return _attribute(self.vlm, self.family.language_model_path)

    @property
    def vision_modules(self) -> list[nn.Module]:
        if self.family_name == TEXT_ONLY:
            return [self.vision_tower]
        inner = self.vlm.model
        return [
            getattr(inner, name)
            for name in ("vision_tower", "visual", "vision_model")
            if hasattr(inner, name)
        ]

    @property
    def vlm_modules(self) -> list[nn.Module]:
        """The pretrained VLM (everything except the state token and, for text-only LMs, the projector)."""
        if self.family_name == TEXT_ONLY:
            return [self.vision_tower, self.text_model]
        return [self.vlm]

    @property
    def encoder_modules(self) -> list[nn.Module]:
        """What `train_expert_only` freezes: all of the backbone (VLM and state token)."""
        return [self]

    @property
    def token_embedding(self) -> nn.Embedding:
        return self.language_model.get_input_embeddings()

    # --- Forward ---------------------------------------------------------------------------------
    def embed_image(self, image: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, N, hidden) image tokens in the language model's space."""
        if image.shape[-2:] != (self.image_size, self.image_size):
            image = F.interpolate(
                image, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
            )
        pixels = (image - self.image_mean) / self.image_std
        if self.family_name == TEXT_ONLY:
            return self.image_projector(self.vision_tower(pixel_values=pixels).last_hidden_state)
        if self.family.qwen_patches:
            patches, grid = self._qwen_patches(pixels)
            features = self.vlm.model.get_image_features(patches, image_grid_thw=grid).pooler_output
            return torch.stack(list(features))
        if self.family.image_sequence_dim:
            pixels = pixels[:, None]
        return self.vlm.model.get_image_features(pixels).pooler_output

    def _qwen_patches(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        """Qwen-VL's patch layout: (B*T*H*W, C*t*p*p) with patches grouped by the merge window."""
        vision = self.vlm.config.vision_config
        p, merge, t = vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size
        batch, channels, height, width = pixels.shape
        gh, gw = height // p, width // p
        frames = pixels.unsqueeze(1).expand(batch, t, channels, height, width)
        x = frames.reshape(batch, 1, t, channels, gh // merge, merge, p, gw // merge, merge, p)
        x = x.permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)
        patches = x.reshape(batch * gh * gw, channels * t * p * p)
        grid = torch.tensor([[1, gh, gw]], device=pixels.device).expand(batch, 3)
        return patches, grid

    def forward(
        self,
        images: list[Tensor],
        image_masks: list[Tensor],
        tokens: Tensor,
        token_mask: Tensor,
        state: Tensor | None,
    ) -> Prefix:
        """Run the VLM once over [images, task tokens, state]: hidden states (B, L, D) and mask (B, L)."""
        embeds, masks = [], []
        for image, present in zip(images, image_masks, strict=True):
            image_tokens = self.embed_image(image)
            embeds.append(image_tokens)
            masks.append(present[:, None].expand(-1, image_tokens.shape[1]))
        text = self.token_embedding(tokens)
        embeds.append(text)
        masks.append(token_mask.bool())
        if self.state_proj is not None and state is not None:
            embeds.append(self.state_proj(state.to(text.dtype))[:, None])
            masks.append(torch.ones(state.shape[0], 1, dtype=torch.bool, device=state.device))
        inputs = torch.cat([e.to(text.dtype) for e in embeds], dim=1)
        mask = torch.cat(masks, dim=1)
        positions = (mask.long().cumsum(1) - 1).clamp_min(0) if self.positions_from_mask else None
        hidden = self.language_model(
            inputs_embeds=inputs,
            attention_mask=attention_masks(self.language_model.config, inputs, mask),
            position_ids=positions,
        ).last_hidden_state  # (B, L, D)
        return Prefix(hidden, mask)


def _no_further_condition(batch_idx: Tensor, head_idx: Tensor, q_idx: Tensor, kv_idx: Tensor) -> Tensor:
    return q_idx >= 0


def attention_masks(config, inputs: Tensor, mask: Tensor) -> Tensor | dict[str, Tensor]:
    """The causal, padding-aware masks a language model builds for itself, built here for every batch.

    Given a 2D mask, transformers first asks the device whether the batch has any padding
    (`padding_mask.all()`, a host sync in every pass) and, without padding, passes no mask at all, so the
    attention falls back to each layer's own default, which some VLMs' language models set to
    bidirectional. An extra (always true) mask condition is transformers' documented way to have the
    mask built unconditionally: one frame encodes the same, causally, whatever its batch's padding. A
    model with sliding-window layers (Gemma 3) gets its per-layer-type mapping, as it would build it."""
    kwargs = dict(
        config=config,
        inputs_embeds=inputs,
        attention_mask=mask,
        past_key_values=None,
        and_mask_function=_no_further_condition,
    )
    full = create_causal_mask(**kwargs)
    if "sliding_attention" not in (getattr(config, "layer_types", None) or ()):
        return full
    return {"full_attention": full, "sliding_attention": create_sliding_window_causal_mask(**kwargs)}
