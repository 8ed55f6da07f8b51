"""Bad input through the real CLI: exit code 2, one line on stderr, no traceback, no output file.

Each row here is a row of the "Bad input" table in docs/reliability.md.
"""

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from adcsr.cli import main
from adcsr.core.imaging import write_image
from adcsr.core.photos import load_photo


def png_header_only(width, height):
    """A PNG claiming width×height pixels with almost no data: a decompression bomb's header."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    write_image(load_photo("coffee")[:, :64, :64], d / "hr.png")
    write_image(load_photo("coffee")[:, :64, :64], d / "hr.jpg")
    write_image(load_photo("rocket")[:, :64, :64], d / "other.jpg")
    data = (d / "hr.png").read_bytes()
    (d / "truncated.png").write_bytes(data[: len(data) // 2])
    jpg = (d / "hr.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    (d / "empty.png").write_bytes(b"")
    Image.new("RGB", (8, 8)).save(d / "old.bmp")
    (d / "notes.png").write_text("these are not pixels\n")
    (d / "bomb.png").write_bytes(png_header_only(20000, 20000))
    (d / "afile").write_text("x")
    (d / "folder.png").mkdir()
    (d / "existing.png").write_bytes(b"keep me")
    return d


def run_cli(capsys, argv):
    rc = main(argv)
    captured = capsys.readouterr()
    return rc, captured.err


CASES = {
    "zero-byte": (["{d}/empty.png", "{o}/lr.png"], "empty file"),
    "truncated PNG": (["{d}/truncated.png", "{o}/lr.png"], "corrupt or truncated"),
    "truncated JPEG": (["{d}/truncated.jpg", "{o}/lr.png"], "corrupt or truncated"),
    "not an image": (["{d}/notes.png", "{o}/lr.png"], "not an image"),
    "unsupported input format": (["{d}/old.bmp", "{o}/lr.png"], "BMP files are not supported"),
    "pixel limit": (["--max-pixels", "1000", "{d}/hr.png", "{o}/lr.png"], "exceeds the limit of 1000"),
    "Pillow's bomb check": (["--max-pixels", "1000000000", "{d}/bomb.png", "{o}/lr.png"], "decompression bomb"),
    "missing file": (["{d}/nope.png", "{o}/lr.png"], "no such file"),
    "folder as input": (["{d}/folder.png", "{o}/lr.png"], "is a folder"),
    "unwritable output": (["{d}/hr.png", "{d}/afile/lr.png"], "not a folder"),
    "overwrite input": (["{d}/hr.png", "{d}/hr.png"], "would overwrite its input"),
    "existing output": (["{d}/hr.png", "{d}/existing.png"], "already exists"),
    "unsupported output format": (["{d}/hr.png", "{o}/lr.bmp"], "cannot write '.bmp'"),
    "bad degradation config": (["--config", "{d}/notes.png", "{d}/hr.png", "{o}/lr.png"], "must be a mapping"),
}


@pytest.mark.parametrize("case", CASES)
def test_degrade_bad_input(capsys, files, tmp_path, case):
    args, message = CASES[case]
    before = {p: p.stat().st_mtime_ns for p in files.iterdir()}
    rc, err = run_cli(capsys, ["degrade"] + [a.format(d=files, o=tmp_path) for a in args])
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("adcsr degrade: error: ")
    assert message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file
    assert {p: p.stat().st_mtime_ns for p in files.iterdir()} == before  # inputs untouched


def test_degrade_writes_lr_and_force_replaces(capsys, files, tmp_path):
    rc, err = run_cli(capsys, ["degrade", "--seed", "3", str(files / "hr.png"), str(tmp_path / "lr.png")])
    assert rc == 0, err
    from adcsr.core.imaging import read_image

    first = read_image(tmp_path / "lr.png")
    assert first.shape == (3, 16, 16)
    rc, _ = run_cli(capsys, ["degrade", "--seed", "3", "--force", str(files / "hr.png"), str(tmp_path / "lr.png")])
    assert rc == 0
    assert (read_image(tmp_path / "lr.png") == first).all()  # same seed, same LR
    rc, _ = run_cli(capsys, ["degrade", str(files / "hr.png"), str(files / "other.jpg"), str(tmp_path / "out")])
    assert rc == 0 and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["hr.png", "other.png"]


def test_degrade_folder_output_names_collide(capsys, files, tmp_path):
    rc, err = run_cli(capsys, ["degrade", str(files / "hr.png"), str(files / "hr.jpg"), str(tmp_path / "out")])
    assert rc == 2 and "same name" in err
    assert list(tmp_path.iterdir()) == []


def test_evaluate_size_mismatch_and_unpaired_folders(capsys, files, tmp_path):
    small = tmp_path / "small.png"
    write_image(load_photo("coffee")[:, :32, :32], small)
    rc, err = run_cli(capsys, ["evaluate", str(small), str(files / "hr.png")])
    assert rc == 2 and err.count("\n") == 1 and "32×32" in err and "64×64" in err
    (tmp_path / "sr").mkdir()
    (tmp_path / "hr").mkdir()
    write_image(load_photo("coffee")[:, :32, :32], tmp_path / "sr" / "a.png")
    write_image(load_photo("coffee")[:, :32, :32], tmp_path / "hr" / "b.png")
    rc, err = run_cli(capsys, ["evaluate", str(tmp_path / "sr"), str(tmp_path / "hr")])
    assert rc == 2 and "do not match" in err and "b" in err


def test_console_script_exit_code(files, tmp_path):
    """The installed `adcsr` command itself: exit status 2, one stderr line, nothing written."""
    exe = Path(sys.executable).with_name("adcsr")
    proc = subprocess.run(
        [str(exe), "degrade", str(files / "empty.png"), str(tmp_path / "lr.png")],
        capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "ADCSR_DEBUG"}, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "empty file" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_evaluate_reports_metrics_and_json(capsys, tmp_path):
    import json

    import torch

    from adcsr.core import metrics
    from adcsr.core.imaging import read_image

    hr = load_photo("chelsea")[:, :96, :200]
    noisy = (hr + 0.03 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    for folder, img in (("hr", hr), ("sr", noisy)):
        write_image(img, tmp_path / folder / "x" / "cat.png")
        write_image(hr, tmp_path / folder / "same.png")
    rc, err = run_cli(capsys, ["evaluate", str(tmp_path / "sr"), str(tmp_path / "hr"), "--json", str(tmp_path / "r.json")])
    assert rc == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    rows = {r["image"]: r for r in report["images"]}
    assert set(rows) == {"same", "x/cat"}
    sr, ref = read_image(tmp_path / "sr/x/cat.png")[None], read_image(tmp_path / "hr/x/cat.png")[None]
    assert abs(rows["x/cat"]["psnr_y"] - float(metrics.psnr_y(sr, ref, crop_border=4))) < 1e-9
    assert 25 < rows["x/cat"]["psnr_y"] < 40 and rows["x/cat"]["ssim_y"] < 0.98
    assert rows["same"]["psnr_y"] is None and rows["same"]["ssim_y"] == pytest.approx(1.0)  # infinite PSNR
    assert rows["x/cat"]["niqe"] > 0
    rc, err = run_cli(capsys, ["evaluate", str(tmp_path / "sr"), str(tmp_path / "hr"), "--json", str(tmp_path / "r.json")])
    assert rc == 2 and "already exists" in err
