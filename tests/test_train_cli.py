"""End to end through the stock LeRobot CLI: lerobot-train with the plugin, checkpoints, TensorBoard,
loading the checkpoint for inference, and the README's multi-stage recipe."""

import math

import pytest
import torch
from conftest import run_tool
from synthetic import IMAGE, STATE, TINY_CLI, make_dataset

# Every test starts from the one lerobot-train run of the module fixture `stage1`: one xdist group, so one
# worker builds it.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("train_cli")]
# The metrics README's "Monitoring Training" section tells users to watch.
README_METRICS = ("v_loss", "q_loss", "policy_loss", "advantage_mean")


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    work = tmp_path_factory.mktemp("train")
    root = make_dataset(work / "mixed", ["demo", "auto", "intervention", "demo"], length=12)
    out = work / "stage1"
    run_tool(
        "lerobot-train",
        "--policy.type=pi_star_recap",
        "--dataset.repo_id=local/synthetic",
        f"--dataset.root={root}",
        f"--output_dir={out}",
        "--steps=6",
        "--batch_size=4",
        "--log_freq=2",
        "--save_freq=6",
        *TINY_CLI,
        cwd=work,
    )
    return work, root, out


def test_checkpoint_and_processors_are_written(stage1):
    _, _, out = stage1
    model = out / "checkpoints" / "last" / "pretrained_model"
    for name in ("config.json", "model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json"):
        assert (model / name).is_file(), name


def test_tensorboard_has_the_readme_metrics(stage1):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, _, out = stage1
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for name in (
        *README_METRICS,
        "lr/policy",
        "lr/q",
        "lr/v",
        "advantage_std",
        "positive_fraction",
    ):
        assert name in tags, name
        values = [e.value for e in events.Scalars(name)]
        assert len(values) == 3 and all(math.isfinite(v) for v in values), name  # steps 2, 4, 6
    assert "policy_loss/intervention" in tags
    assert events.Scalars("lr/q")[0].value != events.Scalars("lr/policy")[0].value


def test_checkpoint_runs_inference_through_its_processors(stage1):
    from lerobot.policies.factory import make_pre_post_processors

    from lerobot_policy_pi_star_recap import PiStarRECAPPolicy

    _, _, out = stage1
    model = out / "checkpoints" / "last" / "pretrained_model"
    policy = PiStarRECAPPolicy.from_pretrained(model)
    preprocessor, postprocessor = make_pre_post_processors(policy.config, pretrained_path=str(model))
    observation = {STATE: torch.randn(5), IMAGE: torch.rand(3, 16, 16), "task": "push the block"}
    action = postprocessor(policy.select_action(preprocessor(observation)))
    assert action.shape == (1, 3) and torch.isfinite(action).all()


def test_stage_two_starts_from_stage_one(stage1):
    """The README's multi-stage recipe: stage 2 (RECAP on mixed data) starts from the stage-1 checkpoint."""
    work, root, out = stage1
    stage2 = work / "stage2"
    run_tool(
        "lerobot-train",
        f"--policy.path={out / 'checkpoints' / 'last' / 'pretrained_model'}",
        "--dataset.repo_id=local/synthetic",
        f"--dataset.root={root}",
        f"--output_dir={stage2}",
        "--steps=2",
        "--batch_size=4",
        "--policy.freeze_vlm=true",
        "--policy.push_to_hub=false",
        "--wandb.enable=false",
        "--num_workers=0",
        cwd=work,
    )
    from safetensors.torch import load_file

    first = load_file(out / "checkpoints" / "last" / "pretrained_model" / "model.safetensors")
    second = load_file(stage2 / "checkpoints" / "last" / "pretrained_model" / "model.safetensors")
    vlm = [k for k in first if k.startswith("model.backbone.vlm.")]
    trained = [k for k in first if k.startswith("model.flow.expert.")]
    # the frozen VLM is exactly stage 1's (so stage 2 started from it); the expert kept training
    assert vlm and all(torch.equal(first[k], second[k]) for k in vlm)
    assert any(not torch.equal(first[k], second[k]) for k in trained)


@pytest.mark.parametrize("keep", [True, False])
def test_fine_tune_on_another_dataset_starts_with_stage_one_actions(stage1, keep):
    """Stage 2 on a dataset with other statistics acts exactly like stage 1 at step 0, because it keeps
    the checkpoint's normalisation (keep_pretrained_stats); LeRobot's default re-normalises and does not."""
    from lerobot_policy_pi_star_recap.evaluation.policy_loading import load_for_fine_tuning, load_policy

    work, _, out = stage1
    checkpoint = out / "checkpoints" / "last" / "pretrained_model"
    other = make_dataset(
        work / f"shifted_{keep}", ["auto", "auto"], length=12, state_scale=5.0, state_shift=3.0
    )
    before, pre1, post1 = load_policy(checkpoint, "cpu")
    after, pre2, post2 = load_for_fine_tuning(checkpoint, other, "cpu", keep_pretrained_stats=keep)
    observation = {STATE: 3.0 + torch.randn(5), IMAGE: torch.rand(3, 16, 16), "task": "push the block"}
    noise = torch.randn(1, before.config.chunk_size, 3)
    first = post1(before.predict_action_chunk(pre1(dict(observation)), noise=noise))
    second = post2(after.predict_action_chunk(pre2(dict(observation)), noise=noise))
    assert torch.allclose(first, second, atol=1e-5) == keep
