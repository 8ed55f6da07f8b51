"""`adcsr upscale IN... OUT`: ×4 super-resolution of photos with a teacher or a trained student.

One input file and an OUT with an extension writes that file; otherwise OUT is a folder
that receives `<name>.png` per input (folders are searched recursively, sub-folders kept). A
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


def collect_inputs(inputs: list[str]) -> list[tuple[Path, Path]]:
    """(file, name relative to its input) per image; folders are searched recursively."""
    from adcsr.core.imaging import list_images

    files: list[tuple[Path, Path]] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = list_images(path)
            if not found:
                raise UserError(f"no images in folder {path}")
            files += [(f, f.relative_to(path)) for f in found]
        elif path.is_file():
            files.append((path, Path(path.name)))
        else:
            raise UserError(f"input not found: {path}")
    return files


def plan_outputs(files: list[tuple[Path, Path]], output: str, force: bool) -> tuple[list[Path], bool]:
    """(destination per input, whether OUT is a folder); refuses clashes, inputs being overwritten
    and (without `force`) existing files, before any work starts."""
    from adcsr.core.imaging import check_output

    out = Path(output)
    one_file = len(files) == 1 and files[0][1] == Path(files[0][0].name)
    folder = not one_file or out.is_dir() or not out.suffix
    if folder and out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file; with several inputs (or a folder) OUT must be a folder")
    dests = [out / rel.with_suffix(".png") for _, rel in files] if folder else [out]
    seen: dict[Path, Path] = {}
    for (src, _), dst in zip(files, dests):
        if dst in seen:
            raise UserError(f"{seen[dst]} and {src} would both be written to {dst}")
        seen[dst] = src
        check_output(dst, force=force, inputs=[f for f, _ in files])
    return dests, folder


def load_model(args: argparse.Namespace) -> tuple[Callable[..., torch.Tensor], dict[str, Any], str]:
    """(upscale(lr, color_fix, progress) function, description for the manifest, default colour fix)."""
    if args.tile < 0 or args.overlap < 0 or (args.tile and args.overlap * 2 >= args.tile):
        raise UserError("--tile must be >= 0 (0 = whole image) and --overlap less than half of it")
    tile = args.tile or 1 << 30
    if args.teacher:
        from adcsr.core.models.teachers import get_teacher

        opts = _teacher_options(args.teacher_opt)
        opts.setdefault("device", args.device)
        teacher = get_teacher(args.teacher, **opts)

        def run_teacher(lr: torch.Tensor, color_fix: str | None, progress: bool) -> torch.Tensor:
            return teacher.upscale(lr, tile=tile, overlap=args.overlap, color_fix=color_fix, progress=progress)

        return run_teacher, teacher.describe(), getattr(teacher, "default_color_fix", "none")
    if not (args.student / "config.json").is_file():
        raise UserError(f"{args.student} is not a student folder (no config.json)")
    from adcsr.core.models.student import AdcSRStudent
    from adcsr.core.tiling import tiled_upscale

    student = AdcSRStudent.from_pretrained(args.student).to(args.device).eval()

    @torch.no_grad()
    def run_student(lr: torch.Tensor, color_fix: str | None, progress: bool) -> torch.Tensor:
        def forward(x: torch.Tensor) -> torch.Tensor:
            return student(x.to(args.device)).clamp(0, 1).cpu()

        return tiled_upscale(forward, lr, scale=4, tile=tile, overlap=args.overlap,
                             multiple=student.size_multiple, color_fix=color_fix, progress=progress)

    return run_student, {"name": "student", "folder": str(args.student)}, "none"


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from adcsr.core.imaging import read_image, write_image

    files = collect_inputs(args.inputs)
    dests, folder = plan_outputs(files, args.output, args.force)
    upscale, described, default_fix = load_model(args)
    fix = args.color_fix or default_fix
    if "prompt" in described:
        print(f"adcsr upscale: {described['name']} prompt: {described['prompt']}", file=sys.stderr)
    failed: list[Path] = []
    for (src, _), dst in tqdm(list(zip(files, dests)), desc="upscale", unit="image", disable=len(files) < 2):
        try:
            lr = read_image(src)[None]
            sr = upscale(lr, None if fix == "none" else fix, len(files) == 1)
            write_image(sr[0], dst, force=True)
        except UserError as e:
            if len(files) == 1:
                raise
            failed.append(src)
            tqdm.write(f"adcsr upscale: skipped: {e}", file=sys.stderr)
    if folder:
        from adcsr.core.manifest import write_manifest

        written = [str(d) for d, (s, _) in zip(dests, files) if s not in failed]
        write_manifest(Path(args.output) / "manifest.json", command="upscale", model=described, color_fix=fix,
                       tile=args.tile, overlap=args.overlap, written=written, failed=[str(f) for f in failed])
    if failed:
        names = ", ".join(str(f) for f in failed)
        print(f"adcsr upscale: error: {len(failed)} of {len(files)} inputs failed ({names})", file=sys.stderr)
        return 2
    return 0
