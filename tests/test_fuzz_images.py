"""Mutated real PNG / JPEG / WebP / TIFF files (benchmarks/fuzz_images.py, a CI-sized budget):
the reader decodes each or refuses it with a UserError, never crashes or hangs; `adcsr upscale`
on a folder of them writes complete outputs for the readable ones and nothing else."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import fuzz_images  # noqa: E402


def test_the_reader_survives_mutated_images():
    r = fuzz_images.fuzz_reader(4000, seed=11)
    assert r["crashes"] == [] and r["hangs"] == []
    assert r["ok"] > 400 and r["refused"] > 400  # both outcomes are exercised


def test_a_folder_upscale_writes_only_complete_outputs():
    u = fuzz_images.fuzz_upscale(60, seed=12)
    assert u["readable"] > 5 and u["partial"] == []
    assert u["exit"] == 2  # some inputs were unreadable: the exit code says so
