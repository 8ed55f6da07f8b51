"""The README's latency tables: `adcsr bench` on the tiny and the full-size (sd21) presets.

    python benchmarks/bench_presets.py [--presets tiny sd21] [--repeats 3] [--out runs/bench]

Full size on 2 CPU cores takes tens of minutes (the OSEDiff-shaped teacher is ≈2.2 TMACs per
image); onnxruntime is timed for the tiny preset only (the full-size teacher's ONNX export needs
several GB of RAM and a long export).
"""

import argparse
import sys

from adcsr.bench import markdown_table, run_bench, write_results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["tiny", "sd21"], choices=["tiny", "sd21"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="runs/bench")
    args = p.parse_args()
    for preset in args.presets:
        backends = ("torch", "onnxruntime") if preset == "tiny" else ("torch",)
        result = run_bench(f"osediff:{preset}", f"student:{preset}", repeats=args.repeats, backends=backends,
                           memory=preset == "tiny")
        write_results(result, f"{args.out}/{preset}")
        print(f"## {preset}\n\n{markdown_table(result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
