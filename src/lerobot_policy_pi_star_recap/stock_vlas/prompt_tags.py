"""The paper's text path for any language-conditioned LeRobot policy (pi05, pi0, SmolVLA): the advantage
indicator written into the task prompt, "<task>\nAdvantage: positive" / "... negative".

- `tag_dataset` writes a copy of a labelled dataset (`value-label`'s `advantage_indicator`) whose frames
  point at tagged prompts, a share of them left untagged (standing in for conditioning dropout), the
  original task kept per frame in `base_task_index`. Stock `lerobot-train` then trains on it unchanged.
- `AdvantagePromptStep` appends the positive tag at inference; `tag_checkpoint` writes a copy of a
  fine-tuned checkpoint with that step in its saved preprocessor, right before the first step that reads
  the task, so stock `lerobot-eval` / `lerobot-record` / `lerobot-rollout` run the positive-conditioned
  policy with no flags.

Classifier-free guidance (`cfg_beta`) is not possible this way: the prompt changes the whole VLM prefix,
so a guided step would need two full backbone passes and a model trained for it; pi_star_recap's own
advantage input does that in one pass.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lerobot.processor import ComplementaryDataProcessorStep, ProcessorStepRegistry

from ..data.writing import DatasetToolError
from ..schema import TASK

DEFAULT_TEMPLATE = "{task}\nAdvantage: {label}"
LABELS = ("negative", "positive")  # indicator 0 / 1
PROMPT_STEP = "pi_star_recap_advantage_prompt"
# Registry names of the stock steps that read (rewrite or tokenise) the task string, in any pipeline.
TASK_STEPS = (
    "smolvla_new_line_processor",
    "pi0_new_line_processor",
    "pi05_prepare_state_tokenizer_processor_step",
    "tokenizer_processor",
    "pi_star_recap_tokenizer",
)
PREPROCESSOR = "policy_preprocessor.json"


def check_template(template: str) -> None:
    """A template must place the task and the label exactly once each, e.g. "{task}\\nAdvantage: {label}"."""
    for field in ("{task}", "{label}"):
        if template.count(field) != 1:
            raise DatasetToolError(
                f"tag template {template!r} must contain {field} exactly once (e.g. {DEFAULT_TEMPLATE!r})."
            )
    try:
        template.format(task="t", label="positive")
    except (KeyError, IndexError, ValueError) as error:
        raise DatasetToolError(
            f"tag template {template!r} has other placeholders or braces ({error}); only {{task}} and "
            "{label} are allowed."
        ) from error


def tagged(task: str, label: str, template: str = DEFAULT_TEMPLATE) -> str:
    return template.format(task=task, label=label)


def tag_pattern(template: str = DEFAULT_TEMPLATE) -> re.Pattern:
    """Matches prompts that already carry a tag of `template` (any task, either label)."""
    head, rest = template.split("{task}")
    before, after = rest.split("{label}")
    labels = "|".join(LABELS)
    return re.compile(f"^{re.escape(head)}.*{re.escape(before)}({labels}){re.escape(after)}$", re.DOTALL)


# --- Inference: the processor step ------------------------------------------------------------------
@ProcessorStepRegistry.register(name=PROMPT_STEP)
@dataclass
class AdvantagePromptStep(ComplementaryDataProcessorStep):
    """Appends the tag (positive by default) to the task, as the training prompts carry it; a task that
    already carries a tag is left as it is."""

    template: str = DEFAULT_TEMPLATE
    label: str = "positive"
    task_key: str = "task"

    def __post_init__(self) -> None:
        check_template(self.template)
        if self.label not in LABELS:
            raise DatasetToolError(f"label {self.label!r} must be one of {LABELS}.")
        self._pattern = tag_pattern(self.template)

    def _tag(self, task: str) -> str:
        return task if self._pattern.match(task) else tagged(task, self.label, self.template)

    def complementary_data(self, complementary_data: dict) -> dict:
        task = complementary_data.get(self.task_key)
        if isinstance(task, str):
            return {**complementary_data, self.task_key: self._tag(task)}
        if isinstance(task, list | tuple) and all(isinstance(t, str) for t in task):
            return {**complementary_data, self.task_key: [self._tag(t) for t in task]}
        return complementary_data

    def get_config(self) -> dict:
        return {"template": self.template, "label": self.label, "task_key": self.task_key}

    def transform_features(self, features):
        return features


def tag_checkpoint(source: Path, target: Path, template: str, label: str = "positive") -> int:
    """Copy checkpoint `source` to `target` with the prompt step inserted into its preprocessor; returns
    the step's position. `target` is written by the caller's atomic output directory."""
    check_template(template)
    pipeline_file = source / PREPROCESSOR
    if not pipeline_file.is_file():
        raise DatasetToolError(
            f"{source} has no {PREPROCESSOR}: pass a checkpoint's pretrained_model folder (LeRobot >= 0.4)."
        )
    pipeline = json.loads(pipeline_file.read_text())
    names = [step.get("registry_name") for step in pipeline.get("steps", [])]
    if PROMPT_STEP in names:
        raise DatasetToolError(f"{source} already has the advantage prompt step ({PREPROCESSOR}).")
    position = next((i for i, name in enumerate(names) if name in TASK_STEPS), None)
    if position is None:
        raise DatasetToolError(
            f"{source}'s preprocessor has no step that reads the task ({TASK_STEPS}): the policy is not "
            "language-conditioned, so a prompt tag cannot condition it."
        )
    step = {
        "registry_name": PROMPT_STEP,
        "config": {"template": template, "label": label, "task_key": "task"},
    }
    pipeline["steps"].insert(position, step)
    shutil.copytree(source, target)
    (target / PREPROCESSOR).write_text(json.dumps(pipeline, indent=4))
    return position


# --- Training data: the tagged dataset -----------------------------------------------------------
def frame_labels(indicator: np.ndarray, intervention: np.ndarray | None, untagged_fraction: float, seed: int):
    """Per frame: the label index (0 negative, 1 positive; expert-corrected frames positive) and whether
    the frame stays untagged (a seeded `untagged_fraction` of the frames)."""
    if not 0.0 <= untagged_fraction <= 1.0:
        raise DatasetToolError(f"--untagged-fraction must lie in [0, 1], got {untagged_fraction}.")
    if np.isnan(indicator).any():
        raise DatasetToolError("some frames have no advantage_indicator; label the dataset with value-label.")
    positive = indicator > 0.5
    if intervention is not None:
        positive |= intervention > 0.5
    untagged = np.random.default_rng(seed).random(len(indicator)) < untagged_fraction
    return positive.astype(np.int64), untagged


def tag_dataset(source: Path, staged: Path, template: str, untagged_fraction: float, seed: int) -> dict:
    """Write the tagged copy of `source` into `staged`; returns counts for the command's report."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..data.columns import read_recap_columns

    check_template(template)
    columns = read_recap_columns(source)
    if columns.indicator is None:
        raise DatasetToolError(
            f"{source} has no advantage_indicator column; label it first with `pi-star-recap value-label`."
        )
    tasks = pd.read_parquet(source / "meta" / "tasks.parquet")
    pattern = tag_pattern(template)
    already = [t for t in tasks.index if pattern.match(str(t))]
    if already:
        raise DatasetToolError(
            f"{source}'s tasks already carry an advantage tag ({already[0]!r}); tag the untagged source."
        )
    info = json.loads((source / "meta" / "info.json").read_text())
    if TASK.name in info["features"]:
        raise DatasetToolError(f"{source} already has a {TASK.name} column: it was tagged before.")
    label, untagged = frame_labels(columns.indicator, columns.intervention, untagged_fraction, seed)

    # Task strings: the originals keep their indices, the tagged variants follow.
    names = [str(t) for t in tasks.sort_values("task_index").index]
    variants = {
        (t, lab): tagged(names[t], LABELS[lab], template) for t in range(len(names)) for lab in (0, 1)
    }
    prompts = names + list(variants.values())
    # Variant (t, lab) sits at len(names) + 2 t + lab (the order `variants` was built in).
    new_task = np.where(untagged, columns.task_index, len(names) + 2 * columns.task_index + label)

    shutil.copytree(source, staged)
    for path in sorted((staged / "data").rglob("*.parquet")):
        table = pq.read_table(path)
        base = table.column("task_index")
        rows = np.searchsorted(columns.index, table.column("index").to_numpy())  # columns are index-sorted
        tagged_index = pa.array(new_task[rows], pa.int64())
        table = table.set_column(table.schema.get_field_index("task_index"), "task_index", tagged_index)
        pq.write_table(table.append_column(TASK.name, base), path)
    used = sorted(set(new_task.tolist()))
    pd.DataFrame({"task_index": used}, index=pd.Index([prompts[i] for i in used], name="task")).to_parquet(
        staged / "meta" / "tasks.parquet"
    )
    _rewrite_episodes(staged, columns.episode_index, new_task, prompts)
    info["total_tasks"] = len(used)
    info["features"][TASK.name] = TASK.feature
    (staged / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    _rewrite_task_stats(staged, new_task)
    return {
        "frames": len(new_task),
        "positive": int(((label == 1) & ~untagged).sum()),
        "negative": int(((label == 0) & ~untagged).sum()),
        "untagged": int(untagged.sum()),
        "prompts": [prompts[i] for i in used],
    }


def check_prompts_fit(prompts: list[str], tokenizer_name: str, max_length: int) -> None:
    """Fail when a tagged prompt (plus the newline SmolVLA / pi0 append) has more than `max_length`
    tokens under the policy's tokenizer: truncation would cut the tag, and the policy would never see it."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_name)
    for prompt in prompts:
        length = len(tokenizer(prompt + "\n")["input_ids"])
        if length > max_length:
            raise DatasetToolError(
                f"the prompt {prompt!r} has {length} tokens under {tokenizer_name}, more than --max-length "
                f"{max_length}: the tag would be truncated. Use a shorter --template, or train with a larger "
                "--policy.tokenizer_max_length (pi_star_recap: --policy.backbone.tokenizer_max_length) and pass it "
                "here."
            )


def _rewrite_episodes(staged: Path, episode: np.ndarray, task: np.ndarray, prompts: list[str]) -> None:
    """Each episode's `tasks` list: the prompts its frames use, in order of first use; base-task stats."""
    import pandas as pd

    order = np.argsort(episode, kind="stable")
    ids, starts = np.unique(episode[order], return_index=True)
    frames = dict(zip(ids.tolist(), np.split(task[order], starts[1:]), strict=True))
    for path in sorted((staged / "meta" / "episodes").rglob("*.parquet")):
        episodes = pd.read_parquet(path)
        used = [frames[e] for e in episodes["episode_index"]]
        episodes["tasks"] = [
            [prompts[i] for i in u[np.sort(np.unique(u, return_index=True)[1])]] for u in used
        ]
        for column in [c for c in episodes.columns if c.startswith("stats/task_index/")]:
            episodes[column.replace("task_index", TASK.name, 1)] = episodes[column]
            stat = column.rsplit("/", 1)[1]
            episodes[column] = [_stat(u, stat, like) for u, like in zip(used, episodes[column], strict=True)]
        episodes.to_parquet(path)


def _rewrite_task_stats(staged: Path, task: np.ndarray) -> None:
    stats_file = staged / "meta" / "stats.json"
    if not stats_file.is_file():
        return
    stats = json.loads(stats_file.read_text())
    if "task_index" in stats:
        stats[TASK.name] = stats["task_index"]
        stats["task_index"] = {k: _stat(task, k, v) for k, v in stats["task_index"].items()}
    stats_file.write_text(json.dumps(stats, indent=4))


def _stat(values: np.ndarray, name: str, like):
    """LeRobot's per-feature statistic `name` (min, max, mean, std, count, q01 ... q99) of `values`, shaped
    like the statistic it replaces."""
    values = values.astype(np.float64)
    if name == "count":  # the frames, unchanged
        return like
    if name.startswith("q") and name[1:].isdigit():
        result = float(np.quantile(values, int(name[1:]) / 100))
    else:
        result = float(getattr(np, name)(values))
    shape = np.shape(like)
    return np.full(shape, result).tolist() if shape else result
