"""Does the embedded default produce a working student? Run it from an empty folder and print the
report's pass/fail gates (size, speed, closeness to the teacher, colours, W8A16) with the wall time.

    python benchmarks/working_student.py            # the embedded default (`adcsr pipeline`)
    python benchmarks/working_student.py --quality  # adcsr/configs/pipeline-quality.yaml
    python benchmarks/working_student.py --keep runs/ws   # keep the run folder there

Every figure comes from the run's own `report/out/results.json`; nothing is measured twice.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

QUALITY = Path(__file__).resolve().parents[1] / "adcsr" / "configs" / "pipeline-quality.yaml"


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quality", action="store_true", help="run the quality config instead of the default")
    ap.add_argument("--keep", type=Path, help="run folder to keep (default: a temporary one)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = (args.keep or Path(tmp) / "run").resolve()
        cfg = Path(tmp) / "run.yaml"
        base = yaml.safe_load(QUALITY.read_text()) if args.quality else {}
        cfg.write_text(yaml.safe_dump({**base, "run_dir": str(run_dir)}))
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "adcsr.cli", "pipeline", str(cfg)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - start
        if done.returncode:
            print(done.stderr.strip().splitlines()[-1], file=sys.stderr)
            return done.returncode
        results = json.loads((run_dir / "report" / "out" / "results.json").read_text())
    print(f"{'quality config' if args.quality else 'embedded default'}: wall time {wall / 60:.1f} min")
    print("\n| model | PSNR-Y vs HR | PSNR-Y vs teacher | NIQE | colour error | params | CPU latency |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for m in results["models"]:
        print(f"| {m['name']} | {_fmt(m['psnr'])} | {_fmt(m.get('psnr_vs_teacher'))} | {_fmt(m['niqe'])} | "
              f"{_fmt(m.get('color_error'))} | {_fmt(m.get('params'))} | {_fmt(m.get('latency_ms'))} |")
    print("\n| check | measured | target | |\n| --- | ---: | --- | --- |")
    for c in results["checks"]:
        print(f"| {c['check']} | {_fmt(c['measured'])} | {c['target']} | {'pass' if c['passed'] else 'FAIL'} |")
    return 0 if all(c["passed"] for c in results["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
