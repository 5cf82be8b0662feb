"""What one training step of the demo's policy costs on a CPU, and where: prompt padding and data loading.

One process, one compute thread (as the demo's lerobot-train runs), the demo's tiny policy on a dataset
collected like the demo's (scripted demos, 96 px camera, 39-d state), batch 32:
- the model's step (forward, backward, fused AdamW) with prompts padded to the batch's longest prompt
  (`backbone.tokenizer_padding=longest`) against padded to 48 tokens (`max_length`), timed interleaved;
- LeRobot's data loading per sample, with the action chunk query lerobot-train makes for this policy
  (16 future actions) against the frame alone: LeRobot reads whole rows for the chunk, so it decodes the
  16 frames' PNG images only to keep their actions; and the same episodes collected with `--video`
  (lossless H.264), where the chunk query reads no images and one video frame is decoded per sample.
Ratios are against the baseline measured in the same run; absolute times move with the machine's load.

    python benchmarks/demo_step_cost.py              # collects 3 push-v3 demos twice (PNG, video) first
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "demo_step_cost.json"


def collect_demos(root: Path, *extra: str) -> Path:
    """3 scripted demos of push-v3 at the demo's image size and episode length."""
    command = [str(Path(sys.executable).parent / "pi-star-recap"), "collect", "--mode=demo", "--task=push-v3"]
    command += ["--episodes=3", f"--output={root}", "--image-size=96", "--episode-length=200", "--device=cpu"]
    subprocess.run([*command, *extra], check=True, stdout=subprocess.DEVNULL)
    return root


def demo_policy_config(padding: str):
    """The demo's policy (loop/flags.py POLICY_FLAGS) with the given prompt padding."""
    from lerobot_policy_pi_star_recap import PiStarRECAPConfig
    from lerobot_policy_pi_star_recap.configuration_pi_star_recap import (
        BackboneOptions,
        CriticOptions,
        ExpertOptions,
    )
    from lerobot_policy_pi_star_recap.loop.flags import CHUNK_SIZE, N_ACTION_STEPS

    return PiStarRECAPConfig(
        vlm_model_name="tiny",
        expert=ExpertOptions(width=128, depth=4, heads=4),
        chunk_size=CHUNK_SIZE,
        n_action_steps=N_ACTION_STEPS,
        use_advantage_conditioning=False,
        critic=CriticOptions(return_normalizer=400),
        backbone=BackboneOptions(tokenizer_padding=padding),
        device="cpu",
    )


def model_step_seconds(root: Path, batch_size: int, repeats: int) -> dict[str, float]:
    """Median seconds of a training step, per padding, on the same frames, timed interleaved."""
    from lerobot.datasets import LeRobotDataset, LeRobotDatasetMetadata
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    meta = LeRobotDatasetMetadata("local/demos", root=root)
    steps = {}
    for padding in ("max_length", "longest"):
        config = demo_policy_config(padding)
        dataset = LeRobotDataset(
            "local/demos", root=root, delta_timestamps=resolve_delta_timestamps(config, meta)
        )
        torch.manual_seed(0)
        policy = make_policy(config, ds_meta=meta)
        preprocessor, _ = make_pre_post_processors(config, dataset_stats=meta.stats)
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True)
        batch = preprocessor(next(iter(loader)))
        optimizer = config.get_optimizer_preset().build(policy.get_optim_params())

        def step(policy=policy, batch=batch, optimizer=optimizer) -> float:
            start = time.perf_counter()
            loss, _ = policy.forward(batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            return time.perf_counter() - start

        steps[padding] = (step, batch["observation.language.tokens"].shape[1])
    times: dict[str, list[float]] = {padding: [] for padding in steps}
    for _ in range(2):  # warm-up
        for step, _ in steps.values():
            step()
    for _ in range(repeats):
        for padding, (step, _) in steps.items():
            times[padding].append(step())
    return {
        **{f"step_s_{p}": statistics.median(t) for p, t in times.items()},
        **{f"prompt_tokens_{p}": tokens for p, (_, tokens) in steps.items()},
    }


def sample_seconds(png: Path, video: Path, samples: int) -> dict[str, float]:
    """Mean seconds to read one training sample: PNG frames with and without the 16-action chunk query,
    video frames with it; the same samples in each."""
    from lerobot.datasets import LeRobotDataset, LeRobotDatasetMetadata

    from lerobot_policy_pi_star_recap.loop.flags import CHUNK_SIZE

    meta = LeRobotDatasetMetadata("local/demos", root=png)
    chunk = {"action": [i / meta.fps for i in range(CHUNK_SIZE)]}
    out = {}
    for name, root, delta in (
        ("frame_alone", png, None),
        ("with_action_chunk", png, chunk),
        ("video_with_action_chunk", video, chunk),
    ):
        dataset = LeRobotDataset("local/demos", root=root, delta_timestamps=delta)
        dataset[0]
        indices = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))[:samples].tolist()
        start = time.perf_counter()
        for i in indices:
            dataset[i]
        out[f"sample_s_{name}"] = (time.perf_counter() - start) / len(indices)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        png = collect_demos(Path(tmp) / "demos")
        video = collect_demos(Path(tmp) / "demos_video", "--video")
        result = {
            **model_step_seconds(png, args.batch_size, args.repeats),
            **sample_seconds(png, video, args.samples),
        }
    result["step_ratio_max_length_over_longest"] = result["step_s_max_length"] / result["step_s_longest"]
    result["sample_ratio_chunk_over_frame"] = (
        result["sample_s_with_action_chunk"] / result["sample_s_frame_alone"]
    )
    result["sample_ratio_png_over_video"] = (
        result["sample_s_with_action_chunk"] / result["sample_s_video_with_action_chunk"]
    )
    # What the data-loading worker spends per batch: beside one compute thread on 2 cores it sets the pace
    # whenever it exceeds the model's step.
    result["batch_loading_s"] = result["sample_s_with_action_chunk"] * args.batch_size
    result["batch_loading_s_video"] = result["sample_s_video_with_action_chunk"] * args.batch_size
    result["batch_size"] = args.batch_size
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    tokens = f"{result['prompt_tokens_max_length']} vs {result['prompt_tokens_longest']} prompt tokens"
    print(f"model step: max_length {result['step_s_max_length']:.3f} s, longest {result['step_s_longest']:.3f} s "
          f"({tokens}): {result['step_ratio_max_length_over_longest']:.2f}x")  # fmt: skip
    print(f"one sample: with the action chunk {1000 * result['sample_s_with_action_chunk']:.1f} ms, frame alone "
          f"{1000 * result['sample_s_frame_alone']:.1f} ms: {result['sample_ratio_chunk_over_frame']:.1f}x; "
          f"a batch of {args.batch_size}: {result['batch_loading_s']:.2f} s of loading")  # fmt: skip
    print(f"video frames, with the action chunk: {1000 * result['sample_s_video_with_action_chunk']:.1f} ms "
          f"({result['sample_ratio_png_over_video']:.1f}x less than PNG), a batch: "
          f"{result['batch_loading_s_video']:.2f} s")  # fmt: skip
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()
