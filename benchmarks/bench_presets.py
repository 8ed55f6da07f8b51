"""The README's latency tables: `adcsr bench` on the tiny and the full-size (sd21) presets.

    python benchmarks/bench_presets.py [--presets tiny sd21] [--repeats 3] [--backends ...] [--out runs/bench]

Every CPU backend of `adcsr.backends` (fp32, bf16 and int8 paths) at both sizes.
Full size on 2 CPU cores takes ≈ 20 minutes with 5 repeats (the OSEDiff-shaped teacher is
≈2.2 TMACs per image; inductor compiles each full-size model for 1.5–2.5 minutes); its largest
process, the onnxruntime one, peaks at ≈ 17.5 GB (the teacher's 3.8 GB of fp32 weights held by
PyTorch, its ONNX export and the onnxruntime session). The per-model peak-memory probe runs for
the tiny preset only.
"""

import argparse
import sys

from adcsr.bench import BACKENDS, markdown_table, run_bench, write_results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["tiny", "sd21"], choices=["tiny", "sd21"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    p.add_argument("--out", default="runs/bench")
    args = p.parse_args()
    for preset in args.presets:
        result = run_bench(f"osediff:{preset}", f"student:{preset}", repeats=args.repeats,
                           backends=tuple(args.backends), memory=preset == "tiny")
        write_results(result, f"{args.out}/{preset}")
        print(f"## {preset}\n\n{markdown_table(result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
