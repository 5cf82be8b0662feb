"""`pi-star-recap demo`: the RECAP loop end to end on CPU, through the real LeRobot commands.

demos (scripted expert) -> stage 1 (lerobot-train, demos only) -> autonomous rollouts of stage 1 with
simulated expert corrections -> stage 2 (lerobot-train --policy.path=stage 1, RECAP on all data) ->
[more iterations] -> lerobot-eval of every stage on the same seeds -> report (table, JSON, plots).

Stage 2's advantages (default, the paper's estimator): `value-train --folds 2` fits two distributional
value functions, each on half of the episodes, `value-label` labels every episode with the one that never
saw it (a value function fits its own training episodes' returns better, which shrinks in-sample
advantages towards 0), and the policy trains on the labelled copy. `--advantage-estimator iql` instead
trains IQL critics (the policy config's default estimator) jointly with the policy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..configuration_pi_star_recap import TOKENIZER_PADDINGS
from ..dataset_writing import write_text_atomic
from ..sim.config import METAWORLD_FPS
from .collect import SUCCESS_ATTEMPTS
from .common import (
    CommandFailed,
    RawDescriptionHelpFormatter,
    UsageError,
    add_option,
    check_local_or_hub,
    die_with_parent,
    report_errors,
)


@dataclass(frozen=True)
class DemoPlan:
    """How much of everything the demo does; `--quick` is the CI smoke-test size."""

    demos: int = 10
    # Record `demos` successful expert episodes, discarding the scripted expert's failed attempts (collect
    # --successes-only). Runs before this field kept them: on sweep-into-v3 the expert times out on 1-4 of
    # 10 seeds, and those 200-frame failures made up 30-72% of stage 1's frames (BENCHMARKS §2.2m).
    successful_demos: bool = True
    # Stage 1 must be converged, or "stage 2 beats stage 1" only rewards the extra steps: at 3600 steps the
    # null control (1800 more on the demos) is within noise of it on push-v3 and sweep-into-v3 (BENCHMARKS
    # §2.2e, §2.2g); at 1200 it gains 11 points (§2.2). Over three --seed draws of the demos it still gains
    # +11 on average (+7 / +10 / +16, §2.2l) with the expert's failed demos kept; with successful demos
    # seed 2's null control is +1 [-4, +6] over it (§2.2m): converged on that draw.
    stage1_steps: int = 3600
    rollouts: int = 20  # autonomous episodes of the latest policy, per iteration
    corrections: int = 20  # episodes where the expert takes over when the trigger fires, per iteration
    # ~13x stage 1's frames: 600 steps left RECAP's labels unlearned (§2.2); a 30-minute plan with 1200 (and
    # stage 1 2400) put RECAP 17 points under the null control (§2.2k)
    stage2_steps: int = 1800
    eval_episodes: int = 100  # per arm, on the same env seeds (paired comparison)
    eval_batch_size: int = 10  # envs per lerobot-eval batch (one batched policy pass for all of them)
    batch_size: int = 32
    episode_length: int = 200
    image_size: int = 96
    value_steps: int = 400  # per cross-fitted value function (paper estimator)
    value_folds: int = 2
    # When the simulated expert takes over: "disagreement" (the policy's action is more than DISAGREEMENT
    # from the expert's, like an operator who steps in before the mistake) or "stall" (the policy made no
    # progress for STALL_STEPS steps; the stall frames are then labelled negative). Both hand back after
    # 20 steps. With stall corrections every fine-tuning arm lost to the null control on push-v3 (§2.2b).
    correction_trigger: str = "disagreement"
    # Prompts padded to 48 tokens ("max_length", what every efficacy-grid cell used) or to the batch's longest
    # ("longest", positions over real tokens: 1.25x cheaper steps, BENCHMARKS §1b). Demo runs on
    # sweep-into-v3 gave RECAP 75% with longest, 85% and 76% with max_length (§2.2i-j): no clear cost.
    tokenizer_padding: str = "max_length"
    # Camera frames in every dataset the demo writes: "video" (collect --video: lossless H.264, pixels
    # within 2/255; lerobot-train then decodes one frame per sample, not the 16 frames of the action
    # chunk, BENCHMARKS §1b) or "png" images (runs made before this field).
    camera_storage: str = "video"
    # Who demonstrates: "" the clean scripted expert, or simulated operators of mixed quality with their
    # shares of the demos, e.g. "better:1,okay:1,worse:1" (profiles in sim.actors.OPERATORS); the
    # corrections' takeovers then come from the same operators in the same shares.
    operators: str = ""
    # Stage 1: "bc" (behaviour cloning on the demos) or "recap", as the paper pre-trains: cross-fitted
    # value functions on the demos, full-return advantage indicators, the advantage-conditioned policy.
    stage1: str = "bc"


QUICK = DemoPlan(
    demos=3,
    stage1_steps=30,
    rollouts=2,
    corrections=2,
    stage2_steps=30,
    value_steps=20,
    eval_episodes=3,
    eval_batch_size=3,
    batch_size=8,
    episode_length=60,
)

# The tiny policy the demo trains: the built-in tiny VLM, a small expert, and a policy learning rate
# suited to training from scratch (the config's default policy_lr, 3e-5, assumes a pretrained VLM).
CHUNK_SIZE, N_ACTION_STEPS = 16, 8  # actions predicted / executed per chunk, for every base policy
POLICY_FLAGS = [
    "--policy.vlm_model_name=tiny",
    "--policy.expert_width=128",
    "--policy.expert_depth=4",
    "--policy.expert_heads=4",
    f"--policy.chunk_size={CHUNK_SIZE}",
    f"--policy.n_action_steps={N_ACTION_STEPS}",
    "--policy.policy_lr=3e-4",
    "--policy.scheduler_warmup_steps=100",
]
STALL_STEPS = 20  # the expert takes over after this many steps without progress
DISAGREEMENT = 1.0  # or when the policy's 4-d action is this far (L2) from the expert's
CORRECTION_TRIGGERS = ("stall", "disagreement")
CAMERA_STORAGES = ("png", "video")
STAGE1_METHODS = ("bc", "recap")
PLAN_CHOICES = {
    "stage1": STAGE1_METHODS,
    "correction_trigger": CORRECTION_TRIGGERS,
    "tokenizer_padding": TOKENIZER_PADDINGS,
    "camera_storage": CAMERA_STORAGES,
}
# What stage 2 changes over the stage-1 checkpoint: RECAP's critics and advantage conditioning turn on.
RECAP_FLAGS = ("--policy.use_advantage_conditioning=true",)
# RECAP on a labelled copy (`label_advantages`): the paper's indicators read from the dataset.
LABELLED_RECAP_FLAGS = (
    *RECAP_FLAGS,
    "--policy.advantage_estimator=mc_distributional",
    "--policy.advantage_source=dataset",
)


def operator_counts(shares: str, episodes: int) -> str:
    """`collect --operators` for `episodes` episodes split by `shares` ("better:1,okay:1,worse:1" -> for 10:
    "better:4,okay:3,worse:3"): largest remainders, ties to the profile named first; profiles whose share
    rounds to no episode are left out."""
    from ..sim.actors import parse_operators

    groups = parse_operators(shares)
    total = sum(weight for _, weight in groups)
    exact = [episodes * weight / total for _, weight in groups]
    counts = [int(e) for e in exact]
    by_remainder = sorted(range(len(groups)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: episodes - sum(counts)]:
        counts[i] += 1
    return ",".join(f"{name}:{n}" for (name, _), n in zip(groups, counts, strict=True) if n)


# Env seeds (one per episode: episode i of a collection or evaluation starting at S runs env seed S + i).
# Every `--seed` owns its own block, so runs with other seeds share no demo, rollout start or evaluation
# episode (with offsets of 1 per seed, seed 1 repeated 9 of seed 0's 10 demos exactly: the scripted
# expert is deterministic). Within a block: demos from 0, iteration k's rollouts from 1000 k and its
# corrections from 1000 k + 500, evaluation from 10 000 (successful demos try at most 5 seeds per demo).
# Seed 0's block is what every committed run used.
ENV_SEEDS_PER_RUN = 100_000
DEMO_ENV_SEEDS, ROLLOUT_ENV_SEEDS, CORRECTION_ENV_SEEDS, EVAL_ENV_SEEDS = 0, 1000, 500, 10_000


def check_env_seed_blocks(plan: DemoPlan, iterations: int) -> None:
    """Refuse a plan whose collections or evaluation would run into the next one's env seeds: two
    datasets sharing start states would no longer be independent draws (and demos would repeat)."""
    demo_seeds = plan.demos * (SUCCESS_ATTEMPTS if plan.successful_demos else 1)
    ranges = [  # (flag, env seeds used, env seeds free before the next block)
        ("--demos", demo_seeds, ROLLOUT_ENV_SEEDS - DEMO_ENV_SEEDS),
        ("--rollouts", plan.rollouts, CORRECTION_ENV_SEEDS),
        ("--corrections", plan.corrections, ROLLOUT_ENV_SEEDS - CORRECTION_ENV_SEEDS),
        ("--iterations", (iterations + 1) * ROLLOUT_ENV_SEEDS, EVAL_ENV_SEEDS),  # iteration k uses 1000 k..
        ("--eval-episodes", plan.eval_episodes, ENV_SEEDS_PER_RUN - EVAL_ENV_SEEDS),
    ]
    for flag, used, room in ranges:
        if used > room:
            raise UsageError(
                f"{flag} is too large for the demo's env-seed blocks ({used} env seeds where {room} are "
                f"free; ENV_SEEDS_PER_RUN in commands/demo.py): lower it, or run several --seed values."
            )


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="Run the RECAP loop end to end on a MetaWorld task (CPU, no downloads) and report the gain.",
        description=__doc__,
        formatter_class=RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--task",
        default="sweep-into-v3",
        help="MetaWorld v3 task (default sweep-into-v3: with 10 successful demos its stage 1 reached 75%% on seed 2, BENCHMARKS §2.2m)",
    )
    add_option(
        parser, "--output", "--output-dir", default="outputs/demo", help="folder of everything it writes"
    )
    parser.add_argument("--iterations", type=int, default=1, help="rollout + RECAP rounds after stage 1")
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of training, and of the env seeds of collection and evaluation (each --seed has its own "
        f"block of {ENV_SEEDS_PER_RUN} env seeds: runs with other seeds share no episode)",
    )
    parser.add_argument(
        "--advantage-estimator",
        choices=["mc_distributional", "iql"],
        default="mc_distributional",
        help="stage 2's advantages: the paper's distributional value, cross-fitted, or IQL critics trained "
        "jointly with the policy",
    )
    parser.add_argument(
        "--base-policy",
        choices=["native", "smolvla", "pi05"],
        default="native",
        help="the policy trained: pi_star_recap (native), or a stock LeRobot VLA conditioned through the "
        "prompt (tag-prompts / tag-checkpoint; SmolVLA is built tiny and offline unless --base-path)",
    )
    parser.add_argument(
        "--base-path",
        default=None,
        help="a pretrained stock checkpoint stage 1 fine-tunes from (e.g. lerobot/smolvla_base, "
        "lerobot/pi05_base; needs a download and, at that size, a GPU)",
    )
    parser.add_argument(
        "--no-null-control",
        dest="null_control",
        action="store_false",
        help="skip the null control (stage 1 fine-tuned on its own demos with stage 2's steps)",
    )
    parser.add_argument("--quick", action="store_true", help="a few-minute smoke test (tiny budgets)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    for name, default in asdict(DemoPlan()).items():
        kind = (
            {"action": argparse.BooleanOptionalAction}
            if isinstance(default, bool)
            else {"type": type(default), "choices": PLAN_CHOICES.get(name)}
        )
        parser.add_argument(f"--{name.replace('_', '-')}", default=None, help=f"default {default}", **kind)
    parser.set_defaults(run=run)


# PyTorch's message when a DataLoader worker dies of SIGABRT ("terminate called without an active
# exception" at interpreter shutdown, seen in about one lerobot-train run in twelve).
WORKER_ABORT = re.compile(r"DataLoader worker .* killed by signal: Aborted")


@dataclass(frozen=True)
class TrainedRun:
    """What a lerobot-train step must have left for a non-zero exit to count as a shutdown abort."""

    steps: int
    checkpoint: Path  # checkpoints/last/pretrained_model

    def completed(self, log_path: Path) -> bool:
        """True only if the log shows the final save and ends in a DataLoader-worker abort, and the
        checkpoint loads: anything else is a real failure and must not be hidden."""
        lines = log_path.read_text(errors="replace").splitlines()
        final_save = re.compile(rf"Checkpoint policy after step {self.steps}\b")
        saved = any(final_save.search(line) for line in lines)
        aborted = any(WORKER_ABORT.search(line) for line in lines[-40:])
        return saved and aborted and _checkpoint_loads(self.checkpoint)


def _checkpoint_loads(checkpoint: Path) -> bool:
    """config.json parses and model.safetensors opens with at least one tensor (a cut-off write fails)."""
    from safetensors import SafetensorError, safe_open

    try:
        json.loads((checkpoint / "config.json").read_text())
        with safe_open(str(checkpoint / "model.safetensors"), framework="pt") as weights:
            return len(list(weights.keys())) > 0
    except (OSError, ValueError, SafetensorError):
        return False


class Demo:
    def __init__(self, args: argparse.Namespace):
        plan = QUICK if args.quick else DemoPlan()
        overrides = {k: getattr(args, k) for k in asdict(plan) if getattr(args, k) is not None}
        self.plan = replace(plan, **overrides)
        if self.plan.value_folds < 2:
            raise UsageError(
                "--value-folds must be >= 2 (each episode is valued by a fold that never saw it)."
            )
        check_env_seed_blocks(self.plan, args.iterations)
        if self.plan.operators:
            try:
                operator_counts(self.plan.operators, self.plan.demos)
            except ValueError as error:
                raise UsageError(str(error).replace("--operators", "--operators (shares)")) from None
        self.args = args
        self.out = Path(args.output)
        self.logs = self.out / "logs"
        self.bin = Path(sys.executable).parent
        self.timings: dict[str, float] = {}
        # Two lanes share the machine after stage 1 (see `run`): the processes they run, a flag that stops
        # both when one fails, the first failure (the one to report), and which lane prints progress bars.
        self.processes: set[subprocess.Popen] = set()
        self.stopping = threading.Event()
        self.failure: BaseException | None = None
        self.lock = threading.Lock()  # a step starts, or the lanes stop, never both at once
        self.lane = threading.local()
        # Compute threads of collection and evaluation: all cores, until two lanes share them.
        self.step_threads: int | None = None
        # (value checkpoint, episodes it never trained on) of the latest cross-fitted labelling
        self.held_out_value: tuple[Path, list[int]] | None = None

    # --- Steps -----------------------------------------------------------------------------------
    def run_step(
        self, name: str, command: list[str], threads: int | None = None, trained: TrainedRun | None = None
    ) -> None:
        """Run one command with `threads` compute threads (None: all cores), its full output in
        logs/<name>.log and its progress bars on the console. `trained` marks a lerobot-train step, which
        may abort at shutdown after its work is saved."""
        self.logs.mkdir(parents=True, exist_ok=True)
        print(f"\n=== {name}: {' '.join(command[:2])} ...", flush=True)
        start = time.perf_counter()
        log_path = self.logs / f"{name}.log"
        with open(log_path, "w") as log:
            log.write(" ".join(command) + "\n")
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
            if threads is not None:
                env["OMP_NUM_THREADS"] = str(threads)
            with self.lock:
                if self.stopping.is_set():
                    raise CommandFailed(f"{name} not started: another step of the demo failed")
                process = subprocess.Popen(
                    command,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    bufsize=1,
                    env=env,
                    preexec_fn=die_with_parent,  # a killed demo leaves no lerobot-train writing into --output
                )
                self.processes.add(process)
            try:
                _forward_progress(process.stdout, log, name, bars=not getattr(self.lane, "quiet", False))
                code = process.wait()
            finally:
                self.processes.discard(process)
        self.timings[name] = time.perf_counter() - start
        if self.stopping.is_set():
            raise CommandFailed(f"{name} stopped: another step of the demo failed")
        if code != 0 and trained is not None and trained.completed(log_path):
            print(
                f"warning: {name} exited {code} at shutdown (a DataLoader worker aborted) after saving its "
                f"final checkpoint, which loads; continuing (log {log_path})",
                file=sys.stderr,
            )
        elif code != 0:
            tail = log_path.read_text().splitlines()[-25:]
            print("\n".join(tail), file=sys.stderr)
            raise CommandFailed(f"{name} failed (exit {code}); the lines above end its log {log_path}")

    def in_lane(self, work, *args, quiet: bool = False):
        """`work(*args)` as one lane of the demo: its first failure stops the other lane's processes."""
        self.lane.quiet = quiet
        try:
            return work(*args)
        except BaseException as error:
            with self.lock:
                self.failure = self.failure or error
                self.stopping.set()
                running = list(self.processes)
            for process in running:
                process.kill()
            raise

    def env_seed(self, offset: int) -> int:
        """The first env seed of a collection or evaluation at `offset` in this run's block."""
        return self.args.seed * ENV_SEEDS_PER_RUN + offset

    def collect(self, name: str, mode: str, episodes: int, seed: int, policy: Path | None = None) -> Path:
        output = self.out / "data" / name
        command = [
            str(self.bin / "pi-star-recap"),
            "collect",
            f"--mode={mode}",
            f"--task={self.args.task}",
            f"--episodes={episodes}",
            f"--seed={seed}",
            f"--output={output}",
            f"--image-size={self.plan.image_size}",
            f"--episode-length={self.plan.episode_length}",
            "--device=cpu",
        ]
        if self.plan.camera_storage == "video":
            command.append("--video")
        if mode == "demo" and self.plan.successful_demos:
            command.append("--successes-only")
        if policy is not None:
            command.append(f"--policy={policy}")
        if self.plan.operators and mode != "auto":  # who demonstrates, or who takes over
            command.append(f"--operators={operator_counts(self.plan.operators, episodes)}")
        if mode == "intervention":
            # The expert takes over when the trigger fires and hands back after 20 steps: the data keeps
            # the policy's own behaviour and the corrections.
            command += [f"--trigger={self.plan.correction_trigger}", "--handback-steps=20"]
            if self.plan.correction_trigger == "stall":
                command.append(f"--stall-steps={STALL_STEPS}")
            else:
                command.append(f"--disagreement={DISAGREEMENT}")
        self.run_step(f"collect_{name}", command, threads=self.step_threads)
        return output

    def merge(self, name: str, inputs: list[Path]) -> Path:
        output = self.out / "data" / name
        self.run_step(
            f"merge_{name}",
            [str(self.bin / "pi-star-recap"), "merge", "--inputs", *map(str, inputs), f"--output={output}"],
        )
        return output

    def train(
        self,
        name: str,
        dataset: Path,
        steps: int,
        init: Path | None,
        flags: tuple[str, ...] = (),
        seed: int | None = None,
    ) -> Path:
        """Stage 1 (init None) trains from scratch, by behaviour cloning unless `flags` turn RECAP on; later
        stages start from `init` with `flags` overriding its config (e.g. RECAP_FLAGS). One compute thread even when
        alone: its data-loading worker needs the other core (with PNG frames lerobot-train decodes the
        images of all 16 frames of an action chunk; video frames cost 2.2x less: BENCHMARKS.md §1b)."""
        output = self.out / name
        fresh = [
            "--policy.type=pi_star_recap",
            *self.fresh_policy_flags(),
            *(flags or ("--policy.use_advantage_conditioning=false",)),
        ]
        if self.args.base_policy != "native":
            fresh = self.stock_policy_flags(dataset)
        policy = fresh if init is None else [f"--policy.path={init}", *flags]
        command = [str(self.bin / "lerobot-train"), *policy, *self.run_flags(dataset, output, steps, seed)]
        checkpoint = output / "checkpoints" / "last" / "pretrained_model"
        self.run_step(f"train_{name}", command, threads=1, trained=TrainedRun(steps, checkpoint))
        return checkpoint

    def label_advantages(self, name: str, dataset: Path, full_return: bool = False) -> Path:
        """The paper's staged advantages, cross-fitted: `value-train --folds K` then `value-label` with all
        K value functions, each episode valued by the one that did not train on it. Returns the labelled
        copy of `dataset`. `full_return`: return minus value, as the paper pre-trains (else N-step)."""
        from lerobot.datasets import LeRobotDatasetMetadata

        from .value import fold_training_episodes

        folds = self.plan.value_folds
        output = self.out / f"value_{name}"
        command = [
            str(self.bin / "pi-star-recap"),
            "value-train",
            f"--folds={folds}",
            f"--jobs={min(folds, os.cpu_count() or 1)}",  # folds at once, one compute thread each
            *self.fresh_policy_flags(),
            *self.run_flags(dataset, output, self.plan.value_steps, None),
        ]
        self.run_step(f"train_value_{name}", command, threads=1)
        checkpoints = [
            output / f"fold{k}" / "checkpoints" / "last" / "pretrained_model" for k in range(folds)
        ]
        episodes = list(range(LeRobotDatasetMetadata(f"local/{dataset.name}", root=dataset).total_episodes))
        trained = fold_training_episodes(episodes, folds)[0]
        self.held_out_value = (checkpoints[0], [e for e in episodes if e not in trained])
        labelled = self.out / "data" / f"{name}_labelled"
        # With the stall trigger the expert took over because the policy stalled for STALL_STEPS: those
        # frames are bad. A disagreement takeover says nothing about the frames before it.
        stalls = STALL_STEPS if self.plan.correction_trigger == "stall" else 0
        self.run_step(
            f"label_{name}",
            [
                str(self.bin / "pi-star-recap"),
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
        return labelled

    def stock_policy_flags(self, dataset: Path) -> list[str]:
        """Stage 1 of a stock VLA: fine-tune --base-path, or build it from scratch (tiny SmolVLA)."""
        from ..stock_vla import policy_flags

        if self.args.base_path:
            return [f"--policy.path={self.args.base_path}"]
        info = json.loads((dataset / "meta" / "info.json").read_text())
        state_dim = info["features"]["observation.state"]["shape"][0]
        return policy_flags(
            self.args.base_policy, self.out, self.plan.image_size, state_dim, CHUNK_SIZE, N_ACTION_STEPS
        )

    def tag_prompts(self, labelled: Path) -> Path:
        """The labelled dataset with the indicator in each frame's prompt (stock VLAs read it as text)."""
        tagged = self.out / "data" / f"{labelled.name.removesuffix('_labelled')}_tagged"
        command = [
            str(self.bin / "pi-star-recap"),
            "tag-prompts",
            f"--input={labelled}",
            f"--output={tagged}",
        ]
        self.run_step(f"tag_{labelled.name}", [*command, f"--seed={self.args.seed}", "--overwrite"])
        return tagged

    def tag_checkpoint(self, checkpoint: Path, name: str) -> Path:
        """A copy of a stock checkpoint whose preprocessor appends "Advantage: positive" to the task."""
        output = self.out / name / "checkpoints" / "last" / "pretrained_model"
        command = [str(self.bin / "pi-star-recap"), "tag-checkpoint", f"--input={checkpoint}"]
        self.run_step(f"tag_{name}", [*command, f"--output={output}", "--overwrite"])
        return output

    def fresh_policy_flags(self) -> list[str]:
        # Returns are normalised by the worst possible one (every step -1, then -C_fail = episode length),
        # fixed from stage 1 on, so values mean the same in every stage (stage 1 sees no failures).
        return [
            *POLICY_FLAGS,
            f"--policy.return_normalizer={2 * self.plan.episode_length}",
            f"--policy.tokenizer_padding={self.plan.tokenizer_padding}",
        ]

    def run_flags(self, dataset: Path, output: Path, steps: int, seed: int | None) -> list[str]:
        """lerobot-train flags shared by every training run: data, budget, CPU, no hub or W&B."""
        return [
            f"--dataset.repo_id=local/{dataset.name}",
            f"--dataset.root={dataset}",
            f"--output_dir={output}",
            f"--steps={steps}",
            f"--batch_size={self.plan.batch_size}",
            f"--save_freq={steps}",
            f"--log_freq={max(steps // 10, 1)}",
            f"--seed={self.args.seed if seed is None else seed}",
            # One data-loading worker beside one compute thread (run_step's threads=1): on 2 cores this is
            # 1.4x faster than two compute threads waiting on in-process data loading (measured).
            "--num_workers=1",
            "--policy.device=cpu",
            "--policy.push_to_hub=false",
            "--wandb.enable=false",
        ]

    def evaluate(self, name: str, checkpoint: Path, flags: tuple[str, ...] = ()) -> dict:
        output = self.out / "eval" / name
        shutil.rmtree(output, ignore_errors=True)
        self.run_step(
            f"eval_{name}",
            [
                str(self.bin / "lerobot-eval"),
                f"--policy.path={checkpoint}",
                "--env.type=metaworld_recap",
                f"--env.task={self.args.task}",
                f"--env.image_size={self.plan.image_size}",
                f"--env.episode_length={self.plan.episode_length}",
                "--env.reward=recap",
                f"--eval.n_episodes={self.plan.eval_episodes}",
                f"--eval.batch_size={self.plan.eval_batch_size}",
                "--policy.device=cpu",
                f"--output_dir={output}",
                f"--seed={self.env_seed(EVAL_ENV_SEEDS)}",
                *flags,
            ],
            threads=self.step_threads,
        )
        return json.loads((output / "eval_info.json").read_text())

    def gather(self, iteration: int, policy: Path, experience: list[Path], tag: str = "") -> Path:
        """Autonomous rollouts and corrected episodes of `policy`, appended to `experience`, all merged.
        `tag` names the datasets apart when several policies collect the same iteration's env seeds."""
        seed = self.env_seed(ROLLOUT_ENV_SEEDS * iteration)
        rollouts, corrections = f"rollouts{iteration}{tag}", f"corrections{iteration}{tag}"
        experience.append(self.collect(rollouts, "auto", self.plan.rollouts, seed, policy))
        experience.append(
            self.collect(
                corrections, "intervention", self.plan.corrections, seed + CORRECTION_ENV_SEEDS, policy
            )
        )
        return self.merge(f"mixed{iteration}{tag}", experience)

    # --- The loop --------------------------------------------------------------------------------
    def run(self) -> dict:
        """Demos and stage 1 first; then two lanes at once, one compute thread each:
        the RECAP iterations (collect, label, stage 2, its evaluation) in this thread, and the controls
        (null control, evaluation of stage 1 and of the null control) beside it."""
        started = time.perf_counter()
        demos = self.collect("demos", "demo", self.plan.demos, self.env_seed(DEMO_ENV_SEEDS))
        stage1 = self.stage1(demos)
        self.step_threads = 1
        with ThreadPoolExecutor(max_workers=1) as pool:
            controls = pool.submit(self.in_lane, self.controls, demos, stage1, quiet=True)
            try:
                stages, mixed = self.in_lane(self.iterations, demos, stage1)
            except BaseException:
                stages = mixed = None
            controls.exception()  # waits for the other lane (stopped early if this one failed)
        if self.failure is not None:
            raise self.failure
        results = {**controls.result(), **stages}  # stage 1, null control, stage 2, ...
        checkpoints = {name: checkpoint for name, (checkpoint, _) in results.items()}
        wall = time.perf_counter() - started
        return self.report({name: info for name, (_, info) in results.items()}, checkpoints, mixed, wall)

    def stage1(self, demos: Path) -> Path:
        """Stage 1 from scratch on the demos: behaviour cloning, or RECAP as the paper pre-trains."""
        if self.plan.stage1 == "recap":
            labelled = self.label_advantages("demos", demos, full_return=True)
            return self.train("stage1", labelled, self.plan.stage1_steps, None, LABELLED_RECAP_FLAGS)
        return self.train("stage1", demos, self.plan.stage1_steps, None)

    def stage1_demos(self) -> Path:
        """The demos as stage 1 trained on them (a RECAP stage 1 reads its labelled copy)."""
        name = "demos_labelled" if self.plan.stage1 == "recap" else "demos"
        return self.out / "data" / name

    def controls(self, demos: Path, stage1: Path) -> dict[str, tuple[Path, dict]]:
        """Stage 1 and the null control, each with its evaluation."""
        results = {f"stage 1 ({STAGE1_NAMES[self.plan.stage1]})": (stage1, self.evaluate("stage1", stage1))}
        if self.args.null_control:
            # The same fine-tuning path and budget as stage 2, on data that carries nothing new: what
            # stage 2 must beat to show that the experience, not the extra steps, helped.
            null = self.train("null_control", self.stage1_demos(), self.plan.stage2_steps, stage1)
            results[NULL_CONTROL] = (null, self.evaluate("null_control", null))
        return results

    def iterations(self, demos: Path, stage1: Path) -> tuple[dict[str, tuple[Path, dict]], Path]:
        """Each iteration: experience of the latest policy, then RECAP from stage 1 on all of it, evaluated."""
        plan, results = self.plan, {}
        latest, experience = stage1, [demos]
        for iteration in range(1, self.args.iterations + 1):
            mixed = self.gather(iteration, latest, experience)
            if self.args.base_policy != "native":
                # A stock VLA reads the indicator from its prompt: label, tag, fine-tune it unchanged.
                tagged = self.tag_prompts(self.label_advantages(mixed.name, mixed))
                trained = self.train(f"stage{iteration + 1}_tagged", tagged, plan.stage2_steps, stage1)
                latest = self.tag_checkpoint(trained, f"stage{iteration + 1}")
                name = f"stage {iteration + 1} (RECAP prompt, iteration {iteration})"
            else:
                estimator = f"--policy.advantage_estimator={self.args.advantage_estimator}"
                data, flags = mixed, (*RECAP_FLAGS, estimator)
                if self.args.advantage_estimator == "mc_distributional":
                    data, flags = (
                        self.label_advantages(mixed.name, mixed),
                        (*flags, "--policy.advantage_source=dataset"),
                    )
                # Like the paper, every iteration retrains from the pre-trained (stage 1) checkpoint.
                latest = self.train(f"stage{iteration + 1}", data, plan.stage2_steps, stage1, flags)
                name = f"stage {iteration + 1} (RECAP, iteration {iteration})"
            results[name] = (latest, self.evaluate(f"stage{iteration + 1}", latest))
        return results, mixed

    def report(self, results: dict, checkpoints: dict, mixed: Path, wall: float) -> dict:
        from ..plots import plot_bars
        from .eval import choose_episodes
        from .eval import evaluate as offline_eval

        rows = [{"stage": name, **eval_summary(info)} for name, info in results.items()]
        comparisons = paired_comparisons(results)
        plots = {
            "success_per_stage": str(
                plot_bars(
                    [r["stage"].split(" (")[0] for r in rows],
                    [r["success_rate"] for r in rows],
                    [  # clamped: at 0% or 100% the interval's end equals the rate up to rounding
                        [max(r["success_rate"] - r["success_ci"][0], 0.0) for r in rows],
                        [max(r["success_ci"][1] - r["success_rate"], 0.0) for r in rows],
                    ],
                    "success rate",
                    f"{self.args.task}: {self.plan.eval_episodes} episodes per stage, 95% CI",
                    self.out / "success_per_stage.png",
                )
            ),
            "throughput_per_stage": str(
                plot_bars(
                    [r["stage"].split(" (")[0] for r in rows],
                    [r["throughput_per_hour"] for r in rows],
                    [
                        [max(r["throughput_per_hour"] - r["throughput_ci"][0], 0.0) for r in rows],
                        [max(r["throughput_ci"][1] - r["throughput_per_hour"], 0.0) for r in rows],
                    ],
                    f"successes per hour of robot time ({METAWORLD_FPS} Hz)",
                    f"{self.args.task}: throughput, {self.plan.eval_episodes} episodes per stage, 95% CI",
                    self.out / "throughput_per_stage.png",
                    value_format=".0f",
                )
            ),
        }
        # The value plots: the cross-fitted value function on episodes it never saw, or the final policy's
        # own (IQL) critics.
        critic, episodes = self.held_out_value or (list(checkpoints.values())[-1], None)
        offline = argparse.Namespace(
            policy_path=str(critic),
            repo_id=f"local/{mixed.name}",
            root=str(mixed),
            n_episodes=12,
            episodes=None if episodes is None else [episodes[i] for i in choose_episodes(len(episodes), 12)],
            output=str(self.out / "offline_eval"),
            batch_size=64,
            device="cpu",
            seed=self.args.seed,
        )
        offline_eval(offline)
        plots["value_along_episodes"] = str(self.out / "offline_eval" / "value_along_episodes.png")
        plots["advantage_by_type"] = str(self.out / "offline_eval" / "advantage_by_type.png")
        report = {
            "task": self.args.task,
            "seed": self.args.seed,
            "advantage_estimator": self.args.advantage_estimator,
            "base_policy": self.args.base_policy,
            "base_path": self.args.base_path,
            "plan": asdict(self.plan),
            "policy_flags": POLICY_FLAGS,
            "stages": rows,
            "comparisons": comparisons,
            "eval_info": {
                name: str(self.out / "eval" / Path(str(c)).parents[2].name / "eval_info.json")
                for name, c in checkpoints.items()
            },
            # per episode, in env-seed order: committed with the JSON, so later runs can be paired with it
            "successes": {name: episode_successes(info) for name, info in results.items()},
            "steps": {name: episode_steps(info) for name, info in results.items()},
            "plots": plots,
            "seconds": {k: round(v, 1) for k, v in self.timings.items()},  # per step; lanes overlap
            "wall_seconds": round(wall, 1),
        }
        table = format_results(rows) + "\n\n" + format_comparisons(comparisons)
        write_text_atomic(self.out / "results.md", table + "\n")
        write_text_atomic(self.out / "results.json", json.dumps(report, indent=2))  # last: the run is done
        print("\n" + table)
        print(
            f"\nOutputs in {self.out}/: results.json, results.md, success_per_stage.png, throughput_per_stage.png, offline_eval/ (value and "
            f"advantage plots), eval/<stage>/eval_info.json, stage*/checkpoints, data/, logs/"
        )
        print(
            f"Total time: {wall / 60:.1f} min (steps: {sum(self.timings.values()) / 60:.1f} min, two lanes)"
        )
        return report


NULL_CONTROL = "null control (stage 1 + stage-2 steps on the demos)"
STAGE1_NAMES = {"bc": "BC on demos", "recap": "RECAP on demos"}


def episode_successes(info: dict) -> list[bool]:
    """Per-episode success from lerobot-eval's eval_info.json, in env-seed order."""
    return [bool(s) for task in info["per_task"] for s in task["metrics"]["successes"]]


def episode_steps(info: dict) -> list[int]:
    """Per-episode robot steps from lerobot-eval's eval_info.json, in env-seed order. The env runs with
    --env.reward=recap (-1 per step, 0 on the success step): a success's summed reward is 1 - its steps,
    a failure's is minus its steps (the whole episode length)."""
    sums = [float(r) for task in info["per_task"] for r in task["metrics"]["sum_rewards"]]
    return [
        round(1 - total if success else -total)
        for total, success in zip(sums, episode_successes(info), strict=True)
    ]


def paired_comparisons(results: dict[str, dict]) -> list[dict]:
    """Every later stage against stage 1 and against the null control, paired on the same env seeds:
    success and throughput."""
    from ..paired import paired_difference, paired_throughput

    names = list(results)
    baselines = [names[0]] + ([NULL_CONTROL] if NULL_CONTROL in results else [])
    out = []
    for name in names[1:]:
        for baseline in baselines:
            if name == baseline:
                continue
            a, b = results[name], results[baseline]
            out.append(
                {
                    "stage": name,
                    "baseline": baseline,
                    **paired_difference(episode_successes(a), episode_successes(b)),
                    **paired_throughput(
                        episode_successes(a),
                        episode_steps(a),
                        episode_successes(b),
                        episode_steps(b),
                        METAWORLD_FPS,
                    ),
                }
            )
    return out


def _interval(values: list[float] | None, form: str) -> str:
    return "-" if values is None else f"[{values[0]:{form}}, {values[1]:{form}}]"


def format_comparisons(comparisons: list[dict]) -> str:
    lines = [
        "| stage | vs | success difference | 95% CI (paired bootstrap) | wins / losses | McNemar p | "
        "throughput ratio | 95% CI (paired bootstrap) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        ratio = c.get("throughput_ratio")
        lines.append(
            f"| {c['stage'].split(' (')[0]} | {c['baseline'].split(' (')[0]} | {c['difference']:+.0%} | "
            f"[{c['ci_low']:+.0%}, {c['ci_high']:+.0%}] | {c['a_only']} / {c['b_only']} | {c['mcnemar_p']:.3f} | "
            f"{'-' if ratio is None else f'{ratio:.2f}x'} | {_interval(c.get('throughput_ratio_ci'), '.2f')} |"
        )
    return "\n".join(lines)


def eval_summary(info: dict) -> dict:
    """Success rate (Wilson 95%), throughput in successes per hour of robot time and mean steps to success
    (bootstrap 95%) from lerobot-eval's eval_info.json."""
    from ..paired import speed_summary, wilson_interval

    successes = episode_successes(info)
    low, high = wilson_interval(sum(successes), len(successes))
    return {
        "episodes": len(successes),
        "success_rate": sum(successes) / max(len(successes), 1),
        "success_ci": [low, high],
        **speed_summary(successes, episode_steps(info), METAWORLD_FPS),
    }


def format_results(rows: list[dict]) -> str:
    lines = [
        "| stage | episodes | success rate | 95% CI | successes per hour | 95% CI | mean steps to success | 95% CI |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        low, high = r["success_ci"]
        steps = r["mean_steps_to_success"]
        lines.append(
            f"| {r['stage']} | {r['episodes']} | {r['success_rate']:.0%} | [{low:.0%}, {high:.0%}] | "
            f"{r['throughput_per_hour']:.0f} | {_interval(r['throughput_ci'], '.0f')} | "
            f"{'-' if steps is None else round(steps)} | {_interval(r['steps_to_success_ci'], '.0f')} |"
        )
    return "\n".join(lines)


def _forward_progress(stream, log, name: str, bars: bool = True) -> None:
    """Copy a child's output to the log; show only progress bars and result lines on the console, named
    after the step. `bars=False` (the second lane) shows only finished lines, not the bars' updates."""
    buffer = ""
    while True:
        char = stream.read(1)
        if not char:
            break
        log.write(char)
        if char not in "\r\n":
            buffer += char
            continue
        shown = bars or char == "\n"
        if shown and any(mark in buffer for mark in ("%|", "Collected", "Merged", "success", "Overall")):
            sys.stdout.write(f"\r[{name}] {buffer[-140:]}" + ("" if char == "\r" else "\n"))
            sys.stdout.flush()
        buffer = ""


@report_errors("demo")
def run(args: argparse.Namespace) -> int:
    from ..sim.tasks import canonical_task

    args.task = canonical_task(args.task)  # before anything is created or removed
    if args.iterations < 1:
        raise UsageError(
            f"--iterations must be >= 1 (rounds of experience and RECAP), got {args.iterations}."
        )
    if args.base_path is not None:
        check_local_or_hub(args.base_path, "--base-path")
    demo = Demo(args)  # validates the plan before an --overwrite removes anything
    out = Path(args.output)
    if out.exists():
        if not args.overwrite:
            state = (
                "a finished demo"
                if (out / "results.json").is_file()
                else "an unfinished run (no results.json)"
            )
            raise UsageError(f"{out} exists and holds {state}; pass --overwrite or choose another --output.")
        shutil.rmtree(out)
    demo.run()
    return 0
