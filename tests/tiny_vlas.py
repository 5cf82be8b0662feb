"""Tiny, random-init, fully offline versions of LeRobot's stock SmolVLA and pi05 policies.

Tests use them to run stock LeRobot code paths (policy construction, the policies' own pre/post
processors, `lerobot-train`, checkpoint loading) in seconds on a CPU, without any download.

- SmolVLA is sized by its config alone: `smolvla_backbone` writes a local folder that stock SmolVLA
  accepts as `vlm_model_name` (model config + tokenizer + `SmolVLMProcessor`), `smolvla_cli_flags`
  gives the matching `lerobot-train` flags.
- pi05 hard-codes its Gemma sizes and its tokenizer (`google/paligemma-3b-pt-224`), so `tiny_pi05()`
  shrinks the model while patching `lerobot.policies.pi05.modeling_pi05`, and `fake_hub_cache` +
  `offline_hub` make the hard-coded tokenizer id resolve, offline, to a tiny tokenizer.
  `tests/tiny_pi05_run.py` runs stock `lerobot-train` / `lerobot-eval` under the same patches.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest.mock import patch

import transformers as T
from huggingface_hub import constants
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.policies.pi05 import PI05Config
from lerobot.policies.smolvla import SmolVLAConfig

from lerobot_policy_pi_star_recap.model.backbone import tiny_tokenizer
from lerobot_policy_pi_star_recap.model.pi05_base import TINY_VOCAB, pi05_sizes
from lerobot_policy_pi_star_recap.stock_vlas.base_policies import TINY_SMOLVLA, write_tiny_smolvlm

# --- SmolVLA ---------------------------------------------------------------------------------------


def smolvla_backbone(directory: Path) -> Path:
    """A local SmolVLM folder for `--policy.vlm_model_name` (the package's own tiny builder, which the
    demo's `--base-policy smolvla` uses too)."""
    return write_tiny_smolvlm(directory)


# The demo's tiny SmolVLA, with shorter chunks, fewer flow steps and prompts for second-long tests.
SMOLVLA_SETTINGS = dict(
    TINY_SMOLVLA, chunk_size=4, n_action_steps=4, num_steps=2, tokenizer_max_length=32, device="cpu"
)


def _flags(settings: dict) -> list[str]:
    """`--policy.NAME=VALUE` flags in draccus syntax (lowercase booleans, `[a,b]` tuples)."""

    def text(value: object) -> str:
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, tuple):
            return "[" + ",".join(map(str, value)) + "]"
        return str(value)

    return [f"--policy.{name}={text(value)}" for name, value in settings.items()]


def smolvla_settings(backbone_dir: Path, image_size: int = 32) -> dict:
    """SmolVLAConfig fields for `smolvla_backbone`'s folder and `image_size` square images (stock
    SmolVLA resizes every image to 512 px)."""
    return dict(
        SMOLVLA_SETTINGS,
        vlm_model_name=str(backbone_dir),
        resize_imgs_with_padding=(image_size, image_size),
    )


def smolvla_cli_flags(backbone_dir: Path, image_size: int = 32) -> list[str]:
    """The `--policy.*` flags for stock `lerobot-train --policy.type=smolvla` on `smolvla_backbone`'s
    folder, for a dataset with `image_size` square images."""
    return ["--policy.type=smolvla", *_flags(smolvla_settings(backbone_dir, image_size))]


def smolvla_config(
    backbone_dir: Path,
    input_features: dict[str, PolicyFeature],
    output_features: dict[str, PolicyFeature],
    **overrides,
) -> SmolVLAConfig:
    """An in-process SmolVLAConfig equal to what `smolvla_cli_flags` gives lerobot-train (the image
    size is the first camera's)."""
    image_size = next(f.shape[-1] for f in input_features.values() if f.type is FeatureType.VISUAL)
    settings = smolvla_settings(backbone_dir, image_size)
    return SmolVLAConfig(
        input_features=input_features, output_features=output_features, **{**settings, **overrides}
    )


# --- pi05 ------------------------------------------------------------------------------------------

PALIGEMMA_TOKENIZER = "google/paligemma-3b-pt-224"  # hard-coded in lerobot/policies/pi05/processor_pi05.py
PI05_VOCAB = TINY_VOCAB  # > the tiny tokenizer's 260 ids; stock pi05 builds 257152-row embeddings
PI05_IMAGE_SIZE = 32
PI05_SETTINGS = dict(
    image_resolution=(PI05_IMAGE_SIZE, PI05_IMAGE_SIZE),
    chunk_size=4,
    n_action_steps=4,
    num_inference_steps=2,
    tokenizer_max_length=96,  # the byte-level tokenizer spends a token per character of the prompt
    device="cpu",
    push_to_hub=False,
)
PI05_CLI_FLAGS = ["--policy.type=pi05", *_flags(PI05_SETTINGS)]  # for tests/tiny_pi05_run.py


def pi05_config(
    input_features: dict[str, PolicyFeature], output_features: dict[str, PolicyFeature], **overrides
) -> PI05Config:
    """An in-process PI05Config equal to what `PI05_CLI_FLAGS` gives lerobot-train; build the policy
    from it inside `tiny_pi05()`."""
    return PI05Config(
        input_features=input_features, output_features=output_features, **{**PI05_SETTINGS, **overrides}
    )


@contextmanager
def tiny_pi05() -> Iterator[None]:
    """While active, stock `PI05Policy(...)` / `PI05Policy.from_pretrained(...)` (also via
    `make_policy`) build a ~350K-parameter model: both Gemmas width 64 x 2 layers, a 1-layer SigLIP with
    16 px patches (so image_resolution must be a multiple of 16), a 512-token vocabulary (the package's
    `pi05_sizes("tiny")`, which a pi_star_recap policy on a tiny pi05 base uses as well).

    Only the sizes that stock code hard-codes are patched; everything else (config, processors, forward,
    sampling, checkpoints) is stock pi05 code."""
    with pi05_sizes("tiny"):
        yield


def fake_hub_cache(cache: Path) -> Path:
    """A Hugging Face hub cache (the layout `HF_HUB_CACHE` points at) whose `google/paligemma-3b-pt-224`
    snapshot is the tiny tokenizer, so pi05's hard-coded tokenizer id resolves offline."""
    commit = "0" * 40
    repo = cache / f"models--{PALIGEMMA_TOKENIZER.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    tiny_tokenizer().save_pretrained(snapshot)
    # AutoTokenizer reads the model config before the tokenizer's own
    T.PaliGemmaConfig(text_config={"model_type": "gemma", "vocab_size": PI05_VOCAB}).save_pretrained(snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return cache


def offline_env(cache: Path) -> dict[str, str]:
    """Environment variables for a subprocess that must resolve hub ids from `cache` only."""
    return {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}


@contextmanager
def offline_hub(cache: Path) -> Iterator[None]:
    """In this process, hub ids resolve from `cache` only (huggingface_hub reads these constants at call
    time; the environment variables are for subprocesses started meanwhile)."""
    with (
        patch.multiple(constants, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE=True),
        patch.dict(os.environ, offline_env(cache)),
    ):
        yield


def lerobot_train(tool: str, *args: str | Path, dataset: Path, output: Path) -> Path:
    """A 2-step lerobot-train run (`tool`: lerobot-train, or python + tiny_pi05_run.py train) saving at the
    end, on the local dataset `dataset`; returns the checkpoint."""
    from conftest import run_tool

    run_tool(
        tool,
        *args,
        f"--dataset.repo_id=local/{dataset.name}",
        f"--dataset.root={dataset}",
        f"--output_dir={output}",
        "--steps=2",
        "--batch_size=2",
        "--save_freq=2",
        "--num_workers=0",
        "--wandb.enable=false",
        cwd=output.parent,
    )
    return output / "checkpoints" / "last" / "pretrained_model"
