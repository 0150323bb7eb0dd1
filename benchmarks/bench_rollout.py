"""GRPO rollout throughput: sequences/s and image tokens/s per Janus model size, KV cache on
and off, and each classifier-free-guidance mode.

Random weights, shapes from ``rationale_forge.training.tiny.SHAPES``. A rollout is what
``JanusGRPOTrainer`` samples per batch (:class:`rationale_forge.training.rollout.JanusRollout`):
``--rationale-tokens`` text tokens (random weights never stop early, so every rationale runs to
the cap), ``<begin_of_image>``, all image tokens, VQ decoding to pictures. CFG modes
``sample_only`` and ``guided`` run a second, unconditional row per sequence. On a GPU the
weights stay fp32 and the rollout runs under bf16 autocast, as in training.

    python benchmarks/bench_rollout.py                                 # CPU: tiny and small
    python benchmarks/bench_rollout.py --device cuda --shape janus-pro-1b   # GPU, < 3 min
    python benchmarks/bench_rollout.py --shape small --batch 4 --rationale-tokens 64
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

MODES = ("none", "sample_only", "guided")


def rollout_once(bundle, device, use_cache: bool, mode: str, n: int, rationale: int) -> float:
    """Seconds for one rollout of ``n`` sequences."""
    import torch

    from rationale_forge.training.rollout import JanusRollout
    from rationale_forge.training.sampling import SamplingConfig

    sampling = SamplingConfig(
        max_rationale_tokens=rationale,
        cfg_mode=mode,
        cfg_weight=5.0,
        use_cache=use_cache,
        batch_size=n,
    )
    rollout = JanusRollout(bundle, sampling, num_generations=n)
    gpu = device.type == "cuda"
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=gpu):
        if gpu:
            torch.cuda.synchronize()
        start = time.perf_counter()
        rollout(["a red cube to the left of a blue sphere"] * n)
        if gpu:
            torch.cuda.synchronize()
    return time.perf_counter() - start


def run(args: argparse.Namespace) -> list[dict]:
    import torch

    from rationale_forge.training.janus import JanusBundle
    from rationale_forge.training.tiny import build_tiny_janus

    device = torch.device(args.device)
    gpu = device.type == "cuda"
    results = []
    for shape in args.shape:
        torch.manual_seed(0)
        built = time.perf_counter()
        model, processor = build_tiny_janus(None, shape=shape, save=False)
        model.to(device).eval()
        bundle = JanusBundle(model=model, processor=processor, path=shape)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{shape}: {params:.0f}M parameters, {bundle.image_tokens} image tokens, "
              f"built in {time.perf_counter() - built:.0f} s", flush=True)  # fmt: skip
        batch = args.batch or (8 if gpu else 2)
        configs = [(True, m) for m in MODES]
        if args.no_cache and (gpu or bundle.image_tokens <= args.cpu_no_cache_max_image_tokens):
            configs.append((False, "none"))

        if shape == args.shape[0]:  # lazy imports and inits; on GPUs the CUDA context
            rollout_once(bundle, device, True, "guided", 1, 2)
        for use_cache, mode in configs:
            seconds = min(
                rollout_once(bundle, device, use_cache, mode, batch, args.rationale_tokens)
                for _ in range(args.repeats)
            )
            row = {
                "shape": shape,
                "params_m": params,
                "device": args.device,
                "precision": "bf16 autocast" if gpu else "fp32",
                "cache": use_cache,
                "cfg_mode": mode,
                "batch": batch,
                "rationale_tokens": args.rationale_tokens,
                "image_tokens": bundle.image_tokens,
                "seconds": seconds,
                "sequences_per_s": batch / seconds,
                "image_tokens_per_s": batch * bundle.image_tokens / seconds,
            }
            if gpu:
                row["gpu"] = torch.cuda.get_device_name()
            results.append(row)
            print(f"  cache={'on' if use_cache else 'off'} cfg={mode}: {seconds:.2f} s", flush=True)
        model = bundle = None  # free it before the next shape
        if gpu:
            torch.cuda.empty_cache()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--shape", action="append", help="tiny, small, janus-pro-1b, janus-pro-7b (repeatable)"
    )
    parser.add_argument("--batch", type=int, default=None, help="sequences (GPU 8, CPU 2)")
    parser.add_argument("--rationale-tokens", type=int, default=None, help="GPU 128, CPU 32")
    parser.add_argument(
        "--no-cache",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the rollout without KV cache (cfg none)",
    )
    parser.add_argument(
        "--cpu-no-cache-max-image-tokens",
        type=int,
        default=64,
        help="on CPU, skip no-cache runs above this many image tokens (quadratic cost)",
    )
    parser.add_argument("--repeats", type=int, default=1, help="time each row N times, keep best")
    parser.add_argument("--out", default=".bench/rollout", help="results JSON goes here")
    args = parser.parse_args()
    gpu = args.device.startswith("cuda")
    args.shape = args.shape or (["janus-pro-1b"] if gpu else ["tiny", "small"])
    args.rationale_tokens = args.rationale_tokens or (128 if gpu else 32)

    results = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rollout-{args.device.replace(':', '')}.json").write_text(json.dumps(results, indent=2))

    header = (
        f"{'shape':<13} {'params':>7} {'device':<6} {'precision':<13} {'cache':<5} "
        f"{'cfg':<11} {'batch':>5} {'text':>5} {'image':>5} {'seconds':>8} {'seq/s':>7} "
        f"{'img tok/s':>10}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['shape']:<13} {r['params_m']:>6.0f}M {r['device']:<6} {r['precision']:<13} "
            f"{'on' if r['cache'] else 'off':<5} {r['cfg_mode']:<11} {r['batch']:>5} "
            f"{r['rationale_tokens']:>5} {r['image_tokens']:>5} {r['seconds']:>8.2f} "
            f"{r['sequences_per_s']:>7.2f} {r['image_tokens_per_s']:>10,.0f}"
        )
    if results and "gpu" in results[0]:
        print(f"GPU: {results[0]['gpu']}")
    print(f"(best of {args.repeats}; a rollout: rationale to the cap, <begin_of_image>, every "
          "image token, VQ decoding; CFG weight 5; random weights)")  # fmt: skip


if __name__ == "__main__":
    main()
