"""Export benchmark for a student preset (default: full-size `sd21`, seeded random weights).

Runs the QNN path (fp32 ONNX → W8A16 QDQ → context binary on the HTP emulator) and optionally the
ExecuTorch / Core ML paths, then prints one Markdown table: export time, bytes on disk, HTP
coverage and parity vs PyTorch. Random weights make the W8A16 figure a mechanics check, not a
quality claim; the ≤ 0.47 GB budget applies to the QNN context binary.

    python benchmarks/export_bench.py --out /tmp/bench --tile 64 [--targets qnn executorch coreml]
    python benchmarks/export_bench.py --out /tmp/bench --tile 128 --compile-only

`--compile-only` stops the QNN path after the context binary (100% HTP is still enforced) and
skips the emulator parity run, which at full size takes hours per 128² tile: the way to measure
the binary's size at the default tile.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from adcsr.export import calibration, qnn, w8a16
from adcsr.export.config import ExportConfig, load_export_config
from adcsr.export.deploy import deploy_form
from adcsr.export.onnx_export import export_onnx
from adcsr.export.student_io import StudentRef
from adcsr.export.thresholds import CONTEXT_BUDGET_BYTES
from adcsr.export.targets import export



def _row(folder: Path) -> list[str]:
    m = json.loads((folder / "manifest.json").read_text())
    rows = []
    for a in m["artifacts"]:
        parity = a.get("psnr_db", a.get("psnr_db_htp_emulator"))
        cov = m.get("htp_coverage", {}).get("htp_fraction")
        rows.append(f"| {folder.name}/{a['file']} | {a['kind']} | {a['bytes'] / 1e6:.1f} MB | "
                    f"{'' if parity is None else f'{parity:.2f} dB'} | {'' if cov is None else f'{cov:.0%}'} |")
    return rows


def compile_only(preset: str, out: Path, cfg: ExportConfig) -> list[Path]:
    """fp32 ONNX → preprocess → calibrate → W8A16 QDQ → context binary; returns its `.bin` files."""
    tile = cfg.tile
    out.mkdir(parents=True, exist_ok=True)
    student = StudentRef.parse(f"preset:{preset}", 0).load()
    fp32 = export_onnx(deploy_form(student, "qnn", tile), tile, out / "student_fp32.onnx")
    del student
    pre = w8a16.preprocess(fp32, out / "student_fp32_qnnprep.onnx")
    ranges = w8a16.calibrate(pre, calibration.lr_tiles("train", tile, cfg.calibration_count, cfg.seed).numpy(),
                             out / "calibration_ranges.json")
    qdq = out / "student_w8a16_qdq.onnx"
    w8a16.quantize_w8a16(pre, qdq, ranges)
    ctx_dir = out / f"qnn-{cfg.soc}"
    ctx_dir.mkdir(exist_ok=True)
    qnn.clear_context(ctx_dir)
    ctx = qnn.compile_context(qdq, ctx_dir, qnn.get_soc(cfg.soc), optimization_mode=cfg.htp_optimization_mode)
    print(f"HTP coverage: {qnn.coverage(ctx, qdq)['htp_fraction']:.0%}")
    return sorted(ctx_dir.glob("*.bin"))


def _report_size(bins: list[Path]) -> None:
    """The context binary's size: all its `.bin` files (two when the graph is split)."""
    if bins:
        parts = ", ".join(f"{b.name} {b.stat().st_size / 1e6:.2f} MB" for b in bins)
        size = sum(b.stat().st_size for b in bins)
        print(f"\nQNN context binary: {size / 1e9:.4f} GB ({parts}; budget {CONTEXT_BUDGET_BYTES / 1e9:.2f} GB: "
              f"{'within' if size <= CONTEXT_BUDGET_BYTES else 'OVER'})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="sd21")
    ap.add_argument("--out", required=True)
    ap.add_argument("--tile", type=int, default=128)
    ap.add_argument("--soc", default="SM8750")
    ap.add_argument("--calibration-count", type=int, default=8)
    ap.add_argument("--eval-count", type=int, default=2)
    ap.add_argument("--targets", nargs="+", default=["qnn"])
    ap.add_argument("--compile-only", action="store_true", help="QNN context binary only, no parity runs")
    ap.add_argument("--htp-optimization-mode", type=int, choices=[1, 2, 3],
                    help="one QNN graph at this finalization level (default: the export config's setting)")
    args = ap.parse_args()
    out = Path(args.out)
    # random weights: report the W8A16 figure, do not gate on it
    one_graph = {} if args.htp_optimization_mode is None else {"htp_optimization_mode": args.htp_optimization_mode}
    cfg = load_export_config(None, tile=args.tile, soc=args.soc, calibration_count=args.calibration_count,
                             eval_count=args.eval_count, min_w8a16_psnr=0.0, **one_graph)
    if args.compile_only:
        t0 = time.perf_counter()
        bins = compile_only(args.preset, out, cfg)
        print(f"preset {args.preset}, LR tile {args.tile}², SoC {args.soc}: compile-only {time.perf_counter() - t0:.0f} s")
        _report_size(bins)
        return
    t0 = time.perf_counter()
    export(f"preset:{args.preset}", out, args.targets, cfg, force=True)
    total = time.perf_counter() - t0
    print(f"preset {args.preset}, LR tile {args.tile}², SoC {args.soc}: total export time {total:.0f} s\n")
    print("| artifact | kind | size | parity vs PyTorch | HTP coverage |\n| --- | --- | --- | --- | --- |")
    for folder in sorted(p for p in out.iterdir() if (p / "manifest.json").exists()):
        print("\n".join(_row(folder)))
    _report_size(sorted(out.glob("qnn-*/*.bin")))


if __name__ == "__main__":
    main()
