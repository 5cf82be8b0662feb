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
import shutil
from dataclasses import asdict
from pathlib import Path

from ..loop.plan import (
    ADVANTAGE_ESTIMATORS,
    ENV_SEEDS_PER_RUN,
    PLAN_CHOICES,
    DemoPlan,
    DemoSettings,
    Workspace,
    check_plan,
    resolve_plan,
)
from .common import RawDescriptionHelpFormatter, UsageError, add_option, check_local_or_hub, report_errors


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
        help="MetaWorld v3 task (default sweep-into-v3: with 10 successful demos its stage 1 reached 75%% on seed 2)",
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
        choices=list(ADVANTAGE_ESTIMATORS),
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


def settings_from(args: argparse.Namespace) -> DemoSettings:
    """The run the parsed arguments ask for, validated before anything is created or removed."""
    plan = resolve_plan(args.quick, vars(args))
    check_plan(plan, args.iterations)
    workspace = Workspace(args.task, Path(args.output), plan, args.seed, args.base_policy, args.base_path)
    return DemoSettings(workspace, args.iterations, args.advantage_estimator, args.null_control)


@report_errors("demo")
def run(args: argparse.Namespace) -> int:
    from ..loop.recap import run_demo
    from ..sim.tasks import canonical_task

    args.task = canonical_task(args.task)  # before anything is created or removed
    if args.iterations < 1:
        raise UsageError(
            f"--iterations must be >= 1 (rounds of experience and RECAP), got {args.iterations}."
        )
    if args.base_path is not None:
        check_local_or_hub(args.base_path, "--base-path")
    settings = settings_from(args)  # validates the plan before an --overwrite removes anything
    out = settings.workspace.out
    if out.exists():
        if not args.overwrite:
            state = (
                "a finished demo"
                if (out / "results.json").is_file()
                else "an unfinished run (no results.json)"
            )
            raise UsageError(f"{out} exists and holds {state}; pass --overwrite or choose another --output.")
        shutil.rmtree(out)
    run_demo(settings)
    return 0
