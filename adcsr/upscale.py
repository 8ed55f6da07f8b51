"""`adcsr upscale IN... OUT`: ×4 super-resolution of photos with a teacher or a trained student.

One input file and an OUT with an image extension writes that file; otherwise OUT is a folder
that receives `<stem>.png` per input (folders given as inputs are expanded, not recursed). A
corrupt input among several is reported and skipped; the rest are written and the exit code says
that some failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

import torch

from adcsr.core.errors import UserError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
COLOR_FIXES = ("none", "adain", "wavelet")


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("upscale", help="×4 super-resolve photos with a teacher or a student",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", metavar="IN", help="image files or folders of images")
    p.add_argument("output", metavar="OUT", help="output image (one input) or folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--teacher", metavar="NAME", help="a registered teacher (realesrgan, realesrgan-compact, osediff)")
    src.add_argument("--student", metavar="DIR", type=Path, help="a trained student folder (save_pretrained)")
    p.add_argument("--teacher-opt", metavar="KEY=VALUE", action="append", default=[],
                   help="loader option for the teacher, e.g. sd_folder=..., checkpoint=..., preset=tiny")
    p.add_argument("--tile", type=int, default=128, help="LR tile size in pixels (default 128)")
    p.add_argument("--overlap", type=int, default=32, help="LR tile overlap in pixels (default 32)")
    p.add_argument("--color-fix", choices=COLOR_FIXES, default=None,
                   help="colour correction to the LR image (default: the model's own: adain for osediff, none otherwise)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--force", action="store_true", help="replace existing outputs")
    p.set_defaults(func=run)


def _teacher_options(pairs: list[str]) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--teacher-opt expects KEY=VALUE, got {pair!r}")
        opts[key.replace("-", "_")] = value
    return opts


def collect_inputs(inputs: list[str]) -> list[Path]:
    """Expand folders to their image files (sorted); every named file must exist."""
    files: list[Path] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise UserError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in folder {path}")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"input not found: {path}")
    return files


def plan_outputs(files: list[Path], inputs: list[str], output: str, force: bool) -> tuple[list[Path], bool]:
    """(destination per input, whether OUT is a folder); refuses clashes and (without `force`)
    existing files, before any work starts."""
    out = Path(output)
    single = len(files) == 1 and len(inputs) == 1 and not Path(inputs[0]).is_dir()
    folder = not (single and out.suffix.lower() in IMAGE_EXTENSIONS)
    if not folder:
        dests = [out]
    else:
        if out.exists() and not out.is_dir():
            raise UserError(f"{out} is a file; with several inputs OUT must be a folder")
        dests = [out / f"{f.stem}.png" for f in files]
    seen: dict[Path, Path] = {}
    for src, dst in zip(files, dests):
        if dst in seen:
            raise UserError(f"{seen[dst]} and {src} would both be written to {dst}")
        seen[dst] = src
    existing = [d for d in dests if d.exists()]
    if existing and not force:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise UserError(f"{existing[0]} already exists{more} (use --force to replace)")
    return dests, folder


def load_model(args: argparse.Namespace) -> tuple[Callable[[torch.Tensor, str | None], torch.Tensor], dict[str, Any], str]:
    """(upscale(lr, color_fix) function, description for the manifest, default colour fix)."""
    if args.tile < 0 or args.overlap < 0 or (args.tile and args.overlap * 2 >= args.tile):
        raise UserError("--tile must be >= 0 (0 = whole image) and --overlap less than half of it")
    tile = args.tile or 1 << 30
    if args.teacher:
        from adcsr.core.models.teachers import get_teacher

        opts = _teacher_options(args.teacher_opt)
        opts.setdefault("device", args.device)
        teacher = get_teacher(args.teacher, **opts)

        def run_teacher(lr: torch.Tensor, color_fix: str | None) -> torch.Tensor:
            return teacher.upscale(lr, tile=tile, overlap=args.overlap, color_fix=color_fix)

        return run_teacher, teacher.describe(), getattr(teacher, "default_color_fix", "none")
    from adcsr.core.models.student import AdcSRStudent
    from adcsr.core.tiling import tiled_upscale

    if not (args.student / "config.json").is_file():
        raise UserError(f"{args.student} is not a student folder (no config.json)")
    try:
        student = AdcSRStudent.from_pretrained(args.student).to(args.device).eval()
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load the student from {args.student}: {str(e).splitlines()[0]}") from None

    @torch.no_grad()
    def run_student(lr: torch.Tensor, color_fix: str | None) -> torch.Tensor:
        def forward(x: torch.Tensor) -> torch.Tensor:
            return student(x.to(args.device)).clamp(0, 1).cpu()

        return tiled_upscale(forward, lr, scale=4, tile=tile, overlap=args.overlap,
                             multiple=student.size_multiple, color_fix=color_fix)

    return run_student, {"name": "student", "folder": str(args.student)}, "none"


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from adcsr.core.imaging import read_image, write_image

    files = collect_inputs(args.inputs)
    dests, folder = plan_outputs(files, args.inputs, args.output, args.force)
    upscale, described, default_fix = load_model(args)
    fix = args.color_fix or default_fix
    if "prompt" in described:
        print(f"adcsr upscale: {described['name']} prompt: {described['prompt']}", file=sys.stderr)
    failed: list[Path] = []
    for src, dst in tqdm(list(zip(files, dests)), desc="upscale", unit="image", disable=len(files) < 2):
        try:
            lr = read_image(src)[None]
            sr = upscale(lr, None if fix == "none" else fix)
            write_image(sr[0], dst, force=True)
        except UserError as e:
            if len(files) == 1:
                raise
            failed.append(src)
            tqdm.write(f"adcsr upscale: skipped {src}: {e}", file=sys.stderr)
    if folder:
        from adcsr.core.manifest import write_manifest

        written = [str(d) for d, s in zip(dests, files) if s not in failed]
        write_manifest(Path(args.output) / "manifest.json", command="upscale", model=described, color_fix=fix,
                       tile=args.tile, overlap=args.overlap, written=written, failed=[str(f) for f in failed])
    if failed:
        names = ", ".join(str(f) for f in failed)
        print(f"adcsr upscale: error: {len(failed)} of {len(files)} inputs failed ({names})", file=sys.stderr)
        return 2
    return 0
