"""A checkpoint's weights: model.safetensors found locally or on the hub, and loaded strictly (every
tensor accounted for), for the policy's own checkpoints and a base's pretrained weights (pi05)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import Tensor, nn


def checkpoint_weights(
    name_or_path: str | Path, revision: str | None = None, what: str = "pi_star_recap checkpoint"
) -> Path:
    """model.safetensors of a local checkpoint directory or a hub repo, or a clear error (never None)."""
    path = Path(name_or_path)
    if path.is_dir():
        weights = path / "model.safetensors"
    else:
        from huggingface_hub import hf_hub_download

        try:
            weights = Path(hf_hub_download(str(name_or_path), "model.safetensors", revision=revision))
        except Exception as e:  # offline, unknown repo, no access
            raise FileNotFoundError(
                f"{name_or_path} is neither a local {what} directory nor a reachable hub repo with "
                f"model.safetensors ({e})."
            ) from e
    if not weights.is_file():
        raise FileNotFoundError(f"{weights} does not exist: {path} is not a {what} directory.")
    return weights


def load_weights_strictly(
    module: nn.Module,
    weights: Path,
    mismatch: str,
    rename: Callable[[dict[str, Tensor]], dict[str, Tensor]] = dict,
    may_lack: Callable[[str], bool] = lambda name: False,
    fresh: tuple[str, ...] = (),
) -> dict[str, Tensor]:
    """Every tensor of `module` from the safetensors file `weights`, or an error naming what differs (no
    silent random init): `rename` maps the file's names to the module's, `may_lack` names tensors the file
    may leave out, and tensors under the `fresh` prefixes may be missing or extra. Tied tensors (e.g. a
    VLM's embedding and output layer) are saved once, under one of their names. Returns what was loaded."""
    from safetensors.torch import load_file

    try:
        saved = load_file(str(weights), device="cpu")
    except Exception as e:  # safetensors raises several error types for damaged files
        raise RuntimeError(
            f"{weights} is truncated or corrupted ({e}); use another checkpoint (e.g. an earlier step)."
        ) from e
    saved = rename(saved)
    own = module.state_dict()
    loaded_storage = {own[k].data_ptr() for k in saved if k in own}
    missing = [
        k
        for k in own
        if k not in saved
        and own[k].data_ptr() not in loaded_storage
        and not may_lack(k)
        and not k.startswith(fresh)
    ]
    unexpected = [k for k in saved if k not in own and not k.startswith(fresh)]
    resized = [
        k for k, v in saved.items() if k in own and own[k].shape != v.shape and not k.startswith(fresh)
    ]
    if missing or unexpected or resized:
        raise RuntimeError(
            f"{weights} {mismatch}: missing {missing[:5]}, unexpected {unexpected[:5]}, other shapes {resized[:5]}."
        )
    module.load_state_dict(saved, strict=False)
    return saved
