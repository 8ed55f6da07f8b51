"""Server-GPU timing of the full-size student and teacher: one short prepared script for a lent GPU.

    python benchmarks/gpu_bench.py [--presets sd21] [--lr-size 128] [--big 2048] [--out runs/gpu-bench]

Per model (`student:PRESET`, `osediff:PRESET`, random weights: latency depends on the architecture)
and variant (fp32, fp16, bf16, fp16 channels-last, fp16 `torch.compile`): the median of `--repeats`
CUDA-event timings after `--warmup` calls, variants interleaved round-robin so each ratio is from
paired runs, and the peak GPU memory of the variant (`max_memory_allocated`). Attention runs through
PyTorch's SDPA (diffusers' default processor), whichever fused kernel SDPA picks. Then the fp16
student upscales a `--big`² LR image tiled at `--lr-size` (overlap a quarter), timed end to end:
the throughput a user sees. The goal (issue 23): student fp16 ≤ 6 ms at 128² → 512² on an
H100-class GPU and ≥ 1.5× its fp32. On a machine without CUDA, `--device cpu` runs the same code
with wall-clock timing (what the test does, at the tiny preset).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from adcsr.bench import build
from adcsr.bench_variants import GPU_VARIANTS, gpu_variant
from adcsr.core.atomic import atomic_write_text
from adcsr.timing import cuda_interleaved, interleaved, summarize

def _peak_memory(run, device: str) -> int | None:
    if device == "cpu":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    run()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated()


def time_model(spec: str, lr_size: int, variants: list[str], device: str, repeats: int, warmup: int) -> list[dict]:
    model = build(spec)
    lr = torch.rand(1, 3, lr_size, lr_size, generator=torch.Generator().manual_seed(0))
    runs = {v: gpu_variant(model.module, lr, v, device) for v in variants}
    memory = {v: _peak_memory(run, device) for v, run in runs.items()}  # also each variant's first (compile) call
    timer = cuda_interleaved if device != "cpu" else interleaved
    times = timer(runs, repeats=repeats, warmup=warmup)
    rows = [{"model": model.label, "spec": spec, "variant": v, **summarize(times[v]), "peak_bytes": memory[v]}
            for v in variants]
    del runs
    if device != "cpu":
        torch.cuda.empty_cache()
    return rows


def tiled_throughput(spec: str, big: int, tile: int, device: str) -> dict:
    """The fp16 (fp32 on the CPU) model over a big² LR image in tiles, end to end."""
    from adcsr.core.tiling import tiled_upscale

    dtype = torch.float32 if device == "cpu" else torch.float16
    m = build(spec).module.to(device, dtype)
    lr = torch.rand(1, 3, big, big, generator=torch.Generator().manual_seed(0))

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return m(x.to(device, dtype)).float().cpu()

    tiled_upscale(forward, lr[:, :, :tile, :tile], scale=4, tile=tile, overlap=tile // 4, multiple=8)  # warm-up
    if device != "cpu":
        torch.cuda.synchronize()
    start = time.perf_counter()
    sr = tiled_upscale(forward, lr, scale=4, tile=tile, overlap=tile // 4, multiple=8)
    if device != "cpu":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"model": spec, "lr": big, "sr": sr.shape[-1], "tile": tile, "dtype": str(dtype).removeprefix("torch."),
            "seconds": seconds, "sr_megapixels_per_s": sr.shape[-1] * sr.shape[-2] / 1e6 / seconds}


def markdown(result: dict) -> str:
    lines = [f"{result['device']}; {result['lr_size']}² → {result['lr_size'] * 4}², median of {result['repeats']} "
             "after warm-up, variants interleaved.", "",
             "| model | variant | median | min | × its fp32 | peak memory |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    fp32 = {r["model"]: r["median_ms"] for r in result["rows"] if r["variant"] == "fp32"}
    for r in result["rows"]:
        ratio = f"{fp32[r['model']] / r['median_ms']:.2f}×" if r["model"] in fp32 else ""
        mem = f"{r['peak_bytes'] / 2**30:.2f} GiB" if r["peak_bytes"] else "—"
        lines.append(f"| {r['model']} | {r['variant']} | {r['median_ms']:.2f} ms | {r['min_ms']:.2f} ms | {ratio} | {mem} |")
    t = result.get("tiled")
    if t:
        lines += ["", f"Tiled: {t['model']} {t['dtype']}, {t['lr']}² LR → {t['sr']}² in tiles of {t['tile']}: "
                  f"{t['seconds']:.2f} s ({t['sr_megapixels_per_s']:.1f} SR megapixels/s)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["sd21"], choices=["tiny", "sd21"])
    p.add_argument("--lr-size", type=int, default=128)
    p.add_argument("--variants", nargs="+", default=list(GPU_VARIANTS), choices=list(GPU_VARIANTS))
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--big", type=int, default=2048, help="LR side of the tiled-throughput image (0: skip)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", default="runs/gpu-bench")
    args = p.parse_args(argv)
    if args.device != "cpu" and not torch.cuda.is_available():
        print("gpu_bench: no CUDA device here (use --device cpu for a dry run)", file=sys.stderr)
        return 2
    rows = []
    for preset in args.presets:
        for spec in (f"student:{preset}", f"osediff:{preset}"):
            rows += time_model(spec, args.lr_size, args.variants, args.device, args.repeats, args.warmup)
    device = torch.cuda.get_device_name() if args.device != "cpu" else "CPU"
    result = {"device": device, "torch": torch.__version__, "lr_size": args.lr_size, "repeats": args.repeats,
              "rows": rows}
    if args.big:
        result["tiled"] = tiled_throughput(f"student:{args.presets[0]}", args.big, args.lr_size, args.device)
    out = Path(args.out)
    atomic_write_text(out / "gpu_bench.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / "gpu_bench.md", markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
