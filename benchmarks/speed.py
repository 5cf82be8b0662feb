"""Speed and memory of pi_star_recap against LeRobot's own pi05, built at matched sizes in one process.

pi_star_recap is measured twice: on its native backbone and expert, and on the pi05 base (`base_model=
"pi05"`: stock pi05's model inside pi_star_recap, plus the advantage input and, for RECAP, the critics).
All models get the same PaliGemma backbone (Gemma width/depth/heads, 257k vocabulary, SigLIP tower at
224 px), the same action-expert width/depth, the same chunk length and 10 Euler steps. pi05 cannot be
shrunk through its config (lerobot 0.6.1 offers only the gemma_300m / gemma_2b variants and hard-codes
projection_dim 2048, the 257k vocabulary and 8 attention heads), so its `get_gemma_config` and
vision-tower sizes are overridden here.

Timing protocol (a shared machine's load comes and goes, so each model timed in its own block of repeats
moved that model's median alone): every comparison runs the two models in turns, A B A B ..., after a
shared warm-up, on the same `--threads` intra-op threads. A ratio is the median of the per-pair ratios
A_i / B_i, reported with its interquartile range and a bootstrap 95% interval over the pairs. Each chunk
length also times a sanity pair that must cost the same (policy-only and full RECAP act by the same
prefix pass and 10 expert passes); if its median ratio leaves 1 ± SANITY_TOLERANCE the run is marked
"noisy, do not quote". Writes `--output` (JSON) and the same path with `.md` (the ratios and the verdict).

    python benchmarks/speed.py                       # CPU, tiny sizes, chunks 16 and 50
    python benchmarks/speed.py --device cuda --dtype bfloat16 --size small
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter

import numpy as np
import torch
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.utils.constants import ACTION, OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS, OBS_STATE
from torch.utils.flop_counter import FlopCounterMode

IMAGE_KEY = "observation.images.top"
STATE_DIM, ACTION_DIM, TOKENS = 8, 7, 16
VOCAB = 257152  # pi05's PaliGemma vocabulary
BASE = "pi05 (BC)"
# With cfg_beta = 1 both act by one prefix pass and 10 expert passes (full RECAP only adds the advantage
# embedding to the expert's condition), so their chunk latencies must match.
SANITY_PAIR = ("pi_star_recap policy-only", "pi_star_recap full RECAP")
SANITY_TOLERANCE = 0.05  # a same-cost pair further than this from 1 means the run's ratios are noise
QUOTABLE, NOISY = "ok", "noisy, do not quote"
BOOTSTRAP_RESAMPLES = 2000
# The timed measurements (result fields, in seconds) and their labels in the report.
TIMED = {
    "train_step_s": "train step",
    "train_step_same_optimizer_s": "train step (same optimizer)",
    "chunk_latency_s": "chunk latency",
    "select_action_s": "select_action",
}


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


def recap_settings(chunk: int, device: str, dtype: str, **backbone) -> dict:
    """`shared_settings` in PiStarRECAPConfig's layout, where the prompt length sits in the backbone group."""
    from lerobot_policy_pi_star_recap.configuration_pi_star_recap import BackboneOptions

    settings = shared_settings(chunk, device, dtype)
    tokens = settings.pop("tokenizer_max_length")
    return {**settings, "backbone": BackboneOptions(tokenizer_max_length=tokens, **backbone)}


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
    from lerobot_policy_pi_star_recap.configuration_pi_star_recap import ExpertOptions

    config = PiStarRECAPConfig(
        expert=ExpertOptions(
            width=size.width, depth=size.depth, heads=size.heads, mlp_ratio=max(size.mlp // size.width, 1)
        ),
        use_advantage_weighting=full_recap,
        use_advantage_conditioning=full_recap,
        **recap_settings(chunk, device, dtype, vlm_config=paligemma_config(size)),
        **overrides,
    )
    policy = PiStarRECAPPolicy(config, load_vlm_weights=False).to(device)
    attach_synthetic_table(policy, chunk)
    return policy


def build_recap_on_pi05(size: Size, chunk: int, device: str, dtype: str, full_recap: bool):
    """pi_star_recap with `base_model="pi05"`: stock pi05's model at `size`, plus critics (full RECAP)."""
    from lerobot_policy_pi_star_recap import PiStarRECAPConfig, PiStarRECAPPolicy

    config = PiStarRECAPConfig(
        base_model="pi05", mode="recap" if full_recap else "bc", **recap_settings(chunk, device, dtype)
    )
    with pi05_of(size):
        policy = PiStarRECAPPolicy(config, load_vlm_weights=False).to(device)
    attach_synthetic_table(policy, chunk)
    return policy


def attach_synthetic_table(policy, chunk: int) -> None:
    """RECAP fields for the synthetic batches' frame indices (rewards of -1, three data types)."""
    from lerobot_policy_pi_star_recap.data.columns import RecapColumns
    from lerobot_policy_pi_star_recap.data.recap_table import RecapTable

    frames = np.arange(4096)  # numpy, so this also works under a `torch.device("cuda")` context
    columns = RecapColumns(
        index=frames,
        episode_index=frames // 256,
        task_index=np.zeros(len(frames), dtype=np.int64),
        data_type=frames // 256 % 3,
        reward=-np.ones(len(frames), dtype=np.float64),
        done=frames % 256 == 255,
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


def allocated_bytes(device: str) -> int:
    """Bytes the device holds in tensors now (0 on CPU, where peak memory is not measured)."""
    return torch.cuda.memory_allocated() if device.startswith("cuda") else 0


def seconds(fn: Callable[[], object], device: str) -> float:
    """Wall time of one call, with the device's queue drained before and after."""
    synchronize(device)
    start = perf_counter()
    fn()
    synchronize(device)
    return perf_counter() - start


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int, device: str) -> float:
    for _ in range(warmup):
        fn()
    return float(np.median([seconds(fn, device) for _ in range(repeats)]))


def interleaved_times(
    fn_a: Callable[[], object], fn_b: Callable[[], object], repeats: int, warmup: int, device: str = "cpu"
) -> tuple[list[float], list[float]]:
    """Times of `fn_a` and `fn_b` run in turns (a b a b ...) after a shared warm-up. Pair i runs back to
    back, so a neighbour's load that slows A's run slows the B beside it too and divides out of A_i / B_i."""
    for _ in range(warmup):
        fn_a()
        fn_b()
    a_times, b_times = [], []
    for _ in range(repeats):
        a_times.append(seconds(fn_a, device))
        b_times.append(seconds(fn_b, device))
    return a_times, b_times


def pair_ratios(a_times: Sequence[float], b_times: Sequence[float]) -> np.ndarray:
    """A_i / B_i for each pair i: the ratio within a pair cancels the load both runs shared, which a
    ratio of two medians does not."""
    if len(a_times) != len(b_times):
        raise ValueError(f"{len(a_times)} times of A against {len(b_times)} of B: ratios need pairs")
    return np.asarray(a_times, dtype=float) / np.asarray(b_times, dtype=float)


def ratio_summary(ratios: Sequence[float], seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
    """Median of the per-pair ratios with its spread: their interquartile range (numpy's default linear
    percentiles) and a bootstrap 95% interval of the median (pairs resampled with a seeded rng)."""
    ratios = np.asarray(ratios, dtype=float)
    resampled = np.random.default_rng(seed).choice(ratios, size=(resamples, ratios.size))
    iqr_low, iqr_high = np.percentile(ratios, [25, 75])
    ci_low, ci_high = np.percentile(np.median(resampled, axis=1), [2.5, 97.5])
    return {
        "median": float(np.median(ratios)),
        "iqr_low": float(iqr_low),
        "iqr_high": float(iqr_high),
        "ci_low": float(ci_low),
        "ci_high": float(ci_high),
        "pairs": int(ratios.size),
    }


def sanity_verdict(summary: dict, tolerance: float = SANITY_TOLERANCE) -> str:
    """QUOTABLE when a pair that must cost the same has its median ratio within 1 ± `tolerance`."""
    return QUOTABLE if abs(summary["median"] - 1.0) <= tolerance else NOISY


def ratio_key(key: str) -> str:
    """The result field of a timed measurement's ratio to pi05: train_step_s -> train_step_ratio_vs_pi05."""
    return f"{key.removesuffix('_s')}_ratio_vs_pi05"


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
    return 2 * n**3 / median_seconds(lambda: a @ b, repeats, 2, device)


@dataclass
class Subject:
    """A built model with its inputs: a training batch (two frames for RECAP's critics) and one observation."""

    name: str
    policy: torch.nn.Module
    batch: dict
    single: dict


def subject(name: str, policy: torch.nn.Module, chunk: int, args, window: bool) -> Subject:
    batch = make_batch(args.batch_size, chunk, args.device, window)
    return Subject(name, policy, batch, observation(make_batch(1, chunk, args.device, window=False)))


def make_optimizer(policy, key: str) -> torch.optim.Optimizer:
    """For `train_step_s` the optimizer the config's preset builds (what lerobot-train runs: LeRobot's
    AdamW for pi05, the fused AdamW for pi_star_recap); otherwise the same fused AdamW for every model,
    which isolates the models' forward and backward."""
    if key == "train_step_s":
        return policy.config.get_optimizer_preset().build(policy.get_optim_params())
    return torch.optim.AdamW(policy.get_optim_params(), lr=1e-5, fused=True)


def inference(model: Subject, device: str, dtype: str) -> Callable[[], None]:
    def infer():
        with torch.no_grad(), autocast(device, dtype):
            model.policy.predict_action_chunk(model.single)

    return infer


def episode(model: Subject, args) -> Callable[[], None]:
    def run():
        model.policy.reset()
        with torch.no_grad(), autocast(args.device, args.dtype):
            for _ in range(args.episode_steps):
                model.policy.select_action(model.single)

    return run


def footprint(model: Subject, args, resident: int) -> dict:
    """What needs no timing: parameters, saved activations, one chunk's FLOPs and, on CUDA, one training
    step's peak memory above `resident` (the bytes held before this model was built, by the others)."""
    device, dtype, policy = args.device, args.dtype, model.policy
    result = {"name": model.name, "parameters": sum(p.numel() for p in policy.parameters())}
    result["activation_bytes"] = saved_activation_bytes(policy, model.batch, device, dtype)
    policy.eval()
    with FlopCounterMode(display=False) as counter:
        inference(model, device, dtype)()
    result["chunk_flops"] = counter.get_total_flops()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        train_step(policy, model.batch, make_optimizer(policy, "train_step_s"), device, dtype)()
        result["peak_train_memory_bytes"] = torch.cuda.max_memory_allocated() - resident
    return result


def compare(a: Subject, b: Subject, args) -> dict[str, tuple[list[float], list[float]]]:
    """Every measurement of TIMED for `a` and `b`, run in turns: {key: (a's times, b's times)}."""
    device, dtype, repeats = args.device, args.dtype, args.repeats
    times = {}
    for key in ("train_step_s", "train_step_same_optimizer_s"):
        steps = [train_step(m.policy, m.batch, make_optimizer(m.policy, key), device, dtype) for m in (a, b)]
        times[key] = interleaved_times(*steps, repeats, 2, device)
    del steps  # the optimizers' state
    for model in (a, b):
        model.policy.eval()
    times["chunk_latency_s"] = interleaved_times(
        inference(a, device, dtype), inference(b, device, dtype), repeats, 2, device
    )
    episodes = interleaved_times(episode(a, args), episode(b, args), max(repeats // 2, 1), 1, device)
    times["select_action_s"] = tuple([t / args.episode_steps for t in run] for run in episodes)
    return times


def measure_chunk(size: Size, chunk: int, args, peak: float) -> tuple[list[dict], dict]:
    """Every model against pi05 at one chunk length (pi05's times pooled over its pairs), and the sanity
    pair's chunk latencies timed the same way."""
    device, dtype = args.device, args.dtype
    models = {
        "pi_star_recap policy-only": (build_recap, (False,), False),
        "pi_star_recap full RECAP": (build_recap, (True,), True),
        "pi_star_recap on pi05 (BC)": (build_recap_on_pi05, (False,), False),
        "pi_star_recap on pi05 RECAP": (build_recap_on_pi05, (True,), True),
    }
    resident = allocated_bytes(device)
    base = subject(BASE, build_pi05(size, chunk, device, dtype), chunk, args, window=False)
    results = {BASE: footprint(base, args, resident)}
    base_times: dict[str, list[float]] = {key: [] for key in TIMED}
    sanity_models = {}
    for name, (build, extra, window) in models.items():
        resident = allocated_bytes(device)
        model = subject(name, build(size, chunk, device, dtype, *extra), chunk, args, window)
        result = results[name] = footprint(model, args, resident)
        result["ratios_vs_pi05"] = {}
        for key, (times, pi05_times) in compare(model, base, args).items():
            summary = ratio_summary(pair_ratios(times, pi05_times))
            result[key], result[ratio_key(key)] = float(np.median(times)), summary["median"]
            result["ratios_vs_pi05"][key] = summary
            base_times[key] += pi05_times
        if name in SANITY_PAIR:
            sanity_models[name] = model
    for key, times in base_times.items():
        results[BASE][key], results[BASE][ratio_key(key)] = float(np.median(times)), 1.0
    for result in results.values():
        result["chunk"] = chunk
        result["chunk_flops_per_s"] = result["chunk_flops"] / result["chunk_latency_s"]
        result["fraction_of_matmul_peak"] = result["chunk_flops_per_s"] / peak
    first, second = (inference(sanity_models[name], device, dtype) for name in SANITY_PAIR)
    sanity = ratio_summary(pair_ratios(*interleaved_times(first, second, args.repeats, 2, device)))
    check = {"chunk": chunk, "pair": list(SANITY_PAIR), "measurement": "chunk_latency_s", **sanity}
    return list(results.values()), {**check, "verdict": sanity_verdict(sanity)}


def speed_report(meta: dict, rows: list[dict], sanity: list[dict]) -> dict:
    """What the JSON holds: the run's verdict (NOISY if any chunk length's sanity pair is), the sanity
    pairs, and the rows."""
    verdict = NOISY if any(check["verdict"] == NOISY for check in sanity) else QUOTABLE
    return {"verdict": verdict, "meta": meta, "sanity": sanity, "results": rows}


def spread(summary: dict) -> str:
    return (
        f"{summary['median']:.2f} (IQR {summary['iqr_low']:.2f}-{summary['iqr_high']:.2f}, "
        f"95% CI {summary['ci_low']:.2f}-{summary['ci_high']:.2f}, {summary['pairs']} pairs)"
    )


def markdown_report(report: dict) -> str:
    """The verdict, the sanity pairs and every ratio to pi05 with its spread, for BENCHMARKS.md."""
    meta = report["meta"]
    lines = [
        f"**Verdict: {report['verdict']}** (sanity pairs must be within 1 ± {meta['sanity_tolerance']})",
        "",
        f"size {meta['size']}, {meta['device']} {meta['dtype']}, batch {meta['batch_size']}, "
        f"threads {meta['threads']}; ratios are medians of per-pair ratios of interleaved runs, with their "
        "interquartile range and a bootstrap 95% interval over the pairs.",
        "",
        "| H | sanity pair | chunk latency ratio | verdict |",
        "|---|---|---|---|",
        *(
            f"| {check['chunk']} | {' / '.join(check['pair'])} | {spread(check)} | {check['verdict']} |"
            for check in report["sanity"]
        ),
        "",
        "| model | H | " + " | ".join(f"{label} x pi05" for label in TIMED.values()) + " |",
        "|---|---|" + "---|" * len(TIMED),
        *(
            f"| {r['name']} | {r['chunk']} | "
            + " | ".join(spread(r["ratios_vs_pi05"][key]) for key in TIMED)
            + " |"
            for r in report["results"]
            if "ratios_vs_pi05" in r
        ),
    ]
    return "\n".join(lines) + "\n"


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
    # One thread by default: a multi-threaded op waits for its slowest thread, so on a shared 2-core VM
    # a neighbour that takes one core stalls every op of a 2-thread run, while a 1-thread run just shares
    # a core; one thread is also a count every machine has, so runs compare across machines. A GPU run's
    # kernels do not depend on it. Pass e.g. --threads 2 to time multi-threaded CPU use.
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads, for every model")
    parser.add_argument("--output", default="benchmarks/results/speed.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads: {torch.get_num_threads()} (torch intra-op, the same for every model)")
    torch.manual_seed(0)
    size = SIZES[args.size]
    peak = matmul_peak_flops(args.device, args.dtype)
    rows, sanity = [], []
    for chunk in args.chunks:
        chunk_rows, check = measure_chunk(size, chunk, args, peak)
        rows += chunk_rows
        sanity.append(check)
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
        "timing": "models in turns (a b a b ...) after a shared warm-up; ratios are medians of per-pair "
        "ratios with their IQR and a bootstrap 95% CI over pairs (ratios_vs_pi05); *_s are medians",
        "sanity_tolerance": SANITY_TOLERANCE,
        "targets": {"chunk_latency_ratio_vs_pi05": "<= 0.7", "full RECAP train_step_ratio_vs_pi05": "<= 1.0"},
        "train_step_s": "each model with its config's optimizer preset, as lerobot-train builds it",
        "train_step_same_optimizer_s": "both models with torch.optim.AdamW(fused=True)",
    }
    report = speed_report(meta, rows, sanity)
    print_table(rows, peak, args)
    markdown = markdown_report(report)
    print(f"\n{markdown}")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    output.with_suffix(".md").write_text(markdown)
    print(f"Wrote {output} and {output.with_suffix('.md')}")


def print_table(rows: list[dict], peak: float, args) -> None:
    print(
        f"\nsize={args.size} device={args.device} dtype={args.dtype} batch={args.batch_size} "
        f"threads={torch.get_num_threads()}; matmul peak {peak / 1e9:.1f} GFLOP/s; x pi05: median of "
        "per-pair ratios (spreads below)"
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
