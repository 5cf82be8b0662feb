"""pi_star_recap on LeRobot's pi05 (`base_model="pi05"`, tiny and random here): the same actions as stock
pi05 for the same weights and noise, guidance from one prefix pass, strict loading, training and freezing,
and lerobot-train + lerobot-eval end to end."""

from __future__ import annotations

import json
from pathlib import Path
from unittest.mock import patch

import pytest
import torch
from conftest import cli_output, collect_args, lerobot_eval_episode, run_cli, run_tool
from lerobot.policies.pi05 import PI05Policy
from safetensors.torch import load_file, save_file
from synthetic import ACTION_DIM, IMAGE, STATE, attach_table, episode_columns, make_batch, observation
from tiny_vlas import pi05_config, tiny_pi05

from lerobot_policy_pi_star_recap import PiStarRECAPConfig, PiStarRECAPPolicy
from lerobot_policy_pi_star_recap.model.pi05_base import pi05_sizes

# the package's tiny pi05 with the sizes of tests/tiny_vlas.py's stock one (PI05_SETTINGS)
TINY_BASE = dict(
    base_model="pi05",
    pi05=dict(size="tiny", tokenizer="tiny", image_resolution=32),
    chunk_size=4,
    n_action_steps=4,
    num_inference_steps=2,
    backbone=dict(tokenizer_max_length=96),
    device="cpu",
)
TINY_BASE_CLI = [f"--policy.{k}={v}" for k, v in TINY_BASE.items() if not isinstance(v, dict)] + [
    f"--policy.{group}.{k}={v}"
    for group, fields in TINY_BASE.items()
    if isinstance(fields, dict)
    for k, v in fields.items()
]


def base_config(**overrides) -> PiStarRECAPConfig:
    from synthetic import merged, tiny_config

    return tiny_config(**merged(TINY_BASE, overrides))


@pytest.fixture(scope="module")
def stock(tmp_path_factory) -> tuple[PI05Policy, Path]:
    """A tiny random stock pi05 and its saved checkpoint folder."""
    config = base_config()
    torch.manual_seed(0)
    with tiny_pi05():
        policy = PI05Policy(pi05_config(config.input_features, config.output_features))
    path = tmp_path_factory.mktemp("stock") / "pi05"
    policy.save_pretrained(path)
    return policy.eval(), path


def stock_actions(policy: PI05Policy, batch: dict, noise: torch.Tensor) -> torch.Tensor:
    images, masks = policy._preprocess_images(batch)
    tokens, mask = batch["observation.language.tokens"], batch["observation.language.attention_mask"]
    with torch.no_grad():
        return policy.model.sample_actions(images, masks, tokens, mask.bool(), noise=noise)[..., :ACTION_DIM]


def inputs(seed: int = 0) -> dict:
    return observation(make_batch(base_config(), [0, 12], seed=seed))


@pytest.mark.parametrize("cfg_beta", [1.0, 2.5])
def test_zero_initialised_advantage_gives_stock_pi05_actions(stock, cfg_beta):
    stock_policy, path = stock
    ours = PiStarRECAPPolicy(base_config(base_path=str(path), cfg_beta=cfg_beta)).eval()
    batch, noise = inputs(), torch.randn(2, 4, 32)
    assert torch.equal(
        ours.predict_action_chunk(batch, noise=noise), stock_actions(stock_policy, batch, noise)
    )


def test_guidance_shares_one_prefix_pass_and_the_condition_reaches_the_expert(stock):
    _, path = stock
    policy = PiStarRECAPPolicy(base_config(base_path=str(path), cfg_beta=2.5)).eval()
    for parameter in policy.model.conditioner.embedding.parameters():  # its output layer starts at zero
        torch.nn.init.normal_(parameter, std=0.5)
    vlm_with_expert = policy.model.backbone.pi05.paligemma_with_expert
    for name, parameter in vlm_with_expert.gemma_expert.named_parameters():
        if ".dense." in name:  # a random pi05's adaRMS layers start at zero: give the condition an effect
            torch.nn.init.normal_(parameter, std=0.1)
    vlm, expert = vlm_with_expert.paligemma.model.language_model, vlm_with_expert.gemma_expert.model
    batch, noise = inputs(), torch.randn(2, 4, 32)
    # stock pi05 calls these modules' forward directly (no hooks run), so count the calls themselves
    with (
        patch.object(vlm, "forward", wraps=vlm.forward) as vlm_calls,
        patch.object(expert, "forward", wraps=expert.forward) as expert_calls,
    ):
        guided = policy.predict_action_chunk(batch, noise=noise)
    assert (vlm_calls.call_count, expert_calls.call_count) == (1, 2 * policy.config.num_inference_steps)
    policy.config.cfg_beta = 1.0
    conditional = policy.predict_action_chunk(batch, noise=noise)
    policy.config.cfg_beta = 0.0
    unconditional = policy.predict_action_chunk(batch, noise=noise)
    assert not torch.allclose(conditional, unconditional)
    assert not torch.allclose(guided, conditional) and not torch.allclose(guided, unconditional)
    # the prefix (what the critics read) does not depend on the advantage
    current, _ = policy.observation(batch)
    hidden = policy.model.encode(current).hidden
    policy.model.conditioner.embedding.null.data.add_(1.0)
    assert torch.equal(policy.model.encode(current).hidden, hidden)


@pytest.mark.parametrize("gradient_checkpointing", [False, True])
def test_flow_loss_is_stock_pi05_loss(stock, gradient_checkpointing):
    """Through the prefix cache (or, with gradient checkpointing, stock's joint pass), the flow-matching
    error equals stock pi05's for the same noise and time."""
    stock_policy, path = stock
    policy = PiStarRECAPPolicy(
        base_config(base_path=str(path), pi05={"gradient_checkpointing": gradient_checkpointing}, mode="bc")
    ).train()
    batch = make_batch(policy.config, [0, 12], window=False)
    current, _ = policy.observation(batch)
    noise, time = torch.randn(2, 4, 32), torch.tensor([0.3, 0.8])
    zero = torch.zeros(2, policy.model.flow.condition_width)
    ours = policy.model.flow.loss(policy.model.encode(current), batch["action"], zero, noise, time)
    images, masks = stock_policy._preprocess_images(batch)
    tokens, mask = batch["observation.language.tokens"], batch["observation.language.attention_mask"]
    from lerobot.policies.common.vla_utils import pad_vector

    with torch.no_grad():
        expected = stock_policy.model.forward(
            images, masks, tokens, mask.bool(), pad_vector(batch["action"], 32), noise, time
        )[..., :ACTION_DIM].mean(-1)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-4)
    ours.sum().backward()
    vlm_layer = policy.model.backbone.pi05.paligemma_with_expert.paligemma.model.language_model.layers[0]
    assert vlm_layer.self_attn.q_proj.weight.grad is not None  # the VLM learns through the expert's loss


def test_recap_training_lowers_the_loss_with_critics_on_the_prefix(stock):
    _, path = stock
    torch.manual_seed(0)  # not whatever the worker's earlier tests left: one step's flow loss is noisy
    policy = PiStarRECAPPolicy(
        base_config(base_path=str(path), policy_lr=1e-3, optim={"scheduler_warmup_steps": 0})
    )
    attach_table(policy, episode_columns(["demo", "auto", "intervention", "auto"]))
    policy.train()
    optimizer = torch.optim.AdamW(policy.get_optim_params())
    batch = make_batch(policy.config, [0, 12, 25, 35])
    losses = []
    for _ in range(40):
        loss, stats = policy(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        policy.update()
        losses.append(loss.item())
    # mean of the last 8 steps over the first 8: 0.30-0.50 over torch seeds 0-4 (the last step alone over
    # the first: 0.26-0.84 after 25 steps)
    assert sum(losses[-8:]) < 0.7 * sum(losses[:8]), losses
    assert policy.model.critic.v.out.weight.grad is not None  # IQL critics on pi05's prefix features
    assert {g["name"] for g in policy.get_optim_params()} >= {"policy", "q", "v"}


def test_freezing_options_on_the_pi05_base():
    expert_only = PiStarRECAPPolicy(base_config(train_expert_only=True)).model.backbone.pi05
    assert not any(p.requires_grad for p in expert_only.paligemma_with_expert.paligemma.parameters())
    assert expert_only.action_in_proj.weight.requires_grad
    assert expert_only.paligemma_with_expert.gemma_expert.model.layers[0].mlp.up_proj.weight.requires_grad
    vision = PiStarRECAPPolicy(base_config(freeze_vision_encoder=True)).model.backbone.pi05
    vlm = vision.paligemma_with_expert.paligemma.model
    assert not any(p.requires_grad for p in vlm.vision_tower.parameters())
    assert vlm.language_model.layers[0].self_attn.q_proj.weight.requires_grad
    frozen_vlm = PiStarRECAPPolicy(base_config(freeze_vlm=True)).model.backbone.pi05
    assert not any(p.requires_grad for p in frozen_vlm.paligemma_with_expert.paligemma.parameters())


def test_save_load_gives_identical_actions(stock, tmp_path):
    _, path = stock
    policy = PiStarRECAPPolicy(base_config(base_path=str(path)))
    for parameter in policy.model.conditioner.embedding.parameters():
        torch.nn.init.normal_(parameter, std=0.5)
    policy.save_pretrained(tmp_path / "ckpt")
    loaded = PiStarRECAPPolicy.from_pretrained(tmp_path / "ckpt")  # rebuilt tiny from its config alone
    batch, noise = inputs(), torch.randn(2, 4, 32)
    policy.eval()
    assert torch.equal(
        policy.predict_action_chunk(batch, noise=noise), loaded.predict_action_chunk(batch, noise=noise)
    )


def test_base_weights_load_strictly(stock, tmp_path):
    _, path = stock
    with pytest.raises(FileNotFoundError, match="pi05 checkpoint"):
        PiStarRECAPPolicy(base_config(base_path=str(tmp_path / "nowhere")))
    weights = load_file(str(path / "model.safetensors"))
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    removed = "model.action_out_proj.weight"
    save_file({k: v for k, v in weights.items() if k != removed}, str(damaged / "model.safetensors"))
    with pytest.raises(RuntimeError, match="action_out_proj.weight"):
        PiStarRECAPPolicy(base_config(base_path=str(damaged)))
    resized = dict(weights, **{removed: torch.zeros(5, 64)})
    save_file(resized, str(damaged / "model.safetensors"))
    with pytest.raises(RuntimeError, match="does not fit a pi05 of this size"):
        PiStarRECAPPolicy(base_config(base_path=str(damaged)))
    native = tmp_path / "native"
    PiStarRECAPPolicy(base_config(base_model="native")).save_pretrained(native)
    with pytest.raises(RuntimeError, match="unexpected"):
        PiStarRECAPPolicy(base_config(base_path=str(native)))  # another policy's weights


def test_pi05_base_config_rules():
    assert base_config().normalization_mapping["STATE"].value == "QUANTILES"  # pi05's own
    with pytest.raises(ValueError, match="compile_model"):
        base_config(runtime={"compile_model": True})
    with pytest.raises(ValueError, match="gradient_checkpointing"):
        base_config(base_model="native", pi05={"gradient_checkpointing": True})
    with pytest.raises(ValueError, match="base_model"):
        base_config(base_model="pi0")


@pytest.mark.slow
def test_paper_workflow_and_lerobot_eval_on_a_tiny_pi05_base(stock, tmp_path, capsys):
    """The staged workflow on the pi05 checkpoint, through the real commands: value-train (2 cross-fitted
    value functions on pi05's prefix) -> value-label -> stock lerobot-train (paper mode) -> stock
    lerobot-eval with guidance; every checkpoint rebuilds its tiny pi05 from its own config (no patches,
    no downloads)."""
    _, path = stock
    data = tmp_path / "push"
    assert run_cli(*collect_args(data, "demo", "push-v3", 2, "--episode-length=40")) == 0
    # the 39-d state is written into the prompt, one byte-level token per character
    base = [*TINY_BASE_CLI, f"--policy.base_path={path}", "--policy.backbone.tokenizer_max_length=320"]
    run_flags = ["--steps=2", "--batch_size=2", "--save_freq=2", "--num_workers=0", "--wandb.enable=false"]
    run_flags += ["--policy.push_to_hub=false"]
    value = tmp_path / "value"
    dataset = [f"--dataset.repo_id=local/{data.name}", f"--dataset.root={data}"]
    cli_output(capsys, "value-train", "--folds=2", *base, *dataset, f"--output_dir={value}", *run_flags)
    folds = [value / f"fold{k}" / "checkpoints" / "last" / "pretrained_model" for k in (0, 1)]
    labelled = tmp_path / "push_labelled"
    cli_output(capsys, "value-label", "--value.path", *folds, f"--input={data}", f"--output={labelled}")
    run_tool(
        "lerobot-train",
        "--policy.type=pi_star_recap",
        *base,
        "--policy.mode=paper",
        f"--dataset.repo_id=local/{labelled.name}",
        f"--dataset.root={labelled}",
        f"--output_dir={tmp_path / 'run'}",
        *run_flags,
        cwd=tmp_path,
    )
    checkpoint = tmp_path / "run" / "checkpoints" / "last" / "pretrained_model"
    assert json.loads((checkpoint / "config.json").read_text())["base_model"] == "pi05"
    steps = json.loads((checkpoint / "policy_preprocessor.json").read_text())["steps"]
    names = [step["registry_name"] for step in steps]
    assert names.index("normalizer_processor") < names.index("pi05_prepare_state_tokenizer_processor_step")
    lerobot_eval_episode(["lerobot-eval"], checkpoint, tmp_path, "--policy.cfg_beta=1.5")


def test_pi05_sizes_full_changes_nothing():
    from lerobot.policies.pi05 import modeling_pi05

    before = modeling_pi05.get_gemma_config
    with pi05_sizes("full"):
        assert modeling_pi05.get_gemma_config is before
    with pi05_sizes("tiny"):
        assert modeling_pi05.get_gemma_config("gemma_2b").width == 64
    assert modeling_pi05.get_gemma_config is before


def test_preprocessing_is_stock_pi05s(stock, tmp_path):
    """The same raw frame gives the same normalised state, prompt tokens and (after the policy's image
    handling) the same actions as stock pi05's own pre-processor, and the same unnormalised output."""
    from lerobot.policies.pi05.processor_pi05 import make_pi05_pre_post_processors
    from tiny_vlas import fake_hub_cache, offline_hub

    from lerobot_policy_pi_star_recap.processor_pi_star_recap import make_pi_star_recap_pre_post_processors

    stock_policy, path = stock
    stats = {
        key: {
            "q01": -torch.ones(dim) * 2,
            "q99": torch.ones(dim) * 3,
            "mean": torch.zeros(dim),
            "std": torch.ones(dim),
        }
        for key, dim in ((STATE, 5), ("action", ACTION_DIM))
    }
    ours = PiStarRECAPPolicy(base_config(base_path=str(path))).eval()
    frame = {IMAGE: torch.rand(3, 32, 32), STATE: torch.randn(5), "task": "push the block\nto the goal"}
    with offline_hub(fake_hub_cache(tmp_path / "hub")):  # stock pi05 hard-codes its tokenizer's hub id
        stock_pre, stock_post = make_pi05_pre_post_processors(stock_policy.config, dataset_stats=stats)
    our_pre, our_post = make_pi_star_recap_pre_post_processors(ours.config, dataset_stats=stats)
    expected, got = stock_pre(dict(frame)), our_pre(dict(frame))
    for key in (STATE, "observation.language.tokens", "observation.language.attention_mask"):
        assert torch.equal(got[key], expected[key]), key
    noise = torch.randn(1, 4, 32)
    actions = ours.predict_action_chunk(got, noise=noise)
    assert torch.equal(actions, stock_actions(stock_policy, expected, noise))
    assert torch.equal(our_post(actions[:, 0]), stock_post(actions[:, 0]))


def test_bfloat16_base_trains_and_acts():
    """dtype=bfloat16: stock pi05's bf16 weights with float32 norms and vision tower; a training step and a
    chunk stay finite, and the noise and the advantage condition stay float32."""
    policy = PiStarRECAPPolicy(base_config(dtype="bfloat16", mode="paper"))
    pi05 = policy.model.backbone.pi05
    language = pi05.paligemma_with_expert.paligemma.model.language_model
    assert language.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    assert language.layers[0].input_layernorm.weight.dtype == torch.float32
    table = episode_columns(["demo", "auto"], length=20)
    table.indicator = (table.index % 2).astype("float32")
    table.advantage = table.indicator - 0.5
    attach_table(policy, table)
    policy.train()
    loss, _ = policy(make_batch(policy.config, [0, 12], window=False))
    loss.backward()
    assert torch.isfinite(loss) and language.layers[0].self_attn.q_proj.weight.grad is not None
    actions = policy.eval().predict_action_chunk(inputs())
    assert actions.dtype == torch.float32 and torch.isfinite(actions).all()
