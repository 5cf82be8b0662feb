"""The policy: shapes, loss weighting, learning, checkpoints, guidance, freezing and input errors."""

import pytest
import torch
from synthetic import (
    ACTION_DIM,
    IMAGE,
    STATE,
    attach_table,
    episode_columns,
    make_batch,
    observation,
    tiny_config,
)
from torch import Tensor

from lerobot_policy_pi_star_recap import PiStarRECAPPolicy
from lerobot_policy_pi_star_recap.errors import RecapDataError

TYPES = ["demo", "auto", "intervention", "demo"]


def make_policy(**overrides) -> PiStarRECAPPolicy:
    torch.manual_seed(0)
    policy = PiStarRECAPPolicy(tiny_config(**overrides))
    attach_table(policy, episode_columns(TYPES, length=10, successes=[True, False, True, True]))
    return policy


def test_forward_logs_the_spec_metrics_and_prediction_shapes():
    policy = make_policy()
    batch = make_batch(policy.config, index=[0, 12, 25, 35])
    loss, metrics = policy(batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    names = ("policy_loss", "q_loss", "v_loss", "advantage_mean", "advantage_std", "positive_fraction")
    for name in names:  # between log steps: this batch's means, left on the device
        assert isinstance(metrics[name], torch.Tensor) and metrics[name].dim() == 0, name
    policy.monitor.log_freq = 1  # a log step: the window's means, read back once, as floats
    _, logged = policy(batch)
    for name in names:
        assert isinstance(logged[name], float), name
    chunk = policy.predict_action_chunk(observation(batch))
    assert chunk.shape == (4, policy.config.chunk_size, ACTION_DIM)
    policy.reset()
    assert policy.select_action(observation(batch)).shape == (4, ACTION_DIM)


def test_data_type_weights_scale_the_per_sample_loss():
    """Same noise, same batch: intervention-controlled frames get intervention_weight, others their type's."""
    index = [0, 12, 22, 27]  # demo, auto, intervention (robot in control), intervention (expert)
    losses = {}
    for weights in ((1.0, 1.0, 1.0), (1.0, 3.0, 2.0)):
        policy = make_policy(
            use_advantage_weighting=False,
            use_advantage_conditioning=False,
            demo_weight=weights[0],
            auto_weight=weights[1],
            intervention_weight=weights[2],
        )
        policy.train()
        torch.manual_seed(1)
        per_sample, _ = policy(make_batch(policy.config, index), reduction="none")
        losses[weights] = per_sample.detach()
    # critics are not trained for plain weighted BC, so the loss is the weighted flow loss alone
    ratio = losses[(1.0, 3.0, 2.0)] / losses[(1.0, 1.0, 1.0)]
    assert torch.allclose(ratio, torch.tensor([1.0, 3.0, 3.0, 2.0]), rtol=1e-5)


def test_success_only_drops_failed_episodes():
    policy = make_policy(use_advantage_weighting=False, use_advantage_conditioning=False, success_only=True)
    per_sample, _ = policy(make_batch(policy.config, [0, 12]), reduction="none")
    assert per_sample[0] > 0 and per_sample[1] == 0  # episode 1 failed


def test_negative_weight_scales_the_loss_of_indicator_zero_frames():
    from lerobot_policy_pi_star_recap.model.conditioning import AdvantageConditioner

    indicator = torch.tensor([1.0, 0.0, 1.0, 0.0])
    for source, expected in (("dataset", [1.0, 0.25, 1.0, 0.25]), ("critic", [1.0, 1.0, 1.0, 1.0])):
        config = tiny_config(
            advantage_source=source,
            use_advantage_weighting=False,
            conditioning={"negative_weight": 0.25, "dropout": 0.5},
        )
        conditioner = AdvantageConditioner(config, width=8).train()
        _, weights, _ = conditioner(
            torch.tensor([2.0, -1.0, 0.5, -3.0]),
            indicator if source == "dataset" else None,  # the dataset critic's labels travel as given
            torch.zeros(4),  # no expert frames
            torch.ones(4),
            torch.Generator().manual_seed(0),
            torch.float32,
        )
        # the binary indicator weights its negatives (also those trained unconditionally); the IQL
        # path conditions on the continuous advantage and has no negatives to weight
        assert weights.tolist() == expected, source


def test_unconditional_negative_weight_applies_to_the_negatives_whose_condition_is_dropped():
    from lerobot_policy_pi_star_recap.model.conditioning import AdvantageConditioner

    indicator = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    config = tiny_config(
        advantage_source="dataset",
        use_advantage_weighting=False,
        conditioning={"negative_weight": 0.0, "unconditional_negative_weight": 1.0, "dropout": 0.5},
    )
    conditioner = AdvantageConditioner(config, width=8).train()
    _, weights, _ = conditioner(
        torch.zeros(8),
        indicator,
        torch.zeros(8),
        torch.ones(8),
        torch.Generator().manual_seed(0),
        torch.float32,
    )
    # the conditioner draws its keep mask first from the generator: the same draw, by hand
    dropped = torch.rand(8, generator=torch.Generator().manual_seed(0)) < 0.5
    assert 0 < int((dropped & (indicator == 0)).sum()) < 5  # both kinds of negatives are in the batch
    expected = torch.where(indicator > 0.5, 1.0, dropped.float())
    assert weights.tolist() == expected.tolist()
    with pytest.raises(ValueError, match="unconditional_negative_weight"):
        tiny_config(conditioning={"unconditional_negative_weight": -1.0})


def test_training_lowers_the_loss():
    policy = make_policy(use_advantage_weighting=False, use_advantage_conditioning=False, policy_lr=1e-3)
    policy.train()
    optimizer = policy.config.get_optimizer_preset().build(policy.get_optim_params())  # as lerobot-train
    batches = [make_batch(policy.config, index=list(range(i, i + 8)), seed=i) for i in range(0, 32, 8)]
    history = []
    for step in range(80):  # the last 8 steps' mean loss is ~0.16x the first 8's (0.10x after 200 steps)
        loss, _ = policy(batches[step % len(batches)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        policy.update()
        history.append(loss.item())
    assert sum(history[-8:]) / 8 < 0.5 * sum(history[:8]) / 8  # 8 steps: each of the 4 batches twice


def test_critics_learn_and_targets_follow_polyak():
    policy = make_policy(q_lr=3e-3, v_lr=3e-3, critic={"target_update_rate": 0.5})
    policy.train()
    optimizer = torch.optim.AdamW(policy.get_optim_params())
    batch = make_batch(policy.config, index=[0, 5, 12, 25, 33, 38])
    q_losses = []
    for _ in range(60):
        loss, metrics = policy(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        online = [p.detach().clone() for p in policy.model.critic.q.parameters()]
        before = [p.detach().clone() for p in policy.model.critic.q_target.parameters()]
        policy.update()
        after = list(policy.model.critic.q_target.parameters())
        for o, b, a in zip(online, before, after, strict=True):
            assert torch.allclose(a, b + 0.5 * (o - b), atol=1e-6)
        q_losses.append(metrics["q_loss"])
    assert q_losses[-1] < 0.5 * q_losses[0]


def test_learning_rates_are_separate_parameter_groups():
    policy = make_policy(q_lr=1e-3, v_lr=2e-3, policy_lr=3e-5)
    groups = {g["name"]: g for g in policy.get_optim_params()}
    assert {name: g["lr"] for name, g in groups.items()} == {
        "policy": 3e-5,
        "condition": 3e-5,  # optim.condition_lr_multiplier 1 by default
        "q": 1e-3,
        "v": 2e-3,
    }
    ids = [id(p) for g in groups.values() for p in g["params"]]
    assert len(ids) == len(set(ids))
    assert not any(p is t for p in groups["q"]["params"] for t in policy.model.critic.q_target.parameters())


def test_the_advantage_embedding_learns_at_its_own_rate_under_the_same_schedule():
    policy = make_policy(
        use_advantage_conditioning=True, policy_lr=1e-3, optim={"condition_lr_multiplier": 10.0}
    )
    groups = {g["name"]: g for g in policy.get_optim_params()}
    embedding = list(policy.model.conditioner.embedding.parameters())
    assert [id(p) for p in groups["condition"]["params"]] == [id(p) for p in embedding]
    assert not {id(p) for p in groups["policy"]["params"]} & {id(p) for p in embedding}
    preset = policy.config.get_optimizer_preset()
    optimizer = preset.build(policy.get_optim_params())
    scheduler = policy.config.get_scheduler_preset().build(optimizer, num_training_steps=100)
    for _ in range(3):  # in warm-up: both rates scaled by the same factor, the ratio kept
        optimizer.step()
        scheduler.step()
        rates = {g["name"]: g["lr"] for g in optimizer.param_groups}
        assert rates["condition"] == pytest.approx(10 * rates["policy"])
        assert rates["policy"] < 1e-3
    assert "condition" not in {
        g["name"] for g in make_policy(use_advantage_conditioning=False).get_optim_params()
    }


def test_fused_optimizer_preset_takes_the_same_step_as_plain_adamw():
    """The preset's fused AdamW is a faster kernel, not a different optimizer; optim.fused=false opts out."""
    batch = make_batch(tiny_config(), [0, 12, 25, 35])
    stepped = {}
    for fused in (True, False):
        policy = make_policy(optim={"fused": fused}, policy_lr=1e-3)
        optimizer = policy.config.get_optimizer_preset().build(policy.get_optim_params())
        assert optimizer.defaults["fused"] is fused
        assert {g["name"]: g["lr"] for g in optimizer.param_groups} == {
            "policy": 1e-3,
            "condition": 1e-3,
            "q": 3e-4,
            "v": 3e-4,
        }
        policy.train()
        torch.manual_seed(1)
        loss, _ = policy(batch)
        loss.backward()
        optimizer.step()
        stepped[fused] = policy.state_dict()
    initial = make_policy().state_dict()
    for name, value in stepped[True].items():
        assert torch.allclose(value, stepped[False][name], atol=1e-6), name
    assert not torch.equal(
        stepped[True]["model.flow.expert.action_out.weight"], initial["model.flow.expert.action_out.weight"]
    )


def test_compiled_policy_keeps_checkpoint_names_and_actions():
    eager = make_policy()
    compiled = make_policy(runtime={"compile_model": True})
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    compiled.load_state_dict(eager.state_dict())
    inputs = observation(make_batch(eager.config, [0, 12]))
    noise = torch.randn(2, eager.config.chunk_size, ACTION_DIM)
    assert torch.allclose(
        compiled.predict_action_chunk(inputs, noise=noise),
        eager.predict_action_chunk(inputs, noise=noise),
        atol=1e-5,
    )


def test_critic_and_policy_gradients_stay_apart():
    policy = make_policy()
    policy.train()
    batch = make_batch(policy.config, [0, 12, 25])
    targets = policy._recap_targets(batch)

    model, critic = policy.model, policy.model.critic
    actions, pad = batch["action"], batch["action_is_pad"]

    def encode():
        current, following = policy.observation(batch)
        prefix = model.encode(current)
        return prefix, model.critic_features(prefix, current.state), following

    prefix, features, following = encode()
    critic_out = critic(model._critic_batch(features, following, actions, pad, targets))
    critic_out.loss.mean().backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is None for p in model.flow.parameters())
    assert critic.v.out.weight.grad is not None and critic.q.out.weight.grad is not None

    policy.zero_grad(set_to_none=True)
    prefix, _, _ = encode()
    per_sample, _ = model.policy_loss(prefix, actions, pad, targets, critic_out)
    per_sample.mean().backward()
    assert all(p.grad is None for p in critic.parameters())
    assert model.backbone.state_proj.weight.grad is not None


def test_frozen_parts_get_no_gradient():
    backbone = make_policy(freeze_vlm=True).model.backbone
    assert not any(p.requires_grad for p in backbone.vlm.parameters())
    assert backbone.state_proj.weight.requires_grad
    expert_only = make_policy(train_expert_only=True).model
    assert not any(p.requires_grad for p in expert_only.backbone.parameters())
    assert all(p.requires_grad for p in expert_only.flow.parameters())
    assert all(p.requires_grad for p in expert_only.critic.v.parameters())
    vision = make_policy(freeze_vision_encoder=True).model.backbone
    assert not any(p.requires_grad for p in vision.vlm.model.vision_tower.parameters())
    assert all(p.requires_grad for p in vision.language_model.parameters())


def test_save_load_gives_identical_actions(tmp_path):
    policy = make_policy()
    policy.train()
    optimizer = torch.optim.AdamW(policy.get_optim_params())
    for seed in range(3):
        loss, _ = policy(make_batch(policy.config, [0, 12, 25, 35], seed=seed))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        policy.update()
    policy.save_pretrained(tmp_path / "ckpt")
    loaded = PiStarRECAPPolicy.from_pretrained(tmp_path / "ckpt")
    policy.eval()
    inputs = observation(make_batch(policy.config, [0, 12]))
    noise = torch.randn(2, policy.config.chunk_size, ACTION_DIM)
    assert torch.equal(
        policy.predict_action_chunk(inputs, noise=noise), loaded.predict_action_chunk(inputs, noise=noise)
    )
    for name, buffer in policy.named_buffers():
        assert torch.equal(buffer, dict(loaded.named_buffers())[name]), name


def test_guidance_beta_one_is_conditional_and_zero_unconditional():
    policy = make_policy()
    model, expert = policy.model, policy.model.flow.expert
    for module in expert.modules():  # adaLN starts at zero: give the condition an effect
        if isinstance(module, torch.nn.Linear) and module.out_features in (2 * 64, 6 * 64):
            torch.nn.init.normal_(module.weight, std=0.1)
    for parameter in model.conditioner.embedding.parameters():  # its output layer starts at zero too
        torch.nn.init.normal_(parameter, std=0.1)
    policy.eval()
    inputs = observation(make_batch(policy.config, [0, 12]))
    current, _ = policy.observation(inputs)
    prefix = model.encode(current)
    kv, attention = expert.prefix_cache(prefix.hidden, prefix.mask)
    x = torch.randn(2, policy.config.chunk_size, ACTION_DIM)
    time = torch.full((2,), 0.7)
    conditional, unconditional = model.conditioner.inference_conditions(2, prefix.hidden)
    v_c = expert(x, time, conditional, kv, attention)
    v_u = expert(x, time, unconditional, kv, attention)
    assert not torch.allclose(v_c, v_u)
    for beta, expected in ((1.0, v_c), (0.0, v_u), (2.5, v_u + 2.5 * (v_c - v_u))):
        policy.config.cfg_beta = beta
        guided = model.flow.guided_velocity(x, time, conditional, unconditional, kv, attention)
        if beta in (0.0, 1.0):
            assert torch.equal(guided, expected)
        else:
            assert torch.allclose(guided, expected, atol=1e-5)


def test_bad_inputs_get_clear_errors():
    policy = make_policy()
    inputs = observation(make_batch(policy.config, [0, 12]))
    with pytest.raises(KeyError, match="observation.images.cam"):
        policy.predict_action_chunk({k: v for k, v in inputs.items() if k != IMAGE})
    with pytest.raises(ValueError, match="has 7 dims but the policy was built for 5"):
        policy.predict_action_chunk({**inputs, STATE: torch.randn(2, 7)})
    batch = make_batch(policy.config, [0, 12])
    with pytest.raises(ValueError, match="actions have 2 dims"):
        policy({**batch, "action": batch["action"][..., :2]})
    fresh = PiStarRECAPPolicy(tiny_config())
    with pytest.raises(RecapDataError, match="without a dataset"):
        fresh(batch)
    # images of another size are resized by the backbone; extra cameras are ignored
    small = {**inputs, IMAGE: torch.rand(2, 3, 20, 24)}
    assert policy.predict_action_chunk(small).shape[0] == 2
    noise = torch.randn(2, policy.config.chunk_size, ACTION_DIM)
    extra = {**inputs, "observation.images.wrist": torch.rand(2, 3, 32, 32)}
    assert torch.equal(
        policy.predict_action_chunk(extra, noise=noise), policy.predict_action_chunk(inputs, noise=noise)
    )


def test_checkpoint_errors(tmp_path):
    policy = make_policy()
    policy.save_pretrained(tmp_path / "ckpt")
    weights = tmp_path / "ckpt" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(RuntimeError, match="truncated or corrupted"):
        PiStarRECAPPolicy.from_pretrained(tmp_path / "ckpt")
    with pytest.raises(FileNotFoundError):
        PiStarRECAPPolicy.from_pretrained(tmp_path / "nowhere")


@pytest.mark.parametrize("estimator", ["iql", "mc_distributional"])
def test_stage_two_can_turn_recap_on_over_a_bc_checkpoint(tmp_path, caplog, estimator):
    """A behaviour-cloning checkpoint has no critics or advantage embedding: a RECAP config loads it,
    starts those fresh (with a warning), everything else must still match exactly, and the conditioned
    policy starts out acting exactly like the stage-1 policy."""
    bc = make_policy(use_advantage_weighting=False, use_advantage_conditioning=False)
    assert not bc.model.critic.has_value
    bc.save_pretrained(tmp_path / "bc")
    recap_config = tiny_config(advantage_estimator=estimator)
    loaded = PiStarRECAPPolicy.from_pretrained(tmp_path / "bc", config=recap_config)
    assert loaded.model.critic.has_value and loaded.model.conditioner.embedding is not None
    assert "starts from a fresh initialisation" in caplog.text
    assert torch.equal(loaded.model.flow.expert.action_in.weight, bc.model.flow.expert.action_in.weight)
    bc.eval()
    loaded.eval()
    inputs = observation(make_batch(bc.config, [0, 12]))
    noise = torch.randn(2, bc.config.chunk_size, ACTION_DIM)
    torch.testing.assert_close(
        loaded.predict_action_chunk(inputs, noise=noise), bc.predict_action_chunk(inputs, noise=noise)
    )
    with pytest.raises(RuntimeError, match="does not match"):
        PiStarRECAPPolicy.from_pretrained(tmp_path / "bc", config=tiny_config(expert={"depth": 3}))


def test_expert_corrected_frames_are_conditioned_on_at_least_the_inference_advantage():
    policy = make_policy(advantage_scale=1.5)
    conditioner = policy.model.conditioner
    conditioner.advantage_mean.fill_(0.0)
    conditioner.advantage_var.fill_(4.0)  # std 2: raw advantages -4, 1, 8 are -2, 0.5, 4 -> clamped 3 std
    advantage = torch.tensor([-4.0, 1.0, 8.0, -4.0, 1.0])
    intervention = torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0])
    value = conditioner.condition_value(advantage, None, intervention)
    assert torch.allclose(value, torch.tensor([-2.0, 0.5, 3.0, 1.5, 1.5]))


def test_fine_tunes_with_other_seeds_draw_other_training_noise(tmp_path):
    """The noise seed saved in a checkpoint is mixed with the run's seed: fine-tunes of one checkpoint
    with --seed 0 / 1 draw different flow noise, a resumed run (same seed) the same noise again."""
    make_policy().save_pretrained(tmp_path / "ckpt")

    def first_draw(seed: int) -> Tensor:
        torch.manual_seed(seed)  # what lerobot-train does before building the policy
        policy = PiStarRECAPPolicy.from_pretrained(tmp_path / "ckpt")
        return torch.rand(4, generator=policy.model.training_generator(torch.device("cpu")))

    assert torch.equal(first_draw(0), first_draw(0))
    assert not torch.equal(first_draw(0), first_draw(1))


def test_chunk_loss_stops_where_the_controller_changes():
    """A chunk starting on an expert frame is trained only on the expert's actions (not the policy's after
    hand-back): changing the actions after the switch leaves the loss of that sample unchanged."""
    policy = make_policy(use_advantage_conditioning=False)  # BC: no critic sees the chunk
    columns = episode_columns(TYPES, length=10, successes=[True, False, True, True])
    table = attach_table(policy, columns)
    # intervention episode 2 (frames 20-29): expert frames 25-29; frame 23's chunk (size 4) covers 23-26
    assert table.lookup(torch.tensor([23])).segment_left.item() == 2
    batch = make_batch(policy.config, [23, 3], seed=0)
    changed = {**batch, "action": batch["action"].clone()}
    changed["action"][0, 2:] += 5.0
    policy.train()
    loss, _ = policy(batch, reduction="none")
    loss_changed, _ = policy(changed, reduction="none")
    assert torch.allclose(loss[0], loss_changed[0]) and torch.allclose(loss[1], loss_changed[1])
    changed["action"][0, :2] += 5.0
    assert not torch.allclose(policy(changed, reduction="none")[0][0], loss[0])


def test_state_clip_bounds_far_off_states():
    """With state_clip, a state 100 stds out acts like one at the clip; without, it does not."""
    clipped, free = make_policy(normalization={"state_clip": 3.0}), make_policy()
    free.load_state_dict(clipped.state_dict())
    inputs = observation(make_batch(clipped.config, [0, 12]))
    far, edge = dict(inputs), dict(inputs)
    far[STATE] = torch.full_like(inputs[STATE], 100.0)
    edge[STATE] = torch.full_like(inputs[STATE], 3.0)
    noise = torch.randn(2, clipped.config.chunk_size, ACTION_DIM)
    assert torch.equal(
        clipped.predict_action_chunk(far, noise=noise), clipped.predict_action_chunk(edge, noise=noise)
    )
    assert not torch.allclose(
        free.predict_action_chunk(far, noise=noise), free.predict_action_chunk(edge, noise=noise)
    )


def test_longest_padding_gives_the_actions_of_full_padding_at_a_lower_cost():
    """tokenizer_padding="longest": the processor pads to the batch's longest prompt, and because
    positions count only real tokens the model's actions do not depend on how far prompts are padded;
    "max_length" (the default, as checkpoints from before the option) still pads to 48 tokens."""
    from lerobot_policy_pi_star_recap.processor_pi_star_recap import make_pi_star_recap_pre_post_processors

    prompts = ["push the block", "push"]
    for padding, length in (("longest", len("push the block") + 1), ("max_length", 48)):  # + newline
        preprocessor, _ = make_pi_star_recap_pre_post_processors(
            tiny_config(backbone={"tokenizer_padding": padding})
        )
        frame = observation(make_batch(tiny_config(), [0, 12], window=False))
        frame = {k: v for k, v in frame.items() if not k.startswith("observation.language")}
        tokens = preprocessor({**frame, "task": prompts})["observation.language.tokens"]
        assert tokens.shape == (2, length), padding

    policy = make_policy(backbone={"tokenizer_padding": "longest"})
    policy.eval()
    inputs = observation(make_batch(policy.config, [0, 12]))
    noise = torch.randn(2, policy.config.chunk_size, ACTION_DIM)
    short = policy.predict_action_chunk(inputs, noise=noise)
    mask = inputs["observation.language.attention_mask"]
    real = int(mask.sum(1).max())
    assert real < mask.shape[1]  # make_batch pads to 16 tokens
    trimmed, padded = dict(inputs), dict(inputs)
    for key in ("observation.language.tokens", "observation.language.attention_mask"):
        trimmed[key] = inputs[key][:, :real]  # no padding at all
        padded[key] = torch.nn.functional.pad(inputs[key], (0, 48 - inputs[key].shape[1]))
    for variant in (trimmed, padded):
        torch.testing.assert_close(
            policy.predict_action_chunk(variant, noise=noise), short, rtol=1e-5, atol=1e-5
        )

    def state_token(variant: dict) -> Tensor:
        current, _ = policy.observation(variant)
        return policy.model.encode(current).hidden[:, -1]  # the state token comes last

    torch.testing.assert_close(state_token(padded), state_token(trimmed), rtol=1e-5, atol=1e-5)
    # Without positions from the mask (the "max_length" model) the padding moves the state token's
    # position, and with it its hidden state: the property above is not vacuous.
    policy.model.backbone.positions_from_mask = False
    assert (state_token(padded) - state_token(trimmed)).abs().max() > 1e-3  # 2e-3 measured, 100x the band


def test_fine_tuning_refuses_another_prompt_padding(tmp_path):
    """The padding decides the positions the language model sees, and lerobot-train keeps a checkpoint's
    saved processor: switching it on a fine-tune would feed the model positions it was not trained on."""
    make_policy().save_pretrained(tmp_path / "ckpt")  # tokenizer_padding="max_length"
    requested = tiny_config(backbone={"tokenizer_padding": "longest"})
    with pytest.raises(ValueError, match="trained with tokenizer_padding='max_length', not 'longest'"):
        PiStarRECAPPolicy.from_pretrained(tmp_path / "ckpt", config=requested)
    assert (
        PiStarRECAPPolicy.from_pretrained(tmp_path / "ckpt").config.backbone.tokenizer_padding == "max_length"
    )
