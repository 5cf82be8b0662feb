"""`pi-star-recap collect`: record MetaWorld demos, autonomous rollouts or interventions as a RECAP dataset."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from .common import HelpFormatter, report_errors

# --video: H.264 at constant rate factor 0 is lossless on its YUV input, and 4:4:4 keeps full-resolution
# colour, so only the RGB <-> YUV rounding remains. Every frame is a keyframe, so a training sample decodes
# exactly one frame: 3.7x faster per sample than a keyframe every 2 frames (LeRobot's default), measured
# with torchcodec on 96 px push-v3 demos.
LOSSLESS_VIDEO = {"vcodec": "h264", "pix_fmt": "yuv444p", "crf": 0, "g": 1}
# Actors without a policy checkpoint: a degraded expert that succeeds in roughly a third to a half of
# the episodes of push-v3, drawer-open-v3 and button-press-v3 at 200 steps (measured on 12 seeds each).
SUCCESS_ATTEMPTS = 5  # --successes-only tries at most this many env seeds per episode asked for
DEGRADED_EXPERT = {"noise": 0.3, "pause_prob": 0.02, "pause_steps": 15, "wrong_prob": 0.02, "wrong_steps": 15}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "collect",
        help="record MetaWorld episodes (demo / auto / intervention) as a LeRobotDataset with RECAP fields",
        description=(
            "Record MetaWorld episodes into a new LeRobotDataset with data_type, reward, done, "
            "intervention_mask and next.success. demo: the scripted expert; auto: a policy checkpoint "
            "(--policy) or a degraded expert; intervention: like auto, and the expert takes over when a "
            "trigger fires. Needs MUJOCO_GL=egl (or osmesa) on headless machines."
        ),
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--mode",
        required=True,
        choices=["demo", "auto", "intervention"],
        help="demo: scripted expert; auto: --policy or a degraded expert; intervention: auto + expert takeovers",
    )
    parser.add_argument("--output", required=True, type=Path, help="new dataset folder (must not exist)")
    parser.add_argument("--task", default="push-v3", help="MetaWorld task: push-v3 (or metaworld-push-v3)")
    parser.add_argument(
        "--episodes", type=int, default=None, help="episodes to record (default 10, or --operators' total)"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="episode i uses env seed SEED+i (with --successes-only, the next seeds replace failures)",
    )
    parser.add_argument("--repo-id", default=None, help="dataset repo id (default: local/<output name>)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    parser.add_argument(
        "--successes-only",
        action="store_true",
        help="keep only successful episodes: go on to the next env seeds until --episodes succeeded (at most "
        f"{SUCCESS_ATTEMPTS}x as many tries). For demonstrations: a failed attempt of the scripted expert (it "
        "misses on some seeds of some tasks) is not a demonstration, and its time-out frames would dominate BC",
    )

    env = parser.add_argument_group("environment")
    env.add_argument("--episode-length", type=int, default=200, help="step limit; reaching it = failure")
    env.add_argument("--image-size", type=int, default=96, help="square image size in pixels")
    env.add_argument("--cameras", default="corner2", help="comma separated MetaWorld cameras; '' for none")
    env.add_argument(
        "--state",
        choices=["full", "hand"],
        default=None,
        help="full: the 39-d MetaWorld observation (default); hand: 4-d hand position + gripper "
        "(the default with --layout lerobot)",
    )
    env.add_argument(
        "--layout",
        choices=["recap", "lerobot"],
        default="recap",
        help="lerobot: observation.image + 4-d observation.state, as --env.type=metaworld (implies --state hand)",
    )
    env.add_argument("--fps", type=int, default=80, help="dataset fps (MetaWorld's control rate)")
    env.add_argument(
        "--video",
        action="store_true",
        help="store camera frames as lossless H.264 video (pixels within 2/255 of the render, YUV 4:4:4) "
        "instead of PNG images: lerobot-train then decodes only the sampled frame, not the images of all "
        "the frames whose actions form the policy's action chunk (benchmarks/demo_step_cost.py)",
    )
    env.add_argument(
        "--num-envs",
        type=int,
        default=1,
        help="envs stepped in parallel, one worker process each (2 envs: 1.15x on a 2-core machine, where "
        "the dataset writer shares the CPU)",
    )

    actor = parser.add_argument_group("actor (auto / intervention)")
    actor.add_argument(
        "--policy", type=Path, default=None, help="policy checkpoint (pretrained_model folder)"
    )
    actor.add_argument(
        "--device", default=None, help="torch device for --policy (default: cuda if available)"
    )
    actor.add_argument(
        "--noise",
        type=float,
        default=None,
        help=f"Gaussian action noise std of the expert (default: 0 in demo mode, {DEGRADED_EXPERT['noise']} "
        "for the degraded expert)",
    )
    for name, kind, what in (
        ("pause-prob", float, "per-step probability that the degraded expert starts a pause"),
        ("pause-steps", int, "length of a pause"),
        ("wrong-prob", float, "per-step probability of a wrong-direction segment"),
        ("wrong-steps", int, "length of a wrong-direction segment"),
    ):
        key = name.replace("-", "_")
        actor.add_argument(
            f"--{name}", type=kind, default=None, help=f"{what} (default {DEGRADED_EXPERT[key]})"
        )

    actor.add_argument(
        "--operators",
        default=None,
        help="simulated operators of mixed quality, PROFILE:EPISODES pairs such as better:4,okay:3,worse:3 "
        "(profiles: expert, better, okay, worse; docs/data.md): demo mode, who demonstrates; intervention "
        "mode, who takes over. Each profile's episodes are recorded in turn on their own env seeds; "
        "meta/recap_collect.json names the profile of every episode",
    )

    takeover = parser.add_argument_group("intervention")
    takeover.add_argument(
        "--trigger",
        default="stall",
        help="comma separated: stall (no progress for --stall-steps), disagreement (actor vs expert action "
        "distance > --disagreement), random (--random-prob per step)",
    )
    takeover.add_argument("--stall-steps", type=int, default=20, help="stall: actor steps without progress")
    takeover.add_argument(
        "--stall-tolerance", type=float, default=1e-3, help="dense-reward gain that counts as progress"
    )
    takeover.add_argument("--disagreement", type=float, default=1.0, help="L2 distance of 4-d actions")
    takeover.add_argument(
        "--random-prob", type=float, default=0.02, help="random: takeover probability per step"
    )
    takeover.add_argument(
        "--handback-steps", type=int, default=0, help="return control after M expert steps (0: never)"
    )

    reward = parser.add_argument_group("reward (pi*0.6 paper: -1 per step, last frame 0 / -C_fail)")
    reward.add_argument(
        "--c-fail", type=float, default=None, help="failure penalty (default: --episode-length)"
    )
    parser.set_defaults(run=run)


def _operator_groups(args: argparse.Namespace) -> list[tuple[str | None, int]]:
    """(operator profile, episodes) in collection order; without --operators one group of --episodes."""
    from ..sim.actors import parse_operators

    if args.operators is None:
        episodes = 10 if args.episodes is None else args.episodes
        # demos with --noise follow no profile; every other collection's expert is the clean one
        clean = args.mode != "demo" or not args.noise
        return [("expert" if clean else None, episodes)]
    if args.mode == "auto":
        raise ValueError(
            "--operators name who demonstrates or corrects: use it with --mode demo or intervention."
        )
    if args.mode == "demo" and args.noise is not None:
        raise ValueError("--noise and --operators both set the demonstrator's noise: give one of them.")
    groups = parse_operators(args.operators)
    total = sum(count for _, count in groups)
    if args.episodes is not None and args.episodes != total:
        raise ValueError(
            f"--episodes {args.episodes} but --operators {args.operators!r} add up to {total}: drop --episodes."
        )
    return groups


def _degradation(args: argparse.Namespace):
    from ..sim.actors import Degradation

    values = {key: getattr(args, key) for key in DEGRADED_EXPERT}
    if args.policy is not None:
        given = [f"--{k.replace('_', '-')}" for k, v in values.items() if v is not None]
        if given:
            raise ValueError(
                f"{', '.join(given)} degrade the scripted expert; they do not apply to --policy."
            )
        return None
    if args.mode == "demo":
        other = [f"--{k.replace('_', '-')}" for k, v in values.items() if k != "noise" and v is not None]
        if other:
            raise ValueError(
                f"{', '.join(other)} only apply to auto / intervention (demo uses --noise only)."
            )
        return Degradation(noise=values["noise"] or 0.0)
    return Degradation(**{k: DEGRADED_EXPERT[k] if v is None else v for k, v in values.items()})


@report_errors("collect")
def run(args: argparse.Namespace) -> int:
    import datasets
    from lerobot.configs.video import RGBEncoderConfig
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.envs.utils import env_to_policy_features

    from ..data.writing import (
        COLLECT_PROVENANCE,
        RewardScheme,
        atomic_output_dir,
        check_output_dir,
        print_summary,
    )
    from ..schema import RECAP_FEATURES
    from ..sim.actors import OPERATORS, ExpertActor, PolicyActor
    from ..sim.collector import Collector, InterventionRule
    from ..sim.config import MetaWorldRecapEnvConfig
    from ..sim.pool import EnvPool
    from ..sim.tasks import task_descriptions

    if args.mode == "demo" and args.policy is not None:
        raise ValueError("--policy drives auto / intervention episodes; demo episodes come from the expert.")
    groups = _operator_groups(args)
    args.episodes = sum(count for _, count in groups)
    if args.episodes < 1 or args.num_envs < 1:
        raise ValueError("--episodes and --num-envs must be >= 1.")
    check_output_dir(args.output, args.overwrite)  # before the simulator starts
    state = args.state or ("hand" if args.layout == "lerobot" else "full")
    env_config = MetaWorldRecapEnvConfig(
        task=args.task,
        fps=args.fps,
        episode_length=args.episode_length,
        image_size=args.image_size,
        cameras=args.cameras,
        state=state,
        layout=args.layout,
    )
    rule = None
    if args.mode == "intervention":
        rule = InterventionRule(
            triggers=tuple(t.strip() for t in args.trigger.split(",") if t.strip()),
            stall_steps=args.stall_steps,
            stall_tolerance=args.stall_tolerance,
            disagreement=args.disagreement,
            random_prob=args.random_prob,
            handback_steps=args.handback_steps,
        )
    degradation = _degradation(args)
    repo_id = args.repo_id or f"local/{args.output.name}"
    features = {**env_config.dataset_features(video=args.video), **RECAP_FEATURES}
    datasets.disable_progress_bars()  # one bar per saved episode would drown the collector's own

    with atomic_output_dir(args.output, args.overwrite) as root:
        num_envs = min(args.num_envs, args.episodes)
        # Workers start before any policy is loaded, so forked workers inherit no torch threads.
        with EnvPool(env_config.gym_kwargs, num_envs, processes=num_envs > 1) as pool:
            if args.policy is not None:
                import torch

                device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
                actor = PolicyActor(
                    args.policy,
                    device,
                    env_to_policy_features(env_config),
                    task_descriptions()[env_config.task],
                )
                # The policy's sampling noise comes from torch's global generator: seeding it makes a
                # collection with the same --seed, policy and machine produce the same episodes.
                torch.manual_seed(args.seed)
            else:
                actor = ExpertActor(degradation, seed=args.seed)
            dataset = LeRobotDataset.create(
                repo_id,
                args.fps,
                features,
                root=root,
                use_videos=args.video,
                image_writer_threads=2,
                rgb_encoder=RGBEncoderConfig(**LOSSLESS_VIDEO) if args.video else None,
            )
            start = time.perf_counter()
            records, discarded, first_seed = [], [], args.seed
            for operator, episodes in groups:  # each profile in turn, on the env seeds after the last one's
                if args.mode == "demo" and operator is not None:
                    actor = ExpertActor(OPERATORS[operator], seed=args.seed)
                collector = Collector(
                    env_config,
                    actor,
                    args.mode,
                    RewardScheme(failure_penalty=args.c_fail),
                    rule,
                    first_seed,
                    operator,
                )
                attempts = SUCCESS_ATTEMPTS * episodes if args.successes_only else None
                kept, failed = collector.run(pool, dataset, episodes, attempts)
                records += kept
                discarded += failed
                first_seed += attempts or episodes
            dataset.finalize()
            if args.video:  # the encoder's staging folders, left empty once the videos are written
                shutil.rmtree(root / "images", ignore_errors=True)
        seconds = time.perf_counter() - start
        provenance = {
            "command": "pi-star-recap collect",
            "arguments": {
                k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "run"
            },
            "reward": asdict(collector.reward_scheme),
            "degradation": asdict(degradation) if degradation is not None else None,
            "operators": {name: asdict(OPERATORS[name]) for name, _ in groups if name is not None},
            "intervention": asdict(rule) if rule is not None else None,
            "episodes": [asdict(r) for r in records],
            "discarded_failures": [asdict(r) for r in discarded],  # --successes-only
        }
        (root / "meta" / COLLECT_PROVENANCE).write_text(json.dumps(provenance, indent=2))

    frames = sum(r.length for r in records)
    skipped = f"; {len(discarded)} failed episodes discarded (--successes-only)" if discarded else ""
    print_summary(
        args.output,
        f"Collected {len(records)} {args.mode} episodes of {env_config.task} ({frames} frames, "
        f"{seconds:.0f} s, {frames / seconds:.0f} frames/s{skipped}) -> {args.output}",
    )
    return 0
