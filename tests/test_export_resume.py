"""`adcsr export … --resume`: an export killed with SIGKILL leaves no half-written folder; run
again with --resume it removes what the kill left, exports what was not finished, and keeps what
was (same student, same settings, every file as its manifest records it).

The student is `small_student` (tests/conftest.py), so the Core ML export it is killed in takes
seconds, not minutes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from adcsr.export.config import ExportConfig
from adcsr.core.atomic import remove_leftovers
from adcsr.export.resume import settings, unfinished
from adcsr.export.student_io import StudentRef

CONFIG = "tile: 16\ncalibration_count: 4\neval_count: 2\nmin_w8a16_psnr: 0.0\n"


def _export(*args: str, **kw) -> subprocess.CompletedProcess | subprocess.Popen:
    cmd = [sys.executable, "-m", "adcsr", "export", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if kw.pop("background", False):
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def _tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_a_killed_export_resumes_exporting_only_what_it_had_not_finished(small_student, tmp_path):
    cfg_file, out = tmp_path / "export.yaml", tmp_path / "out"
    cfg_file.write_text(CONFIG)
    args = (str(small_student), "--out", str(out), "--config", str(cfg_file))
    proc = _export("coreml", *args, background=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(out.glob(".coreml.*.tmp")):
        time.sleep(0.05)  # killed once the export has started building its folder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "coreml").exists(), "a killed export must not leave a folder under its final name"
    assert list(out.glob(".coreml.*.tmp")), "the run must really be interrupted"

    (out / ".coreml.k1ll3d.tmp").mkdir()  # a second kill's leftover, as atomic_dir names them

    done = _export("coreml", *args, "--resume")
    assert done.returncode == 0, done.stderr
    assert "coreml: exporting (coreml/ not written)" in done.stderr
    assert "half-written folder(s) of an interrupted export removed" in done.stderr
    for noise in ("Failed to load _ML", "has not been tested with coremltools", "is not supported. Minimum required",
                  "Converting PyTorch Frontend", "Running MIL", "LeafSpec", "Traceback"):
        assert noise not in done.stderr, f"a known harmless message reached the console: {noise}"  # core.quiet
    assert sorted(p.name for p in out.iterdir()) == ["coreml"]  # nothing half-written remains
    manifest = json.loads((out / "coreml" / "manifest.json").read_text())
    assert manifest["export_settings"]["tile"] == 16
    before = _tree(out / "coreml")

    again = _export("coreml", *args, "--resume")
    assert again.returncode == 0, again.stderr
    assert "coreml: kept (finished before)" in again.stderr
    assert _tree(out / "coreml") == before  # kept as it was, not rewritten
    assert json.loads(again.stdout)["coreml"]["kept"] == "finished before"


def test_a_target_is_finished_only_for_the_same_student_settings_and_files(small_student, tmp_path):
    """`unfinished` on a hand-made folder (the real check a resume runs; no export needed)."""
    cfg = ExportConfig(tile=16)
    student = StudentRef.parse(str(small_student)).describe()
    folder = tmp_path / "coreml"
    (folder / "w.mlpackage").mkdir(parents=True)
    (folder / "w.mlpackage" / "weights.bin").write_bytes(b"0123")
    from adcsr.core.manifest import sha256_tree

    def write(**over):
        m = {"student": student, "export_settings": settings(cfg),
             "artifacts": [{"file": "w.mlpackage", "sha256": sha256_tree(folder / "w.mlpackage")}], **over}
        (folder / "manifest.json").write_text(json.dumps(m))

    write()
    assert unfinished(tmp_path, "coreml", cfg, student) is None
    assert "qnn-SM8750" in unfinished(tmp_path, "qnn", cfg, student) or "onnx" in unfinished(tmp_path, "qnn", cfg, student)
    assert "other export settings" in unfinished(tmp_path, "coreml", ExportConfig(tile=32), student)
    assert "another student" in unfinished(tmp_path, "coreml", cfg, {**student, "sha256": "0" * 64})
    (folder / "w.mlpackage" / "weights.bin").write_bytes(b"0124")
    assert "missing or changed" in unfinished(tmp_path, "coreml", cfg, student)
    (folder / "manifest.json").write_text("{")
    assert "unreadable" in unfinished(tmp_path, "coreml", cfg, student)
    for leftover in (".coreml.a1b2c3d4.tmp", ".coreml.b2_c3d4e.old", ".onnx.c3d4e5f6.tmp"):
        (tmp_path / leftover).mkdir()
    (tmp_path / ".coreml.keep.txt").write_text("not a name core.atomic makes")
    (tmp_path / ".coreml.a1b2c3d4.tmp.json").write_text("a file atomic_path left")
    assert remove_leftovers([tmp_path / "coreml"]) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [".coreml.keep.txt", ".onnx.c3d4e5f6.tmp", "coreml"]


def test_resume_and_force_together_are_refused(small_student, tmp_path, capsys):
    from adcsr.cli import main

    assert main(["export", "coreml", str(small_student), "--out", str(tmp_path / "o"), "--resume", "--force"]) == 2
    assert "give one" in capsys.readouterr().err
