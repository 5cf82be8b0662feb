"""Does `runtime.compile_model=True` (torch.compile of the backbone and the action expert) pay?

One process: the same full-RECAP policy (speed.py's matched size) is timed eager, then compiled, for one
action chunk at batch 1 (inference) and one training step at batch 8 (forward, backward, the preset's
optimizer). Compiling happens during warm-up and is reported separately. Ratios compiled / eager.

    python benchmarks/compile.py                 # CPU, tiny size, chunk 16
    python benchmarks/compile.py --device cuda --dtype bfloat16 --size small
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from speed import SIZES, autocast, build_recap, make_batch, median_seconds, observation, train_step

from lerobot_policy_pi_star_recap.configuration_pi_star_recap import RuntimeOptions


def timings(policy, args, warmup: int) -> dict:
    """Seconds to the end of warm-up (compiling, if any), then medians of a chunk and of a train step."""
    batch = make_batch(args.batch_size, args.chunk, args.device, window=True)
    single = observation(make_batch(1, args.chunk, args.device, window=False))
    optimizer = policy.config.get_optimizer_preset().build(policy.get_optim_params())
    step = train_step(policy, batch, optimizer, args.device, args.dtype)

    def infer():
        policy.eval()
        with torch.no_grad(), autocast(args.device, args.dtype):
            policy.predict_action_chunk(single)

    start = time.perf_counter()
    for _ in range(warmup):
        infer()
        step()
    result = {"warmup_s": time.perf_counter() - start}
    result["chunk_latency_s"] = median_seconds(infer, args.repeats, 0, args.device)
    result["train_step_s"] = median_seconds(step, args.repeats, 0, args.device)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=4, help="alternating chunk + train step pairs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--output", default="benchmarks/results/compile.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    size = SIZES[args.size]
    policy = build_recap(size, args.chunk, args.device, args.dtype, full_recap=True)
    compiled_policy = build_recap(
        size, args.chunk, args.device, args.dtype, full_recap=True, runtime=RuntimeOptions(compile_model=True)
    )
    compiled_policy.load_state_dict(policy.state_dict())
    eager = timings(policy, args, warmup=2)
    compiled = timings(compiled_policy, args, warmup=args.warmup)
    ratios = {key: compiled[key] / eager[key] for key in ("chunk_latency_s", "train_step_s")}
    print(f"\nsize={args.size} device={args.device} dtype={args.dtype} chunk={args.chunk}")
    print(f"{'':<10}{'chunk ms':>10}{'train s':>10}{'warm-up s':>11}")
    for name, row in (("eager", eager), ("compiled", compiled)):
        print(
            f"{name:<10}{row['chunk_latency_s'] * 1e3:>10.1f}{row['train_step_s']:>10.3f}{row['warmup_s']:>11.1f}"
        )
    print(f"{'ratio':<10}{ratios['chunk_latency_s']:>10.2f}{ratios['train_step_s']:>10.2f}")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    meta = {**vars(args), "torch": torch.__version__, "threads": torch.get_num_threads()}
    output.write_text(
        json.dumps({"meta": meta, "eager": eager, "compiled": compiled, "ratio": ratios}, indent=2)
    )
    print(f"Wrote {output}")


if __name__ == "__main__":
    main()
