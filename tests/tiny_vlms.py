"""Tiny random-init VLMs of every supported family, saved to a local directory like a hub download.

The backbone's real loading path (`from_pretrained(local_dir)`) is what the tests exercise with these.
"""

from __future__ import annotations

from pathlib import Path

import transformers as T

VOCAB = 1024
SIGLIP = dict(
    model_type="siglip_vision_model",
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=2,
    image_size=64,
    patch_size=16,
)
GEMMA = dict(
    model_type="gemma",
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=64,
    vocab_size=VOCAB,
)
QWEN_TEXT = dict(
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=2,
    num_key_value_heads=1,
    vocab_size=VOCAB,
)
SPECIAL_IDS = dict(
    image_token_id=VOCAB - 1,
    video_token_id=VOCAB - 2,
    vision_start_token_id=VOCAB - 3,
    vision_end_token_id=VOCAB - 4,
)


def paligemma() -> T.PreTrainedModel:
    config = T.PaliGemmaConfig(
        vision_config={**SIGLIP, "projection_dim": 128},
        text_config=GEMMA,
        image_token_id=VOCAB - 1,
        projection_dim=128,
    )
    return T.PaliGemmaForConditionalGeneration(config)


def gemma3() -> T.PreTrainedModel:
    text = dict(GEMMA, model_type="gemma3_text", sliding_window=64)
    config = T.Gemma3Config(
        text_config=text,
        vision_config=SIGLIP,
        mm_tokens_per_image=4,
        image_token_id=VOCAB - 1,
        boi_token_id=VOCAB - 2,
        eoi_token_id=VOCAB - 3,
    )
    return T.Gemma3ForConditionalGeneration(config)


def qwen2_5_vl() -> T.PreTrainedModel:
    text = dict(QWEN_TEXT, rope_scaling={"rope_type": "default", "mrope_section": [8, 12, 12]})
    vision = dict(
        depth=2,
        hidden_size=64,
        intermediate_size=128,
        num_heads=2,
        out_hidden_size=128,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
        window_size=112,
        fullatt_block_indexes=[1],
    )
    return T.Qwen2_5_VLForConditionalGeneration(
        T.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **SPECIAL_IDS)
    )


def qwen3_vl() -> T.PreTrainedModel:
    text = dict(
        QWEN_TEXT,
        head_dim=64,
        rope_scaling={"rope_type": "default", "mrope_section": [12, 10, 10], "mrope_interleaved": True},
    )
    vision = dict(
        depth=2,
        hidden_size=64,
        intermediate_size=128,
        num_heads=2,
        out_hidden_size=128,
        patch_size=16,
        spatial_merge_size=2,
        temporal_patch_size=2,
        num_position_embeddings=256,
        deepstack_visual_indexes=[0, 1],
    )
    return T.Qwen3VLForConditionalGeneration(
        T.Qwen3VLConfig(text_config=text, vision_config=vision, **SPECIAL_IDS)
    )


def _idefics_like(config_cls, model_cls) -> T.PreTrainedModel:
    vision = {k: v for k, v in SIGLIP.items() if k != "model_type"}
    text = dict(QWEN_TEXT, model_type="llama")
    return model_cls(
        config_cls(vision_config=vision, text_config=text, scale_factor=2, image_token_id=VOCAB - 1)
    )


def idefics3() -> T.PreTrainedModel:
    return _idefics_like(T.Idefics3Config, T.Idefics3ForConditionalGeneration)


def smolvlm() -> T.PreTrainedModel:
    return _idefics_like(T.SmolVLMConfig, T.SmolVLMForConditionalGeneration)


FAMILY_BUILDERS = {
    "paligemma": paligemma,
    "gemma3": gemma3,
    "qwen2_5_vl": qwen2_5_vl,
    "qwen3_vl": qwen3_vl,
    "idefics3": idefics3,
    "smolvlm": smolvlm,
}


def save_family(name: str, directory: Path) -> Path:
    """Save a tiny model of `name` with a tokenizer, as `save_pretrained` would for a real checkpoint."""
    from lerobot_policy_pi_star_recap.model.backbone import tiny_tokenizer

    FAMILY_BUILDERS[name]().save_pretrained(directory)
    tiny_tokenizer().save_pretrained(directory)
    return directory


def save_text_only(directory: Path) -> tuple[Path, Path]:
    """A text-only Gemma (like google/gemma-2b-it) and a separate SigLIP vision tower."""
    from lerobot_policy_pi_star_recap.model.backbone import tiny_tokenizer

    text_dir, vision_dir = directory / "gemma", directory / "siglip"
    T.GemmaForCausalLM(
        T.GemmaConfig(**{k: v for k, v in GEMMA.items() if k != "model_type"})
    ).save_pretrained(text_dir)
    tiny_tokenizer().save_pretrained(text_dir)
    T.SiglipVisionModel(
        T.SiglipVisionConfig(**{k: v for k, v in SIGLIP.items() if k != "model_type"})
    ).save_pretrained(vision_dir)
    return text_dir, vision_dir
