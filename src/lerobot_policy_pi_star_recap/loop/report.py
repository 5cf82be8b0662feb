"""What the loop's evaluations say: per-episode outcomes from lerobot-eval, success and throughput with
their intervals, paired comparisons on the same env seeds, and the demo's tables, plots and results files."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ..data.writing import write_text_atomic
from ..sim.config import METAWORLD_FPS
from .flags import POLICY_FLAGS
from .plan import DemoSettings
from .steps import Labelled


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


def eval_summary(info: dict) -> dict:
    """Success rate (Wilson 95%), throughput in successes per hour of robot time and mean steps to success
    (bootstrap 95%) from lerobot-eval's eval_info.json."""
    from ..evaluation.success_stats import speed_summary, wilson_interval

    successes = episode_successes(info)
    low, high = wilson_interval(sum(successes), len(successes))
    return {
        "episodes": len(successes),
        "success_rate": sum(successes) / max(len(successes), 1),
        "success_ci": [low, high],
        **speed_summary(successes, episode_steps(info), METAWORLD_FPS),
    }


def cell_record(info: dict) -> dict:
    """A benchmark cell's measurements: the summary and the per-episode outcomes it can be paired on."""
    return {**eval_summary(info), "successes": episode_successes(info), "steps": episode_steps(info)}


def write_cell(path: Path, record: dict) -> None:
    """One cell's JSON, written whole or not at all (a cell that exists is never run again)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(record, indent=1))


def paired_comparisons(results: dict[str, dict], controls: tuple[str, ...] = ()) -> list[dict]:
    """Every later stage against the first and against each of `controls` present, paired on the same env
    seeds: success and throughput."""
    from ..evaluation.success_stats import paired_difference, paired_throughput

    names = list(results)
    baselines = [names[0], *(c for c in controls if c in results)]
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


def _stage_bars(rows: list[dict], key: str, ci: str, ylabel: str, title: str, path: Path, **kwargs) -> str:
    """One bar per stage with its 95% interval (clamped: at 0% or 100% the interval's end equals the rate
    up to rounding)."""
    from ..evaluation.plots import plot_bars

    errors = [[max(r[key] - r[ci][0], 0.0) for r in rows], [max(r[ci][1] - r[key], 0.0) for r in rows]]
    names = [r["stage"].split(" (")[0] for r in rows]
    return str(plot_bars(names, [r[key] for r in rows], errors, ylabel, title, path, **kwargs))


def write_report(
    settings: DemoSettings,
    results: dict[str, dict],
    checkpoints: dict[str, Path],
    mixed: Path,
    labelled: Labelled | None,
    controls: tuple[str, ...],
    timings: dict[str, float],
    wall: float,
) -> dict:
    """The demo's results.md and results.json (written last: the run is done), its plots, and the value
    plots of the offline evaluation; returns the report."""
    from ..commands.eval import OfflineEval, choose_episodes
    from ..commands.eval import evaluate as offline_eval

    ws = settings.workspace
    rows = [{"stage": name, **eval_summary(info)} for name, info in results.items()]
    comparisons = paired_comparisons(results, controls)
    episodes = f"{ws.plan.eval_episodes} episodes per stage, 95% CI"
    plots = {
        "success_per_stage": _stage_bars(
            rows,
            "success_rate",
            "success_ci",
            "success rate",
            f"{ws.task}: {episodes}",
            ws.out / "success_per_stage.png",
        ),
        "throughput_per_stage": _stage_bars(
            rows,
            "throughput_per_hour",
            "throughput_ci",
            f"successes per hour of robot time ({METAWORLD_FPS} Hz)",
            f"{ws.task}: throughput, {episodes}",
            ws.out / "throughput_per_stage.png",
            value_format=".0f",
        ),
    }
    # The value plots: the cross-fitted value function on episodes it never saw, or the final policy's
    # own (IQL) critics.
    critic, held_out = (
        (labelled.value, list(labelled.held_out)) if labelled else (list(checkpoints.values())[-1], None)
    )
    offline = OfflineEval(
        policy_path=str(critic),
        repo_id=f"local/{mixed.name}",
        root=str(mixed),
        n_episodes=12,
        episodes=None if held_out is None else [held_out[i] for i in choose_episodes(len(held_out), 12)],
        output=str(ws.out / "offline_eval"),
        batch_size=64,
        device="cpu",
        seed=ws.seed,
    )
    offline_eval(offline)
    plots["value_along_episodes"] = str(ws.out / "offline_eval" / "value_along_episodes.png")
    plots["advantage_by_type"] = str(ws.out / "offline_eval" / "advantage_by_type.png")
    report = {
        "task": ws.task,
        "seed": ws.seed,
        "advantage_estimator": settings.advantage_estimator,
        "base_policy": ws.base_policy,
        "base_path": ws.base_path,
        "plan": asdict(ws.plan),
        "policy_flags": POLICY_FLAGS,
        "stages": rows,
        "comparisons": comparisons,
        "eval_info": {
            name: str(ws.out / "eval" / Path(str(c)).parents[2].name / "eval_info.json")
            for name, c in checkpoints.items()
        },
        # per episode, in env-seed order: committed with the JSON, so later runs can be paired with it
        "successes": {name: episode_successes(info) for name, info in results.items()},
        "steps": {name: episode_steps(info) for name, info in results.items()},
        "plots": plots,
        "seconds": {k: round(v, 1) for k, v in timings.items()},  # per step; lanes overlap
        "wall_seconds": round(wall, 1),
    }
    table = format_results(rows) + "\n\n" + format_comparisons(comparisons)
    write_text_atomic(ws.out / "results.md", table + "\n")
    write_text_atomic(ws.out / "results.json", json.dumps(report, indent=2))  # last: the run is done
    print("\n" + table)
    print(
        f"\nOutputs in {ws.out}/: results.json, results.md, success_per_stage.png, throughput_per_stage.png, offline_eval/ (value and "
        f"advantage plots), eval/<stage>/eval_info.json, stage*/checkpoints, data/, logs/"
    )
    print(f"Total time: {wall / 60:.1f} min (steps: {sum(timings.values()) / 60:.1f} min, two lanes)")
    return report
