"""A disk that fills up mid-write, on a real size-limited file system (a tmpfs mounted for the
test): a training checkpoint, an export and a streamed upscale each stop with one line saying the
disk is full (exit 1, no traceback), leave the earlier good state exactly as it was and nothing
half-written; a training run resumes from its last good checkpoint once space is freed."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from adcsr.core.imaging import write_image
from adcsr.core.photos import hr_crops
from adcsr.distill.checkpoint import CheckpointStore

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture
def small_disk(tmp_path):
    """A folder on its own tmpfs of the size asked for (mounting needs root, as CI has)."""
    mounted = []

    def make(megabytes: int) -> Path:
        d = tmp_path / f"disk{len(mounted)}"
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m", "tmpfs", str(d)],
                           capture_output=True, text=True)
        if r.returncode:
            pytest.skip(f"cannot mount a size-limited tmpfs here: {r.stderr.strip()}")
        mounted.append(d)
        return d

    yield make
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Write a ballast file until the disk is full, then give back `leave` bytes."""
    ballast = disk / "ballast"
    with open(ballast, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * (1 << 16))
        except OSError as e:
            assert e.errno == errno.ENOSPC
    if leave:
        os.truncate(ballast, max(0, ballast.stat().st_size - leave))
    return ballast


def one_line_disk_full(p: subprocess.CompletedProcess, command: str) -> None:
    assert p.returncode == 1, p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith(f"adcsr {command}: error: no space left on the device"), last


def adcsr(*args: str) -> list[str]:
    return [sys.executable, "-m", "adcsr", *args]


def test_a_checkpoint_that_fills_the_disk_keeps_the_previous_one_and_training_resumes(small_disk, tmp_path):
    disk = small_disk(96)
    run = disk / "stage0"
    cfg = yaml.safe_load((Path(__file__).parents[1] / "distill/configs/stage0-ci.yaml").read_text())
    cfg.update(run_dir=str(run))
    cfg["trainer"].update(steps=20, checkpoint_every=5, eval_every=100, log_every=5, progress=False)
    (tmp_path / "s0.yaml").write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen(adcsr("distill", "stage0", str(tmp_path / "s0.yaml")), env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = run / "checkpoints" / "step-00000005"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not first.is_dir() and proc.poll() is None:
        time.sleep(0.02)
    ballast = fill(disk)  # the step-10 checkpoint (a few MB) cannot fit
    out, err = proc.communicate(timeout=300)
    one_line_disk_full(subprocess.CompletedProcess(proc.args, proc.returncode, out, err), "distill")
    store = CheckpointStore(run / "checkpoints")
    assert [f.name for f in store.folders()] == ["step-00000005"]
    assert store.problem(first) is None  # the earlier checkpoint is whole
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # no half-written one

    ballast.unlink()
    done = subprocess.run(adcsr("distill", "stage0", str(tmp_path / "s0.yaml"), "--resume"), env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [f.name for f in CheckpointStore(run / "checkpoints").folders()][-1] == "step-00000020"
    assert (run / "autoencoder" / "config.json").is_file()


def test_an_export_that_fills_the_disk_leaves_the_earlier_export_as_it_was(small_disk, small_student):
    disk = small_disk(8)
    out = disk / "exports"
    for name in ("onnx", "qnn-SM8750"):  # an earlier export, replaced only once the new one is complete
        (out / name).mkdir(parents=True)
        (out / name / "manifest.json").write_text(f'{{"earlier": "{name}"}}')
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    fill(disk, leave=16 << 10)  # the student's ONNX file (about 250 kB) cannot fit
    p = subprocess.run(adcsr("export", "qnn", str(small_student), "--out", str(out), "--tile", "16", "--force"),
                       env=ENV, capture_output=True, text=True, timeout=600)
    one_line_disk_full(p, "export")
    assert {q: q.read_bytes() for q in out.rglob("*") if q.is_file()} == before
    assert sorted(q.name for q in out.iterdir()) == ["onnx", "qnn-SM8750"]  # no temporary folder left


def test_a_streamed_upscale_that_fills_the_disk_keeps_the_earlier_output(small_disk, tmp_path):
    disk = small_disk(4)
    src, dst = tmp_path / "in.png", disk / "out.png"
    write_image(hr_crops("train", 256, 1, seed=3)[0], src)
    dst.write_bytes(b"an earlier output")
    fill(disk, leave=256 << 10)  # a 1024² PNG (about 2 MB) cannot fit
    p = subprocess.run(adcsr("upscale", str(src), str(dst), "--teacher", "realesrgan-compact", "--force"),
                       env=ENV, capture_output=True, text=True, timeout=300)
    one_line_disk_full(p, "upscale")
    assert dst.read_bytes() == b"an earlier output"
    assert sorted(q.name for q in disk.iterdir()) == ["ballast", "out.png"]  # no temporary file left
