"""`adcsr upscale IN... OUT`: ×4 super-resolution of photos with a teacher, a trained student or an exported artifact.

One input file and an OUT with an extension writes that file; otherwise OUT is a folder
that receives `<name>.png` per input (folders are searched recursively, sub-folders kept). A
corrupt input among several is reported and skipped; the rest are written and the exit code says
that some failed. PNG outputs are streamed (`core.tiling.upscale_bands` → pypng, row by row), so
memory holds one strip of tiles, not the SR image; inputs above `STREAM_PIXELS` must go to PNG
without the wavelet colour fix, the two things that need the whole image in memory.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from adcsr.core.errors import UserError
from adcsr.core.colorfix import COLOR_FIXES
from adcsr.core.upscaler import Runner, Upscaler, load_upscaler

STREAM_PIXELS = 2048 * 2048  # LR pixels above which the in-memory path is refused


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("upscale", help="×4 super-resolve photos with a teacher or a student",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("inputs", nargs="+", metavar="IN", help="image files or folders of images")
    p.add_argument("output", metavar="OUT", help="output image (one input) or folder")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--teacher", metavar="NAME", help="a registered teacher (realesrgan, realesrgan-compact, osediff)")
    src.add_argument("--student", metavar="DIR", type=Path, help="a trained student folder (save_pretrained)")
    src.add_argument("--artifact", metavar="PATH", type=Path,
                     help="an exported artifact: .onnx (fp32, W8A16 QDQ, QNN *_ctx.onnx), .pte, or its folder")
    p.add_argument("--teacher-opt", metavar="KEY=VALUE", action="append", default=[],
                   help="loader option for the teacher, e.g. sd_folder=..., checkpoint=..., preset=tiny")
    p.add_argument("--tile", type=int, default=None,
                   help="LR tile size in pixels (default 128; 0 = whole image; an artifact's is fixed)")
    p.add_argument("--overlap", type=int, default=None,
                   help="LR tile overlap in pixels (default 32, for an artifact at most a quarter of its tile)")
    p.add_argument("--color-fix", choices=("none", *COLOR_FIXES), default=None,
                   help="colour correction to the LR image (default: the model's own: adain for a student, its artifacts "
                        "and osediff, none for Real-ESRGAN)")
    p.add_argument("--backend", default="torch", metavar="NAME",
                   help="how a --student runs on the CPU (adcsr/backends.py): torch (eager, default), torch-compile-bf16 "
                        "(the fastest), torch-bf16, torch-channels-last, torch-compile, onnxruntime (the shipped fp32 "
                        "ONNX) or onnxruntime-int8; the onnxruntime ones run a static --tile and build the ONNX first")
    p.add_argument("--device", default="auto", help="torch device: auto (CUDA when present, else the CPU), cpu, "
                   "cuda, cuda:1, ... (default: auto)")
    p.add_argument("--force", action="store_true", help="replace existing outputs")
    p.add_argument("--resume", action="store_true",
                   help="keep outputs a previous (interrupted) run finished and do only the rest; outputs are "
                        "written under a temporary name and renamed, so an existing one is complete, and a killed "
                        "run's temporary files are removed")
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


def plan_outputs(files: list[tuple[Path, Path]], output: str, force: bool,
                 resume: bool = False) -> tuple[list[Path], bool]:
    """(destination per input, whether OUT is a folder); refuses clashes, inputs being overwritten
    and (without `force` or `resume`) existing files, before any work starts."""
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
        check_output(dst, force=force or (resume and dst.is_file()), inputs=[f for f, _ in files])
    return dests, folder


def resolve_device(name: str) -> str:
    """`auto` → "cuda" when a CUDA device is usable, else "cpu"; any other name as given."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r}: not a torch device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA device is available here (use auto or cpu)")
    return name


def load_model(args: argparse.Namespace) -> tuple[Upscaler, int, int]:
    """The model named by --teacher, --student or --artifact, with its LR tile and overlap."""
    if args.backend != "torch" and not args.student:
        raise UserError("--backend chooses how a --student runs; teachers and artifacts have their own runtime")
    if args.artifact:
        return _artifact(args)
    tile = 128 if args.tile is None else args.tile
    overlap = 32 if args.overlap is None else args.overlap
    if tile < 0 or overlap < 0 or (tile and overlap * 2 >= tile):
        raise UserError("--tile must be >= 0 (0 = whole image) and --overlap less than half of it")
    tile = tile or 1 << 30
    device = resolve_device(args.device)
    if args.teacher:
        return load_upscaler(args.teacher, device, **_teacher_options(args.teacher_opt)), tile, overlap
    student = load_upscaler(f"student:{args.student}", device)
    if args.backend != "torch":
        return _on_backend(args, student, tile), tile, overlap
    if device == "cpu":
        return student, tile, overlap
    # the tiler hands over CPU tiles and takes CPU tiles back
    return Runner(lambda x: student(x.to(device)).cpu(), student), tile, overlap


def _on_backend(args: argparse.Namespace, student: Upscaler, tile: int) -> Upscaler:
    """The student on a CPU backend other than eager; a static-shape one (onnxruntime) gets whole
    tiles of `tile`, the image padded to them as for an artifact."""
    import tempfile

    from adcsr.backends import backend

    chosen = backend(args.backend)
    if resolve_device(args.device) != "cpu":
        raise UserError(f"--backend {args.backend} runs on the CPU: pass --device cpu")
    static = chosen.name.startswith("onnxruntime")
    if static and tile >= 1 << 30:
        raise UserError(f"--backend {args.backend} runs a static tile: give --tile N (not 0)")
    if tile % student.size_multiple and static:
        raise UserError(f"--tile must be a multiple of {student.size_multiple} for --backend {args.backend}")
    side = tile if static else min(tile, 128)  # inductor compiles for this shape (and recompiles for others)
    example = torch.zeros(1, 3, side, side)
    with tempfile.TemporaryDirectory() as tmp:  # the ONNX files: the session holds what it needs
        run = chosen.prepare(student, example, Path(tmp))
    return Runner(run, student, static_tile=tile if static else None, backend=chosen.name, form=chosen.form)


def _artifact(args: argparse.Namespace) -> tuple[Upscaler, int, int]:
    """An exported artifact runs its static LR tile; the image is padded to whole tiles."""
    from adcsr.export import load_artifact

    artifact = load_artifact(args.artifact)
    if args.tile not in (None, artifact.static_tile):
        raise UserError(f"{args.artifact} has a fixed LR tile of {artifact.static_tile}; drop --tile or pass "
                        f"--tile {artifact.static_tile}")
    overlap = min(32, artifact.static_tile // 4) if args.overlap is None else args.overlap
    if not 0 <= overlap * 2 < artifact.static_tile:
        raise UserError(f"--overlap must be less than half of the artifact's tile ({artifact.static_tile})")
    return artifact, artifact.static_tile, overlap


def upscale_image(model: Upscaler, lr: torch.Tensor, dst: Path, tile: int, overlap: int, fix: str,
                  progress: bool) -> None:
    """Upscale one 3×H×W image into `dst`: streamed into a PNG, in memory for other formats."""
    from adcsr.core.imaging import write_image, write_png_bands
    from adcsr.core.tiling import upscale_bands

    color_fix = None if fix == "none" else fix
    if dst.suffix.lower() == ".png" and fix != "wavelet":
        tile, overlap, multiple = model.tile_plan(tile, overlap)
        bands = upscale_bands(model, lr, scale=model.scale, tile=tile, overlap=overlap, multiple=multiple,
                              color_fix=color_fix, progress=progress)
        write_png_bands(bands, dst, lr.shape[-2] * 4, lr.shape[-1] * 4)
        return
    if lr.shape[-2] * lr.shape[-1] > STREAM_PIXELS:
        raise UserError(f"{lr.shape[-1]}×{lr.shape[-2]} is too large to upscale in memory: "
                        "write a .png without --color-fix wavelet to stream it")
    write_image(model.upscale(lr[None], tile, overlap, color_fix, progress)[0], dst, force=True)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from adcsr.core.atomic import remove_leftovers
    from adcsr.core.imaging import read_image

    files = collect_inputs(args.inputs)
    if args.resume and args.force:
        raise UserError("--resume keeps finished outputs and --force replaces them: give one")
    dests, folder = plan_outputs(files, args.output, args.force, args.resume)
    kept = set()
    if args.resume:
        removed = remove_leftovers(dests)
        kept = {d for d in dests if d.is_file()}
        print(f"adcsr upscale: resuming: {len(kept)} finished output(s) kept"
              + (f", {removed} temporary file(s) of an interrupted run removed" if removed else ""), file=sys.stderr)
    model, tile, overlap = load_model(args)
    described, fix = model.describe(), args.color_fix or model.default_color_fix
    if "prompt" in described:
        print(f"adcsr upscale: {described['name']} prompt: {described['prompt']}", file=sys.stderr)
    failed: list[Path] = []
    for (src, _), dst in tqdm(list(zip(files, dests)), desc="upscale", unit="image", disable=len(files) < 2):
        if dst in kept:
            continue
        try:
            upscale_image(model, read_image(src), dst, tile, overlap, fix, len(files) == 1)
        except UserError as e:
            if len(files) == 1:
                raise
            failed.append(src)
            tqdm.write(f"adcsr upscale: skipped: {e}", file=sys.stderr)
    if folder:
        from adcsr.core.manifest import write_manifest

        written = [str(d) for d, (s, _) in zip(dests, files) if s not in failed]
        write_manifest(Path(args.output) / "manifest.json", command="upscale", model=described, color_fix=fix,
                       tile=0 if tile >= 1 << 30 else tile,  # 0: the whole image
                       overlap=overlap, written=written, failed=[str(f) for f in failed])
    done = len(files) - len(failed)
    print(f"adcsr upscale: wrote {done} image{'s' if done != 1 else ''} to {args.output} "
          f"({Path(args.output) / 'manifest.json'} lists them)" if folder else f"adcsr upscale: wrote {dests[0]}")
    if failed:
        names = ", ".join(str(f) for f in failed)
        print(f"adcsr upscale: error: {len(failed)} of {len(files)} inputs failed ({names})", file=sys.stderr)
        return 2
    return 0
