"""`pi-star-recap collect` and the `metaworld_recap` env: datasets that load and train, masks that match
who acted, parallel envs that reproduce the serial run, a policy-driven collection, and lerobot-eval."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import collect_args, read_frames, run_cli, run_tool
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from lerobot_policy_pi_star_recap.data.recap_table import RecapTable
from lerobot_policy_pi_star_recap.data.writing import RewardScheme
from lerobot_policy_pi_star_recap.sim.actors import Actor, Degradation, ExpertActor
from lerobot_policy_pi_star_recap.sim.collector import Collector, InterventionRule
from lerobot_policy_pi_star_recap.sim.config import MetaWorldRecapEnvConfig
from lerobot_policy_pi_star_recap.sim.pool import EnvPool


def episodes(root) -> list[pd.DataFrame]:
    return [group for _, group in read_frames(root).groupby("episode_index")]


def expert_actions(task: str, states: np.ndarray) -> np.ndarray:
    """The scripted expert's actions recomputed from the stored 39-d states."""
    from metaworld.policies import ENV_POLICY_MAP

    expert = ENV_POLICY_MAP[task]()
    return np.stack([np.clip(expert.get_action(s.astype(np.float64)), -1, 1) for s in states])


def check_recap_fields(episode: pd.DataFrame, c_fail: float) -> bool:
    """The paper's rewards, done and next.success of one episode; returns its success."""
    success = bool(episode["next.success"].iloc[-1])
    expected = [-1.0] * (len(episode) - 1) + [0.0 if success else -c_fail]
    assert episode["reward"].tolist() == expected
    assert episode["done"].tolist() == [False] * (len(episode) - 1) + [True]
    assert not episode["next.success"].iloc[:-1].any()
    return success


def test_demo_dataset_loads_with_the_recap_fields(collected_demo):
    dataset = LeRobotDataset("local/push_demo", root=collected_demo)
    assert dataset.meta.total_episodes == 3
    item = dataset[0]
    assert item["observation.images.corner2"].shape == (3, 32, 32)
    assert item["observation.state"].shape == (39,)
    assert item["task"] == "Push the puck to a goal"
    for stat in ("observation.state", "action", "reward"):
        assert stat in dataset.meta.stats
    for episode in episodes(collected_demo):
        assert set(episode["data_type"]) == {"demo"}
        assert not episode["intervention_mask"].any()
        assert check_recap_fields(episode, c_fail=120), "the scripted expert solves push-v3"
        assert len(episode) < 120  # episodes end at the first success
    provenance = json.loads((collected_demo / "meta" / "recap_collect.json").read_text())
    assert [e["seed"] for e in provenance["episodes"]] == [0, 1, 2]
    RecapTable.from_dataset_root(collected_demo, chunk_size=4, discount=0.99, n_step=4)


class StuckActor(Actor):
    """A policy that never moves: its frames have exactly zero actions, and it never makes progress."""

    def propose(self, observations, expert_actions):
        return {slot: np.zeros(4, np.float32) for slot in observations}


class RandomActor(Actor):
    """Uniform random actions (far from the expert's)."""

    def __init__(self):
        self.rng = np.random.default_rng(0)

    def propose(self, observations, expert_actions):
        return {slot: self.rng.uniform(-0.9, 0.9, 4).astype(np.float32) for slot in observations}


class Recorder:
    """Stands in for a LeRobotDataset being written."""

    def __init__(self):
        self.episodes: list[list[dict]] = [[]]

    def add_frame(self, frame: dict) -> None:
        self.episodes[-1].append(frame)

    def save_episode(self) -> None:
        self.episodes.append([])


def run_collector(task: str, actor: Actor, rule: InterventionRule) -> list[tuple[list[dict], object]]:
    """3 episodes of 40 steps on 2 envs; (frames, record) per saved episode."""
    config = MetaWorldRecapEnvConfig(task=task, cameras="", episode_length=40)
    recorder = Recorder()
    collector = Collector(config, actor, "intervention", RewardScheme(), rule)
    with EnvPool(config.gym_kwargs, 2, processes=False) as pool:
        records, discarded = collector.run(pool, recorder, 3)
    assert discarded == []  # every episode is kept unless only successes are asked for
    return list(zip(recorder.episodes[:-1], records, strict=True))


def collect_successes(envs: int, episodes: int, max_attempts: int):
    """Scripted-expert demos of sweep-into-v3 cut at 50 steps, where the expert succeeds on env seeds 3, 5
    and 6 of 0-9 only; (saved episodes, records, discarded records)."""
    config = MetaWorldRecapEnvConfig(task="sweep-into-v3", cameras="", episode_length=50)
    recorder = Recorder()
    collector = Collector(config, ExpertActor(Degradation(), seed=0), "demo", RewardScheme())
    with EnvPool(config.gym_kwargs, envs, processes=False) as pool:
        records, discarded = collector.run(pool, recorder, episodes, max_attempts)
    return recorder.episodes[:-1], records, discarded


@pytest.mark.parametrize("envs", [1, 2])
def test_successes_only_keeps_the_first_successful_seeds_whatever_the_envs(envs):
    saved, records, discarded = collect_successes(envs, episodes=2, max_attempts=10)
    assert [r.seed for r in records] == [3, 5] and all(r.success for r in records)
    assert sorted(r.seed for r in discarded) == [0, 1, 2, 4] and not any(r.success for r in discarded)
    assert [len(frames) for frames in saved] == [r.length for r in records]  # only the kept are written
    assert all(frames[-1]["next.success"][0] for frames in saved)


def test_cli_successes_only_records_what_it_discarded(tmp_path, capsys):
    out = tmp_path / "sweep_demos"
    args = collect_args(
        out, "demo", "sweep-into-v3", 2, "--episode-length=50", "--cameras=", "--successes-only"
    )
    assert run_cli(*args) == 0
    assert "4 failed episodes discarded (--successes-only)" in capsys.readouterr().out
    assert [check_recap_fields(e, c_fail=50) for e in episodes(out)] == [True, True]
    provenance = json.loads((out / "meta" / "recap_collect.json").read_text())
    assert [e["seed"] for e in provenance["episodes"]] == [3, 5]
    assert [e["seed"] for e in provenance["discarded_failures"]] == [0, 1, 2, 4]
    failed = tmp_path / "too_short"
    args = collect_args(
        failed, "demo", "sweep-into-v3", 1, "--episode-length=5", "--cameras=", "--successes-only"
    )
    assert run_cli(*args) == 2
    assert "succeeded, 1 were asked for: raise --episode-length" in capsys.readouterr().err
    assert not failed.exists()  # nothing half-written


def test_successes_only_gives_up_with_a_clear_error():
    with pytest.raises(ValueError, match=r"only 1 of 4 demo episodes .* succeeded, 2 were asked for"):
        collect_successes(envs=1, episodes=2, max_attempts=4)


def test_intervention_mask_is_exactly_the_frames_the_expert_acted_on():
    # No progress (a dense-reward gain of 1) for 5 actor steps -> the expert acts for 4 steps -> the actor
    # again, and so on.
    rule = InterventionRule(triggers=("stall",), stall_steps=5, stall_tolerance=1.0, handback_steps=4)
    for frames, record in run_collector("button-press-v3", StuckActor(), rule):
        mask = np.array([f["intervention_mask"][0] for f in frames])
        actions = np.stack([f["action"] for f in frames])
        expected = np.tile([False] * 6 + [True] * 4, 5)[: len(frames)]
        np.testing.assert_array_equal(mask, expected)
        np.testing.assert_array_equal(actions[~mask], 0.0)  # the actor's frames
        states = np.stack([f["observation.state"] for f in frames])
        np.testing.assert_allclose(actions[mask], expert_actions("button-press-v3", states[mask]), atol=1e-3)
        assert np.abs(actions[mask]).sum(axis=1).min() > 0.1  # expert frames are not zero actions
        assert record.expert_frames == mask.sum() and record.takeovers == 4
        assert record.data_type == frames[0]["data_type"] == "intervention"


def test_disagreement_and_random_triggers():
    # The random actor always disagrees with the expert: it takes over on the first frame, for good.
    rule = InterventionRule(triggers=("disagreement",), disagreement=0.1)
    for frames, record in run_collector("drawer-open-v3", RandomActor(), rule):
        assert all(f["intervention_mask"][0] for f in frames) and record.takeovers == 1
    # A random trigger that never fires leaves the actor alone: "auto" episodes without expert frames.
    rule = InterventionRule(triggers=("random",), random_prob=0.0)
    for frames, record in run_collector("drawer-open-v3", RandomActor(), rule):
        assert record.data_type == "auto" and record.expert_frames == 0 and record.takeovers == 0
        assert not any(f["intervention_mask"][0] for f in frames)
        assert {f["data_type"] for f in frames} == {"auto"}
    # One that always fires: the expert acts from the first frame.
    rule = InterventionRule(triggers=("random",), random_prob=1.0)
    for frames, _ in run_collector("drawer-open-v3", RandomActor(), rule):
        assert all(f["intervention_mask"][0] for f in frames)


def test_cli_intervention_with_a_degraded_expert(tmp_path, capsys):
    out = tmp_path / "drawer_intervention"
    args = collect_args(
        out, "intervention", "drawer-open-v3", 3, "--episode-length=100", "--trigger=stall,disagreement",
        "--handback-steps=8", "--seed=5",
    )  # fmt: skip
    assert run_cli(*args) == 0
    summary = capsys.readouterr().out
    assert "Collected 3 intervention episodes of drawer-open-v3" in summary
    provenance = json.loads((out / "meta" / "recap_collect.json").read_text())["episodes"]
    for episode, record in zip(episodes(out), provenance, strict=True):
        mask = episode["intervention_mask"].to_numpy()
        assert (
            set(episode["data_type"]) == {"intervention" if mask.any() else "auto"} == {record["data_type"]}
        )
        assert mask.sum() == record["expert_frames"]
        assert record["success"] == check_recap_fields(episode, c_fail=100)
        states, actions = np.stack(episode["observation.state"]), np.stack(episode["action"])
        np.testing.assert_allclose(actions[mask], expert_actions("drawer-open-v3", states[mask]), atol=1e-3)
    counts = {t: sum(r["data_type"] == t for r in provenance) for t in ("auto", "intervention")}
    assert f"{'intervention':<14}{counts['intervention']:>9}" in summary
    LeRobotDataset("local/drawer", root=out)


@pytest.mark.slow  # two collections, one in worker processes
def test_parallel_envs_reproduce_the_serial_run(tmp_path):
    """Episodes are seeded per env seed, so worker processes give the same episodes as one env."""
    roots = {}
    for num_envs in (1, 2):
        roots[num_envs] = tmp_path / f"auto_{num_envs}"
        args = collect_args(
            roots[num_envs], "auto", "button-press-v3", 3, "--cameras=", "--episode-length=60",
            f"--num-envs={num_envs}",
        )  # fmt: skip
        assert run_cli(*args) == 0

    def by_seed(root):
        seeds = [
            e["seed"] for e in json.loads((root / "meta" / "recap_collect.json").read_text())["episodes"]
        ]
        return dict(zip(seeds, episodes(root), strict=True))

    serial, parallel = by_seed(roots[1]), by_seed(roots[2])
    assert sorted(serial) == sorted(parallel) == [0, 1, 2]
    for seed in serial:
        for column in ("action", "observation.state"):
            np.testing.assert_array_equal(np.stack(serial[seed][column]), np.stack(parallel[seed][column]))
        assert serial[seed]["reward"].tolist() == parallel[seed]["reward"].tolist()
        assert set(serial[seed]["data_type"]) == {"auto"} and not serial[seed]["intervention_mask"].any()


def test_lerobot_layout_matches_the_stock_metaworld_env(tmp_path):
    from lerobot.envs.configs import MetaworldEnv
    from lerobot.envs.utils import env_to_policy_features

    out = tmp_path / "stock_names"
    assert run_cli(*collect_args(out, "demo", "metaworld-button-press-v3", 1, "--layout=lerobot")) == 0
    features = LeRobotDataset("local/stock", root=out).meta.features
    stock = env_to_policy_features(MetaworldEnv(task="button-press-v3"))
    assert {k for k in features if k.startswith("observation.")} == {k for k in stock if k != "action"}
    assert features["observation.state"]["shape"] == stock["observation.state"].shape == (4,)
    assert features["observation.image"]["shape"][2] == stock["observation.image"].shape[0] == 3


class ExpertPolicy(torch.nn.Module):
    """The scripted expert behind LeRobot's policy interface, reading the 39-d observation.state."""

    def __init__(self, task: str):
        super().__init__()
        self.task = task

    def reset(self) -> None:
        pass

    def select_action(self, batch: dict) -> torch.Tensor:
        return torch.from_numpy(expert_actions(self.task, batch["observation.state"].numpy())).float()


def test_lerobot_eval_rollout_sees_successes_and_stops_at_the_step_limit():
    """LeRobot's own rollout loop (lerobot-eval) on the vector env this plugin registers."""
    from lerobot.scripts.lerobot_eval import rollout

    config = MetaWorldRecapEnvConfig(task="button-press-v3", image_size=16, episode_length=30)
    env = config.create_envs(n_envs=2)["metaworld_recap"][0]
    assert env.call("task_description") == ("Press a button", "Press a button")
    identity = lambda x: x  # noqa: E731
    try:
        data = rollout(
            env, ExpertPolicy("button-press-v3"), identity, identity, identity, identity, seeds=[0, 1]
        )
    finally:
        env.close()
    assert data["done"].shape == (2, 30) and data["done"][:, -1].all()
    assert not data["success"].any(), "the expert needs ~60 steps: 30 is a failure"

    config = MetaWorldRecapEnvConfig(task="button-press-v3", cameras="", episode_length=150)
    env = config.create_envs(n_envs=2, use_async_envs=False)["metaworld_recap"][0]
    try:
        data = rollout(
            env, ExpertPolicy("button-press-v3"), identity, identity, identity, identity, seeds=[0, 1]
        )
    finally:
        env.close()
    first_done = data["done"].int().argmax(dim=1)
    assert data["success"].any(dim=1).all() and (first_done < 100).all()
    assert data["success"][torch.arange(2), first_done].all(), "success is reported on the terminal step"


def test_recap_reward_counts_steps_to_success():
    """--env.reward=recap: -1 per step and 0 on the success step, so lerobot-eval's summed reward of a
    successful episode is 1 - (steps to success) and a failure sums to -episode_length."""
    from lerobot.scripts.lerobot_eval import rollout

    identity = lambda x: x  # noqa: E731
    for length, succeeds in ((150, True), (30, False)):
        config = MetaWorldRecapEnvConfig(
            task="button-press-v3", cameras="", episode_length=length, reward="recap"
        )
        env = config.create_envs(n_envs=1)["metaworld_recap"][0]
        try:
            data = rollout(
                env, ExpertPolicy("button-press-v3"), identity, identity, identity, identity, seeds=[0]
            )
        finally:
            env.close()
        steps = int(data["done"][0].int().argmax()) + 1
        total = float((data["reward"][0] * data["done"][0].cumsum(0).le(1)).sum())
        assert bool(data["success"][0].any()) == succeeds
        assert total == (1 - steps if succeeds else -length)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task=push-v9"], "unknown MetaWorld task 'push-v9'"),
        (["--cameras=corner9"], "unknown MetaWorld cameras ['corner9']"),
        (["--mode=demo", "--pause-prob=0.1"], "--pause-prob only apply to auto / intervention"),
        (["--mode=intervention", "--trigger=boredom"], "choose one or more of"),
        (["--layout=lerobot", "--state=full"], "exactly one camera and state 'hand'"),
    ],
)
def test_bad_collect_arguments(tmp_path, capsys, args, message):
    out = tmp_path / "never"
    base = ["collect", "--mode=auto", f"--output={out}", "--episodes=1"]
    assert run_cli(*base, *args) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_collected_data_trains_with_lerobot_train(tiny_checkpoint):
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["type"] == "pi_star_recap"
    assert set(config["input_features"]) == {"observation.state", "observation.images.corner2"}


@pytest.mark.slow
def test_policy_driven_intervention_collection(tiny_checkpoint, tmp_path):
    out = tmp_path / "policy_rollouts"
    args = collect_args(
        out, "intervention", "push-v3", 2, f"--policy={tiny_checkpoint}", "--device=cpu", "--episode-length=30",
        "--trigger=disagreement", "--disagreement=1.5", "--handback-steps=5", "--num-envs=2",
    )  # fmt: skip
    assert run_cli(*args) == 0
    for episode in episodes(out):
        mask = episode["intervention_mask"].to_numpy()
        states, actions = np.stack(episode["observation.state"]), np.stack(episode["action"])
        np.testing.assert_allclose(actions[mask], expert_actions("push-v3", states[mask]), atol=1e-3)
        assert set(episode["data_type"]) == {"intervention" if mask.any() else "auto"}


@pytest.mark.slow
def test_policy_rollouts_are_reproducible_from_the_seed(tiny_checkpoint, tmp_path):
    """The policy samples actions from noise; the same --seed must give the same episodes."""
    runs = []
    for name in ("first", "second"):
        out = tmp_path / name
        args = collect_args(
            out, "auto", "push-v3", 2, f"--policy={tiny_checkpoint}", "--device=cpu", "--episode-length=20",
            "--num-envs=2", "--seed=3",
        )  # fmt: skip
        assert run_cli(*args) == 0
        runs.append(np.concatenate([np.stack(e["action"]) for e in episodes(out)]))
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.slow
def test_a_policy_needs_the_inputs_it_was_trained_on(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "never"
    args = collect_args(out, "auto", "push-v3", 1, f"--policy={tiny_checkpoint}", "--state=hand")
    assert run_cli(*args) == 2
    assert "observation.state shape (39,) vs env (4,)" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
def test_lerobot_eval_runs_the_policy_in_metaworld_recap(tiny_checkpoint, tmp_path):
    out = tmp_path / "eval"
    run_tool(
        "lerobot-eval", f"--policy.path={tiny_checkpoint}", "--env.type=metaworld_recap", "--env.task=push-v3",
        "--env.image_size=32", "--env.episode_length=12", "--eval.n_episodes=1", "--eval.batch_size=1",
        "--policy.device=cpu", f"--output_dir={out}",
        cwd=tmp_path,
    )  # fmt: skip
    info = json.loads((out / "eval_info.json").read_text())
    assert info["overall"]["n_episodes"] == 1 and "pc_success" in info["overall"]


def test_video_storage_keeps_the_frames_and_merges(tmp_path):
    """--video: the same episodes as PNG storage, frames within the YUV rounding, and the tools read it."""
    roots = {}
    for name, extra in (("png", ()), ("video", ("--video",)), ("video2", ("--video", "--seed=5"))):
        roots[name] = tmp_path / name
        assert run_cli(*collect_args(roots[name], "demo", "push-v3", 2, "--episode-length=40", *extra)) == 0
    png, video = (LeRobotDataset(f"local/{n}", root=roots[n]) for n in ("png", "video"))
    camera = "observation.images.corner2"
    assert video.meta.features[camera]["dtype"] == "video" and camera in video.meta.video_keys
    assert not (roots["video"] / "images").exists()  # the encoder's staging folder is gone
    encoding = video.meta.features[camera]["info"]  # lossless, every frame a keyframe
    assert (
        encoding["video.codec"],
        encoding["video.pix_fmt"],
        encoding["video.crf"],
        encoding["video.g"],
    ) == (
        "h264",
        "yuv444p",
        0,
        1,
    )
    assert png.meta.features[camera]["dtype"] == "image"
    assert len(png) == len(video)
    for i in range(0, len(png), 9):
        a, b = png[i], video[i]
        np.testing.assert_array_equal(a["action"].numpy(), b["action"].numpy())
        assert (a[camera] - b[camera]).abs().max().item() <= 2 / 255 + 1e-6

    merged = tmp_path / "merged"
    assert run_cli("merge", "--inputs", str(roots["video"]), str(roots["video2"]), f"--output={merged}") == 0
    both = LeRobotDataset("local/merged", root=merged, delta_timestamps={"action": [0.0, 1 / 80]})
    second = LeRobotDataset("local/video2", root=roots["video2"])
    assert both.meta.total_episodes == 4 and len(both) == len(video) + len(second)
    last, expected = both[len(both) - 1], second[len(second) - 1]
    torch.testing.assert_close(last[camera], expected[camera], rtol=0, atol=2 / 255 + 1e-6)
    assert last["action"].shape == (2, 4)  # the chunk query reads actions, not frames
    mixed = tmp_path / "mixed"
    assert run_cli("merge", "--inputs", str(roots["png"]), str(roots["video"]), f"--output={mixed}") == 2
    assert not mixed.exists()
