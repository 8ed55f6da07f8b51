"""Fuzz the image reader and `adcsr upscale` with mutated real PNG / JPEG / WebP / TIFF files.

    python benchmarks/fuzz_images.py [--count 20000] [--upscale 300] [--seed 0]

Seeds are a real photo crop encoded in each format; each input is a seed with random byte flips,
a truncation, an inserted run or a spliced header (several mutations per input). Every input must
either decode to a 3×H×W float image in [0, 1] or give a `UserError` (one line at the CLI), within
a time limit; `adcsr upscale` on a folder of them must write complete images for the readable
ones and nothing for the rest. Prints "N inputs, C crashes, H hangs, P partial outputs" and the
first failures. Written by hand: the mutators are a few lines; no fuzzing library is needed to
drive a pure-Python reader deterministically.
"""

from __future__ import annotations

import argparse
import io
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "tif": "TIFF"}
HANG_SECONDS = 5


def seeds() -> dict[str, bytes]:
    """A 48×40 crop of a bundled photo, encoded in each format."""
    import numpy as np
    from PIL import Image

    from adcsr.core.photos import load_photo

    crop = (load_photo("coffee")[:, 100:140, 200:248].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    out = {}
    for ext, fmt in FORMATS.items():
        buf = io.BytesIO()
        Image.fromarray(crop).save(buf, format=fmt)
        out[ext] = buf.getvalue()
    return out


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        if op < 0.45 and b:  # flip bytes
            for _ in range(rng.randint(1, 8)):
                b[rng.randrange(len(b))] = rng.randrange(256)
        elif op < 0.65:  # truncate
            b = b[: rng.randrange(len(b) + 1)]
        elif op < 0.85:  # insert a run
            at = rng.randrange(len(b) + 1)
            b[at:at] = bytes([rng.randrange(256)]) * rng.randint(1, 64)
        elif b:  # duplicate a chunk (lengths and offsets now disagree)
            i = rng.randrange(len(b))
            b[i:i] = b[i:i + rng.randint(1, 256)]
    return bytes(b)


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


def fuzz_reader(count: int, seed: int = 0) -> dict:
    """`read_image` on `count` mutated files: {"inputs", "ok", "refused", "crashes": [...], "hangs": [...]}."""
    import torch

    from adcsr.core.errors import UserError
    from adcsr.core.imaging import read_image

    rng = random.Random(seed)
    base = seeds()
    result = {"inputs": count, "ok": 0, "refused": 0, "crashes": [], "hangs": []}
    previous = signal.signal(signal.SIGALRM, _alarm)
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(count):
            ext = rng.choice(list(base))
            path = Path(tmp) / f"f{i % 16}.{ext}"
            path.write_bytes(mutate(base[ext], rng))
            signal.alarm(HANG_SECONDS)
            try:
                img = read_image(path)
                if not (isinstance(img, torch.Tensor) and img.ndim == 3 and img.shape[0] == 3
                        and float(img.min()) >= 0 and float(img.max()) <= 1):
                    result["crashes"].append((i, ext, f"bad result {getattr(img, 'shape', type(img))}"))
                else:
                    result["ok"] += 1
            except UserError:
                result["refused"] += 1
            except _Hang:
                result["hangs"].append((i, ext))
            except Exception as e:  # noqa: BLE001 - what the fuzzer looks for
                result["crashes"].append((i, ext, f"{type(e).__name__}: {str(e)[:120]}"))
            finally:
                signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
    return result


def fuzz_upscale(count: int, seed: int = 1) -> dict:
    """`adcsr upscale` on a folder of `count` mutated files (the compact teacher, 1 thread):
    every readable input gets a complete output, no unreadable one gets any."""
    import io as _io
    from contextlib import redirect_stderr, redirect_stdout

    from PIL import Image

    from adcsr.cli import main
    from adcsr.core.errors import UserError
    from adcsr.core.imaging import read_image

    rng = random.Random(seed)
    base = seeds()
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in", Path(tmp) / "out"
        src.mkdir()
        readable = set()
        for i in range(count):
            ext = rng.choice(list(base))
            path = src / f"f{i:05d}.{ext}"
            path.write_bytes(mutate(base[ext], rng))
            try:
                img = read_image(path)
                readable.add((path.stem, img.shape[1] * 4, img.shape[2] * 4))
            except UserError:
                pass
        with redirect_stdout(_io.StringIO()), redirect_stderr(_io.StringIO()) as err:
            code = main(["upscale", str(src), str(dst), "--teacher", "realesrgan-compact", "--tile", "96"])
        partial = []
        outputs = {p.stem: p for p in dst.glob("*.png")} if dst.exists() else {}
        for stem, h, w in readable:
            p = outputs.get(stem)
            try:
                ok = p is not None and Image.open(p).size == (w, h)
            except Exception:  # noqa: BLE001
                ok = False
            if not ok:
                partial.append(stem)
        extra = sorted(set(outputs) - {s for s, _, _ in readable})
        leftovers = [p.name for p in dst.iterdir() if p.name.startswith(".")] if dst.exists() else []
        return {"inputs": count, "readable": len(readable), "exit": code, "partial": partial + extra + leftovers,
                "stderr_lines": len(err.getvalue().strip().splitlines())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=20_000, help="inputs through read_image")
    p.add_argument("--upscale", type=int, default=300, help="inputs through adcsr upscale on one folder")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    r = fuzz_reader(args.count, args.seed)
    u = fuzz_upscale(args.upscale, args.seed + 1)
    seconds = time.perf_counter() - start
    print(f"read_image: {r['inputs']} inputs ({r['ok']} decoded, {r['refused']} refused with one line), "
          f"{len(r['crashes'])} crashes, {len(r['hangs'])} hangs")
    print(f"adcsr upscale on a folder: {u['inputs']} inputs ({u['readable']} readable), exit {u['exit']}, "
          f"{len(u['partial'])} partial or stray outputs")
    print(f"{seconds:.0f} s")
    for c in (r["crashes"] + r["hangs"])[:10]:
        print("  failure:", c)
    return 0 if not (r["crashes"] or r["hangs"] or u["partial"]) else 1


if __name__ == "__main__":
    sys.exit(main())
