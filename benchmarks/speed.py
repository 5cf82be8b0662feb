"""Speed and memory of pi_star_recap against LeRobot's own pi05, built at matched sizes in one process.

pi_star_recap is measured twice: on its native backbone and expert, and on the pi05 base (`base_model=
"pi05"`: stock pi05's model inside pi_star_recap, plus the advantage input and, for RECAP, the critics).
All models get the same PaliGemma backbone (Gemma width/depth/heads, 257k vocabulary, SigLIP tower at
224 px), the same action-expert width/depth, the same chunk length and 10 Euler steps. pi05 cannot be
shrunk through its config (lerobot 0.6.1 offers only the gemma_300m / gemma_2b variants and hard-codes
projection_dim 2048, the 257k vocabulary and 8 attention heads), so its `get_gemma_config` and
vision-tower sizes are overridden here. Every number is the median of `--repeats` timed runs after warm-up; ratios
are pi_star_recap / pi05 from the same run, so they hold even on a noisy shared machine.

    python benchmarks/speed.py                       # CPU, tiny sizes, chunks 16 and 50
    python benchmarks/speed.py --device cuda --dtype bfloat16 --size small
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.utils.constants import ACTION, OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS, OBS_STATE
from torch.utils.flop_counter import FlopCounterMode

IMAGE_KEY = "observation.images.top"
STATE_DIM, ACTION_DIM, TOKENS = 8, 7, 16
VOCAB = 257152  # pi05's PaliGemma vocabulary


@dataclass(frozen=True)
class Size:
    width: int
    depth: int
    mlp: int
    heads: int
    head_dim: int
    vision_width: int
    vision_depth: int
    vision_heads: int
    vision_mlp: int


SIZES = {
    "tiny": Size(128, 2, 256, 8, 16, 64, 2, 2, 128),
    "small": Size(512, 6, 2048, 8, 64, 384, 6, 6, 1536),
    "base": Size(1024, 18, 4096, 8, 128, 768, 12, 12, 3072),
}


def features(resolution: int) -> tuple[dict, dict]:
    inputs = {
        IMAGE_KEY: PolicyFeature(FeatureType.VISUAL, (3, resolution, resolution)),
        OBS_STATE: PolicyFeature(FeatureType.STATE, (STATE_DIM,)),
    }
    return inputs, {ACTION: PolicyFeature(FeatureType.ACTION, (ACTION_DIM,))}


@contextmanager
def pi05_of(size: Size):
    """While active, stock pi05 (also the pi05 inside pi_star_recap's pi05 base) is built at `size`."""
    import lerobot.policies.pi05.modeling_pi05 as pi05
    from transformers.models.auto import CONFIG_MAPPING

    gemma = pi05.GemmaConfig(size.width, size.depth, size.mlp, size.heads, 1, size.head_dim)
    original_get_config, original_paligemma = pi05.get_gemma_config, pi05.CONFIG_MAPPING

    def sized_paligemma(*args, **kwargs):
        config = CONFIG_MAPPING["paligemma"](*args, **kwargs)
        vision = config.vision_config
        vision.hidden_size, vision.num_hidden_layers = size.vision_width, size.vision_depth
        vision.num_attention_heads = size.vision_heads
        return config

    class SizedPaliGemma(pi05.PaliGemmaForConditionalGenerationWithPiGemma):
        def __init__(self, config):
            config.vision_config.intermediate_size = size.vision_mlp
            config.vision_config.projection_dim = config.text_config.hidden_size
            super().__init__(config)

    original_model = pi05.PaliGemmaForConditionalGenerationWithPiGemma
    pi05.get_gemma_config = lambda variant: gemma
    pi05.CONFIG_MAPPING = {"paligemma": sized_paligemma, "gemma": CONFIG_MAPPING["gemma"]}
    pi05.PaliGemmaForConditionalGenerationWithPiGemma = SizedPaliGemma
    try:
        yield
    finally:
        pi05.get_gemma_config, pi05.CONFIG_MAPPING = original_get_config, original_paligemma
        pi05.PaliGemmaForConditionalGenerationWithPiGemma = original_model


def shared_settings(chunk: int, device: str, dtype: str) -> dict:
    """What every model in the table is configured with alike."""
    inputs, outputs = features(224)
    return dict(
        device=device,
        dtype=dtype,
        chunk_size=chunk,
        n_action_steps=chunk,
        tokenizer_max_length=TOKENS,
        num_inference_steps=10,
        input_features=inputs,
        output_features=outputs,
    )


def build_pi05(size: Size, chunk: int, device: str, dtype: str):
    from lerobot.policies.pi05 import PI05Config, PI05Policy

    config = PI05Config(**shared_settings(chunk, device, dtype))
    with pi05_of(size):
        policy = PI05Policy(config)
    return policy.to(device)


def paligemma_config(size: Size) -> dict:
    from transformers import AutoConfig

    return AutoConfig.for_model(
        "paligemma",
        vision_config={
            "model_type": "siglip_vision_model",
            "hidden_size": size.vision_width,
            "intermediate_size": size.vision_mlp,
            "num_hidden_layers": size.vision_depth,
            "num_attention_heads": size.vision_heads,
            "image_size": 224,
            "patch_size": 14,
        },
        text_config={
            "model_type": "gemma",
            "hidden_size": size.width,
            "intermediate_size": size.mlp,
            "num_hidden_layers": size.depth,
            "num_attention_heads": size.heads,
            "num_key_value_heads": 1,
            "head_dim": size.head_dim,
            "vocab_size": VOCAB,
            "hidden_activation": "gelu_pytorch_tanh",
        },
        projection_dim=size.width,
        image_token_id=VOCAB - 1,
        vocab_size=VOCAB,
    ).to_dict()


def build_recap(size: Size, chunk: int, device: str, dtype: str, full_recap: bool, **overrides):
    from lerobot_policy_pi_star_recap import PiStarRECAPConfig, PiStarRECAPPolicy

    config = PiStarRECAPConfig(
        vlm_config=paligemma_config(size),
        expert_width=size.width,
        expert_depth=size.depth,
        expert_heads=size.heads,
        expert_mlp_ratio=max(size.mlp // size.width, 1),
        use_advantage_weighting=full_recap,
        use_advantage_conditioning=full_recap,
        **shared_settings(chunk, device, dtype),
        **overrides,
    )
    policy = PiStarRECAPPolicy(config, load_vlm_weights=False).to(device)
    attach_synthetic_table(policy, chunk)
    return policy


def build_recap_on_pi05(size: Size, chunk: int, device: str, dtype: str, full_recap: bool):
    """pi_star_recap with `base_model="pi05"`: stock pi05's model at `size`, plus critics (full RECAP)."""
    from lerobot_policy_pi_star_recap import PiStarRECAPConfig, PiStarRECAPPolicy

    config = PiStarRECAPConfig(
        base_model="pi05", mode="recap" if full_recap else "bc", **shared_settings(chunk, device, dtype)
    )
    with pi05_of(size):
        policy = PiStarRECAPPolicy(config, load_vlm_weights=False).to(device)
    attach_synthetic_table(policy, chunk)
    return policy


def attach_synthetic_table(policy, chunk: int) -> None:
    """RECAP fields for the synthetic batches' frame indices (rewards of -1, three data types)."""
    from lerobot_policy_pi_star_recap.recap_data import RecapColumns, RecapTable

    frames = 4096
    columns = RecapColumns(
        index=torch.arange(frames).numpy(),
        episode_index=(torch.arange(frames) // 256).numpy(),
        task_index=torch.zeros(frames, dtype=torch.long).numpy(),
        data_type=(torch.arange(frames) // 256 % 3).numpy(),
        reward=-torch.ones(frames, dtype=torch.float64).numpy(),
        done=(torch.arange(frames) % 256 == 255).numpy(),
        intervention=None,
        success=None,
    )
    policy.attach_dataset(
        RecapTable(columns, chunk_size=chunk, discount=0.99, n_step=policy.config.advantage_n_step)
    )


def make_batch(batch_size: int, chunk: int, device: str, window: bool) -> dict:
    frames = (batch_size, 2) if window else (batch_size,)
    return {
        IMAGE_KEY: torch.rand(*frames, 3, 224, 224, device=device),
        OBS_STATE: torch.randn(*frames, STATE_DIM, device=device),
        ACTION: torch.randn(batch_size, chunk, ACTION_DIM, device=device),
        f"{ACTION}_is_pad": torch.zeros(batch_size, chunk, dtype=torch.bool, device=device),
        OBS_LANGUAGE_TOKENS: torch.randint(4, 250, (batch_size, TOKENS), device=device),
        OBS_LANGUAGE_ATTENTION_MASK: torch.ones(batch_size, TOKENS, dtype=torch.bool, device=device),
        "index": torch.randint(0, 4000, (batch_size,), device=device),
    }


def observation(batch: dict) -> dict:
    out = {k: v for k, v in batch.items() if k.startswith("observation.")}
    for key in (IMAGE_KEY, OBS_STATE):
        if out[key].dim() == (5 if key == IMAGE_KEY else 3):
            out[key] = out[key][:, 0]
    return out


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def median_seconds(fn, repeats: int, warmup: int, device: str) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextmanager
def autocast(device: str, dtype: str):
    enabled = dtype == "bfloat16"
    with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=enabled):
        yield


def train_step(policy, batch: dict, optimizer, device: str, dtype: str):
    def step():
        policy.train()
        with autocast(device, dtype):
            loss, _ = policy.forward(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if hasattr(policy, "update"):
            policy.update()

    return step


def saved_activation_bytes(policy, batch: dict, device: str, dtype: str) -> int:
    """Bytes of tensors autograd keeps for backward in one training forward (the activation memory)."""
    seen: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    policy.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), autocast(device, dtype):
        loss, _ = policy.forward(batch)
    del loss
    return sum(seen.values())


def matmul_peak_flops(device: str, dtype: str, n: int = 2048, repeats: int = 5) -> float:
    torch_dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    a = torch.randn(n, n, device=device, dtype=torch_dtype)
    b = torch.randn(n, n, device=device, dtype=torch_dtype)
    seconds = median_seconds(lambda: a @ b, repeats, 2, device)
    return 2 * n**3 / seconds


def measure(name: str, policy, chunk: int, args, window: bool) -> dict:
    device, dtype = args.device, args.dtype
    batch = make_batch(args.batch_size, chunk, device, window)
    single = observation(make_batch(1, chunk, device, window=False))
    result = {"name": name, "parameters": sum(p.numel() for p in policy.parameters())}
    # Each model with the optimizer its config's preset builds (what lerobot-train runs: LeRobot's AdamW
    # for pi05, the fused AdamW for pi_star_recap), then both with the same fused AdamW, which isolates
    # the models' forward and backward.
    optimizers = {
        "train_step_s": policy.config.get_optimizer_preset().build(policy.get_optim_params()),
        "train_step_same_optimizer_s": torch.optim.AdamW(policy.get_optim_params(), lr=1e-5, fused=True),
    }
    for key, optimizer in optimizers.items():
        result[key] = median_seconds(
            train_step(policy, batch, optimizer, device, dtype), args.repeats, 2, device
        )
    del optimizers
    result["activation_bytes"] = saved_activation_bytes(policy, batch, device, dtype)
    policy.eval()

    def infer():
        with torch.no_grad(), autocast(device, dtype):
            policy.predict_action_chunk(single)

    result["chunk_latency_s"] = median_seconds(infer, args.repeats, 2, device)
    with FlopCounterMode(display=False) as counter:
        infer()
    result["chunk_flops"] = counter.get_total_flops()

    def episode():
        policy.reset()
        with torch.no_grad(), autocast(device, dtype):
            for _ in range(args.episode_steps):
                policy.select_action(single)

    result["select_action_s"] = (
        median_seconds(episode, max(args.repeats // 2, 1), 1, device) / args.episode_steps
    )
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        optimizer = policy.config.get_optimizer_preset().build(policy.get_optim_params())
        train_step(policy, batch, optimizer, device, dtype)()
        result["peak_train_memory_bytes"] = torch.cuda.max_memory_allocated()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--chunks", type=int, nargs="+", default=[16, 50])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--episode-steps", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--output", default="benchmarks/results/speed.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    size = SIZES[args.size]
    peak = matmul_peak_flops(args.device, args.dtype)
    rows = []
    for chunk in args.chunks:
        models = {
            "pi05 (BC)": (build_pi05, (), False),
            "pi_star_recap policy-only": (build_recap, (False,), False),
            "pi_star_recap full RECAP": (build_recap, (True,), True),
            "pi_star_recap on pi05 (BC)": (build_recap_on_pi05, (False,), False),
            "pi_star_recap on pi05 RECAP": (build_recap_on_pi05, (True,), True),
        }
        results = {}
        for name, (build, extra, window) in models.items():
            policy = build(size, chunk, args.device, args.dtype, *extra)
            results[name] = measure(name, policy, chunk, args, window)
            results[name]["chunk_flops_per_s"] = (
                results[name]["chunk_flops"] / results[name]["chunk_latency_s"]
            )
            results[name]["fraction_of_matmul_peak"] = results[name]["chunk_flops_per_s"] / peak
            del policy
        base = results["pi05 (BC)"]
        for result in results.values():
            result["chunk"] = chunk
            result["train_step_ratio_vs_pi05"] = result["train_step_s"] / base["train_step_s"]
            result["train_step_same_optimizer_ratio_vs_pi05"] = (
                result["train_step_same_optimizer_s"] / base["train_step_same_optimizer_s"]
            )
            result["chunk_latency_ratio_vs_pi05"] = result["chunk_latency_s"] / base["chunk_latency_s"]
            result["select_action_ratio_vs_pi05"] = result["select_action_s"] / base["select_action_s"]
            rows.append(result)
    print_table(rows, peak, args)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "size": args.size,
        "device": args.device,
        "dtype": args.dtype,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "matmul_peak_flops_per_s": peak,
        "targets": {"chunk_latency_ratio_vs_pi05": "<= 0.7", "full RECAP train_step_ratio_vs_pi05": "<= 1.0"},
        "train_step_s": "each model with its config's optimizer preset, as lerobot-train builds it",
        "train_step_same_optimizer_s": "both models with torch.optim.AdamW(fused=True)",
    }
    output.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    print(f"Wrote {output}")


def print_table(rows: list[dict], peak: float, args) -> None:
    print(
        f"\nsize={args.size} device={args.device} dtype={args.dtype} "
        f"batch={args.batch_size}; matmul peak {peak / 1e9:.1f} GFLOP/s"
    )
    header = (
        f"{'model':<28}{'H':>4}{'params':>9}{'train s':>9}{'x pi05':>8}{'same-opt s':>11}{'x pi05':>8}"
        f"{'chunk ms':>10}{'x pi05':>8}"
        f"{'act ms':>8}{'x pi05':>8}{'act MB':>8}{'%peak':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['name']:<28}{r['chunk']:>4}{r['parameters'] / 1e6:>8.1f}M{r['train_step_s']:>9.3f}"
            f"{r['train_step_ratio_vs_pi05']:>8.2f}{r['train_step_same_optimizer_s']:>11.3f}"
            f"{r['train_step_same_optimizer_ratio_vs_pi05']:>8.2f}{r['chunk_latency_s'] * 1e3:>10.1f}{r['chunk_latency_ratio_vs_pi05']:>8.2f}"
            f"{r['select_action_s'] * 1e3:>8.2f}{r['select_action_ratio_vs_pi05']:>8.2f}"
            f"{r['activation_bytes'] / 2**20:>8.1f}{100 * r['fraction_of_matmul_peak']:>7.1f}"
        )


if __name__ == "__main__":
    main()
