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
from .config import CompressConfig
from .from_teacher import Ratios, from_teacher


def compress(unet: Any, vae: Any, out: str | os.PathLike, cfg: CompressConfig = CompressConfig(), *,
             teacher: str = "", text_config: dict | None = None, seed: int = 0,
             overwrite: bool = False, on_step=lambda name: None) -> Path:
    """Prune `unet` + `vae` (diffusers modules) into the AdcSR student and pruned decoder."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists (use --force to replace it)")
    ratios = Ratios(unet=cfg.unet_ratio, decoder=cfg.decoder_ratio)
    on_step(f"prune ({cfg.criterion})")
    calib = None
    if cfg.criterion == "taylor":
        from adcsr.core.photos import hr_crops

        calib = hr_crops("train", 128, cfg.calibration, seed=seed)
    student, decoder = from_teacher(unet, vae, ratios, cfg.criterion, calib)
    on_step("count params/MACs")
    rep = compression_report(dict(unet.config), dict(vae.config), text_config, dict(student.config),
                             {"unet": ratios.unet, "decoder": ratios.decoder}, cfg.criterion, cfg.lr_size)
    rep["teacher"] = teacher
    on_step("save")
    with atomic_dir(out, overwrite=overwrite) as tmp:
        student.save_pretrained(tmp / "student")
        decoder.save_pretrained(tmp / "decoder")
        (tmp / "report.json").write_text(json.dumps(rep, indent=2))
        (tmp / "report.md").write_text(report_markdown(rep))
    return out
