"""loop/arms.py: the registries agree with themselves and with hand-written flags, and the episodes an arm
selects (successful, top return, one operator's)."""

from __future__ import annotations

import json

import pytest
from synthetic import make_dataset

from lerobot_policy_pi_star_recap.loop.arms import (
    DATA,
    EPISODES,
    FINE_TUNING_ARMS,
    FROM_SCRATCH_ARMS,
    STOCK_ARMS,
    Arm,
    default_arms,
    episode_selection,
    operator_episodes,
    successful_episodes,
    top_return_episodes,
)

REGISTRIES = {"fine-tuning": FINE_TUNING_ARMS, "from scratch": FROM_SCRATCH_ARMS, "stock": STOCK_ARMS}
LABELLED_RECAP = (
    "--policy.use_advantage_conditioning=true",
    "--policy.advantage_estimator=mc_distributional",
    "--policy.advantage_source=dataset",
)
BC = ("--policy.use_advantage_weighting=false", "--policy.use_advantage_conditioning=false")


@pytest.mark.parametrize("arms", REGISTRIES.values(), ids=REGISTRIES)
def test_every_registry_is_keyed_by_its_arms_names_and_iterates_arms_it_has(arms):
    for name, arm in arms.items():
        assert arm.name == name and arm.data in DATA and arm.episodes in EPISODES
        assert arm.iterates is None or (arm.iterates in arms and arm.name == f"{arm.iterates}_iter2")
        assert len(set(arm.betas)) == len(arm.betas)
        assert all(flag.startswith("--policy.") for flag in arm.flags)  # the data is chosen otherwise
    assert default_arms(arms) == [name for name in arms if not arms[name].probe]


def test_fine_tuning_arms_by_hand():
    arms = FINE_TUNING_ARMS
    assert default_arms(arms) == [
        "null_control", "bc", "filtered_bc", "return_filtered_bc", "dagger", "awr", "recap_iql", "recap_paper",
    ]  # fmt: skip
    assert arms["null_control"].flags == BC and arms["null_control"].data == "demos"
    assert arms["filtered_bc"].flags == (*BC, "--policy.intervention_weight=1", "--policy.success_only=true")
    assert arms["return_filtered_bc"].episodes == "top_third_return"
    assert arms["recap_paper"].flags == LABELLED_RECAP and arms["recap_paper"].data == "labelled"
    assert arms["recap_paper"].betas == (1.0, 1.5, 2.5)
    # probes: their arm's flags and data plus one change, no guidance unless they say so
    for base in ("recap_paper", "recap_outcome"):
        probe = arms[f"{base}_negative_weight0"]
        assert probe.flags == (*arms[base].flags, "--policy.conditioning.negative_weight=0") and probe.probe
        assert probe.data == arms[base].data and probe.betas == (None,)
    assert arms["recap_outcome"].flags == LABELLED_RECAP and arms["recap_outcome"].data == "outcome"
    guided = arms["recap_paper_negative_weight0_guided"]
    assert guided.flags == (
        *arms["recap_paper_negative_weight0"].flags,
        "--policy.conditioning.unconditional_negative_weight=1",
    )
    assert guided.betas == arms["recap_paper"].betas and guided.data == "labelled"
    assert arms["recap_paper_demo_weight"].betas == (1.0, 1.5)
    assert arms["recap_paper_state_clip"].flags[-1] == "--policy.normalization.state_clip=5"
    for base in ("recap_paper", "filtered_bc", "bc"):  # an iterated arm trains like its base, on two rounds
        iterated = arms[f"{base}_iter2"]
        assert (iterated.flags, iterated.data, iterated.iterates) == (arms[base].flags, arms[base].data, base)
        assert iterated.probe
    assert arms["recap_paper_iter2"].betas == (1.0, 1.5, 2.5)


def test_from_scratch_and_stock_arms_by_hand():
    arms = FROM_SCRATCH_ARMS
    assert default_arms(arms) == ["bc", "return_filtered_bc", "oracle_bc", "recap_paper", "awr", "recap_iql"]
    assert {arms[n].data for n in ("bc", "return_filtered_bc", "oracle_bc", "awr", "recap_iql")} == {"demos"}
    assert arms["oracle_bc"].episodes == "better_operator" and arms["bc"].flags == BC
    assert arms["recap_iql"].flags == ("--policy.use_advantage_conditioning=true",)
    assert arms["recap_iql"].betas == arms["recap_paper"].betas == (1.0, 1.5, 2.5)
    assert [(a.name, a.flags, a.data, a.episodes) for a in STOCK_ARMS.values()] == [
        ("null_control", (), "demos", "all"),
        ("bc", (), "mixed", "all"),
        ("filtered_bc", (), "mixed", "successful"),
        ("recap_prompt", (), "tagged", "all"),
    ]


def test_an_evaluation_only_arm_trains_exactly_what_it_evaluates():
    """recap_paper_unconditional evaluates recap_paper's checkpoint at beta 0: if that checkpoint is missing
    it is trained under recap_paper's name, so the flags, data and episodes must be recap_paper's."""
    for registry_ in REGISTRIES.values():
        for arm in (a for a in registry_.values() if a.evaluates):
            trained = registry_[arm.evaluates]
            assert (arm.flags, arm.data, arm.episodes) == (trained.flags, trained.data, trained.episodes)
            assert arm.probe and arm.name not in default_arms(registry_)
    diagnostic = FROM_SCRATCH_ARMS["recap_paper_unconditional"]
    assert diagnostic.cells(0) == [(0.0, "recap_paper_unconditional_beta0.0_seed0")]


def test_cells_name_each_guided_evaluation():
    arm = FINE_TUNING_ARMS["recap_paper"]
    assert arm.cells(2) == [
        (1.0, "recap_paper_beta1.0_seed2"),
        (1.5, "recap_paper_beta1.5_seed2"),
        (2.5, "recap_paper_beta2.5_seed2"),
    ]
    assert FINE_TUNING_ARMS["bc"].cells(0) == [(None, "bc_seed0")]
    with pytest.raises(ValueError, match="unknown"):
        Arm("x", data="everything")


def test_filtered_bc_keeps_the_successful_episodes(tmp_path):
    root = make_dataset(
        tmp_path / "mixed", ["demo", "auto", "auto", "intervention"], successes=[True, False, True, False]
    )
    assert successful_episodes(root) == [0, 2]
    assert episode_selection(STOCK_ARMS["filtered_bc"], root) == ("--dataset.episodes=[0,2]",)
    assert episode_selection(STOCK_ARMS["bc"], root) == ()
    failed = make_dataset(tmp_path / "failed", ["auto", "auto"], successes=[False, False])
    with pytest.raises(SystemExit, match="no successful episode"):
        successful_episodes(failed)


def test_return_filtered_bc_takes_the_top_third_by_return(tmp_path):
    # make_dataset: -1 per frame; a failure's last frame -C_fail. Lengths differ via successes only, so
    # the successful episodes (return -9) outrank the failed ones.
    root = make_dataset(tmp_path / "d", ["demo"] * 6, successes=[False, True, False, True, True, False])
    assert top_return_episodes(root) == [1, 3]  # the top third of 6; ties to the lower index
    assert top_return_episodes(root, share=0.5) == [1, 3, 4]
    assert top_return_episodes(root, share=0.01) == [1]  # at least one


def test_the_oracle_sees_the_better_operators_episodes(tmp_path):
    root = make_dataset(tmp_path / "demos", ["demo"] * 4)
    records = [{"operator": name} for name in ("better", "okay", "better", "worse")]
    (root / "meta" / "recap_collect.json").write_text(json.dumps({"episodes": records}))
    assert operator_episodes(root, "better") == [0, 2]
    oracle = FROM_SCRATCH_ARMS["oracle_bc"]
    assert episode_selection(oracle, tmp_path / "labelled", root) == ("--dataset.episodes=[0,2]",)
    with pytest.raises(SystemExit, match="no episode of operator"):
        operator_episodes(root, "expert")
