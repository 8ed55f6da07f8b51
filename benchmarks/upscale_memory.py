"""Peak memory of `adcsr upscale` on huge inputs next to the model's own footprint.

Each measurement runs in a fresh process and reads its peak resident set (ru_maxrss from
wait4, the same figure as the child's VmHWM):
- footprint: load the student and run one LR tile through it (what any upscale must hold);
- upscale: `adcsr upscale LR.png OUT.png --student DIR` on an N×N LR photo (a real photo tiled
  to size), streamed to PNG.
The difference is what tiling costs on top of the model; the target is under 1 GB at 4096².

    python benchmarks/upscale_memory.py [--student DIR] [--sizes 1024 4096] [--tile 128]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FOOTPRINT = """
import sys, torch
from adcsr.core.models.student import AdcSRStudent
student = AdcSRStudent.from_pretrained(sys.argv[1]).eval()
with torch.no_grad():
    student(torch.rand(1, 3, int(sys.argv[2]), int(sys.argv[2]))).clamp(0, 1)
"""


def peak_rss(cmd: list[str]) -> tuple[float, float]:
    """(peak RSS in MB, wall seconds) of a fresh process running `cmd`."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed with exit code {proc.returncode}")
    return usage.ru_maxrss / 1024, time.perf_counter() - start


def make_input(size: int, path: Path) -> None:
    """A real photo repeated (mirrored, so without hard edges) to size × size."""
    import torch

    from adcsr.core.imaging import write_image
    from adcsr.core.photos import load_photo

    photo = load_photo("chelsea")
    tile = torch.cat([photo, photo.flip(-1)], -1)
    tile = torch.cat([tile, tile.flip(-2)], -2)
    reps = (size // tile.shape[-2] + 1, size // tile.shape[-1] + 1)
    write_image(tile.repeat(1, *reps)[:, :size, :size], path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--student", type=Path, help="a student folder (default: a tiny-preset student, seed 0)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096], help="LR sides to measure")
    ap.add_argument("--tile", type=int, default=128)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="upscale_memory_"))
    student = args.student
    if student is None:
        import torch

        from adcsr.core.models.student import AdcSRStudent

        torch.manual_seed(0)
        student = work / "student"
        AdcSRStudent.from_preset("tiny").save_pretrained(student)
    footprint, _ = peak_rss([sys.executable, "-c", FOOTPRINT, str(student), str(args.tile)])
    print(f"model footprint (load + one {args.tile}² tile): {footprint:.0f} MB", flush=True)
    print("| LR size | SR size | SR float32 buffer | peak RSS of upscale | model footprint | difference | time |")
    print("| --- | --- | --- | --- | --- | --- | --- |", flush=True)
    for size in args.sizes:
        lr, out = work / f"lr_{size}.png", work / f"sr_{size}.png"
        make_input(size, lr)
        peak, wall = peak_rss([sys.executable, "-m", "adcsr", "upscale", str(lr), str(out), "--student", str(student),
                               "--tile", str(args.tile), "--force"])
        buffer_mb = 3 * 4 * (4 * size) ** 2 / 2**20
        print(f"| {size}² | {4 * size}² | {buffer_mb:.0f} MB | {peak:.0f} MB | {footprint:.0f} MB | "
              f"{peak - footprint:.0f} MB | {wall:.0f} s |", flush=True)
        lr.unlink()
        out.unlink()


if __name__ == "__main__":
    main()
