"""Reliability: exact resume, identical ranks under Accelerate (2 CPU processes), atomic checkpoints,
non-finite detection, and clear errors for bad data or checkpoints."""

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_tool
from safetensors.torch import load_file
from synthetic import TINY_CLI, attach_table, episode_columns, make_batch, make_dataset, tiny_config

from lerobot_policy_pi_star_recap import PiStarRECAPPolicy
from lerobot_policy_pi_star_recap.data.recap_table import RecapTable
from lerobot_policy_pi_star_recap.errors import RecapDataError


def train_args(root: Path, out: Path, steps: int, save_freq: int) -> list[str]:
    return [
        "--policy.type=pi_star_recap",
        "--dataset.repo_id=local/synthetic",
        f"--dataset.root={root}",
        f"--output_dir={out}",
        f"--steps={steps}",
        f"--save_freq={save_freq}",
        "--batch_size=4",
        "--log_freq=2",
        "--seed=3",
        *TINY_CLI,
    ]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    work = tmp_path_factory.mktemp("reliability")
    return work, make_dataset(
        work / "data",
        ["demo", "auto", "intervention", "demo"],
        length=12,
        successes=[True, False, True, True],
    )


@pytest.mark.slow
def test_resume_continues_exactly(dataset):
    """6 steps straight == 3 steps, resume, 3 more steps: same weights (incl. target networks and
    advantage statistics) and same optimizer state, bit for bit on CPU (tolerance 0). The straight run is
    the one resumed: it saved at step 3 on its way to 6, and its step-6 checkpoint is set aside."""
    work, root = dataset
    run = work / "run"
    run_tool("lerobot-train", *train_args(root, run, 6, 3), cwd=work, timeout=900)
    checkpoints = run / "checkpoints"
    straight = shutil.move(checkpoints / "000006", work / "straight_000006")
    # Now an interrupted run: it saved at step 3 and died before step 6 was written.
    (checkpoints / "last").unlink()
    (checkpoints / "last").symlink_to("000003")
    config = checkpoints / "last" / "pretrained_model" / "train_config.json"
    run_tool("lerobot-train", "--resume=true", f"--config_path={config}", cwd=work, timeout=900)
    for relative in ("pretrained_model/model.safetensors", "training_state/optimizer_state.safetensors"):
        a = load_file(Path(straight) / relative)
        b = load_file(checkpoints / "000006" / relative)
        assert a.keys() == b.keys()
        difference = max((a[k].double() - b[k].double()).abs().max().item() for k in a)
        assert difference == 0.0, relative
    weights = load_file(checkpoints / "000006" / "pretrained_model" / "model.safetensors")
    assert (
        any(k.startswith("model.critic.q_target") for k in weights)
        and weights["model.num_updates"].item() == 6
    )


@pytest.mark.slow
def test_two_processes_under_accelerate_keep_identical_weights(dataset):
    work, root = dataset
    prefix = work / "ddp"
    run_tool(
        "accelerate",
        "launch",
        "--multi_gpu",
        "--num_processes=2",
        "--num_machines=1",
        "--mixed_precision=no",
        "--dynamo_backend=no",
        Path(__file__).parent / "ddp_worker.py",
        prefix,
        *train_args(root, work / "ddp_run", 4, 4),
        cwd=work,
        timeout=900,
    )
    ranks = [json.loads(Path(f"{prefix}.rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world_size"] == 2 and ranks[0]["updates"] == 4
    assert ranks[0]["digests"] == ranks[1]["digests"]  # parameters, target networks and statistics
    assert any(k.startswith("model.critic.q_target") for k in ranks[0]["digests"])
    assert (work / "ddp_run" / "tensorboard").is_dir()


def test_crash_while_saving_leaves_no_truncated_weights(tmp_path, monkeypatch):
    policy = PiStarRECAPPolicy(tiny_config())
    policy.save_pretrained(tmp_path / "ckpt")
    good = (tmp_path / "ckpt" / "model.safetensors").read_bytes()

    import lerobot.policies.pretrained as pretrained

    def crash(model, filename, *args, **kwargs):
        Path(filename).write_bytes(b"partial")
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(pretrained, "save_model_as_safetensor", crash)
    with pytest.raises(KeyboardInterrupt):
        policy.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "model.safetensors").read_bytes() == good
    assert not (tmp_path / "ckpt" / ".saving").exists()
    PiStarRECAPPolicy.from_pretrained(tmp_path / "ckpt")


def _poisoned_policy(**overrides):
    torch.manual_seed(0)
    policy = PiStarRECAPPolicy(tiny_config(**overrides))
    attach_table(policy, episode_columns(["demo", "auto"], length=10))
    batch = make_batch(policy.config, [0, 12])
    batch["action"][0, 0, 0] = float("nan")
    return policy, batch


def _train_step(policy, optimizer, batch) -> torch.Tensor:
    loss, _ = policy(batch)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    policy.update()
    return loss


def test_nonfinite_loss_stops_at_the_next_log_step_with_the_metric_named():
    """Steps read nothing back from the device: the window is checked when it is read, on log steps."""
    policy, batch = _poisoned_policy()
    policy.monitor.log_freq = 2
    optimizer = torch.optim.Adam(policy.get_optim_params())
    _train_step(policy, optimizer, batch)  # step 1: no log step, no read
    good = make_batch(policy.config, [1, 13])
    with pytest.raises(FloatingPointError, match=r"non-finite \['policy_loss'.* training steps 1 to 2"):
        policy(good)  # step 2, a log step


def test_nonfinite_batch_can_be_skipped(caplog):
    """on_nonfinite=skip: the bad batch's loss reads 0, its optimizer step gets a zero gradient (no weight
    moves), and the next log step warns about both."""
    policy, batch = _poisoned_policy(runtime={"on_nonfinite": "skip"})
    policy.monitor.log_freq = 1
    optimizer = torch.optim.Adam(policy.get_optim_params())
    before = [p.detach().clone() for p in policy.parameters()]
    with caplog.at_level(logging.WARNING):
        loss = _train_step(policy, optimizer, batch)
        assert "non-finite ['policy_loss'" in caplog.text and "on_nonfinite=skip" in caplog.text
        assert loss.item() == 0.0
        grads = [p.grad for p in policy.parameters() if p.grad is not None]
        assert grads and all(torch.count_nonzero(g) == 0 for g in grads)
        assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters(), strict=True))
        caplog.clear()
        _train_step(policy, optimizer, make_batch(policy.config, [1, 13]))
    assert "a non-finite gradient in 1 optimizer step(s) before step 2" in caplog.text
    assert all(torch.isfinite(p).all() for p in policy.parameters())


def test_episodes_shorter_than_the_chunk_train():
    torch.manual_seed(0)
    policy = PiStarRECAPPolicy(tiny_config(chunk_size=8, n_action_steps=8))
    table = attach_table(policy, episode_columns(["demo", "auto", "demo"], length=3))
    out = table.lookup(torch.arange(9))
    assert out.chunk_discount.max() == 0.0  # every chunk runs past its episode's end: no bootstrap
    batch = make_batch(policy.config, [0, 4, 8])
    batch["action_is_pad"][:, 3:] = True
    loss, _ = policy(batch)
    assert torch.isfinite(loss)


def test_dataset_with_nan_states_is_refused_at_start(tmp_path):
    root = make_dataset(tmp_path / "data", ["demo"], length=6)
    from lerobot.datasets import LeRobotDatasetMetadata

    meta = LeRobotDatasetMetadata("local/data", root=root)
    meta.stats["observation.state"]["mean"] = np.full(5, np.nan)
    with pytest.raises(RecapDataError, match="observation.state' contains NaN"):
        PiStarRECAPPolicy(tiny_config(), dataset_meta=meta)


def test_dataset_with_other_dimensions_is_refused_at_start(tmp_path):
    root = make_dataset(tmp_path / "data", ["demo"], length=6)
    from lerobot.configs import FeatureType, PolicyFeature
    from lerobot.datasets import LeRobotDatasetMetadata

    meta = LeRobotDatasetMetadata("local/data", root=root)
    config = tiny_config(output_features={"action": PolicyFeature(FeatureType.ACTION, (7,))})
    with pytest.raises(RecapDataError, match=r"'action' has shape \(3,\) in the dataset but \(7,\)"):
        PiStarRECAPPolicy(config, dataset_meta=meta)


def test_checkpoint_of_another_policy_type_is_refused(tmp_path):
    from lerobot.configs import FeatureType, PolicyFeature
    from lerobot.policies.act.configuration_act import ACTConfig

    config = ACTConfig(
        device="cpu",
        input_features={"observation.state": PolicyFeature(FeatureType.STATE, (5,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (3,))},
    )
    config.save_pretrained(tmp_path / "act")
    (tmp_path / "act" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="holds a 'act' policy, not pi_star_recap"):
        PiStarRECAPPolicy.from_pretrained(tmp_path / "act")


def test_empty_dataset_is_refused(tmp_path):
    from lerobot_policy_pi_star_recap.data.columns import RecapColumns

    empty = np.array([], dtype=np.int64)
    with pytest.raises((RecapDataError, ValueError)):
        RecapTable(
            RecapColumns(empty, empty, empty, empty, np.array([]), np.array([], bool), None, None),
            chunk_size=4,
            discount=0.99,
            n_step=3,
        )
