"""Where the student's CPU time goes, op by op, before and after fusion (docs/benchmarks.md).

    python benchmarks/op_profile.py                          # full-size student, 128² → 512²
    python benchmarks/op_profile.py --preset tiny --lr 32 --backends torch torch-bf16   # a quick look

Each backend of `adcsr.backends` runs the same student (random weights: time depends on the
architecture) under `torch.profiler` after a warm-up; every op's self time is put in one class
— convolution, linear/matmul, attention (SDPA), normalisation, pointwise (activations,
residual adds), layout (copies, padding, permutes, resampling), fused (inductor's generated
kernels: the norm + SiLU + add chains it merges) — and reported per run with its share. The
convolution and matmul classes also get achieved GMAC/s from the model's counted MACs. Eager
against `torch-compile` is the fusion's before and after at one precision; a backend this CPU
refuses (bf16 without AVX-512 or AMX) is listed with its reason.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import defaultdict
from pathlib import Path

import torch


# op-name fragments → class, first match wins (aten op names, oneDNN/mkldnn, inductor kernels)
CLASSES = (
    ("fused", ("cpp_fused", "triton_", "kernel_cpp")),
    ("attention", ("scaled_dot_product", "flash_attention", "_efficient_attention", "softmax")),
    ("convolution", ("conv", "mkldnn_convolution", "_convolution_pointwise")),
    ("linear/matmul", ("addmm", "linear", "matmul", "bmm", "aten::mm", "_mkl", "baddbmm")),
    ("normalisation", ("group_norm", "layer_norm", "batch_norm")),
    ("pointwise", ("silu", "gelu", "add", "mul", "div", "sub", "clamp", "sigmoid", "tanh", "pow", "neg",
                   "rsqrt", "sqrt", "exp", "mean", "var", "sum", "chunk", "where", "fill")),
    ("layout", ("copy", "contiguous", "clone", "cat", "pad", "permute", "reshape", "view", "transpose",
                "upsample", "pixel", "_to_copy", "empty", "stack", "slice", "split", "expand", "as_strided",
                "index", "roll", "narrow", "unsqueeze", "flatten")),
)


def op_class(name: str) -> str:
    low = name.lower()
    for cls, fragments in CLASSES:
        if any(f in low for f in fragments):
            return cls
    return "other"


def profile_backend(name: str, model: torch.nn.Module, lr: torch.Tensor, runs: int) -> dict:
    """Self CPU time per op class (ms per run) of `runs` profiled calls after one warm-up."""
    import torch._inductor.config as inductor_config
    from torch.profiler import ProfilerActivity, profile

    from adcsr.backends import backend

    inductor_config.cpp.enable_kernel_profile = True  # name inductor's C++ kernels in the profile
    with tempfile.TemporaryDirectory() as tmp:
        run = backend(name).prepare(model, lr, Path(tmp))
        run(lr)  # warm-up (and, for the compiled backends, compilation)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(runs):
                run(lr)
    per_class: dict[str, float] = defaultdict(float)
    per_op: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        ms = event.self_cpu_time_total / 1e3 / runs
        per_class[op_class(event.key)] += ms
        per_op[event.key] += ms
    total = sum(per_class.values())
    return {"total_ms": total,
            "classes": {k: {"ms": v, "share": v / total} for k, v in sorted(per_class.items(), key=lambda kv: -kv[1])},
            "top_ops": sorted(({"op": k, "ms": v} for k, v in per_op.items()), key=lambda r: -r["ms"])[:10]}


def markdown(result: dict) -> str:
    backends = list(result["backends"])
    classes = sorted({c for b in result["backends"].values() for c in b["classes"]},
                     key=lambda c: -result["backends"][backends[0]]["classes"].get(c, {"ms": 0})["ms"])
    lines = [f"Student `{result['preset']}`, {result['lr']}² → {4 * result['lr']}², {result['threads']} CPU threads "
             f"({result['cpu']['model']}, {result['cpu']['capability']}, {', '.join(result['cpu']['flags']) or 'no AVX-512'}), "
             f"self time per run (ms, share) from `torch.profiler`, {result['runs']} profiled runs after a warm-up.", "",
             "| op class | " + " | ".join(f"`{b}`" for b in backends) + " |",
             "| --- |" + " ---: |" * len(backends)]
    for c in classes:
        cells = []
        for b in backends:
            row = result["backends"][b]["classes"].get(c)
            cells.append(f"{row['ms']:.0f} ({100 * row['share']:.0f}%)" if row else "—")
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(f"**{result['backends'][b]['total_ms']:.0f}**" for b in backends) + " |")
    macs = result["macs"]
    for b in backends:
        dense = sum(result["backends"][b]["classes"].get(c, {"ms": 0})["ms"] for c in ("convolution", "linear/matmul"))
        if dense:
            lines.append(f"\n`{b}`: convolutions + matmuls at {macs / dense / 1e6:.0f} GMAC/s of their own time "
                         f"({macs / 1e9:.0f} GMACs a run); top ops: "
                         + ", ".join(f"{o['op']} {o['ms']:.0f} ms" for o in result["backends"][b]["top_ops"][:5]))
    lines += [f"\n`{b}` not run: {why}" for b, why in result.get("refused", {}).items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from adcsr.core.errors import UserError
    from adcsr.core.models.macs import count_macs
    from adcsr.core.upscaler import load_upscaler
    from adcsr.timing import cpu_description

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="sd21", choices=("tiny", "sd21"))
    p.add_argument("--lr", type=int, default=128, help="LR side (default 128)")
    p.add_argument("--runs", type=int, default=2)
    p.add_argument("--backends", nargs="+", default=["torch", "torch-compile", "torch-bf16", "torch-compile-bf16"])
    p.add_argument("--out", type=Path, help="write the result as JSON here (and print the table)")
    args = p.parse_args(argv)
    model = load_upscaler(f"student:{args.preset}")
    lr = torch.rand(1, 3, args.lr, args.lr, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        macs = count_macs(model, lr)
    result = {"preset": args.preset, "lr": args.lr, "runs": args.runs, "threads": torch.get_num_threads(),
              "cpu": cpu_description(),
              "macs": macs, "backends": {}, "refused": {}}
    for name in args.backends:
        try:
            result["backends"][name] = profile_backend(name, model, lr, args.runs)
        except UserError as e:  # e.g. the bf16 backends on a CPU without bf16 kernels
            result["refused"][name] = str(e)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
