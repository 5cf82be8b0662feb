"""The prepared GPU check: does the policy train and act on a GPU at real sizes, how fast, in how much
memory, and does its training step make the host wait?

For the native policy (pi_star_recap's own backbone and expert) and the pi05 base (`base_model="pi05"`),
each with full RECAP (critics on), at the `small` and `full` sizes (full: PaliGemma 3B's Gemma-2B text
model and SigLIP-so400m tower, as pi05 uses), random weights in bf16, batch `--batch-size` at 224 px:
  - one training step's median time and the peak memory it reaches (optimizer: the config's preset),
  - one action chunk's median latency (`predict_action_chunk`, 10 Euler steps),
  - host syncs in one training step, counted by `torch.cuda.set_sync_debug_mode("warn")` (every
    synchronising CUDA call warns once per call site and step; LeRobot's own loop adds two: the logged
    loss and gradient norm).
Models are built directly on the device (no CPU copy of 3B random parameters). Budget: about 5 minutes on
one H100. Writes `--output` (JSON) and the same path with `.md`.

    python benchmarks/gpu_check.py                                  # on a GPU machine
    python benchmarks/gpu_check.py --device cpu --sizes tiny        # a smoke test of the script
"""

from __future__ import annotations

import argparse
import json
import platform
import warnings
from dataclasses import asdict
from pathlib import Path

import torch
from speed import (
    SIZES,
    Size,
    build_recap,
    build_recap_on_pi05,
    inference,
    median_seconds,
    pi05_of,
    subject,
    train_step,
)

# PaliGemma 3B as pi05 uses it: Gemma-2B text model, SigLIP so400m vision tower.
FULL = Size(2048, 18, 16384, 8, 256, 1152, 27, 16, 4304)
CHECK_SIZES = {**SIZES, "full": FULL}
BUILDERS = {"native": build_recap, "pi05 base": build_recap_on_pi05}


def count_syncs(step, device: str) -> int | None:
    """Synchronising CUDA calls in one call of `step` (None on CPU, where nothing is queued)."""
    if not device.startswith("cuda"):
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def check(kind: str, size_name: str, args) -> dict:
    """One model at one size: build, train step, peak memory, chunk latency, syncs; then freed."""
    size = CHECK_SIZES[size_name]
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    with pi05_of(size):
        try:  # parameters made on the device: no CPU copy of 3B random weights
            with torch.device(args.device):
                policy = BUILDERS[kind](size, args.chunk, args.device, args.dtype, full_recap=True)
        except (RuntimeError, TypeError) as error:  # some construction step needs CPU tensors
            print(f"{kind}, {size_name}: built on the CPU, then moved ({error})", flush=True)
            policy = BUILDERS[kind](size, args.chunk, args.device, args.dtype, full_recap=True)
    model = subject(f"{kind}, {size_name}", policy, args.chunk, args, window=True)
    optimizer = policy.config.get_optimizer_preset().build(policy.get_optim_params())
    step = train_step(policy, model.batch, optimizer, args.device, args.dtype)
    result = {
        "model": kind,
        "size": size_name,
        "parameters": sum(p.numel() for p in policy.parameters()),
        "train_step_s": median_seconds(step, args.repeats, 2, args.device),
        "syncs_per_train_step": count_syncs(step, args.device),
        "chunk_latency_s": median_seconds(
            inference(model, args.device, args.dtype), args.repeats, 2, args.device
        ),
    }
    if args.device.startswith("cuda"):
        result["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
    del policy, model, optimizer, step
    return result


def markdown(report: dict) -> str:
    lines = [
        f"{report['device_name']}, {report['dtype']}, batch {report['batch_size']}, chunk {report['chunk']}",
        "",
        "| model | size | parameters | train step s | peak GiB | chunk ms | syncs per train step |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['size']} | - | {r['error']} | | | |")
            continue
        peak = f"{r['peak_memory_gb']:.1f}" if "peak_memory_gb" in r else "-"
        syncs = "-" if r["syncs_per_train_step"] is None else str(r["syncs_per_train_step"])
        lines.append(
            f"| {r['model']} | {r['size']} | {r['parameters'] / 1e6:.0f}M | {r['train_step_s']:.3f} | {peak} | "
            f"{1000 * r['chunk_latency_s']:.0f} | {syncs} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    parser.add_argument("--sizes", nargs="+", choices=list(CHECK_SIZES), default=["small", "full"])
    parser.add_argument("--models", nargs="+", choices=list(BUILDERS), default=list(BUILDERS))
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--chunk", type=int, default=50, help="action chunk (the paper's 50 steps)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/gpu_check.json"))
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(
            "no CUDA device here: run it on a GPU machine, or pass --device cpu for a smoke test."
        )
    results = []
    for size_name in args.sizes:
        for kind in args.models:
            try:
                results.append(check(kind, size_name, args))
            except torch.OutOfMemoryError as error:  # a size that does not fit is a result too
                results.append({"model": kind, "size": size_name, "error": f"out of memory: {error}"[:200]})
            print(json.dumps(results[-1]), flush=True)
    report = {
        "device_name": torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else platform.processor(),
        "torch": torch.__version__,
        "dtype": args.dtype,
        "batch_size": args.batch_size,
        "chunk": args.chunk,
        "sizes": {name: asdict(CHECK_SIZES[name]) for name in args.sizes},
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=1))
    args.output.with_suffix(".md").write_text(markdown(report) + "\n")
    print(markdown(report))


if __name__ == "__main__":
    main()
