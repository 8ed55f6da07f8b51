"""A folder upscale killed with SIGKILL, then run again with --resume: the finished outputs are
kept untouched, the rest are done, and nothing half-written remains."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from PIL import Image

from adcsr.cli import main
from adcsr.core.imaging import write_image
from adcsr.core.photos import hr_crops


def test_a_killed_folder_upscale_resumes_keeping_what_it_finished(tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    for i, crop in enumerate(hr_crops("train", 192, 8, seed=5)):
        write_image(crop, src / f"p{i}.png")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "adcsr", "upscale", str(src), str(out), "--teacher",
                             "realesrgan-compact"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out.is_dir() and any(p.suffix == ".png" and not p.name.startswith(".")
                                                                     for p in out.iterdir())):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if not p.name.startswith(".")}
    assert 1 <= len(finished) < 8, "the run must really be interrupted"
    (out / ".p7.k1ll3d.tmp.png").write_bytes(b"\x89PNG half")  # what a kill mid-write leaves
    assert main(["upscale", str(src), str(out), "--teacher", "realesrgan-compact"]) == 2  # no --resume: refused
    assert "already exists" in capsys.readouterr().err
    assert main(["upscale", str(src), str(out), "--teacher", "realesrgan-compact", "--resume"]) == 0
    err = capsys.readouterr().err
    assert f"{len(finished)} finished output(s) kept" in err and "temporary file(s) of an interrupted run removed" in err
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"p{i}.png" for i in range(8)] + ["manifest.json"])  # nothing half-written remains
    for name, mtime in finished.items():
        assert (out / name).stat().st_mtime_ns == mtime  # kept as they were
    for i in range(8):
        assert Image.open(out / f"p{i}.png").size == (768, 768)


def test_resume_and_force_together_are_refused(tmp_path, capsys):
    write_image(hr_crops("train", 32, 1)[0], tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), str(tmp_path / "o"), "--teacher", "realesrgan-compact",
                 "--resume", "--force"]) == 2
    assert "give one" in capsys.readouterr().err
