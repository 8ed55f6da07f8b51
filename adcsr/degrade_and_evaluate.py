"""`adcsr degrade` (HR photos -> realistic LR with the Real-ESRGAN degradation) and
`adcsr evaluate` (PSNR/SSIM on the Y channel and NIQE of SR images against HR references)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from adcsr.core.errors import UserError
from adcsr.core.imaging import DEFAULT_MAX_PIXELS, check_output, image_size, list_images


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "degrade",
        help="make realistic LR images from HR photos (Real-ESRGAN second-order degradation)",
        description="Degrade HR images into LR images. OUT is an image file (one HR) or a folder "
        "(written as OUT/<name>.png). HR sides are cropped down to a multiple of the scale.",
    )
    p.add_argument("hr", nargs="+", metavar="HR", help="HR image files")
    p.add_argument("out", metavar="OUT", help="output image file (one HR) or folder")
    p.add_argument("--config", help="degradation YAML or a shipped config's name (default: the built-in Real-ESRGAN/AdcSR settings, as `degradation`)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same LR images)")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger images (decompression bombs)")
    p.set_defaults(func=run_degrade)

    e = sub.add_parser(
        "evaluate",
        help="PSNR/SSIM (Y channel) and NIQE of SR images against HR references",
        description="Compare SR with HR: two image files, or two folders paired by relative name.",
    )
    e.add_argument("sr", metavar="SR", help="super-resolved image file or folder")
    e.add_argument("hr", metavar="HR", help="reference image file or folder")
    e.add_argument("--crop-border", type=int, default=4, help="pixels ignored at each border (default 4, the scale)")
    e.add_argument("--no-niqe", action="store_true", help="skip NIQE (the slowest metric)")
    e.add_argument("--json", help="also write the results to this JSON file")
    e.add_argument("--force", action="store_true", help="replace an existing JSON file")
    e.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse larger images (decompression bombs)")
    e.set_defaults(func=run_evaluate)


def _degrade_targets(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    inputs, out = [Path(p) for p in args.hr], Path(args.out)
    if out.suffix and not out.is_dir():  # a file name; check_output rejects unwritable formats
        if len(inputs) > 1:
            raise UserError(f"{out}: {len(inputs)} inputs need an output folder, not a file")
        targets = [(inputs[0], out)]
    else:
        if out.exists() and not out.is_dir():
            raise UserError(f"{out}: exists and is not a folder")
        targets = [(p, out / f"{p.stem}.png") for p in inputs]
        names = [t.name for _, t in targets]
        if len(set(names)) != len(names):
            raise UserError("two inputs have the same name; their outputs would collide")
    for _, dst in targets:
        check_output(dst, force=args.force, inputs=inputs)
    return targets


def run_degrade(args: argparse.Namespace) -> int:
    import torch
    from tqdm.auto import tqdm

    from adcsr.core.config import load_config
    from adcsr.core.degradations import DegradationConfig, RealESRGANDegradation
    from adcsr.core.imaging import read_image, write_image

    targets = _degrade_targets(args)
    cfg = load_config(DegradationConfig, args.config)
    for src, _ in targets:  # every header checked before the first output is written
        h, w = image_size(src, args.max_pixels)
        if h < cfg.scale or w < cfg.scale:
            raise UserError(f"{src}: {w}×{h} is smaller than the scale {cfg.scale}")
    degrade = RealESRGANDegradation(cfg)
    g = torch.Generator().manual_seed(args.seed)
    for src, dst in tqdm(targets, desc="degrade", unit="image", disable=len(targets) < 2):
        hr = read_image(src, args.max_pixels)
        h, w = (hr.shape[1] // cfg.scale) * cfg.scale, (hr.shape[2] // cfg.scale) * cfg.scale
        lr = degrade(hr[None, :, :h, :w], g)[0]
        write_image(lr, dst, force=args.force, inputs=[s for s, _ in targets])
        print(dst)
    return 0


def _pairs(sr: Path, hr: Path) -> list[tuple[str, Path, Path]]:
    if sr.is_dir() != hr.is_dir():
        raise UserError("SR and HR must both be files or both be folders")
    if not sr.is_dir():
        return [(sr.name, sr, hr)]
    srs = {p.relative_to(sr).with_suffix("").as_posix(): p for p in list_images(sr)}
    hrs = {p.relative_to(hr).with_suffix("").as_posix(): p for p in list_images(hr)}
    if not hrs:
        raise UserError(f"HR folder {hr} holds no images")
    missing = sorted(set(hrs) - set(srs))
    extra = sorted(set(srs) - set(hrs))
    if missing or extra:
        what = f"no SR image for {', '.join(missing[:3])}" if missing else f"no HR image for {', '.join(extra[:3])}"
        raise UserError(f"SR folder {sr} and HR folder {hr} do not match: {what}")
    return [(n, srs[n], hrs[n]) for n in sorted(hrs)]


def _finite(x: Any) -> Any:
    """JSON has no infinity (PSNR of identical images): write null instead."""
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x


def run_evaluate(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from adcsr.core import metrics
    from adcsr.core.atomic import atomic_write_text
    from adcsr.core.imaging import read_image

    if args.crop_border < 0:
        raise UserError(f"--crop-border must be >= 0, got {args.crop_border}")
    json_out = Path(args.json) if args.json else None
    if json_out is not None and json_out.exists() and not args.force:
        raise UserError(f"{json_out}: already exists (use --force to replace it)")
    pairs = _pairs(Path(args.sr), Path(args.hr))
    for name, s, h in pairs:  # sizes checked on headers before any metric runs
        (sh, sw), (hh, hw) = image_size(s, args.max_pixels), image_size(h, args.max_pixels)
        if (sh, sw) != (hh, hw):
            raise UserError(f"{name}: SR is {sw}×{sh} but HR is {hw}×{hh}; they must be the same size")
    rows: list[dict[str, Any]] = []
    for name, s, h in tqdm(pairs, desc="evaluate", unit="image", disable=len(pairs) < 2):
        sr, hr = read_image(s, args.max_pixels)[None], read_image(h, args.max_pixels)[None]
        row: dict[str, Any] = {
            "image": name,
            "psnr_y": float(metrics.psnr_y(sr, hr, crop_border=args.crop_border)),
            "ssim_y": float(metrics.ssim_y(sr, hr, crop_border=args.crop_border)),
        }
        if not args.no_niqe:
            row["niqe"] = float(metrics.niqe(sr))
        rows.append(row)
    keys = [k for k in rows[0] if k != "image"]
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in keys}
    width = max(len(r["image"]) for r in rows + [{"image": "mean"}])
    print(f"{'image':<{width}}  " + "  ".join(f"{k:>8}" for k in keys))
    for r in rows + [{"image": "mean", **mean}]:
        print(f"{r['image']:<{width}}  " + "  ".join(f"{r[k]:8.4f}" for k in keys))
    if json_out is not None:
        report = {"crop_border": args.crop_border, "images": rows, "mean": mean}
        atomic_write_text(json_out, json.dumps(_finite(report), indent=2, allow_nan=False) + "\n")
    return 0
