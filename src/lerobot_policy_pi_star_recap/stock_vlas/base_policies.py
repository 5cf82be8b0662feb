"""Stock LeRobot VLAs as the demo's policy (`pi-star-recap demo --base-policy smolvla|pi05`).

On a machine without downloads SmolVLA is built tiny and random from a local SmolVLM folder
(`write_tiny_smolvlm`: model config and weights, tokenizer with SmolVLM's named image tokens, and a
`SmolVLMProcessor`), which stock SmolVLA accepts as `vlm_model_name`. pi05 cannot be made small by its
config (its Gemma sizes and tokenizer are fixed), so it needs a real checkpoint (`--base-path
lerobot/pi05_base`, a GPU machine); so does SmolVLA from `lerobot/smolvla_base`.
"""

from __future__ import annotations

from pathlib import Path

BASE_POLICIES = ("native", "smolvla", "pi05")
# The named image tokens SmolVLMProcessor and SmolVLA read from the tokenizer (`fake_image_token_id`, ...).
SMOLVLM_TOKENS = {
    "fake_image_token": "<fake_token_around_image>",
    "image_token": "<image>",
    "global_image_token": "<global-img>",
    "end_of_utterance_token": "<end_of_utterance>",
}
TINY_SMOLVLM = dict(
    vision=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
                image_size=64, patch_size=16),
    text=dict(model_type="llama", hidden_size=128, intermediate_size=256, num_hidden_layers=2,
              num_attention_heads=2, num_key_value_heads=1, vocab_size=1024),
    scale_factor=2,
)  # fmt: skip
# Stock SmolVLA sized for a CPU: its VLM's 2 layers, a narrow expert, short chunks and prompts.
TINY_SMOLVLA = dict(
    load_vlm_weights=False,
    num_vlm_layers=2,
    expert_width_multiplier=0.5,
    num_steps=10,
    tokenizer_max_length=48,
    push_to_hub=False,
)


def smolvlm_tokenizer():
    """The built-in byte-level tokenizer plus SmolVLM's named image tokens (ids far below the vocabulary)."""
    import transformers as T

    from ..model.backbone import tiny_tokenizer

    backend = tiny_tokenizer().backend_tokenizer
    backend.add_special_tokens(list(SMOLVLM_TOKENS.values()))
    return T.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        extra_special_tokens=SMOLVLM_TOKENS,
    )


def write_tiny_smolvlm(directory: Path) -> Path:
    """A local SmolVLM folder for `--policy.vlm_model_name`: random tiny model, tokenizer, processor."""
    import transformers as T

    vocab = TINY_SMOLVLM["text"]["vocab_size"]
    config = T.SmolVLMConfig(
        vision_config=TINY_SMOLVLM["vision"],
        text_config=TINY_SMOLVLM["text"],
        scale_factor=TINY_SMOLVLM["scale_factor"],
        image_token_id=vocab - 1,
    )
    model = T.SmolVLMForConditionalGeneration(config)
    model.save_pretrained(directory)
    vision = model.config.vision_config
    longest_edge = {"longest_edge": vision.image_size}
    T.SmolVLMProcessor(
        image_processor=T.SmolVLMImageProcessor(
            size=longest_edge, max_image_size=longest_edge, do_image_splitting=False
        ),
        tokenizer=smolvlm_tokenizer(),
        video_processor=T.SmolVLMVideoProcessor(size=longest_edge, max_image_size=longest_edge),
        image_seq_len=(vision.image_size // vision.patch_size) ** 2 // config.scale_factor**2,
    ).save_pretrained(directory)
    return directory


def policy_flags(base: str, work_dir: Path, image_size: int, state_dim: int, chunk_size: int,
                 n_action_steps: int) -> list[str]:  # fmt: skip
    """`lerobot-train` flags that build the stock `base` policy from scratch (tiny SmolVLA: its SmolVLM
    folder is written under `work_dir` once)."""
    if base != "smolvla":
        raise ValueError(
            f"--base-policy {base} needs a pretrained checkpoint (--base-path, e.g. lerobot/pi05_base): it "
            "cannot be built small and offline."
        )
    backbone = work_dir / "tiny_smolvlm"
    if not (backbone / "config.json").is_file():
        write_tiny_smolvlm(backbone)
    settings = {
        **TINY_SMOLVLA,
        "vlm_model_name": backbone,
        "resize_imgs_with_padding": f"[{image_size},{image_size}]",
        "max_state_dim": max(32, state_dim),
        "chunk_size": chunk_size,
        "n_action_steps": n_action_steps,
    }
    return ["--policy.type=smolvla", *(f"--policy.{k}={_cli(v)}" for k, v in settings.items())]


def _cli(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
