"""Kill `adcsr export all` with SIGKILL at random moments, resume it each time, count what survives.

    python benchmarks/interrupted_export.py [--student DIR] [--kills 6] [--seed 0] [--jobs 3]

Each round starts `adcsr export all STUDENT --out OUT --resume` and kills it (process group
included: the per-target processes) after a random delay, until a round is allowed to finish.
After every kill: no folder under a final name may be incomplete (each one present must pass its
manifest's sha256 check) — half-written work may only exist under temporary names. After the
last round: every target present, every artifact's files as recorded, no temporary left, and
`adcsr export verify` passes on each folder. Prints one line per round and the totals
("K kills, N targets kept by a resume, 0 half-written folders"). Without `--student` the `micro`
student preset (57 k parameters, random weights) is used, as the tests' small student is.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = "tile: 16\ncalibration_count: 4\neval_count: 2\nmin_w8a16_psnr: 0.0\n"
FOLDERS = ("onnx", "qnn-SM8750", "executorch", "coreml")


def small_student(folder: Path) -> Path:
    import torch

    from adcsr.core.models.student import AdcSRStudent

    torch.manual_seed(0)
    AdcSRStudent.from_preset("micro").save_pretrained(folder)
    return folder


def incomplete(out: Path) -> list[str]:
    """Folders under a final name whose files do not match their manifest."""
    from adcsr.core.errors import UserError
    from adcsr.export.runtime import MANIFEST, check_files

    bad = []
    for name in FOLDERS:
        folder = out / name
        if not folder.exists():
            continue
        try:
            for entry in json.loads((folder / MANIFEST).read_text())["artifacts"]:
                check_files(folder / entry["file"])
        except (OSError, ValueError, KeyError, UserError) as e:
            bad.append(f"{name}: {e}")
    return bad


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--student", type=Path)
    ap.add_argument("--kills", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=3)
    ap.add_argument("--max-delay", type=float, default=60.0, help="longest wait before a kill, seconds")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="adcsr-interrupted-export-"))
    student = args.student or small_student(work / "student")
    (work / "export.yaml").write_text(CONFIG)
    out = work / "out"
    cmd = [sys.executable, "-m", "adcsr", "export", "all", str(student), "--out", str(out), "--config",
           str(work / "export.yaml"), "--jobs", str(args.jobs), "--resume"]
    kills = kept = half_written = 0
    t_start = time.perf_counter()
    for round_ in range(args.kills + 1):
        last = round_ == args.kills
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        delay = None if last else rng.uniform(5.0, args.max_delay)
        try:
            _, err = proc.communicate(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            _, err = proc.communicate()
            kills += 1
        kept += err.count("kept (finished before)")
        bad = incomplete(out)
        half_written += len(bad)
        done = sorted(n for n in FOLDERS if (out / n).exists())
        temps = sorted(p.name for p in out.iterdir() if p.name.startswith(".")) if out.is_dir() else []
        state = "finished" if proc.returncode == 0 else f"killed after {delay:.1f} s" if delay else f"exit {proc.returncode}"
        print(f"round {round_}: {state}; complete: {', '.join(done) or '-'}; temporaries: {len(temps)}; "
              f"incomplete under a final name: {len(bad)}" + (f" ({bad[0]})" if bad else ""), flush=True)
        if proc.returncode == 0:
            break
    else:
        print(err.strip().splitlines()[-1] if err.strip() else "the last round failed")
        return 1
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
    verified = all(subprocess.run([sys.executable, "-m", "adcsr", "export", "verify", str(out / n)],
                                  capture_output=True).returncode == 0 for n in FOLDERS)
    print(f"{kills} kills, {kept} targets kept by a resume, {half_written} half-written folders, "
          f"{len(leftovers)} temporaries left, every folder verified: {verified} "
          f"({time.perf_counter() - t_start:.0f} s)")
    return 0 if (half_written == 0 and not leftovers and verified and len(done) == len(FOLDERS)) else 1


if __name__ == "__main__":
    sys.exit(main())
