"""What one run of the loop is: the plan (sizes and choices), where it writes, and the env-seed blocks
that keep runs with other seeds independent."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from ..commands.collect import SUCCESS_ATTEMPTS
from ..commands.common import UsageError
from ..configuration_pi_star_recap import TOKENIZER_PADDINGS


@dataclass(frozen=True)
class DemoPlan:
    """How much of everything the demo does; `--quick` is the CI smoke-test size."""

    demos: int = 10
    # Record `demos` successful expert episodes, discarding the scripted expert's failed attempts (collect
    # --successes-only). Runs before this field kept them: on sweep-into-v3 the expert times out on 1-4 of
    # 10 seeds, and those 200-frame failures made up 30-72% of stage 1's frames.
    successful_demos: bool = True
    # Stage 1 must be converged, or "stage 2 beats stage 1" only rewards the extra steps: at 3600 steps the
    # null control (1800 more on the demos) is within noise of it on push-v3 and sweep-into-v3; at 1200 it
    # gains 11 points. Over three --seed draws of the demos it still gains +11 on average (+7 / +10 / +16)
    # with the expert's failed demos kept; with successful demos seed 2's null control is +1 [-4, +6] over
    # it: converged on that draw.
    stage1_steps: int = 3600
    rollouts: int = 20  # autonomous episodes of the latest policy, per iteration
    corrections: int = 20  # episodes where the expert takes over when the trigger fires, per iteration
    # ~13x stage 1's frames: 600 steps left RECAP's labels unlearned; a 30-minute plan with 1200 (and
    # stage 1 2400) put RECAP 17 points under the null control
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
    # 20 steps. With stall corrections every fine-tuning arm lost to the null control on push-v3.
    correction_trigger: str = "disagreement"
    # Prompts padded to 48 tokens ("max_length", what every efficacy-grid cell used) or to the batch's longest
    # ("longest", positions over real tokens: 1.25x cheaper steps). Demo runs on sweep-into-v3 gave RECAP
    # 75% with longest, 85% and 76% with max_length: no clear cost.
    tokenizer_padding: str = "max_length"
    # Camera frames in every dataset the demo writes: "video" (collect --video: lossless H.264, pixels
    # within 2/255; lerobot-train then decodes one frame per sample, not the 16 frames of the action
    # chunk) or "png" images (runs made before this field).
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
    eval_batch_size=1,  # lerobot-eval starts one env worker process per env, each ~10 s of imports
    batch_size=8,
    episode_length=60,
    image_size=32,  # 32-px frames, as the data tests use: a smoke test pays for start-ups, not pixels
)

STALL_STEPS = 20  # the expert takes over after this many steps without progress
DISAGREEMENT = 1.0  # or when the policy's 4-d action is this far (L2) from the expert's
HANDBACK_STEPS = 20  # and hands back after this many steps
CORRECTION_TRIGGERS = ("stall", "disagreement")
CAMERA_STORAGES = ("png", "video")
STAGE1_METHODS = ("bc", "recap")
ADVANTAGE_ESTIMATORS = ("mc_distributional", "iql")
PLAN_CHOICES = {
    "stage1": STAGE1_METHODS,
    "correction_trigger": CORRECTION_TRIGGERS,
    "tokenizer_padding": TOKENIZER_PADDINGS,
    "camera_storage": CAMERA_STORAGES,
}

# Env seeds (one per episode: episode i of a collection or evaluation starting at S runs env seed S + i).
# Every `--seed` owns its own block, so runs with other seeds share no demo, rollout start or evaluation
# episode (with offsets of 1 per seed, seed 1 repeated 9 of seed 0's 10 demos exactly: the scripted
# expert is deterministic). Within a block: demos from 0, iteration k's rollouts from 1000 k and its
# corrections from 1000 k + 500, evaluation from 10 000 (successful demos try at most 5 seeds per demo).
# Seed 0's block is what every committed run used.
ENV_SEEDS_PER_RUN = 100_000
DEMO_ENV_SEEDS, ROLLOUT_ENV_SEEDS, CORRECTION_ENV_SEEDS, EVAL_ENV_SEEDS = 0, 1000, 500, 10_000


def resolve_plan(quick: bool, overrides: dict[str, object | None]) -> DemoPlan:
    """The default (or `--quick`) plan with every override that is not None."""
    plan = QUICK if quick else DemoPlan()
    names = {f.name for f in fields(DemoPlan)}
    return replace(plan, **{k: v for k, v in overrides.items() if k in names and v is not None})


def check_plan(plan: DemoPlan, iterations: int) -> None:
    """Refuse a plan the loop cannot run as meant, before anything is created or removed."""
    if plan.value_folds < 2:
        raise UsageError("--value-folds must be >= 2 (each episode is valued by a fold that never saw it).")
    check_env_seed_blocks(plan, iterations)
    if plan.operators:
        try:
            operator_counts(plan.operators, plan.demos)
        except ValueError as error:
            raise UsageError(str(error).replace("--operators", "--operators (shares)")) from None


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
                f"free; ENV_SEEDS_PER_RUN in loop/plan.py): lower it, or run several --seed values."
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


@dataclass(frozen=True)
class Workspace:
    """One run of the loop: its task and plan, the folder it writes, its seed (training seed and env-seed
    block) and the policy it trains (pi_star_recap, or a stock VLA conditioned through its prompt)."""

    task: str
    out: Path
    plan: DemoPlan
    seed: int = 0
    base_policy: str = "native"  # or "smolvla" / "pi05"
    base_path: str | None = None  # a pretrained stock checkpoint stage 1 fine-tunes from
    bin: Path = field(default_factory=lambda: Path(sys.executable).parent)  # the venv's console scripts

    @property
    def data(self) -> Path:
        return self.out / "data"

    @property
    def logs(self) -> Path:
        return self.out / "logs"

    def env_seed(self, offset: int) -> int:
        """The first env seed of a collection or evaluation at `offset` in this run's block."""
        return self.seed * ENV_SEEDS_PER_RUN + offset

    def checkpoint(self, name: str) -> Path:
        """Where lerobot-train run `name` saves its final policy."""
        return self.out / name / "checkpoints" / "last" / "pretrained_model"


@dataclass(frozen=True)
class DemoSettings:
    """`pi-star-recap demo`'s experiment: stage 1, `iterations` rounds of experience and RECAP, the null
    control beside them, then the report."""

    workspace: Workspace
    iterations: int = 1
    advantage_estimator: str = "mc_distributional"  # stage 2's advantages: the paper's, or IQL critics
    null_control: bool = True
