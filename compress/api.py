"""Compress a loaded teacher into an output folder: `student/`, `decoder/`, `report.json`, `report.md`.

The one entry point shared by `adcsr compress` and the pipeline. The folder appears whole or not
at all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from adcsr.core.atomic import atomic_dir
from adcsr.core.errors import UserError

from .accounting import compression_report, report_markdown
from .from_teacher import Ratios, from_teacher


def compress_to_folder(unet: Any, vae: Any, out: str | os.PathLike, *, unet_ratio: float = 0.25,
                       decoder_ratio: float = 0.5, criterion: str = "release", calibration: int = 4,
                       lr_size: int = 128, teacher: str = "", text_config: dict | None = None, seed: int = 0,
                       overwrite: bool = False, on_step=lambda name: None) -> Path:
    """Prune `unet` + `vae` (diffusers modules) into the AdcSR student and pruned decoder."""
    if lr_size < 16 or lr_size % 16:
        raise UserError(f"lr_size must be a positive multiple of 16, got {lr_size}")
    if calibration < 1:
        raise UserError("calibration must be at least 1")
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists (use --force to replace it)")
    ratios = Ratios(unet=unet_ratio, decoder=decoder_ratio)
    on_step(f"prune ({criterion})")
    calib = None
    if criterion == "taylor":
        from adcsr.core.photos import hr_crops

        calib = hr_crops("train", 128, calibration, seed=seed)
    student, decoder = from_teacher(unet, vae, ratios, criterion, calib)
    on_step("count params/MACs")
    rep = compression_report(dict(unet.config), dict(vae.config), text_config, dict(student.config),
                             {"unet": ratios.unet, "decoder": ratios.decoder}, criterion, lr_size)
    rep["teacher"] = teacher
    on_step("save")
    with atomic_dir(out, overwrite=overwrite) as tmp:
        student.save_pretrained(tmp / "student")
        decoder.save_pretrained(tmp / "decoder")
        (tmp / "report.json").write_text(json.dumps(rep, indent=2))
        (tmp / "report.md").write_text(report_markdown(rep))
    return out
