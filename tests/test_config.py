"""The config: every documented option with its default, the presets, and bad values rejected early."""

import re

import pytest
from synthetic import option, tiny_config

from lerobot_policy_pi_star_recap import PiStarRECAPConfig
from lerobot_policy_pi_star_recap.configuration_pi_star_recap import IQL_PRESETS, OptimOptions


def test_spec_defaults():
    config = PiStarRECAPConfig(device="cpu")
    expected = dict(
        chunk_size=16,
        n_action_steps=16,
        iql_expectile=0.7,
        iql_temperature=0.5,
        iql_discount=0.99,
        demo_weight=1.0,
        auto_weight=1.0,
        intervention_weight=2.0,
        q_lr=3e-4,
        v_lr=3e-4,
        policy_lr=3e-5,
        num_inference_steps=10,
        use_advantage_conditioning=True,
        advantage_scale=1.0,
    )
    for name, value in expected.items():
        assert getattr(config, name) == value, name
    for flag in ("freeze_vlm", "freeze_vision_encoder", "train_expert_only"):
        assert isinstance(getattr(config, flag), bool)
    assert config.type == "pi_star_recap"


def test_spec_example_constructs():
    config = PiStarRECAPConfig(
        device="cpu",
        vlm_model_name="google/gemma-2b-it",
        chunk_size=16,
        n_action_steps=16,
        iql_expectile=0.7,
        iql_temperature=0.5,
        iql_discount=0.99,
        demo_weight=1.0,
        auto_weight=1.0,
        intervention_weight=2.0,
        freeze_vlm=True,
        freeze_vision_encoder=True,
        train_expert_only=True,
        q_lr=3e-4,
        v_lr=3e-4,
        policy_lr=3e-5,
        num_inference_steps=10,
        use_advantage_conditioning=True,
        advantage_scale=1.0,
    )
    assert config.vlm_model_name == "google/gemma-2b-it"


@pytest.mark.parametrize("preset", sorted(IQL_PRESETS))
def test_presets_fill_expectile_and_temperature(preset):
    config = PiStarRECAPConfig(device="cpu", iql_preset=preset)
    assert (config.iql_expectile, config.iql_temperature) == IQL_PRESETS[preset]


def test_explicit_values_override_preset():
    config = PiStarRECAPConfig(device="cpu", iql_preset="conservative", iql_temperature=0.9)
    assert config.iql_expectile == 0.8 and config.iql_temperature == 0.9
    assert IQL_PRESETS["conservative"] == (0.8, 0.3)
    assert IQL_PRESETS["exploratory"] == (0.6, 0.7)


@pytest.mark.parametrize(
    "field, value",
    [
        ("iql_expectile", 1.0),
        ("iql_expectile", 0.0),
        ("iql_temperature", 0.0),
        ("iql_temperature", -1.0),
        ("n_action_steps", 32),
        ("demo_weight", -1.0),
        ("intervention_weight", -0.5),
        ("iql_discount", 1.5),
        ("q_lr", 0.0),
        ("conditioning.dropout", 1.0),
        ("advantage_estimator", "ppo"),
        ("iql_preset", "aggressive"),
        ("conditioning.indicator_positive_fraction", 0.0),
        ("num_inference_steps", 0),
    ],
)
def test_invalid_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=re.escape(field)):
        PiStarRECAPConfig(device="cpu", **option(field, value))


def test_observation_windows_follow_the_critic():
    assert PiStarRECAPConfig(device="cpu").observation_delta_indices == [0, 16]
    bc = PiStarRECAPConfig(device="cpu", use_advantage_weighting=False, use_advantage_conditioning=False)
    assert bc.observation_delta_indices == [0]
    paper = PiStarRECAPConfig(device="cpu", advantage_estimator="mc_distributional", advantage_n_step=50)
    assert paper.observation_delta_indices == [0, 50]
    full = PiStarRECAPConfig(
        device="cpu", advantage_estimator="mc_distributional", advantage_horizon="full_return"
    )
    assert full.observation_delta_indices == [0]
    assert PiStarRECAPConfig(device="cpu").action_delta_indices == list(range(16))


def test_scheduler_warmup_means_what_it_says_in_short_runs():
    """LeRobot's cosine_decay_with_warmup shrinks a 100-step warm-up to 2 steps in a 600-step fine-tune;
    ours warms up over exactly 100 steps, then decays to decay_lr at the run's last step."""
    import torch
    from lerobot.optim import CosineDecayWithWarmupSchedulerConfig

    config = PiStarRECAPConfig(device="cpu", policy_lr=1e-3, optim=OptimOptions(scheduler_warmup_steps=100))

    def lrs(scheduler_config) -> list[float]:
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
        scheduler = scheduler_config.build(optimizer, num_training_steps=600)
        out = []
        for _ in range(601):
            out.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        return out

    ours = lrs(config.get_scheduler_preset())
    assert ours[0] == pytest.approx(1e-3 / 101) and ours[49] == pytest.approx(1e-3 * 50 / 101)
    assert ours[100] == pytest.approx(1e-3) and ours[600] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(ours[100:], ours[101:], strict=False))  # monotone decay
    stock = CosineDecayWithWarmupSchedulerConfig(
        num_warmup_steps=100, num_decay_steps=30_000, peak_lr=1e-3, decay_lr=1e-4
    )
    assert lrs(stock)[3] > 0.99e-3  # LeRobot's: at peak after 2 steps


def test_state_std_floor_applies_to_state_stats_only():
    import numpy as np

    from lerobot_policy_pi_star_recap.processor_pi_star_recap import floor_state_std

    config = tiny_config()
    stats = {
        "observation.state": {"mean": np.zeros(5), "std": np.array([0.001, 0.5, 0.0, 2.0, 0.01])},
        "action": {"mean": np.zeros(3), "std": np.array([0.001, 0.5, 1.0])},
    }
    floored = floor_state_std(config, stats)
    np.testing.assert_allclose(floored["observation.state"]["std"], [0.01, 0.5, 0.01, 2.0, 0.01])
    np.testing.assert_allclose(floored["action"]["std"], [0.001, 0.5, 1.0])
    np.testing.assert_allclose(stats["observation.state"]["std"][0], 0.001)  # the input is not modified


@pytest.mark.parametrize("name", ["advantage_scale", "intervention_weight", "policy_lr", "cfg_beta"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_values_are_rejected(name, value):
    with pytest.raises(ValueError, match=f"{name}=.*finite"):
        PiStarRECAPConfig(device="cpu", **{name: value})


def test_mode_presets_fill_the_method_flags_and_explicit_values_win():
    from lerobot_policy_pi_star_recap.configuration_pi_star_recap import MODE_DEFAULTS, MODES

    default = tiny_config()
    assert (default.advantage_estimator, default.advantage_source) == ("iql", "critic")
    assert default.use_advantage_conditioning and not default.use_advantage_weighting
    for mode, filled in MODES.items():
        config = tiny_config(mode=mode)
        assert {k: getattr(config, k) for k in filled} == filled, mode
        assert all(getattr(config, k) == MODE_DEFAULTS[k] for k in MODE_DEFAULTS if k not in filled), mode
    assert not tiny_config(mode="filtered_bc").uses_advantage and tiny_config(mode="filtered_bc").success_only
    assert tiny_config(mode="paper").advantage_estimator == "mc_distributional"
    assert tiny_config(mode="bc", use_advantage_conditioning=True).use_advantage_conditioning
    with pytest.raises(ValueError, match="mode='nope' is unknown"):
        tiny_config(mode="nope")


def test_a_checkpoint_fine_tuned_with_another_mode_follows_it(tmp_path):
    """Mode-filled flags are saved unset: stage 1 trained with mode=bc, fine-tuned with mode=paper (what
    `--policy.path=... --policy.mode=paper` does to the saved config), is paper; an explicit flag stays."""
    import json

    from lerobot.configs import PreTrainedConfig

    def fine_tune(stage1: PiStarRECAPConfig, mode: str) -> PiStarRECAPConfig:
        stage1._save_pretrained(tmp_path)
        saved = json.loads((tmp_path / "config.json").read_text())
        (tmp_path / "config.json").write_text(json.dumps({**saved, "mode": mode}))
        return PreTrainedConfig.from_pretrained(tmp_path)

    bc = tiny_config(mode="bc")
    assert not bc.uses_advantage
    stage2 = fine_tune(bc, "paper")
    assert stage2.use_advantage_conditioning and stage2.advantage_source == "dataset"
    assert fine_tune(tiny_config(mode="bc", use_advantage_weighting=True), "recap").use_advantage_weighting


def test_an_iql_preset_given_over_a_checkpoint_takes_effect(tmp_path):
    """`--policy.path=<ckpt> --policy.iql_preset=conservative`: the checkpoint saved its preset, not the
    values the preset filled, so the command line's preset fills them; explicit values stay explicit."""
    from lerobot.configs import PreTrainedConfig

    (tmp_path / "balanced").mkdir()
    (tmp_path / "explicit").mkdir()
    tiny_config()._save_pretrained(tmp_path / "balanced")
    tuned = PreTrainedConfig.from_pretrained(
        tmp_path / "balanced", cli_overrides=["--iql_preset=conservative"]
    )
    assert (tuned.iql_expectile, tuned.iql_temperature) == IQL_PRESETS["conservative"]
    tiny_config(iql_temperature=0.9)._save_pretrained(tmp_path / "explicit")
    tuned = PreTrainedConfig.from_pretrained(
        tmp_path / "explicit", cli_overrides=["--iql_preset=conservative"]
    )
    assert (tuned.iql_expectile, tuned.iql_temperature) == (IQL_PRESETS["conservative"][0], 0.9)


def test_validation_tables_name_real_fields_and_reject_bad_values():
    from lerobot_policy_pi_star_recap.configuration_pi_star_recap import CHOICES, RULES, scalar_field_types

    names = set(scalar_field_types(PiStarRECAPConfig))
    assert set(CHOICES) <= names
    assert {n for rule in RULES for n in rule[0].split()} <= names
    for name, value in (
        ("expert.flow_time_alpha", 0.0),
        ("expert.flow_time_min", 1.0),
        ("conditioning.advantage_stats_momentum", 0.0),
        ("conditioning.advantage_clip", -1.0),
        ("advantage_horizon", "forever"),
        ("n_action_steps", 5),  # > chunk_size 4
    ):
        with pytest.raises(ValueError, match=re.escape(name)):
            tiny_config(**option(name, value))


# --- The config's shape: flat seed options, option groups, and the migration of the flat layout ----------
SEED_OPTIONS = dict(  # the seed spec's 18 options and their defaults, plus three the docs name flat
    vlm_model_name="tiny",
    chunk_size=16,
    n_action_steps=16,
    iql_expectile=None,  # filled by iql_preset ("balanced": 0.7) and saved unset
    iql_temperature=None,  # likewise (0.5)
    iql_discount=0.99,
    demo_weight=1.0,
    auto_weight=1.0,
    intervention_weight=2.0,
    freeze_vlm=False,
    freeze_vision_encoder=False,
    train_expert_only=False,
    q_lr=3e-4,
    v_lr=3e-4,
    policy_lr=3e-5,
    num_inference_steps=10,
    use_advantage_conditioning=None,  # filled by mode (recap: True) and saved unset
    advantage_scale=1.0,
    cfg_beta=1.0,
    advantage_n_step=50,
    mode=None,
)


def train_cli(monkeypatch, *args: str):
    """The TrainPipelineConfig stock `lerobot-train` builds from `args` (its own parser.wrap and validate)."""
    import sys

    from lerobot.configs import parser
    from lerobot.configs.train import TrainPipelineConfig

    @parser.wrap()
    def main(cfg: TrainPipelineConfig) -> TrainPipelineConfig:
        cfg.validate()
        return cfg

    monkeypatch.setattr(
        sys, "argv", ["lerobot-train", "--dataset.repo_id=local/x", "--policy.push_to_hub=false", *args]
    )
    return main()


def test_at_most_45_own_top_level_fields_and_the_seed_options_stay_flat():
    from dataclasses import MISSING, fields

    own = PiStarRECAPConfig.__dict__["__annotations__"]
    assert len(own) <= 45, sorted(own)
    defaults = {f.name: f.default for f in fields(PiStarRECAPConfig) if f.default is not MISSING}
    assert {name: defaults[name] for name in SEED_OPTIONS} == SEED_OPTIONS


def test_option_groups_parse_from_the_lerobot_train_command_line(monkeypatch):
    cfg = train_cli(
        monkeypatch,
        "--policy.type=pi_star_recap",
        "--policy.device=cpu",
        "--policy.expert.width=64",
        "--policy.expert.heads=4",
        "--policy.conditioning.negative_weight=0",
        "--policy.optim.fused=false",
        "--policy.cfg_beta=1.5",
    )
    policy = cfg.policy
    assert (policy.expert.width, policy.expert.heads, policy.expert.depth) == (64, 4, 6)
    assert policy.conditioning.negative_weight == 0.0 and policy.optim.fused is False
    assert policy.cfg_beta == 1.5 and policy.get_optimizer_preset().fused is False


def test_option_groups_round_trip_through_config_json(tmp_path):
    import json

    from lerobot.configs import PreTrainedConfig

    config = tiny_config(critic={"value_num_bins": 21}, runtime={"on_nonfinite": "skip"}, cfg_beta=2.0)
    config._save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["critic"]["value_num_bins"] == 21 and "critic_hidden_dim" not in saved
    loaded = PreTrainedConfig.from_pretrained(tmp_path)
    assert loaded == config


def test_a_flat_config_json_of_earlier_releases_loads_into_the_groups(tmp_path):
    """Every old flat key lands in its group (MOVED); the value-label options are dropped; a group value given
    on the command line over the old checkpoint wins."""
    flat_layout_checkpoint(tmp_path)
    loaded = PiStarRECAPConfig.from_pretrained(tmp_path)
    assert loaded == tiny_config(expert={"width": 32})
    tuned = PiStarRECAPConfig.from_pretrained(tmp_path, cli_overrides=["--expert.width=16"])
    assert tuned.expert.width == 16 and tuned.expert.depth == 2


def flat_layout_checkpoint(folder):
    """A tiny checkpoint whose config.json (and train_config.json's policy) use the flat layout of earlier
    releases: every grouped option under its old name (MOVED)."""
    import json

    from lerobot_policy_pi_star_recap.configuration_pi_star_recap import GROUPS, MOVED

    tiny_config()._save_pretrained(folder)
    saved = json.loads((folder / "config.json").read_text())
    flat = {k: v for k, v in saved.items() if k not in GROUPS}
    flat.update({old: saved[new.split(".")[0]][new.split(".")[1]] for old, new in MOVED.items()})
    flat.update(cut_at_takeovers=True, negative_before_takeover=20, expert_width=32)
    (folder / "config.json").write_text(json.dumps(flat))
    (folder / "train_config.json").write_text(json.dumps({"steps": 10, "policy": flat}))
    return flat


def test_migrate_makes_an_old_checkpoint_readable_by_stock_lerobot(tmp_path, capsys):
    """Stock `--policy.path` (draccus) refuses the flat layout; after `pi-star-recap migrate` it reads the
    same options, the originals are kept beside, and a second run changes nothing."""
    import json

    from lerobot.configs.policies import PreTrainedConfig

    from lerobot_policy_pi_star_recap.cli import main

    folder = tmp_path / "run" / "checkpoints" / "000010" / "pretrained_model"
    folder.mkdir(parents=True)
    flat = flat_layout_checkpoint(folder)
    (tmp_path / "run" / "checkpoints" / "last").symlink_to("000010")  # as lerobot-train links it
    with pytest.raises(Exception, match="expert_width"):
        PreTrainedConfig.from_pretrained(folder)

    assert main(["migrate", str(tmp_path / "run"), "--dry-run"]) == 0
    assert "would migrate" in capsys.readouterr().out
    assert json.loads((folder / "config.json").read_text()) == flat  # nothing written

    assert main(["migrate", str(tmp_path / "run")]) == 0
    assert capsys.readouterr().out.splitlines() == [f"migrated {folder}"]  # once, not again through last
    assert PreTrainedConfig.from_pretrained(folder) == tiny_config(expert={"width": 32})
    train_policy = json.loads((folder / "train_config.json").read_text())["policy"]
    assert train_policy["expert"]["width"] == 32 and "expert_width" not in train_policy
    assert json.loads((folder / "config.json.flat-layout").read_text()) == flat

    assert main(["migrate", str(folder)]) == 0
    assert capsys.readouterr().out.startswith("already current:")


def test_migrate_refuses_what_is_not_a_checkpoint(tmp_path, capsys):
    from lerobot_policy_pi_star_recap.cli import main

    assert main(["migrate", str(tmp_path)]) == 2
    assert "no config.json here" in capsys.readouterr().err


def test_lerobot_train_fine_tunes_a_checkpoint_with_a_group_option(tmp_path, monkeypatch):
    tiny_config()._save_pretrained(tmp_path)
    cfg = train_cli(monkeypatch, f"--policy.path={tmp_path}", "--policy.conditioning.dropout=0.1")
    assert cfg.policy.conditioning.dropout == 0.1 and cfg.policy.expert.width == 64


def test_an_unknown_key_in_config_json_says_where_options_live(tmp_path):
    import json

    tiny_config()._save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**saved, "expert_widht": 8}))
    with pytest.raises(
        ValueError, match=r"no option `expert_widht` \(did you mean `expert.width`.*<group>.<field>"
    ):
        PiStarRECAPConfig.from_pretrained(tmp_path)
    saved["expert"]["size"] = 8
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match=r"no option `expert.size`"):
        PiStarRECAPConfig.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    ("flags", "cut", "before"),
    [([], False, 0), (["--cut-at-takeovers", "--negative-before-takeover=2"], True, 2)],
)
def test_value_label_takeover_flags_reach_the_labelling(flags, cut, before, tmp_path, monkeypatch):
    """`cut_at_takeovers` / `negative_before_takeover` left the config: they are value-label's flags (off by
    default), and each reaches the code that computes the advantages and the forced negatives."""
    import numpy as np
    from conftest import annotate, make_source, run_cli

    from lerobot_policy_pi_star_recap.commands import value
    from lerobot_policy_pi_star_recap.evaluation.predictions import EpisodePredictions
    from lerobot_policy_pi_star_recap.rl import advantage

    root = tmp_path / "recap"
    annotate(make_source(tmp_path / "source", [4, 4]), root, "--all-success")
    episodes = [
        EpisodePredictions(
            e, np.arange(4) + 4 * e, *np.zeros((3, 4), dtype=np.int64), -np.ones(4), 1.0, True, np.zeros(4)
        )
        for e in range(2)
    ]
    monkeypatch.setattr(
        value, "predict_out_of_sample", lambda *_: (tiny_config(mode="paper"), episodes, {0: 0, 1: 0})
    )
    seen: dict[str, list] = {"cut": [], "before": []}
    real_advantage, real_before = EpisodePredictions.advantage, advantage.frames_before_takeovers

    def recorded_advantage(self, estimator, n_step, cut_at_takeovers=False):
        seen["cut"].append(cut_at_takeovers)
        return real_advantage(self, estimator, n_step, cut_at_takeovers)

    def recorded_before(intervention, frames):
        seen["before"].append(frames)
        return real_before(intervention, frames)

    monkeypatch.setattr(EpisodePredictions, "advantage", recorded_advantage)
    monkeypatch.setattr(advantage, "frames_before_takeovers", recorded_before)
    argv = ["value-label", "--value.path", tmp_path, "--input", root, "--output", tmp_path / "out", *flags]
    assert run_cli(*argv) == 0
    assert seen == {"cut": [cut, cut], "before": [before, before]}
