"""The demo's experiment: demos, stage 1, then two lanes at once, the RECAP iterations beside the
controls (the null control and the evaluation of stage 1), and the report.

Stage 2's advantages (default, the paper's estimator): `value-train --folds 2` fits two distributional
value functions, each on half of the episodes, `value-label` labels every episode with the one that never
saw it (a value function fits its own training episodes' returns better, which shrinks in-sample
advantages towards 0), and the policy trains on the labelled copy. The `iql` estimator instead trains IQL
critics (the policy config's default estimator) jointly with the policy."""

from __future__ import annotations

import time
from pathlib import Path

from . import flags as f
from . import steps
from .lanes import Lanes
from .plan import DEMO_ENV_SEEDS, DemoSettings, Workspace
from .report import write_report
from .steps import Labelled

NULL_CONTROL = "null control (stage 1 + stage-2 steps on the demos)"
STAGE1_NAMES = {"bc": "BC on demos", "recap": "RECAP on demos"}

Results = dict[str, tuple[Path, dict]]  # stage name -> (checkpoint, its eval_info.json)


def stage1(ws: Workspace, lanes: Lanes, demos: Path) -> tuple[Path, Labelled | None]:
    """Stage 1 from scratch on the demos: behaviour cloning, or RECAP as the paper pre-trains (then also
    the labelled demos it read)."""
    if ws.plan.stage1 == "recap":
        labelled = steps.label_advantages(ws, lanes, "demos", demos, full_return=True)
        flags = f.LABELLED_RECAP_FLAGS
        return steps.train(ws, lanes, "stage1", labelled.path, ws.plan.stage1_steps, None, flags), labelled
    return steps.train(ws, lanes, "stage1", demos, ws.plan.stage1_steps, None), None


def stage1_demos(ws: Workspace) -> Path:
    """The demos as stage 1 trained on them (a RECAP stage 1 reads its labelled copy)."""
    return ws.data / ("demos_labelled" if ws.plan.stage1 == "recap" else "demos")


def controls(settings: DemoSettings, lanes: Lanes, stage1: Path) -> Results:
    """Stage 1 and the null control, each with its evaluation."""
    ws = settings.workspace
    results = {
        f"stage 1 ({STAGE1_NAMES[ws.plan.stage1]})": (stage1, steps.evaluate(ws, lanes, "stage1", stage1))
    }
    if settings.null_control:
        # The same fine-tuning path and budget as stage 2, on data that carries nothing new: what
        # stage 2 must beat to show that the experience, not the extra steps, helped.
        null = steps.train(ws, lanes, "null_control", stage1_demos(ws), ws.plan.stage2_steps, stage1)
        results[NULL_CONTROL] = (null, steps.evaluate(ws, lanes, "null_control", null))
    return results


def stage2_flags(settings: DemoSettings) -> tuple[str, ...]:
    """What a native stage 2 changes over stage 1's config: RECAP on, with its advantage estimator (read
    from the labelled copy for the paper's)."""
    estimator = settings.advantage_estimator
    flags = (*f.RECAP_FLAGS, f.policy(f.ADVANTAGE_ESTIMATOR, estimator))
    return (*flags, f.FROM_DATASET) if estimator == "mc_distributional" else flags


def iterations(
    settings: DemoSettings, lanes: Lanes, demos: Path, stage1: Path
) -> tuple[Results, Path, Labelled | None]:
    """Each iteration: experience of the latest policy, then RECAP from stage 1 on all of it, evaluated.
    Returns the stages, the last mixed dataset and its labelled copy (None with IQL critics)."""
    ws, results = settings.workspace, {}
    latest, experience, labelled = stage1, [demos], None
    for iteration in range(1, settings.iterations + 1):
        mixed = steps.gather(ws, lanes, iteration, latest, experience)
        stage = f"stage{iteration + 1}"
        if ws.base_policy != "native":
            # A stock VLA reads the indicator from its prompt: label, tag, fine-tune it unchanged.
            labelled = steps.label_advantages(ws, lanes, mixed.name, mixed)
            tagged = steps.tag_prompts(ws, lanes, labelled.path)
            trained = steps.train(ws, lanes, f"{stage}_tagged", tagged, ws.plan.stage2_steps, stage1)
            latest = steps.tag_checkpoint(ws, lanes, trained, stage)
            name = f"stage {iteration + 1} (RECAP prompt, iteration {iteration})"
        else:
            data = mixed
            if settings.advantage_estimator == "mc_distributional":
                labelled = steps.label_advantages(ws, lanes, mixed.name, mixed)
                data = labelled.path
            # Like the paper, every iteration retrains from the pre-trained (stage 1) checkpoint.
            latest = steps.train(ws, lanes, stage, data, ws.plan.stage2_steps, stage1, stage2_flags(settings))
            name = f"stage {iteration + 1} (RECAP, iteration {iteration})"
        results[name] = (latest, steps.evaluate(ws, lanes, stage, latest))
    return results, mixed, labelled


def run_demo(settings: DemoSettings, lanes: Lanes | None = None) -> dict:
    """Demos and stage 1 first; then two lanes at once, one compute thread each: the RECAP iterations
    (collect, label, stage 2, its evaluation), and the controls (null control, evaluation of stage 1 and
    of the null control) beside them. Returns the report it wrote."""
    ws = settings.workspace
    lanes = lanes or Lanes(ws.logs)
    started = time.perf_counter()
    demos = steps.collect(ws, lanes, "demos", "demo", ws.plan.demos, ws.env_seed(DEMO_ENV_SEEDS))
    first, labelled_demos = stage1(ws, lanes, demos)
    (stages, mixed, labelled), control = lanes.run_all(
        [lambda: iterations(settings, lanes, demos, first), lambda: controls(settings, lanes, first)], lanes=2
    )
    results = {**control, **stages}  # stage 1, null control, stage 2, ...
    return write_report(
        settings,
        {name: info for name, (_, info) in results.items()},
        {name: checkpoint for name, (checkpoint, _) in results.items()},
        mixed,
        labelled or labelled_demos,
        (NULL_CONTROL,),
        lanes.timings,
        time.perf_counter() - started,
    )
