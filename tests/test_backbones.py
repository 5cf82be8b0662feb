"""Every supported VLM family builds offline, loads through the real from_pretrained path, and runs."""

import pytest
import torch
import transformers
from tiny_vlms import FAMILY_BUILDERS, save_family, save_text_only

from lerobot_policy_pi_star_recap.model.backbone import (
    BackboneLoadError,
    VLMBackbone,
    load_tokenizer,
    tiny_tokenizer,
)


def _inputs(batch_size=2):
    tokens = tiny_tokenizer()(
        ["open the drawer"] * batch_size,
        padding="max_length",
        truncation=True,
        max_length=12,
        return_tensors="pt",
    )
    images = [torch.rand(batch_size, 3, 40, 40), torch.rand(batch_size, 3, 64, 48)]  # two cameras, odd sizes
    present = [torch.ones(batch_size, dtype=torch.bool)] * 2
    return images, present, tokens["input_ids"], tokens["attention_mask"], torch.randn(batch_size, 5)


@pytest.mark.parametrize("family", sorted(FAMILY_BUILDERS))
def test_family_loads_from_local_dir_and_runs(family, tmp_path):
    directory = save_family(family, tmp_path / family)
    reference = transformers.AutoModelForImageTextToText.from_pretrained(directory)
    backbone = VLMBackbone(str(directory), "", None, state_dim=5, load_weights=True)
    assert backbone.family_name == family
    # the weights are the saved ones, not a fresh random init
    saved = dict(reference.named_parameters())
    loaded = dict(backbone.vlm.named_parameters())
    assert all(torch.equal(saved[name], loaded[name]) for name in saved)
    prefix = backbone(*_inputs())
    hidden, mask = prefix.hidden, prefix.mask
    assert hidden.shape[0] == 2 and hidden.shape[-1] == backbone.hidden_size
    assert mask.shape == hidden.shape[:2] and mask[:, -1].all()  # the state token is last
    hidden.float().mean().backward()
    assert backbone.state_proj.weight.grad is not None
    assert load_tokenizer(str(directory))("push")["input_ids"]


def _real_tokens(prefix, backbone) -> torch.Tensor:
    """The hidden states of the real positions, (B, n_real, D), in order."""
    return prefix.hidden[prefix.mask].view(prefix.hidden.shape[0], -1, backbone.hidden_size)


@pytest.mark.parametrize("family", [*sorted(FAMILY_BUILDERS), "text_only"])
def test_padding_changes_no_real_token_with_positions_from_the_mask(family, tmp_path):
    """tokenizer_padding="longest": the same frame encodes the same whether its prompt is padded or not
    (a batch without padding must not switch the language model to other attention or positions)."""
    if family == "text_only":
        text_dir, vision_dir = save_text_only(tmp_path)
        backbone = VLMBackbone(str(text_dir), str(vision_dir), None, 5, True, positions_from_mask=True)
    else:
        directory = save_family(family, tmp_path / family)
        backbone = VLMBackbone(str(directory), "", None, 5, True, positions_from_mask=True)
    backbone.eval()
    images, present, _, _, state = _inputs()
    prompt = tiny_tokenizer()(["open it"] * 2, padding="max_length", max_length=12, return_tensors="pt")
    tokens, mask = prompt["input_ids"], prompt["attention_mask"]
    real = int(mask.sum(1).max())
    assert real < tokens.shape[1]
    padded = _real_tokens(backbone(images, present, tokens, mask, state), backbone)
    trimmed = _real_tokens(backbone(images, present, tokens[:, :real], mask[:, :real], state), backbone)
    torch.testing.assert_close(trimmed, padded, rtol=1e-4, atol=1e-5)


def test_text_only_lm_with_separate_vision_tower(tmp_path):
    text_dir, vision_dir = save_text_only(tmp_path)
    backbone = VLMBackbone(str(text_dir), str(vision_dir), None, state_dim=5, load_weights=True)
    reference = transformers.AutoModel.from_pretrained(text_dir)
    assert torch.equal(reference.embed_tokens.weight, backbone.text_model.embed_tokens.weight)
    hidden = backbone(*_inputs()).hidden
    assert hidden.shape[-1] == 128
    # the architecture was recorded, so a checkpoint can rebuild it without the original directories
    rebuilt = VLMBackbone("gone", "gone", backbone.vlm_config, state_dim=5, load_weights=False)
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in backbone.parameters())


def test_tiny_backbone_builds_offline():
    backbone = VLMBackbone("tiny", "unused", None, state_dim=5, load_weights=True)
    hidden = backbone(*_inputs()).hidden
    assert hidden.shape == (2, 2 * 64 + 12 + 1, 128)
    assert sum(p.numel() for p in backbone.parameters()) < 2_000_000


def test_missing_weights_raise(tmp_path):
    directory = save_family("paligemma", tmp_path / "pg")
    (directory / "model.safetensors").unlink()
    with pytest.raises(BackboneLoadError):
        VLMBackbone(str(directory), "", None, state_dim=5, load_weights=True)


def test_incomplete_checkpoint_raises_instead_of_random_init(tmp_path):
    from safetensors.torch import load_file, save_file

    directory = save_family("smolvlm", tmp_path / "smol")
    weights = load_file(directory / "model.safetensors")
    dropped = next(k for k in weights if "layers.0" in k)
    del weights[dropped]
    save_file(weights, directory / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(BackboneLoadError, match="refusing to train from random weights"):
        VLMBackbone(str(directory), "", None, state_dim=5, load_weights=True)


def test_unknown_model_name_raises_clearly(tmp_path):
    with pytest.raises(BackboneLoadError, match="vlm_model_name"):
        VLMBackbone(str(tmp_path / "no-such-model"), "", None, state_dim=5, load_weights=True)
