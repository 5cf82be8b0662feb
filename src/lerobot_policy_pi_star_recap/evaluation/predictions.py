"""Run a trained policy's critics (and action sampler) over whole episodes of a dataset, without a simulator,
and turn the predictions into advantage indicators.

Shared by `pi-star-recap eval` (how good are the value function and the actions? see `metrics`) and
`pi-star-recap value-label` (write value / advantage / indicator columns for the paper's workflow).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data.recap_table import RecapTable
from ..errors import RecapDataError
from ..rl.advantage import advantage_indicator, estimated_advantage, quantile_thresholds


@dataclass
class EpisodePredictions:
    """Per-frame predictions along one episode, in the dataset's return units."""

    episode_index: int
    index: np.ndarray  # global frame indices
    data_type: np.ndarray
    intervention: np.ndarray
    task_index: np.ndarray
    reward: np.ndarray
    success: float  # 1, 0, or nan when the dataset does not say
    terminal: bool  # False: the episode was truncated (a time-out), bootstrap from its last frame
    value: np.ndarray
    q: np.ndarray | None = None
    action_mse: np.ndarray | None = None  # sampled chunk vs recorded chunk, normalised action units
    extra: dict = field(default_factory=dict)

    def advantage(self, estimator: str, n_step: int | None, cut_at_takeovers: bool = False) -> np.ndarray:
        """Per-frame advantage of this episode (`estimated_advantage`); with `cut_at_takeovers` the
        windows also stop where the expert takes over or hands back."""
        controller = self.intervention if cut_at_takeovers else None
        rewards = self.reward.astype(np.float64)
        return estimated_advantage(estimator, self.value, self.q, rewards, n_step, self.terminal, controller)


def recap_table_for(policy, root: str | Path) -> RecapTable:
    config = policy.config
    return RecapTable.from_dataset_root(
        root,
        chunk_size=config.chunk_size,
        discount=config.iql_discount,
        n_step=config.advantage_n_step,
        timeouts_truncate=config.critic.timeouts_truncate,
    )


@torch.no_grad()
def predict_episodes(
    policy,
    preprocessor,
    repo_id: str,
    root: str | Path,
    episodes: list[int],
    batch_size: int = 32,
    sample_actions: bool = False,
    seed: int = 0,
) -> list[EpisodePredictions]:
    """Values (and Q of the recorded chunk, and sampled-action error) for every frame of `episodes`."""
    from lerobot.datasets import LeRobotDataset, LeRobotDatasetMetadata

    table = recap_table_for(policy, root)
    fps = LeRobotDatasetMetadata(repo_id, root=root).fps
    chunk = {"action": [i / fps for i in range(policy.config.chunk_size)]}
    dataset = LeRobotDataset(repo_id, root=root, episodes=episodes, delta_timestamps=chunk)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    frames: dict[str, list[np.ndarray]] = {"index": [], "value": [], "q": [], "action_mse": []}
    policy.eval()
    for batch in tqdm(loader, desc="Predicting", unit="batch"):
        batch = preprocessor(batch)
        out = policy.predict_values(batch) if policy.model.critic.has_value else {}
        frames["index"].append(batch["index"].cpu().numpy())
        frames["value"].append(
            out["value"].cpu().numpy() if "value" in out else np.full(len(batch["index"]), np.nan)
        )
        if "q" in out:
            frames["q"].append(out["q"].cpu().numpy())
        if sample_actions:
            recorded = batch["action"]
            noise = torch.randn(recorded.shape, generator=generator).to(recorded.device)
            sampled = policy.predict_action_chunk(batch, noise=noise)
            valid = (~batch["action_is_pad"]).float()
            error = (sampled - recorded).square().mean(-1)
            frames["action_mse"].append(((error * valid).sum(1) / valid.sum(1).clamp_min(1)).cpu().numpy())
    flat = {k: np.concatenate(v) if v else None for k, v in frames.items()}
    return split_by_episode(table, flat)


def split_by_episode(table: RecapTable, flat: dict[str, np.ndarray | None]) -> list[EpisodePredictions]:
    order = np.argsort(flat["index"])
    flat = {k: (v[order] if v is not None else None) for k, v in flat.items()}
    position = flat["index"] - table.offset
    episode = table.episode_index[position]
    out = []
    for e in np.unique(episode):
        rows = episode == e
        pos = position[rows]
        out.append(
            EpisodePredictions(
                episode_index=int(e),
                index=flat["index"][rows],
                data_type=table.data_type[pos],
                intervention=table.intervention[pos],
                task_index=table.task_index[pos],
                reward=table.reward[pos],
                success=float(table.success[pos][0]),
                terminal=bool(table.terminal[pos][0]),
                value=flat["value"][rows],
                q=flat["q"][rows] if flat["q"] is not None else None,
                action_mse=flat["action_mse"][rows] if flat["action_mse"] is not None else None,
            )
        )
    return out


# --- Advantage indicators over whole episodes ---------------------------------------------------


def label_indicators(
    advantage: np.ndarray,
    task_index: np.ndarray,
    intervention: np.ndarray,
    positive_fraction: float,
    labeller: np.ndarray | None = None,
    forced_negative: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[int, float]]:
    """Quantile thresholds per task -- and per value function (`labeller`) when several labelled the data,
    since cross-fitted value functions are not calibrated alike -- and the indicator (interventions forced
    positive, `forced_negative` frames negative). Thresholds are keyed by task_index * (number of
    labellers) + labeller."""
    labeller = np.zeros_like(task_index) if labeller is None else np.asarray(labeller)
    group = task_index * (int(labeller.max()) + 1) + labeller
    for key in np.unique(group):
        values = advantage[group == key]
        if np.ptp(values) <= 1e-9 * max(1.0, np.abs(values).max()):
            task = key // (int(labeller.max()) + 1)
            raise RecapDataError(
                f"all advantages of task {int(task)} are equal ({values[0]:.4g}), so no threshold can select "
                f"{positive_fraction:.0%} of its frames as positive. The value function is probably constant "
                "(untrained, or trained on one outcome only): train it longer or on episodes with both "
                "successes and failures."
            )
    thresholds = quantile_thresholds(advantage, group, positive_fraction)
    threshold = np.array([thresholds[int(g)] for g in group])
    if forced_negative is not None:  # no advantage exceeds an infinite threshold; corrections still win
        threshold = np.where(np.asarray(forced_negative, dtype=bool), np.inf, threshold)
    indicator = advantage_indicator(advantage, threshold, intervention)
    return indicator.astype(np.float32), thresholds
