"""SFT training-step cost: tokens/s and peak memory at a given Janus model size.

Random weights, shapes from ``rationale_forge.training.tiny.SHAPES``; one row per
(shape, device, precision, activation checkpointing). Each row runs in its own process so
peak memory is that configuration's alone (CPU: VmHWM; GPU: torch's peak allocation).
A step is what ``JanusSFTTrainer`` does per batch: the routed forward (text head for text,
generation head for image codes), the weighted loss, backward, AdamW (fp32 master weights;
bf16 autocast on GPU).

    python benchmarks/bench_sft.py                       # CPU: tiny and small shapes
    python benchmarks/bench_sft.py --device cuda         # GPU: janus-pro-1b, bf16
    python benchmarks/bench_sft.py --shape small --batch 2 --rationale-tokens 256
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import run_measured  # noqa: E402

PROMPT_TOKENS = 48


def one(args: argparse.Namespace) -> dict:
    """Run one configuration in this process; return its measurements."""
    import torch

    from rationale_forge.training.janus import JanusBundle
    from rationale_forge.training.sequence import LossWeights, SpecialIds, build_sequence, collate
    from rationale_forge.training.tiny import build_tiny_janus

    torch.manual_seed(0)
    device = torch.device(args.device)
    model, processor = build_tiny_janus(None, shape=args.shape, save=False)
    model.to(device).train()
    if args.checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    bundle = JanusBundle(model=model, processor=processor, path=args.shape)
    ids = SpecialIds.of(bundle)
    vocab = model.config.text_config.vocab_size
    rows = []
    for _ in range(args.batch):
        prompt = [ids.bos] + torch.randint(10, vocab, (PROMPT_TOKENS - 1,)).tolist()
        rationale = torch.randint(10, vocab, (args.rationale_tokens,)).tolist()
        codes = torch.randint(0, bundle.codebook, (bundle.image_tokens,)).tolist()
        rows.append(build_sequence(ids, prompt, rationale, codes))
    batch = {k: v.to(device) for k, v in collate(rows, ids.pad).items()}
    weights = LossWeights()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, betas=(0.9, 0.95))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)

    def step() -> float:
        with autocast:
            out = model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                image_mask=batch["image_mask"],
            )
        kinds = batch["kinds"][:, 1:]
        w = weights.of_kinds(kinds)
        loss = -(w * out.logps).sum() / (kinds > 0).sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    seconds = (time.perf_counter() - start) / args.steps
    tokens = int(batch["attention_mask"].sum())
    params = sum(p.numel() for p in model.parameters())
    result = {
        "shape": args.shape,
        "params_m": params / 1e6,
        "device": args.device,
        "precision": "bf16 autocast" if args.bf16 else "fp32",
        "checkpointing": args.checkpointing,
        "batch": args.batch,
        "seq_len": batch["input_ids"].shape[1],
        "step_s": seconds,
        "tokens_per_s": tokens / seconds,
        "image_tokens_per_s": args.batch * bundle.image_tokens / seconds,
    }
    if device.type == "cuda":
        result["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
        result["gpu"] = torch.cuda.get_device_name()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shape", action="append", help="tiny, small, janus-pro-1b, janus-pro-7b")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--rationale-tokens", type=int, default=200)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bf16", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--checkpointing", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=".bench/sft")
    args = parser.parse_args()
    if args.one:
        args.shape = args.shape[0]
        print("RESULT " + json.dumps(one(args)))
        return

    gpu = args.device.startswith("cuda")
    shapes = args.shape or (["janus-pro-1b"] if gpu else ["tiny", "small"])
    configs = [(s, gpu, ckpt) for s in shapes for ckpt in (False, True)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for shape, bf16, ckpt in configs:
        batch = args.batch or (4 if gpu else 2)
        cmd = [
            sys.executable, __file__, "--one", "--shape", shape, "--device", args.device,
            "--batch", str(batch), "--rationale-tokens", str(args.rationale_tokens),
            "--steps", str(args.steps), "--warmup", str(args.warmup),
        ] + (["--bf16"] if bf16 else []) + (["--checkpointing"] if ckpt else [])  # fmt: skip
        log = out / f"{shape}-{args.device}-{int(ckpt)}.log"
        measured = run_measured(cmd, log)
        line = next(x for x in log.read_text().splitlines() if x.startswith("RESULT "))
        result = json.loads(line[7:])
        result["peak_rss_gb"] = measured.peak_rss_mb / 1024
        results.append(result)

    header = (
        f"{'shape':<13} {'params':>8} {'device':<6} {'precision':<13} {'ckpt':<5} "
        f"{'batch':>5} {'seq':>5} {'step s':>8} {'tokens/s':>10} {'img tok/s':>10} "
        f"{'peak RSS':>9} {'peak GPU':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        gpu_mem = f"{r['peak_gpu_gb']:.1f} GB" if "peak_gpu_gb" in r else "-"
        print(
            f"{r['shape']:<13} {r['params_m']:>7.0f}M {r['device']:<6} {r['precision']:<13} "
            f"{'yes' if r['checkpointing'] else 'no':<5} {r['batch']:>5} {r['seq_len']:>5} "
            f"{r['step_s']:>8.3f} {r['tokens_per_s']:>10,.0f} {r['image_tokens_per_s']:>10,.0f} "
            f"{r['peak_rss_gb']:>7.2f} GB {gpu_mem:>9}"
        )
    if any("gpu" in r for r in results):
        print(f"GPU: {results[0].get('gpu')}")
    print(f"(step = routed forward + weighted loss + backward + AdamW; prompt {PROMPT_TOKENS}, "
          f"rationale {args.rationale_tokens} tokens; mean of {args.steps} steps after "
          f"{args.warmup} warm-up)")  # fmt: skip


if __name__ == "__main__":
    main()
