"""Does RECAP beat behaviour cloning? Same experience, backbone, steps and seeds for every method.

Per MetaWorld task the data comes from RECAP's own loop, exactly as `pi-star-recap demo` builds it:
scripted-expert demos -> stage 1 (behaviour cloning on the demos, trained to its plateau) -> autonomous
rollouts of stage 1 and rollouts where the expert corrects the policy when it strays, merged into one
mixed-quality dataset. Every method then fine-tunes the same stage-1 checkpoint with the same steps with
stock `lerobot-train`, and is evaluated with stock `lerobot-eval` on the same env seeds:

  stage1        the starting point, no fine-tuning (reference)
  null_control  stage 1 fine-tuned on its own demos: the gain of extra steps alone
  bc            all data, equal weights, no advantage
  filtered_bc   successful episodes only (the strong offline-RL baseline)
  dagger        the demos and the expert-controlled frames of the corrected episodes only
  awr           IQL advantage weights exp(A / beta), no conditioning
  recap_iql     IQL advantage conditioning with the config's intervention weight 2
  recap_paper   the paper's staged workflow (the demo's stage 2): cross-fitted distributional values,
                `value-label` indicators, then the policy; evaluated with guidance beta 1.0, 1.5, 2.5
  recap_outcome (probe) recap_paper with the indicator set from the episode's outcome instead (every
                frame of a successful episode and every expert frame positive): filtered BC's
                information through RECAP's conditioning, so a gap to filtered BC is the conditioning's
  recap_paper_negative_weight0, recap_outcome_negative_weight0 (probes) the same with the indicator-0
                frames out of the loss (`negative_weight=0`): the I=1 policy then cannot copy failures in
                states only failed episodes reach
  recap_paper_negative_weight0_guided (probe) the same, but the negatives still train the unconditional
                branch (`unconditional_negative_weight=1`: BC on all data), so guidance beta 1.0, 1.5, 2.5
                has a reference to push away from
  recap_paper_iter2, filtered_bc_iter2, bc_iter2 (probes) a second iteration: the arm's own fine-tuned
                policy (run the arm itself first) collects 20 more rollouts and 20 corrected episodes on
                new env seeds, and the arm trains again from stage 1 on both rounds (RECAP relabels them
                with new cross-fitted values): does RECAP's lead grow when it collects its own experience?
                Iterated arms are compared with the same iteration of bc and filtered_bc.

With `--base-policy smolvla` the policy is a stock LeRobot SmolVLA (tiny and random on a CPU machine,
built as `pi-star-recap demo --base-policy smolvla` builds it) trained by stock lerobot-train with no
pi_star_recap options, so the arms are the ones a stock policy can run:

  null_control, bc  as above
  filtered_bc       `--dataset.episodes=[the successful episodes]`
  recap_prompt      the paper's cross-fitted indicators as text in the prompt (`tag-prompts`, 30% untagged),
                    evaluated through `tag-checkpoint`, which appends "Advantage: positive"

`--seeds` are fine-tuning seeds: every method fine-tunes the same stage 1 on the same data. `--data-seeds`
rebuild the whole loop (demos, stage 1, the collected experience) per seed, so the methods are compared
over several draws of the data too (2.2i-l of BENCHMARKS.md: the demo's stage 2 moves far more between
draws of the data than between fine-tuning seeds).

Every (task, data seed, method, seed) cell writes one small JSON with its per-episode successes under
`--results` (default benchmarks/results/efficacy_demo/, committed), and a cell whose JSON exists is not run
again: the grid accumulates across sessions. Data and checkpoints (under --root) are rebuilt from their
seeds when missing. Methods are compared on the pairs (same env seeds): paired-bootstrap 95% intervals and
McNemar's test, pooled over seeds; per task and, with several tasks, over "all tasks" (every draw of every
task, with a two-stage bootstrap that weighs draws alike); efficacy.md ends with each draw's success rates.

    python benchmarks/efficacy.py                       # 3 tasks x 3 seeds x 100 episodes, every method
    python benchmarks/efficacy.py --tasks sweep-into-v3 --seeds 0 --methods bc filtered_bc
    python benchmarks/efficacy.py --tasks sweep-into-v3 --seeds 0 --data-seeds 1 2   # two more draws of the data

Grids made before 2026-12-05 kept the scripted expert's failed demo attempts (`--no-successful-demos`):
    # BC and filtered BC on the data of the demo runs of BENCHMARKS §2.2l (§2.2m; their data/ and stage1/
    # linked under outputs/efficacy_demo_keep_failed/sweep-into-v3/data_seed<k>/, or rebuilt from the seeds)
    python benchmarks/efficacy.py --tasks sweep-into-v3 --seeds 0 --data-seeds 1 2 --methods bc filtered_bc \\
        --no-successful-demos --root outputs/efficacy_demo_keep_failed \\
        --results benchmarks/results/efficacy_demo_keep_failed
    # the grid of BENCHMARKS §2.2e-g (the demo's plan with PNG frames)
    python benchmarks/efficacy.py --tasks sweep-into-v3 --seeds 0 1 2 --camera-storage png \\
        --no-successful-demos --root outputs/efficacy_s3600 --results benchmarks/results/efficacy_s3600
    # the earlier plans, each with its own committed cells: 1200 + 600 steps, stall corrections
    python benchmarks/efficacy.py --tasks push-v3 --seeds 0 --stage1-steps 1200 --steps 600 \\
        --correction-trigger stall --camera-storage png --no-successful-demos --root outputs/efficacy \\
        --results benchmarks/results/efficacy
    python benchmarks/efficacy.py --tasks push-v3 --seeds 0 --stage1-steps 1800 --steps 600 \\
        --correction-trigger stall --camera-storage png --no-successful-demos --root outputs/efficacy_s1800 \\
        --results benchmarks/results/efficacy_s1800
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from lerobot_policy_pi_star_recap.configuration_pi_star_recap import TOKENIZER_PADDINGS
from lerobot_policy_pi_star_recap.data.writing import COLLECT_PROVENANCE
from lerobot_policy_pi_star_recap.evaluation.success_stats import (
    clustered_difference,
    paired_difference,
    paired_throughput,
    wilson_interval,
)
from lerobot_policy_pi_star_recap.loop import steps
from lerobot_policy_pi_star_recap.loop.arms import (
    FINE_TUNING_ARMS,
    STOCK_ARMS,
    Arm,
    default_arms,
    episode_selection,
    successful_episodes,
)
from lerobot_policy_pi_star_recap.loop.flags import guidance
from lerobot_policy_pi_star_recap.loop.lanes import Lanes
from lerobot_policy_pi_star_recap.loop.plan import (
    CAMERA_STORAGES,
    CORRECTION_TRIGGERS,
    DEMO_ENV_SEEDS,
    QUICK,
    STAGE1_METHODS,
    DemoPlan,
    Workspace,
    check_plan,
)
from lerobot_policy_pi_star_recap.loop.recap import stage1 as train_stage1
from lerobot_policy_pi_star_recap.loop.recap import stage1_demos
from lerobot_policy_pi_star_recap.loop.report import cell_record, write_cell
from lerobot_policy_pi_star_recap.sim.config import METAWORLD_FPS

BASELINES = ("stage1", "null_control", "bc", "filtered_bc")
TASKS = ("push-v3", "button-press-v3", "sweep-into-v3")


def recorded_flags(method: str) -> list[str]:
    """The flags a cell records for its method (a guided cell's `_beta<b>` aside): the native arm's."""
    arm = FINE_TUNING_ARMS.get(method.split("_beta")[0])
    return list(arm.flags) if arm else []


@dataclass(frozen=True)
class Budget:
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]  # fine-tuning seeds; every method on every seed, on the same data and stage 1
    plan: DemoPlan  # data sizes; stage2_steps is each method's fine-tuning length
    base_policy: str = "native"  # or "smolvla": a stock LeRobot SmolVLA, the indicator in its prompt
    # Seeds of the loop itself (demos, stage 1, the collected experience): each data seed is its own draw
    # of what the methods learn from, which the fine-tuning seeds never vary.
    data_seeds: tuple[int, ...] = (0,)


# The demo's own plan, so a task's seed-0 cells reproduce `pi-star-recap demo --task <task>`'s runs.
DEFAULT = Budget(TASKS, (0, 1, 2), DemoPlan())
# What the plan's later fields were before they existed, for cells committed before them.
LEGACY_PLAN = {
    "correction_trigger": "stall",
    "tokenizer_padding": "max_length",
    "camera_storage": "png",
    "successful_demos": False,
}


def data_seed_folder(data_seed: int) -> str:
    """Where a data seed's data, checkpoints and cells live under <root>/<task>/ and <results>/<task>/:
    seed 0 in those folders themselves (the grid's cells from before data seeds existed), others in
    data_seed<k>/."""
    return "" if data_seed == 0 else f"data_seed{data_seed}"


class TaskBench:
    """One task's data, stage 1 and method runs for one data seed, under <root>/<task>/[data_seed<k>/],
    reusing whatever is finished."""

    def __init__(self, task: str, budget: Budget, root: Path, results: Path, data_seed: int = 0):
        root, results = (
            root / task / data_seed_folder(data_seed),
            results / task / data_seed_folder(data_seed),
        )
        check_plan(budget.plan, iterations=1)  # one round of experience, like the demo's default
        # the data seed seeds the demos, stage 1, the collection and the labels (the workspace derives each)
        self.ws = Workspace(task, root, budget.plan, data_seed, budget.base_policy)
        self.lanes = Lanes(self.ws.logs)
        self.task, self.budget, self.root, self.results = task, budget, root, results
        self.data_seed = data_seed

    def experience(self) -> tuple[Path, Path]:
        """(stage-1 checkpoint, mixed dataset), built like the demo's first iteration."""
        plan = self.budget.plan
        if self.cached("stage1") and not self.trained("stage1"):
            # Retraining on CPU is not bitwise reproducible, so new cells would pair with another stage 1.
            raise SystemExit(
                f"{self.results} holds cells of a stage 1 that is no longer at {self.checkpoint_dir('stage1')}: "
                "a new stage 1 (and its experience) would not pair with them. Restore that --root, or move "
                "those cells aside to rerun the whole draw, or choose another --data-seeds."
            )
        if self.trained("stage1"):
            stage1 = self.checkpoint_dir("stage1")
        else:  # behaviour cloning, or RECAP as the paper pre-trains (the plan's stage1)
            shutil.rmtree(self.root / "stage1", ignore_errors=True)
            stage1, _ = train_stage1(self.ws, self.lanes, self.demos())
        mixed = self.root / "data" / "mixed1"
        if not _dataset_done(mixed, plan.camera_storage):
            for name in ("rollouts1", "corrections1", "mixed1"):
                shutil.rmtree(self.root / "data" / name, ignore_errors=True)
            steps.gather(self.ws, self.lanes, 1, stage1, [self.demos()])
        return stage1, mixed

    def labelled(self, mixed: Path) -> Path:
        """The mixed dataset with cross-fitted advantage labels, as the demo builds it."""
        path = self.root / "data" / f"{mixed.name}_labelled"
        if _dataset_done(path, self.budget.plan.camera_storage):
            return path
        shutil.rmtree(self.root / f"value_{mixed.name}", ignore_errors=True)
        return steps.label_advantages(self.ws, self.lanes, mixed.name, mixed).path

    def outcome_labelled(self, mixed: Path) -> Path:
        """The labelled mixed dataset with outcome indicators (`recap_outcome`)."""
        path = self.root / "data" / f"{mixed.name}_outcome"
        if _dataset_done(path, self.budget.plan.camera_storage):
            return path
        return outcome_indicator_copy(self.labelled(mixed), path)

    def demos(self) -> Path:
        path = self.root / "data" / "demos"
        if _dataset_done(path, self.budget.plan.camera_storage):
            # Stage 1 and the experience are built on the demos, so checking them covers all reused data.
            # `collect` writes recap_collect.json; collections from before --successes-only kept failures.
            provenance = path / "meta" / COLLECT_PROVENANCE
            if provenance.is_file():
                kept = json.loads(provenance.read_text())["arguments"].get("successes_only", False)
                if kept != self.budget.plan.successful_demos:
                    raise SystemExit(
                        f"{path} was collected with successes_only={kept}, not the plan's successful_demos="
                        f"{self.budget.plan.successful_demos}: give each plan its own --root and --results."
                    )
            return path
        shutil.rmtree(path, ignore_errors=True)
        seed = self.ws.env_seed(DEMO_ENV_SEEDS)
        return steps.collect(self.ws, self.lanes, "demos", "demo", self.budget.plan.demos, seed)

    def checkpoint(
        self, name: str, dataset: Path, init: Path, flags: tuple[str, ...] = (), seed: int | None = None
    ) -> Path:
        """`steps.train` with the plan's fine-tuning steps, unless a finished checkpoint is there already."""
        if self.trained(name):
            return self.checkpoint_dir(name)
        shutil.rmtree(self.root / name, ignore_errors=True)
        steps_ = self.budget.plan.stage2_steps
        return steps.train(self.ws, self.lanes, name, dataset, steps_, init, flags, seed)

    def checkpoint_dir(self, name: str) -> Path:
        return self.ws.checkpoint(name)

    def trained(self, name: str) -> bool:
        """Whether run `name` finished training (its weights are saved last)."""
        return (self.checkpoint_dir(name) / "model.safetensors").is_file()

    def evaluate(self, name: str, checkpoint: Path, method: str, seed: int, flags=()) -> None:
        """One lerobot-eval run, kept as <results>/<task>/<name>.json with its per-episode successes."""
        result = self.results / f"{name}.json"
        if not result.is_file():
            info = steps.evaluate(self.ws, self.lanes, name, checkpoint, tuple(flags))
            cell = {
                "task": self.task,
                "method": method,
                "seed": seed,
                "data_seed": self.data_seed,
                "base_policy": self.budget.base_policy,
                "plan": asdict(self.budget.plan),
                "flags": recorded_flags(method) + list(flags),
                **cell_record(info),
            }
            write_cell(result, cell)

    def run(self, methods: list[str]) -> None:
        """Every missing cell of this task, building data only when one is missing."""
        experience: tuple[Path, Path] | None = None

        def built() -> tuple[Path, Path]:
            nonlocal experience
            experience = experience or self.experience()
            return experience

        if not self.cached("stage1"):
            self.evaluate("stage1", built()[0], "stage1", 0)
        arms = FINE_TUNING_ARMS if self.budget.base_policy == "native" else STOCK_ARMS
        for method in methods:
            arm = arms[method]
            for seed in self.budget.seeds:
                cells = arm.cells(seed)
                if all(self.cached(cell) for _, cell in cells):
                    continue
                print(f"\n##### {self.task} / {method} / seed {seed}", flush=True)
                stage1, mixed = built()
                name = f"{method}_seed{seed}"
                if self.budget.base_policy != "native":
                    checkpoint = self.stock_arm(arm, name, stage1, mixed, seed)
                else:
                    checkpoint = self.native_arm(arm, name, stage1, mixed, seed)
                for beta, cell in cells:
                    if not self.cached(cell):
                        self.evaluate(cell, checkpoint, arm.label(beta), seed, guidance(beta))

    def native_arm(self, arm: Arm, name: str, stage1: Path, mixed: Path, seed: int) -> Path:
        """One arm of pi_star_recap fine-tuned from stage 1 on the data and with the flags it names."""
        data = self.second_round(arm.iterates, seed) if arm.iterates else mixed
        if arm.data == "labelled":
            data = self.labelled(data)
        elif arm.data == "outcome":
            data = self.outcome_labelled(data)
        elif arm.data == "demos":
            data = stage1_demos(self.ws)
        flags = (*arm.flags, *episode_selection(arm, data))
        return self.checkpoint(name, data, stage1, flags, seed)

    def second_round(self, base: str, seed: int) -> Path:
        """An iterated arm's data: the first round's mixed experience plus the rollouts and corrections of
        the arm's own iteration-1 policy, `<base>_seed<seed>`, on iteration 2's env seeds (the same for
        every arm, so the rounds differ only in the policy that collected them)."""
        first = f"{base}_seed{seed}"
        if not self.trained(first):
            raise SystemExit(
                f"{base}_iter2 collects with {first}, which is not trained under {self.root}: "
                f"put {base} before {base}_iter2 in --methods (if {first}'s cells are committed but its "
                "checkpoint is gone, move those cells aside: a retrained one would not be the policy they measured)."
            )
        tag, data = f"_{first}", self.root / "data"
        mixed = data / f"mixed2{tag}"
        if not _dataset_done(mixed, self.budget.plan.camera_storage):
            for name in (f"rollouts2{tag}", f"corrections2{tag}", mixed.name):
                shutil.rmtree(data / name, ignore_errors=True)
            first_round = [self.demos(), data / "rollouts1", data / "corrections1"]
            steps.gather(self.ws, self.lanes, 2, self.checkpoint_dir(first), first_round, tag)
        return mixed

    def stock_arm(self, arm: Arm, name: str, stage1: Path, mixed: Path, seed: int) -> Path:
        """One arm of a stock VLA fine-tuned from stage 1 by stock lerobot-train, data chosen by the arm."""
        if arm.data == "tagged":
            tagged = self.root / "data" / f"{mixed.name}_tagged"
            if not _dataset_done(tagged, self.budget.plan.camera_storage):
                tagged = steps.tag_prompts(self.ws, self.lanes, self.labelled(mixed))
            path = self.checkpoint_dir(name)
            if not self.trained(name):
                untagged = self.checkpoint(f"{name}_untagged", tagged, stage1, (), seed)
                steps.tag_checkpoint(self.ws, self.lanes, untagged, name)
            return path
        data = self.demos() if arm.data == "demos" else mixed
        return self.checkpoint(name, data, stage1, episode_selection(arm, data), seed)

    def cached(self, name: str) -> dict | None:
        """A finished cell, or None when it is not there yet."""
        path = self.results / f"{name}.json"
        return read_cell(path, self.budget) if path.is_file() else None


def read_cell(path: Path, budget: Budget) -> dict:
    """One cell's JSON, refused when it was made with another plan (mixing plans breaks the pairing)."""
    cell = json.loads(path.read_text())
    # a field added to the plan after the cell was made has the value it had then (LEGACY_PLAN)
    made_with = ({**asdict(DemoPlan()), **LEGACY_PLAN, **cell["plan"]}, cell.get("base_policy", "native"))
    if made_with != (asdict(budget.plan), budget.base_policy):
        raise SystemExit(
            f"{path} was made with plan and base policy {made_with}, not "
            f"{(asdict(budget.plan), budget.base_policy)}: give each its own --root and --results."
        )
    return cell


def all_cells(results: Path, budget: Budget) -> list[dict]:
    """Every cell under <results>/<task>/[data_seed<k>/], this run's and those committed by earlier runs
    (other seeds, data seeds, tasks or methods), so the summary pools all of them instead of only what
    this run touched. A cell from before data seeds existed is data seed 0."""
    cells = []
    for path in sorted([*results.glob("*/*.json"), *results.glob("*/data_seed*/*.json")]):
        folder = 0 if path.parent.parent == results else re.fullmatch(r"data_seed(\d+)", path.parent.name)
        if folder is None:
            continue  # not a data seed's folder (e.g. data_seed1_old)
        data_seed = folder if folder == 0 else int(folder.group(1))
        cell = read_cell(path, budget)
        if cell.get("data_seed", 0) != data_seed:
            raise SystemExit(
                f"{path} says data seed {cell.get('data_seed', 0)} but lies in {path.parent}: move it."
            )
        cells.append({**cell, "data_seed": data_seed})
    return cells


def outcome_indicator_copy(labelled: Path, output: Path) -> Path:
    """A copy of `labelled` (a `value-label` output) whose advantage_indicator is 1 on every frame of a
    successful episode and every expert-controlled frame, 0 elsewhere; written to a staging folder, then
    renamed, so an interrupted copy is never taken for a finished one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lerobot_policy_pi_star_recap.data.columns import read_recap_columns

    columns = read_recap_columns(labelled)
    if columns.intervention is None:
        raise SystemExit(
            f"{labelled} has no intervention_mask column: expert frames cannot be kept positive."
        )
    successful = successful_episodes(labelled)
    positive = np.isin(columns.episode_index, successful) | np.asarray(columns.intervention, dtype=bool)
    by_index = dict(zip(columns.index.tolist(), positive.tolist(), strict=True))
    staging = output.with_name(f"{output.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(labelled, staging)
    for file in sorted((staging / "data").glob("**/*.parquet")):
        table = pq.read_table(file)
        at = table.schema.get_field_index("advantage_indicator")
        values = [float(by_index[i]) for i in table.column("index").to_pylist()]
        table = table.set_column(
            at, table.schema.field(at), pa.array(values, type=table.schema.field(at).type)
        )
        pq.write_table(table, file)
    shutil.rmtree(output, ignore_errors=True)
    staging.rename(output)
    return output


def _dataset_done(path: Path, camera_storage: str) -> bool:
    """A finished dataset under --root, stored as the plan says (a reused dataset must not mix plans)."""
    info = path / "meta" / "info.json"
    if not info.is_file():
        return False
    dtypes = {f["dtype"] for f in json.loads(info.read_text())["features"].values()} & {"image", "video"}
    wanted = {"png": "image", "video": "video"}[camera_storage]
    if dtypes - {wanted}:
        raise SystemExit(
            f"{path} stores its camera frames as {sorted(dtypes)}, not as the plan's camera_storage="
            f"{camera_storage}: give each plan its own --root and --results."
        )
    return True


def same_round(baseline: str, method: str) -> str:
    """The cells `method` is paired with in `baseline`'s column: an iterated arm meets the same iteration of
    a baseline that has one (RECAP's second round against filtered BC's second round, each having collected
    its own), and an iterated baseline its own first round."""
    iterated = f"{baseline}_iter2"
    if "_iter2" in method and iterated in FINE_TUNING_ARMS and not method.startswith(iterated):
        return iterated
    return baseline


def summarize(rows: list[dict]) -> list[dict]:
    """Per (task, method): mean success over its cells (fine-tuning seeds x data seeds), and paired
    differences against each baseline (its `same_round` cells) with episodes pooled over the cells (seed k
    of a method against seed k of the baseline, on the same data seed; stage 1 has one per data seed).
    With several data seeds each difference also gets a two-stage bootstrap interval over them (data
    seeds, then episodes), which holds the variance between draws of the data that the pooled interval
    leaves out."""
    cells = {(r["task"], r["data_seed"], r["method"], r["seed"]): r for r in rows}
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["task"], row["method"]), []).append(row)
    out = []
    for (task, method), group in groups.items():
        rates = [r["success_rate"] for r in group]
        steps = [r["mean_steps_to_success"] for r in group if r["mean_steps_to_success"] is not None]
        entry = {
            "task": task,
            "method": method,
            "seeds": len(group),
            "data_seeds": len({r["data_seed"] for r in group}),
            "episodes": sum(r["episodes"] for r in group),
            "success_mean": statistics.mean(rates),
            "success_std": statistics.pstdev(rates) if len(rates) > 1 else 0.0,
            "steps_to_success_mean": statistics.mean(steps) if steps else None,
            "paired": {},
        }
        for baseline in BASELINES:
            if baseline == method:
                continue
            reference = same_round(baseline, method)
            # on the cells both arms have (a baseline may have fewer seeds yet)
            pairs = [
                (r, b)
                for r in group
                if (
                    b := cells.get(
                        (task, r["data_seed"], reference, 0 if baseline == "stage1" else r["seed"])
                    )
                )
            ]
            if not pairs:
                continue
            a = np.concatenate([r["successes"] for r, _ in pairs])
            b = np.concatenate([b["successes"] for _, b in pairs])
            entry["paired"][baseline] = {**paired_difference(a, b), "seeds": len(pairs)}
            if all("steps" in r and "steps" in b for r, b in pairs):  # cells from before throughput lack them
                entry["paired"][baseline].update(
                    paired_throughput(
                        a,
                        np.concatenate([r["steps"] for r, _ in pairs]),
                        b,
                        np.concatenate([b["steps"] for _, b in pairs]),
                        METAWORLD_FPS,
                    )
                )
            data_seeds = sorted({r["data_seed"] for r, _ in pairs})
            if len(data_seeds) > 1:
                per_data_seed = [[(r, b) for r, b in pairs if r["data_seed"] == d] for d in data_seeds]
                over = clustered_difference(
                    [np.concatenate([r["successes"] for r, _ in run]) for run in per_data_seed],
                    [np.concatenate([b["successes"] for _, b in run]) for run in per_data_seed],
                )
                entry["paired"][baseline]["over_data_seeds"] = {
                    # each data seed weighs the same, whatever its number of fine-tuning seeds
                    "difference": over["difference"],
                    "t_ci_low": over["t_ci_low"],
                    "t_ci_high": over["t_ci_high"],
                    "ci_low": over["ci_low"],
                    "ci_high": over["ci_high"],
                    "per_data_seed": dict(zip(data_seeds, over["per_run"], strict=True)),
                }
        out.append(entry)
    return out


ALL_TASKS = "all tasks"


def across_tasks(rows: list[dict]) -> list[dict]:
    """The cells again under one task, each draw (task, data seed) its own data seed, so `summarize` pools
    the paired episodes of every task and its two-stage interval weighs every draw alike: the efficacy
    target is over tasks, not one of them. Empty with one task (the per-task rows already say it)."""
    if len({r["task"] for r in rows}) < 2:
        return []
    return [{**r, "task": ALL_TASKS, "data_seed": f"{r['task']}/{r['data_seed']}"} for r in rows]


def format_draws(rows: list[dict]) -> str:
    """Success per draw (task, data seed) and method, with a Wilson 95% interval over its episodes (pooled
    over fine-tuning seeds): the spread between draws that the pooled differences summarise."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["data_seed"], r["method"]), []).append(r)
    present = {method for _, _, method in groups}
    methods = [*(b for b in BASELINES if b in present), *sorted(present - set(BASELINES))]
    lines = [f"| task | data seed | {' | '.join(methods)} |", "|---|---|" + "---|" * len(methods)]
    for task, data_seed in sorted({(task, data_seed) for task, data_seed, _ in groups}):
        cells = []
        for method in methods:
            if (task, data_seed, method) not in groups:
                cells.append("-")
                continue
            successes = np.concatenate([r["successes"] for r in groups[task, data_seed, method]])
            low, high = wilson_interval(int(successes.sum()), len(successes))
            cells.append(f"{100 * successes.mean():.0f}% [{100 * low:.0f}, {100 * high:.0f}]")
        lines.append(f"| {task} | {data_seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def vs(baseline: str) -> str:
    """A baseline's column title, saying which iteration an iterated arm meets (`same_round`)."""
    return f"vs {baseline}" + (
        "; an iterated arm: the same iteration" if f"{baseline}_iter2" in FINE_TUNING_ARMS else ""
    )


def format_table(summary: list[dict]) -> str:
    head = " | ".join(f"{vs(b)} (95% CI)" for b in BASELINES)
    lines = [
        f"| task | method | cells x episodes | success (mean ± std over cells) | {head} |",
        "|---|---|---|---|" + "---|" * len(BASELINES),
    ]
    for s in summary:
        spread = f" ± {100 * s['success_std']:.0f}" if s["seeds"] > 1 else ""  # no spread from one seed
        unit = "draws" if s["task"] == ALL_TASKS else "data seeds"
        data = f" ({s['data_seeds']} {unit})" if s["data_seeds"] > 1 else ""
        cells = []
        for baseline in BASELINES:
            p = s["paired"].get(baseline)
            if p is None:
                cells.append("-")
                continue
            fewer = f" ({p['seeds']} of {s['seeds']} cells)" if p["seeds"] < s["seeds"] else ""
            over = p.get("over_data_seeds")
            across = (
                f"; over {unit} {100 * over['difference']:+.0f}, t 95% CI "
                f"[{100 * over['t_ci_low']:+.0f}, {100 * over['t_ci_high']:+.0f}], two-stage bootstrap "
                f"[{100 * over['ci_low']:+.0f}, {100 * over['ci_high']:+.0f}]"
                if over
                else ""
            )
            ratio = p.get("throughput_ratio")
            speed = (
                f"; throughput {ratio:.2f}x [{p['throughput_ratio_ci'][0]:.2f}, {p['throughput_ratio_ci'][1]:.2f}]"
                if ratio is not None
                else ""
            )
            cells.append(
                f"{100 * p['difference']:+.0f} [{100 * p['ci_low']:+.0f}, {100 * p['ci_high']:+.0f}]{fewer}{across}{speed}"
            )
        lines.append(
            f"| {s['task']} | {s['method']} | {s['seeds']} x {s['episodes'] // s['seeds']}{data} | "
            f"{100 * s['success_mean']:.0f}%{spread} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def plot(summary: list[dict], path: Path) -> None:
    """The paired differences, one panel per baseline: each (task, method)'s pooled difference with its
    paired-bootstrap 95% interval (thick) and, over several draws, the two-stage one (thin, grey), which
    is what the efficacy question asks; rates alone hide the pairing and the draws' spread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = sorted(summary, key=lambda s: (s["task"] == ALL_TASKS, s["task"], s["method"]))
    tasks = list(dict.fromkeys(s["task"] for s in order))
    colours = {task: plt.get_cmap("tab10")(i % 10) for i, task in enumerate(tasks)}
    fig, axes = plt.subplots(
        1, len(BASELINES), sharey=True, figsize=(3.2 * len(BASELINES) + 3, 1.5 + 0.22 * len(order))
    )
    for ax, baseline in zip(axes, BASELINES, strict=True):
        for y, s in enumerate(order):
            if (p := s["paired"].get(baseline)) is None:
                continue
            if over := p.get("over_data_seeds"):
                ax.plot([100 * over["ci_low"], 100 * over["ci_high"]], [y, y], color="0.7", lw=1)
            ax.plot([100 * p["ci_low"], 100 * p["ci_high"]], [y, y], color=colours[s["task"]], lw=3)
            ax.plot(100 * p["difference"], y, "o", color="black", ms=3)
        ax.axvline(0, color="black", lw=0.8, ls="--")
        ax.set_title(vs(baseline), fontsize=8)
        ax.set_xlabel("difference in success (points)", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(order)), [f"{s['task']}: {s['method']}" for s in order], fontsize=7)
    axes[0].invert_yaxis()
    fig.suptitle("Each arm minus each baseline, paired on the same env seeds (95% CIs)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=None)
    parser.add_argument("--base-policy", choices=("native", "smolvla"), default="native")
    parser.add_argument(
        "--methods", nargs="+", default=None, choices=list({**FINE_TUNING_ARMS, **STOCK_ARMS})
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="fine-tuning seeds (default 0 1 2)"
    )
    parser.add_argument(
        "--data-seeds",
        type=int,
        nargs="+",
        default=None,
        help="seeds of the demos, stage 1 and the collected experience (default 0); each is its own draw "
        "of the data, under <root>/<task>/data_seed<k>/ and <results>/<task>/data_seed<k>/ (0: the task's "
        "folders themselves)",
    )
    parser.add_argument("--steps", type=int, default=None, help="fine-tuning steps per method")
    parser.add_argument(
        "--stage1-steps", type=int, default=None, help="stage-1 BC steps (use a new --root / --results)"
    )
    parser.add_argument("--eval-episodes", type=int, default=None)
    parser.add_argument(
        "--correction-trigger",
        choices=CORRECTION_TRIGGERS,
        default=None,
        help="when the expert takes over in the corrected rollouts (default disagreement; use a new --root / --results)",
    )
    parser.add_argument(
        "--tokenizer-padding",
        choices=TOKENIZER_PADDINGS,
        default=None,
        help="the demo plan's prompt padding (default max_length; longest: each batch to its longest prompt)",
    )
    parser.add_argument(
        "--camera-storage",
        choices=CAMERA_STORAGES,
        default=None,
        help="the demo plan's camera frames: png images or lossless video (use a new --root / --results)",
    )
    parser.add_argument(
        "--successful-demos",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="demos are the scripted expert's first successes (default); --no-successful-demos keeps its "
        "failed attempts, as every grid made before 2026-12-05 did (use a new --root / --results)",
    )
    parser.add_argument(
        "--operators",
        default=None,
        help="who demonstrates and corrects: operator profiles with their shares, e.g. better:1,okay:1,worse:1 "
        "(default: the clean scripted expert; use a new --root / --results)",
    )
    parser.add_argument(
        "--stage1",
        choices=STAGE1_METHODS,
        default=None,
        help="stage 1 on the demos: bc (default) or recap, as the paper pre-trains (use a new --root / --results)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="the demo's --quick sizes: a smoke test of the pipeline"
    )
    parser.add_argument(
        "--summary-only", action="store_true", help="tables from the committed cells, running nothing"
    )
    parser.add_argument("--root", default="outputs/efficacy_demo", help="data and checkpoints (reused)")
    parser.add_argument(
        "--results", default="benchmarks/results/efficacy_demo", help="one JSON per cell (commit them)"
    )
    args = parser.parse_args()
    arms = FINE_TUNING_ARMS if args.base_policy == "native" else STOCK_ARMS
    allowed = list(arms)
    args.methods = args.methods or default_arms(arms)
    if unknown := [m for m in args.methods if m not in allowed]:
        parser.error(f"--base-policy {args.base_policy} has no arm {unknown}; choose from {allowed}")
    plan_overrides = {
        "stage1_steps": args.stage1_steps,
        "stage2_steps": args.steps,
        "eval_episodes": args.eval_episodes,
        "correction_trigger": args.correction_trigger,
        "tokenizer_padding": args.tokenizer_padding,
        "camera_storage": args.camera_storage,
        "successful_demos": args.successful_demos,
        "operators": args.operators,
        "stage1": args.stage1,
    }
    budget = Budget(
        tuple(args.tasks) if args.tasks else DEFAULT.tasks,
        tuple(args.seeds) if args.seeds else DEFAULT.seeds,
        replace(
            QUICK if args.quick else DEFAULT.plan,
            **{k: v for k, v in plan_overrides.items() if v is not None},
        ),
        args.base_policy,
        tuple(args.data_seeds) if args.data_seeds else DEFAULT.data_seeds,
    )
    root, results = Path(args.root), Path(args.results)
    for task in budget.tasks if not args.summary_only else ():
        for data_seed in budget.data_seeds:
            TaskBench(task, budget, root, results, data_seed).run(args.methods)
    rows = all_cells(results, budget)
    summary = summarize(rows) + summarize(across_tasks(rows))
    table = f"{format_table(summary)}\n\nSuccess per draw of the data:\n\n{format_draws(rows)}"
    print("\n" + table)
    methods = sorted({r["method"].split("_beta")[0] for r in rows} - {"stage1"})
    report = {"budget": asdict(budget), "methods": {m: recorded_flags(m) for m in methods}}
    slim = [{k: v for k, v in r.items() if k not in ("successes", "steps")} for r in rows]
    (results / "efficacy.json").write_text(json.dumps({**report, "rows": slim, "summary": summary}, indent=2))
    (results / "efficacy.md").write_text(table + "\n")
    plot(summary, results / "efficacy.png")
    print(f"Wrote {results / 'efficacy.json'}, {results / 'efficacy.md'}, {results / 'efficacy.png'}")


if __name__ == "__main__":
    main()
