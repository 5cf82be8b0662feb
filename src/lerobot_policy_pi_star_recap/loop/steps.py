"""The loop's steps (collect, merge, train, label, tag, evaluate), each one real command of this package
or of LeRobot, run in a lane and writing under the workspace."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from . import flags as f
from .lanes import Lanes, TrainedRun
from .plan import (
    CORRECTION_ENV_SEEDS,
    DISAGREEMENT,
    EVAL_ENV_SEEDS,
    HANDBACK_STEPS,
    ROLLOUT_ENV_SEEDS,
    STALL_STEPS,
    Workspace,
    operator_counts,
)


@dataclass(frozen=True)
class Labelled:
    """A `value-label` copy of a dataset, and which value function to inspect it with: fold 0's, on the
    episodes it never trained on."""

    path: Path
    value: Path
    held_out: tuple[int, ...]


def collect(
    ws: Workspace, lanes: Lanes, name: str, mode: str, episodes: int, seed: int, policy: Path | None = None
) -> Path:
    """`pi-star-recap collect` into data/<name>: expert demos, autonomous rollouts or corrected episodes."""
    plan, output = ws.plan, ws.data / name
    command = [
        str(ws.bin / "pi-star-recap"),
        "collect",
        f"--mode={mode}",
        f"--task={ws.task}",
        f"--episodes={episodes}",
        f"--seed={seed}",
        f"--output={output}",
        f"--image-size={plan.image_size}",
        f"--episode-length={plan.episode_length}",
        "--device=cpu",
    ]
    if plan.camera_storage == "video":
        command.append("--video")
    if mode == "demo" and plan.successful_demos:
        command.append("--successes-only")
    if policy is not None:
        command.append(f"--policy={policy}")
    if plan.operators and mode != "auto":  # who demonstrates, or who takes over
        command.append(f"--operators={operator_counts(plan.operators, episodes)}")
    if mode == "intervention":
        # The expert takes over when the trigger fires and hands back after 20 steps: the data keeps
        # the policy's own behaviour and the corrections.
        command += [f"--trigger={plan.correction_trigger}", f"--handback-steps={HANDBACK_STEPS}"]
        if plan.correction_trigger == "stall":
            command.append(f"--stall-steps={STALL_STEPS}")
        else:
            command.append(f"--disagreement={DISAGREEMENT}")
    lanes.run(f"collect_{name}", command, threads=lanes.step_threads)
    return output


def merge(ws: Workspace, lanes: Lanes, name: str, inputs: list[Path]) -> Path:
    output = ws.data / name
    command = [str(ws.bin / "pi-star-recap"), "merge", "--inputs", *map(str, inputs), f"--output={output}"]
    lanes.run(f"merge_{name}", command)
    return output


def gather(
    ws: Workspace, lanes: Lanes, iteration: int, policy: Path, experience: list[Path], tag: str = ""
) -> Path:
    """Autonomous rollouts and corrected episodes of `policy`, appended to `experience`, all merged.
    `tag` names the datasets apart when several policies collect the same iteration's env seeds."""
    seed = ws.env_seed(ROLLOUT_ENV_SEEDS * iteration)
    plan = ws.plan
    experience.append(collect(ws, lanes, f"rollouts{iteration}{tag}", "auto", plan.rollouts, seed, policy))
    corrections = f"corrections{iteration}{tag}"
    experience.append(
        collect(ws, lanes, corrections, "intervention", plan.corrections, seed + CORRECTION_ENV_SEEDS, policy)
    )
    return merge(ws, lanes, f"mixed{iteration}{tag}", experience)


def fresh_policy_flags(ws: Workspace) -> list[str]:
    """The demo's tiny pi_star_recap policy. Returns are normalised by the worst possible one (every step
    -1, then -C_fail = episode length), fixed from stage 1 on, so values mean the same in every stage
    (stage 1 sees no failures)."""
    return [
        *f.POLICY_FLAGS,
        f.policy(f.RETURN_NORMALIZER, 2 * ws.plan.episode_length),
        f.policy(f.TOKENIZER_PADDING, ws.plan.tokenizer_padding),
    ]


def run_flags(ws: Workspace, dataset: Path, output: Path, steps: int, seed: int | None) -> list[str]:
    """lerobot-train flags shared by every training run: data, budget, CPU, no hub or W&B."""
    return [
        f"--dataset.repo_id=local/{dataset.name}",
        f"--dataset.root={dataset}",
        f"--output_dir={output}",
        f"--steps={steps}",
        f"--batch_size={ws.plan.batch_size}",
        f"--save_freq={steps}",
        f"--log_freq={max(steps // 10, 1)}",
        f"--seed={ws.seed if seed is None else seed}",
        # One data-loading worker beside one compute thread (train's threads=1): on 2 cores this is
        # 1.4x faster than two compute threads waiting on in-process data loading (measured).
        "--num_workers=1",
        "--policy.device=cpu",
        "--policy.push_to_hub=false",
        "--wandb.enable=false",
    ]


def stock_policy_flags(ws: Workspace, dataset: Path) -> list[str]:
    """Stage 1 of a stock VLA: fine-tune the base path, or build it from scratch (tiny SmolVLA)."""
    from ..stock_vlas.base_policies import policy_flags

    if ws.base_path:
        return [f"--policy.path={ws.base_path}"]
    info = json.loads((dataset / "meta" / "info.json").read_text())
    state_dim = info["features"]["observation.state"]["shape"][0]
    return policy_flags(ws.base_policy, ws.out, ws.plan.image_size, state_dim, f.CHUNK_SIZE, f.N_ACTION_STEPS)


def train(
    ws: Workspace,
    lanes: Lanes,
    name: str,
    dataset: Path,
    steps: int,
    init: Path | None,
    flags: tuple[str, ...] = (),
    seed: int | None = None,
) -> Path:
    """lerobot-train into <name>/. A first stage (init None) trains from scratch, by behaviour cloning
    unless `flags` turn RECAP on; later stages start from `init` with `flags` overriding its config. One
    compute thread even when alone: its data-loading worker needs the other core (with PNG frames
    lerobot-train decodes the images of all 16 frames of an action chunk; video frames cost 2.2x less)."""
    output = ws.out / name
    if ws.base_policy != "native":
        fresh = stock_policy_flags(ws, dataset)
    else:
        fresh = ["--policy.type=pi_star_recap", *fresh_policy_flags(ws), *(flags or f.NO_CONDITIONING)]
    policy = fresh if init is None else [f"--policy.path={init}", *flags]
    command = [str(ws.bin / "lerobot-train"), *policy, *run_flags(ws, dataset, output, steps, seed)]
    checkpoint = ws.checkpoint(name)
    lanes.run(f"train_{name}", command, threads=1, trained=TrainedRun(steps, checkpoint))
    return checkpoint


def label_advantages(
    ws: Workspace, lanes: Lanes, name: str, dataset: Path, full_return: bool = False
) -> Labelled:
    """The paper's staged advantages, cross-fitted: `value-train --folds K` then `value-label` with all
    K value functions, each episode valued by the one that did not train on it, into data/<name>_labelled.
    `full_return`: return minus value, as the paper pre-trains (else N-step)."""
    from lerobot.datasets import LeRobotDatasetMetadata

    from ..commands.value import fold_training_episodes

    folds = ws.plan.value_folds
    output = ws.out / f"value_{name}"
    command = [
        str(ws.bin / "pi-star-recap"),
        "value-train",
        f"--folds={folds}",
        f"--jobs={min(folds, os.cpu_count() or 1)}",  # folds at once, one compute thread each
        *fresh_policy_flags(ws),
        *run_flags(ws, dataset, output, ws.plan.value_steps, None),
    ]
    lanes.run(f"train_value_{name}", command, threads=1)
    checkpoints = [output / f"fold{k}" / "checkpoints" / "last" / "pretrained_model" for k in range(folds)]
    episodes = list(range(LeRobotDatasetMetadata(f"local/{dataset.name}", root=dataset).total_episodes))
    trained = fold_training_episodes(episodes, folds)[0]
    labelled = ws.data / f"{name}_labelled"
    # With the stall trigger the expert took over because the policy stalled for STALL_STEPS: those
    # frames are bad. A disagreement takeover says nothing about the frames before it.
    stalls = STALL_STEPS if ws.plan.correction_trigger == "stall" else 0
    lanes.run(
        f"label_{name}",
        [
            str(ws.bin / "pi-star-recap"),
            "value-label",
            "--value.path",
            *map(str, checkpoints),
            f"--input={dataset}",
            f"--output={labelled}",
            f"--negative-before-takeover={stalls}",
            *(["--full-return"] if full_return else []),
            "--device=cpu",
            "--overwrite",
        ],
    )
    return Labelled(labelled, checkpoints[0], tuple(e for e in episodes if e not in trained))


def tag_prompts(ws: Workspace, lanes: Lanes, labelled: Path) -> Path:
    """The labelled dataset with the indicator in each frame's prompt (stock VLAs read it as text)."""
    tagged = ws.data / f"{labelled.name.removesuffix('_labelled')}_tagged"
    command = [str(ws.bin / "pi-star-recap"), "tag-prompts", f"--input={labelled}", f"--output={tagged}"]
    lanes.run(f"tag_{labelled.name}", [*command, f"--seed={ws.seed}", "--overwrite"])
    return tagged


def tag_checkpoint(ws: Workspace, lanes: Lanes, checkpoint: Path, name: str) -> Path:
    """A copy of a stock checkpoint whose preprocessor appends "Advantage: positive" to the task."""
    output = ws.checkpoint(name)
    command = [str(ws.bin / "pi-star-recap"), "tag-checkpoint", f"--input={checkpoint}"]
    lanes.run(f"tag_{name}", [*command, f"--output={output}", "--overwrite"])
    return output


def evaluate(ws: Workspace, lanes: Lanes, name: str, checkpoint: Path, flags: tuple[str, ...] = ()) -> dict:
    """lerobot-eval of `checkpoint` on the run's evaluation env seeds (the same for every policy, so
    evaluations pair episode by episode); returns its eval_info.json."""
    output = ws.out / "eval" / name
    shutil.rmtree(output, ignore_errors=True)
    plan = ws.plan
    lanes.run(
        f"eval_{name}",
        [
            str(ws.bin / "lerobot-eval"),
            f"--policy.path={checkpoint}",
            "--env.type=metaworld_recap",
            f"--env.task={ws.task}",
            f"--env.image_size={plan.image_size}",
            f"--env.episode_length={plan.episode_length}",
            "--env.reward=recap",
            f"--eval.n_episodes={plan.eval_episodes}",
            f"--eval.batch_size={plan.eval_batch_size}",
            "--policy.device=cpu",
            f"--output_dir={output}",
            f"--seed={ws.env_seed(EVAL_ENV_SEEDS)}",
            *flags,
        ],
        threads=lanes.step_threads,
    )
    return json.loads((output / "eval_info.json").read_text())
