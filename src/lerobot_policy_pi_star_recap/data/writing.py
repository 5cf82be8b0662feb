"""What `annotate`, `collect` and `merge` share: the paper's reward scheme and the RECAP columns of an
episode, an atomic output directory and the per-type summary they print.

The columns (named and typed in `schema`) are the ones `recap_table.py` reads for training:
  data_type          string (1,)  "demo" | "auto" | "intervention", the same on every frame of an episode
  reward             float32 (1,) -1 per step; the last frame 0 on success, -C_fail on failure
  done               bool (1,)    True only on the last frame of each episode
  intervention_mask  bool (1,)    True exactly on the frames an expert / human controlled
  next.success       bool (1,)    True only on the last frame of a successful episode (LeRobot semantics)
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..schema import DATA_TYPE, DATA_TYPES, DONE, INTERVENTION_MASK, REWARD, SUCCESS
from .columns import read_recap_columns


class DatasetToolError(ValueError):
    """Bad input to annotate / collect / merge; the message names the problem and the fix."""


@dataclass(frozen=True)
class RewardScheme:
    """The pi*0.6 paper's sparse reward: `step_reward` on every frame but the last, which gets
    `success_reward` on success and `-failure_penalty` (C_fail) on failure.

    With the defaults the return of a frame is minus the number of steps left (success) or minus
    (steps left + C_fail) (failure). C_fail defaults to the maximum episode length, so every failed
    episode scores below every successful one of the same task.
    """

    step_reward: float = -1.0
    success_reward: float = 0.0
    failure_penalty: float | None = None  # C_fail; None: the maximum episode length

    def resolved(self, max_episode_length: int) -> RewardScheme:
        """This scheme with C_fail fixed (the default takes `max_episode_length`)."""
        penalty = float(max_episode_length) if self.failure_penalty is None else self.failure_penalty
        if penalty < 0:
            raise DatasetToolError(f"C_fail must be >= 0 (it is subtracted on failure), got {penalty}.")
        return RewardScheme(self.step_reward, self.success_reward, penalty)

    def rewards(self, length: int, success: bool) -> np.ndarray:
        if self.failure_penalty is None:
            raise RuntimeError("call RewardScheme.resolved(max_episode_length) first")
        rewards = np.full(length, self.step_reward, dtype=np.float32)
        rewards[-1] = self.success_reward if success else -self.failure_penalty
        return rewards


def episode_columns(
    length: int, success: bool, data_type: str, intervention: np.ndarray, scheme: RewardScheme
) -> dict[str, np.ndarray]:
    """The five RECAP columns of one episode, one entry per frame."""
    if length < 1:
        raise DatasetToolError("an episode must have at least one frame.")
    if data_type not in DATA_TYPES:
        raise DatasetToolError(f"unknown data type {data_type!r}; allowed are {list(DATA_TYPES)}.")
    intervention = np.asarray(intervention, dtype=bool).reshape(-1)
    if len(intervention) != length:
        raise DatasetToolError(f"intervention mask has {len(intervention)} entries for {length} frames.")
    last = np.zeros(length, dtype=bool)
    last[-1] = True
    return {
        DATA_TYPE.name: np.full(length, data_type, dtype=object),
        REWARD.name: scheme.rewards(length, success),
        DONE.name: last,
        INTERVENTION_MASK.name: intervention,
        SUCCESS.name: last & success,
    }


# --- Output directories --------------------------------------------------------------------------
def check_dataset_root(root: Path, what: str = "dataset") -> None:
    """Fail early, with the fix, when `root` is not a local LeRobot v3 dataset."""
    info_path = root / "meta" / "info.json"
    if not root.is_dir():
        raise DatasetToolError(f"{what} {root} does not exist.")
    if not info_path.is_file():
        raise DatasetToolError(
            f"{what} {root} is not a LeRobot dataset root (no meta/info.json). Pass the folder that "
            "holds meta/ and data/ (for a hub dataset: the local copy under $HF_LEROBOT_HOME/<repo_id>)."
        )
    version = str(json.loads(info_path.read_text()).get("codebase_version", "?"))
    if not version.startswith("v3"):
        raise DatasetToolError(
            f"{what} {root} is a LeRobot {version} dataset; these tools need v3. Convert it with "
            "`python -m lerobot.scripts.convert_dataset_v21_to_v30 --repo-id=<id> --root=<dir> --push-to-hub=false` "
            "first."
        )


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def check_output_dir(target: str | Path, overwrite: bool, sources: Sequence[str | Path] = ()) -> Path:
    """The resolved `target` once it is known to be writable: not existing unless `overwrite`, never
    overlapping a source. Commands call it before slow work too, so a bad --output fails at once."""
    target = Path(target).expanduser().resolve()
    for source in sources:
        if _overlaps(target, Path(source).expanduser().resolve()):
            raise DatasetToolError(
                f"output {target} overlaps the input {source}; write to a new folder (inputs are never modified)."
            )
    if target.exists() and not overwrite:
        raise DatasetToolError(f"output {target} already exists; choose a new path or pass --overwrite.")
    return target


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def remove_stale_staging(target: Path) -> list[Path]:
    """Delete the staging folders `.<target>.tmp-<pid>-*` of `target` whose process is gone (killed with
    kill -9 or by the OOM killer, no cleanup ran) and print one line each; live writers' are kept."""
    pattern = re.compile(rf"\.{re.escape(target.name)}\.tmp-(\d+)-")
    removed = []
    for path in sorted(target.parent.glob(f".{glob.escape(target.name)}.tmp-*")):
        match = pattern.match(path.name)
        if match and path.is_dir() and not _process_alive(int(match[1])):
            shutil.rmtree(path, ignore_errors=True)
            print(f"removed stale staging folder {path} (its process {match[1]} is gone)", flush=True)
            removed.append(path)
    return removed


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write `path` through a sibling temporary file and a rename: readers see the old file or the whole
    new one, never a cut-off one (kill -9, a full disk)."""
    path = Path(path)
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        staging.write_text(text)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


@contextmanager
def atomic_output_dir(
    target: str | Path, overwrite: bool, sources: Sequence[str | Path] = (), written: str = "meta/info.json"
) -> Iterator[Path]:
    """Yield a fresh, not-yet-existing path next to `target` to write a dataset (or, with `written`
    naming another file that must exist when done, e.g. a checkpoint's config.json) into; on success it
    replaces `target` in one rename, on any error it is deleted, so `target` is never half written.

    `target` must not exist unless `overwrite`, and must never be, contain or lie inside a source. The
    staging folder's name carries this process's id, so a later run can remove it if the process was
    killed before cleaning up.
    """
    target = check_output_dir(target, overwrite, sources)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target)
    workdir = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    try:
        staged = workdir / "dataset"
        yield staged
        if not (staged / written).is_file():
            raise RuntimeError(f"internal error: nothing was written to {staged}")
        if target.exists():
            target.rename(workdir / "replaced")  # same filesystem: the swap is two renames
        staged.rename(target)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --- Summary -------------------------------------------------------------------------------------
@dataclass
class EpisodeSummary:
    data_type: str
    success: bool | None
    length: int
    expert_frames: int


COLLECT_PROVENANCE = "recap_collect.json"  # meta/ file of `collect` (and of `merge` over collections)


def episode_records(root: str | Path) -> list[dict] | None:
    """What `collect` recorded of each episode (env seed, outcome, operator profile, ...), in dataset
    order, also through `merge`; None for a dataset that was not collected by this package."""
    path = Path(root) / "meta" / COLLECT_PROVENANCE
    return json.loads(path.read_text())["episodes"] if path.is_file() else None


def merged_provenance(roots: Sequence[Path]) -> dict | None:
    """The merged dataset's per-episode records: each input's in input order, the way `merge_datasets`
    orders episodes, each naming its source; None unless every input has them."""
    records = [episode_records(root) for root in roots]
    if any(r is None for r in records):
        return None
    return {
        "command": "pi-star-recap merge",
        "inputs": [str(root) for root in roots],
        "episodes": [{**r, "source": str(root)} for root, rs in zip(roots, records, strict=True) for r in rs],
    }


def summarize_dataset(root: str | Path) -> list[EpisodeSummary]:
    """Per-episode type, outcome, length and expert frames, read the way the policy reads them."""
    columns = read_recap_columns(root)
    starts = np.flatnonzero(np.r_[True, columns.episode_index[1:] != columns.episode_index[:-1]])
    ends = np.r_[starts[1:], len(columns.index)]
    mask = columns.intervention if columns.intervention is not None else np.zeros(len(columns.index))
    return [
        EpisodeSummary(
            data_type=DATA_TYPES[int(columns.data_type[start])],
            success=None if columns.success is None else bool(columns.success[start:end].any()),
            length=int(end - start),
            expert_frames=int((mask[start:end] > 0.5).sum()),
        )
        for start, end in zip(starts, ends, strict=True)
    ]


def format_summary(episodes: list[EpisodeSummary]) -> str:
    """A table with counts and success rate per data type (and all together)."""
    header = (
        f"{'type':<14}{'episodes':>9}{'successes':>11}{'success rate':>14}{'frames':>9}{'expert frames':>15}"
    )
    lines = [header, "-" * len(header)]
    groups = [(name, [e for e in episodes if e.data_type == name]) for name in DATA_TYPES]
    groups = [(name, group) for name, group in groups if group] + [("all", episodes)]
    for name, group in groups:
        known = [e.success for e in group if e.success is not None]
        successes = sum(known)
        rate = f"{100.0 * successes / len(known):.1f}%" if known else "n/a"
        lines.append(
            f"{name:<14}{len(group):>9}{(successes if known else 'n/a'):>11}{rate:>14}"
            f"{sum(e.length for e in group):>9}{sum(e.expert_frames for e in group):>15}"
        )
    return "\n".join(lines)


def print_summary(root: str | Path, title: str) -> str:
    """Print and return the summary of the dataset at `root` (what the command wrote, read back)."""
    text = f"{title}\n{format_summary(summarize_dataset(root))}"
    print(text, flush=True)
    return text
