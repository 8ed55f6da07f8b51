"""Read and write image files as float32 RGB tensors in [0, 1], with one-line errors.

Reading accepts JPEG, PNG, WebP and TIFF in any mode Pillow decodes (grayscale, RGBA, palette,
CMYK, 16-bit gray; 16-bit colour TIFF goes through tifffile because Pillow keeps only 8 bits of
it; Pillow also reduces 16-bit colour PNG to 8 bits), applies the EXIF orientation, and refuses
decompression bombs twice: Pillow's own hard limit (twice `PIL.Image.MAX_IMAGE_PIXELS`) and our
configurable `max_pixels`, both checked on the header before any pixel is decoded. Writing goes through `adcsr.core.atomic` so a failure leaves no
partial file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from .atomic import atomic_path
from .errors import UserError, disk_full

DEFAULT_MAX_PIXELS = 100_000_000  # 100 MP: a 10000×10000 photo still reads, a bomb does not
READ_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "MPO")  # MPO: multi-picture JPEG from cameras
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")
WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
_ORIENTATION_TAG = 0x0112
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that rotate by 90 degrees


def _open(path: Path, max_pixels: int) -> Image.Image:
    """Open (header only) with every check that can be made before decoding."""
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not an image file")
    try:
        if path.stat().st_size == 0:
            raise UserError(f"{path}: empty file (0 bytes)")
        with warnings.catch_warnings():
            # Pillow warns above its own limit and refuses above twice that; our `max_pixels`
            # (checked below) replaces the warning, its refusal stays.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except UserError:
        raise
    except Image.DecompressionBombError as e:
        raise UserError(f"{path}: refused as a decompression bomb ({e})") from None
    except Image.UnidentifiedImageError:
        raise UserError(f"{path}: not an image file Pillow can read") from None
    except OSError as e:
        if e.errno is None:  # Pillow's decoders raise errno-less OSErrors for bad data
            raise UserError(f"{path}: corrupt or truncated image ({e})") from None
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
    if img.format not in READ_FORMATS:
        fmt = img.format
        img.close()
        raise UserError(f"{path}: {fmt} files are not supported (use PNG, JPEG, WebP or TIFF)")
    w, h = img.size
    if w * h > max_pixels:
        img.close()
        raise UserError(f"{path}: {w}×{h} = {w * h} pixels exceeds the limit of {max_pixels} (raise --max-pixels if this is intended)")
    return img


def image_size(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(height, width) after EXIF orientation, read from the header only."""
    path = Path(path)
    with _open(path, max_pixels) as img:
        w, h = img.size
        # Pillow finds a PNG's EXIF only by decoding the whole file; read it only if it came early.
        if img.format == "PNG" and "exif" not in img.info:
            return h, w
        try:
            orientation = img.getexif().get(_ORIENTATION_TAG, 1)
        except (OSError, ValueError, SyntaxError, EOFError) as e:
            raise UserError(f"{path}: corrupt or truncated image ({e})") from None
    return (w, h) if orientation in _SWAPPING_ORIENTATIONS else (h, w)


def _to_float(img: Image.Image) -> np.ndarray:
    """Pixel data as float32 (H, W, C) in [0, 1], C in {1, 2, 3, 4}; 16-bit precision kept."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grayscale (PNG decodes it as "I" or "I;16", TIFF as "I;16*")
        a = np.asarray(img).astype(np.float32) / 65535.0
        return np.clip(a, 0.0, 1.0)[..., None]
    if img.mode == "F":
        return np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)[..., None]
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode == "PA":
        img = img.convert("RGBA")
    elif img.mode in ("LA", "La", "RGBa"):
        img = img.convert("RGBA" if img.mode == "RGBa" else "LA")
    elif img.mode == "1":
        img = img.convert("L")
    elif img.mode not in ("L", "LA", "RGB", "RGBA"):
        img = img.convert("RGB")  # CMYK, YCbCr, LAB, HSV
    a = np.asarray(img, dtype=np.float32) / 255.0
    return a if a.ndim == 3 else a[..., None]


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an (H, W, C) array: the view a camera meant."""
    ops = {
        2: lambda x: x[:, ::-1],
        3: lambda x: x[::-1, ::-1],
        4: lambda x: x[::-1],
        5: lambda x: x.transpose(1, 0, 2),
        6: lambda x: np.rot90(x, -1),
        7: lambda x: x[::-1, ::-1].transpose(1, 0, 2),
        8: lambda x: np.rot90(x, 1),
    }
    return ops[orientation](a) if orientation in ops else a


def _is_deep_color_tiff(img: Image.Image) -> bool:
    """Pillow reduces 16-bit colour TIFFs to 8 bits; tifffile keeps them."""
    if img.format != "TIFF":
        return False
    bits = img.tag_v2.get(258, (8,))
    bits = bits if isinstance(bits, tuple) else (bits,)
    return len(bits) >= 3 and max(bits) == 16


def _read_tiff16(path: Path) -> np.ndarray:
    import tifffile

    a = tifffile.imread(path, key=0)
    if a.ndim != 3 or a.dtype != np.uint16:
        raise ValueError(f"unexpected TIFF layout {a.shape} {a.dtype}")
    return a.astype(np.float32) / 65535.0


def read_image(
    path: str | os.PathLike,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    keep_alpha: bool = False,
    background: Sequence[float] = (1.0, 1.0, 1.0),
) -> torch.Tensor:
    """Read an image file as float32 RGB (3, H, W) in [0, 1].

    Transparent images are composited on `background` (RGB in [0, 1]); with `keep_alpha` the
    result is (4, H, W) RGBA instead (opaque images get an alpha of 1).
    """
    path = Path(path)
    img = _open(path, max_pixels)
    try:
        with img:
            if _is_deep_color_tiff(img):
                a = _read_tiff16(path)
            else:
                img.load()
                a = _to_float(img)
            orientation = img.getexif().get(_ORIENTATION_TAG, 1)
    except UserError:
        raise
    except Image.DecompressionBombError as e:
        raise UserError(f"{path}: refused as a decompression bomb ({e})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise UserError(f"{path}: corrupt or truncated image ({e})") from None
    a = _orient(a, orientation)
    x = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)
    color, alpha = (x[:-1], x[-1:]) if x.shape[0] in (2, 4) else (x, None)
    if color.shape[0] == 1:
        color = color.expand(3, -1, -1)
    if keep_alpha:
        alpha = alpha if alpha is not None else torch.ones_like(color[:1])
        return torch.cat([color, alpha]).contiguous()
    if alpha is not None:
        bg = torch.tensor(list(background), dtype=torch.float32).view(3, 1, 1)
        color = color * alpha + bg * (1.0 - alpha)
    return color.contiguous()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path: str | os.PathLike, force: bool = False, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Refuse an output path before any work: bad extension, a folder, or an overwrite without force."""
    path = Path(path)
    if path.suffix.lower() not in WRITE_FORMATS:
        raise UserError(f"{path}: cannot write '{path.suffix or '(no extension)'}' files (use .png, .jpg or .webp)")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not an output file name")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{path}: cannot write there, {parent} is not a folder")
    if not os.access(parent, os.W_OK):
        raise UserError(f"{path}: cannot write there, {parent} is not writable")
    if not force:
        for src in inputs:
            if _same_file(path, Path(src)):
                raise UserError(f"{path}: would overwrite its input (use --force to allow)")
        if path.exists():
            raise UserError(f"{path}: already exists (use --force to replace it)")
    return path


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(C, H, W) or (1, C, H, W) float in [0, 1] -> (H, W, C) uint8, rounding to nearest."""
    if img.ndim == 4 and img.shape[0] == 1:
        img = img[0]
    if img.ndim != 3 or img.shape[0] not in (3, 4):
        raise ValueError(f"expected a (3|4, H, W) image, got shape {tuple(img.shape)}")
    if not torch.isfinite(img).all():
        raise ValueError("image contains NaN or infinite values")
    a = img.detach().float().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return a.permute(1, 2, 0).cpu().numpy()


def write_image(
    img: torch.Tensor,
    path: str | os.PathLike,
    force: bool = False,
    quality: int = 95,
    inputs: Iterable[str | os.PathLike] = (),
) -> Path:
    """Write (3, H, W) RGB or (4, H, W) RGBA in [0, 1] as PNG/JPEG/WebP, atomically.

    JPEG has no alpha: an RGBA image is written without it. Refuses to replace an existing file
    (or one of `inputs`) unless `force`.
    """
    path = check_output(path, force=force, inputs=inputs)
    a = to_uint8(img)
    fmt = WRITE_FORMATS[path.suffix.lower()]
    pil = Image.fromarray(a, mode="RGBA" if a.shape[2] == 4 else "RGB")
    if fmt == "JPEG" and pil.mode == "RGBA":
        pil = pil.convert("RGB")
    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {"compress_level": 6}
    try:
        with atomic_path(path) as tmp:
            pil.save(tmp, format=fmt, **options)
    except OSError as e:
        raise _write_error(path, e) from None
    return path


def write_png_bands(bands: Iterator[torch.Tensor], path: Path, height: int, width: int) -> None:
    """Write (3, rows, width) float bands in [0, 1] as one 8-bit RGB PNG, row by row, atomically;
    pixels are rounded exactly as `write_image` rounds them."""
    import png

    def rows() -> Iterator[bytes]:
        written = 0
        for band in bands:
            a = to_uint8(band)
            written += a.shape[0]
            yield from (row.tobytes() for row in a.reshape(a.shape[0], -1))
        if written != height:
            raise RuntimeError(f"streamed {written} rows for a {height}-row image")

    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            png.Writer(width, height, greyscale=False, bitdepth=8, compression=6).write(f, rows())
    except OSError as e:
        raise _write_error(path, e) from None
    finally:
        if hasattr(bands, "close"):
            bands.close()  # the producer's progress bar ends now, not after the error is printed


def _write_error(path: Path, e: OSError) -> Exception:
    """A full disk stays an OSError naming `path` (the CLI reports it and stops a folder run);
    any other write failure is the user's (a read-only or vanished folder)."""
    if disk_full(e):
        return OSError(e.errno, e.strerror, str(path))
    return UserError(f"{path}: cannot write: {e.strerror or e}")


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under `folder`, recursively, sorted by relative path (hidden files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    return sorted(
        (p for p in folder.rglob("*")
         if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
         and not any(part.startswith(".") for part in p.relative_to(folder).parts)),
        key=lambda p: p.relative_to(folder).as_posix(),
    )
