"""Upscale images of any size with any ×scale model by overlapping tiles and feathered blending.

The LR image is padded (reflect) to a multiple of the model's size multiple, cut into
overlapping tiles, and the tiles go through the model a few at a time. Each SR tile is weighted
by a separable window that ramps up (linearly or along a raised cosine) over exactly the pixels
it shares with its neighbour and is 1 elsewhere, so the weights of overlapping tiles sum to one;
results and weights accumulate into one output buffer and one weight buffer, and each finished
image is copied into the preallocated result. Peak memory is those buffers (7 floats per SR
pixel) plus one batch of tiles, whatever the image size (the colour fix adds its own full-size
temporaries). The colour fix runs once on the
whole image afterwards: run per tile, each tile would get its own correction and seams.

`upscale_bands` streams instead: it runs one row of tiles at a time, blends within that strip
and yields each band of output rows as soon as no later tile overlaps it, so memory holds one
strip (4 floats per SR pixel of a strip) whatever the image height. The same tiles, windows and
accumulation order make its bands equal to `tiled_upscale`'s result. AdaIN needs the whole SR
image's per-channel mean and std before the first band can be corrected: the uncorrected bands
are spilled to an unlinked temporary file while the statistics accumulate (float64 sums), then
read back, corrected and yielded; the model runs once. The wavelet fix low-passes across band
borders at every level and is not streamed (a clear error).
"""

from __future__ import annotations

import math
import tempfile
from typing import Callable, Iterator, Literal

import numpy as np

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .colorfix import _EPS as ADAIN_EPS
from .colorfix import adain_color_fix, get_color_fix
from .errors import UserError

Model = Callable[[torch.Tensor], torch.Tensor]


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets covering [0, size) with tiles of `tile` overlapping by at least `overlap`,
    spread evenly so neighbouring overlaps differ by at most one pixel."""
    if size <= tile:
        return [0]
    gaps = math.ceil((size - tile) / (tile - overlap))
    return [round(i * (size - tile) / gaps) for i in range(gaps + 1)]


def _ramp(n: int, kind: str) -> torch.Tensor:
    t = (torch.arange(n, dtype=torch.float32) + 0.5) / n
    return t if kind == "linear" else 0.5 - 0.5 * torch.cos(math.pi * t)


def axis_window(starts: list[int], index: int, tile: int, scale: int, kind: str) -> torch.Tensor:
    """Blending weights (SR pixels) of tile `index` along one axis."""
    w = torch.ones(tile * scale)
    before = (starts[index - 1] + tile - starts[index]) * scale if index > 0 else 0
    after = (starts[index] + tile - starts[index + 1]) * scale if index < len(starts) - 1 else 0
    if before > 0:
        w[:before] = _ramp(before, kind)
    if after > 0:
        w[-after:] = torch.minimum(w[-after:], _ramp(after, kind).flip(0))
    return w


def _grid(size: int, tile: int, overlap: int, multiple: int) -> tuple[int, int, list[int]]:
    """(padded size, tile length, tile starts) along one axis."""
    padded = math.ceil(size / multiple) * multiple
    length = min(tile, padded)
    return padded, length, tile_starts(padded, length, overlap)


def _pad_to(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    ph, pw = h - x.shape[-2], w - x.shape[-1]
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < x.shape[-2] and pw < x.shape[-1] else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def _batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _check(lr: torch.Tensor, scale: int, tile: int, overlap: int, multiple: int, batch_size: int) -> None:
    if not isinstance(lr, torch.Tensor) or lr.ndim != 4 or lr.shape[1] != 3:
        shape = tuple(lr.shape) if isinstance(lr, torch.Tensor) else type(lr).__name__
        raise UserError(f"tiled upscaling takes an N×3×H×W RGB batch, got {shape}")
    if min(scale, tile, multiple, batch_size) < 1:
        raise UserError("scale, tile, multiple and batch size must be positive")
    if tile % multiple:
        raise UserError(f"tile size {tile} must be a multiple of the model's size multiple {multiple}")
    if not 0 <= overlap < tile:
        raise UserError(f"tile overlap must be in [0, {tile}), got {overlap}")


def _upscale_one(model: Model, lr: torch.Tensor, scale: int, tile: int, overlap: int, multiple: int,
                 blend: str, batch_size: int, bar: tqdm) -> torch.Tensor:
    h, w = lr.shape[-2:]
    (hp, th, ys), (wp, tw, xs) = _grid(h, tile, overlap, multiple), _grid(w, tile, overlap, multiple)
    padded = _pad_to(lr[None], hp, wp)
    wy = [axis_window(ys, i, th, scale, blend) for i in range(len(ys))]
    wx = [axis_window(xs, j, tw, scale, blend) for j in range(len(xs))]
    out = torch.zeros(3, hp * scale, wp * scale, dtype=torch.float32, device=lr.device)
    weight = torch.zeros(1, hp * scale, wp * scale, dtype=torch.float32, device=lr.device)
    for batch in _batches([(i, j) for i in range(len(ys)) for j in range(len(xs))], batch_size):
        tiles = torch.cat([padded[..., ys[i]:ys[i] + th, xs[j]:xs[j] + tw] for i, j in batch])
        sr = model(tiles)
        if not isinstance(sr, torch.Tensor) or tuple(sr.shape) != (len(batch), 3, th * scale, tw * scale):
            got = tuple(sr.shape) if isinstance(sr, torch.Tensor) else type(sr).__name__
            raise UserError(f"the model returned {got} for {len(batch)} tiles of {th}×{tw}; expected ×{scale} RGB")
        sr = sr.to(out.device, torch.float32)
        for k, (i, j) in enumerate(batch):
            win = (wy[i][:, None] * wx[j][None, :]).to(out.device)
            y0, x0 = ys[i] * scale, xs[j] * scale
            out[:, y0:y0 + th * scale, x0:x0 + tw * scale].addcmul_(sr[k], win)
            weight[:, y0:y0 + th * scale, x0:x0 + tw * scale].add_(win)
        bar.update(len(batch))
    out.div_(weight)
    return out[:, : h * scale, : w * scale]


@torch.no_grad()
def tiled_upscale(
    model: Model,
    lr: torch.Tensor,
    scale: int = 4,
    tile: int = 128,
    overlap: int = 32,
    multiple: int = 1,
    color_fix: str | Callable | None = None,
    progress: bool = False,
    blend: Literal["cosine", "linear"] = "cosine",
    batch_size: int = 4,
) -> torch.Tensor:
    """Upscale N×3×H×W `lr` with `model` (NCHW batch -> ×scale NCHW batch) tile by tile.

    `tile` and `overlap` are in LR pixels; `tile` must be a multiple of `multiple` (the model's
    stride). `color_fix` is None, "adain", "wavelet" or a callable `(sr, lr) -> sr`. Returns
    N×3×(H·scale)×(W·scale) float32 in [0, 1].
    """
    _check(lr, scale, tile, overlap, multiple, batch_size)
    _check_blend(blend)
    fix = get_color_fix(color_fix)
    lr = lr.float()
    n, _, h, w = lr.shape
    result = torch.empty(n, 3, h * scale, w * scale, dtype=torch.float32, device=lr.device)
    total = lr.shape[0] * math.prod(len(_grid(s, tile, overlap, multiple)[2]) for s in lr.shape[-2:])
    with tqdm(total=total, desc="tiles", unit="tile", disable=not progress) as bar:
        for i, img in enumerate(lr):
            sr = _upscale_one(model, img, scale, tile, overlap, multiple, blend, batch_size, bar)[None]
            if fix is not None:
                sr = fix(sr, img[None])
            result[i] = sr[0].clamp_(0.0, 1.0)
            del sr
    return result


def _check_blend(blend: str) -> None:
    if blend not in ("cosine", "linear"):
        raise UserError(f"blend must be 'cosine' or 'linear', got {blend!r}")


def _raw_bands(model: Model, lr: torch.Tensor, scale: int, tile: int, overlap: int, multiple: int,
               blend: str, batch_size: int, bar: tqdm) -> Iterator[torch.Tensor]:
    """Blended, uncorrected bands (3, rows, W·scale) of one 3×H×W image, top to bottom."""
    h, w = lr.shape[-2:]
    (hp, th, ys), (wp, tw, xs) = _grid(h, tile, overlap, multiple), _grid(w, tile, overlap, multiple)
    wx = [axis_window(xs, j, tw, scale, blend) for j in range(len(xs))]
    carry: tuple[torch.Tensor, torch.Tensor] | None = None
    for i, y in enumerate(ys):
        # the rows of the padded image this strip needs, padded exactly as the whole image is
        # (a slab from one tile higher holds every row the bottom reflection copies)
        top = max(0, y - th) if y + th > h else y
        slab = lr[None, :, top:min(h, y + th)]
        strip = _pad_to(slab, min(hp, y + th) - top, wp)[..., y - top:y - top + th, :]
        wy = axis_window(ys, i, th, scale, blend)
        out = torch.zeros(3, th * scale, wp * scale, dtype=torch.float32, device=lr.device)
        weight = torch.zeros(1, th * scale, wp * scale, dtype=torch.float32, device=lr.device)
        if carry is not None:
            n = carry[0].shape[1]
            out[:, :n], weight[:, :n] = carry
        for batch in _batches(list(range(len(xs))), batch_size):
            sr = model(torch.cat([strip[..., xs[j]:xs[j] + tw] for j in batch]))
            if not isinstance(sr, torch.Tensor) or tuple(sr.shape) != (len(batch), 3, th * scale, tw * scale):
                got = tuple(sr.shape) if isinstance(sr, torch.Tensor) else type(sr).__name__
                raise UserError(f"the model returned {got} for {len(batch)} tiles of {th}×{tw}; expected ×{scale} RGB")
            sr = sr.to(out.device, torch.float32)
            for k, j in enumerate(batch):
                win = (wy[:, None] * wx[j][None, :]).to(out.device)
                x0 = xs[j] * scale
                out[:, :, x0:x0 + tw * scale].addcmul_(sr[k], win)
                weight[:, :, x0:x0 + tw * scale].add_(win)
            bar.update(len(batch))
        done = (ys[i + 1] - y) * scale if i + 1 < len(ys) else th * scale  # rows no later tile touches
        carry = (out[:, done:].clone(), weight[:, done:].clone())
        rows = min(done, h * scale - y * scale)
        if rows > 0:
            yield out[:, :rows, : w * scale].div_(weight[:, :rows, : w * scale])
        del out, weight, strip, slab


def _adain_bands(raw: Iterator[torch.Tensor], lr: torch.Tensor, spill_dir: str | None) -> Iterator[torch.Tensor]:
    """AdaIN as `colorfix.adain_color_fix` (same formula, same unbiased std), with the SR
    statistics gathered in a first pass over the spilled bands."""
    sums, squares, count, shapes = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64), 0, []
    with tempfile.TemporaryFile(dir=spill_dir) as spill:
        for band in raw:
            b = band.double()
            sums += b.sum((1, 2))
            squares += b.square().sum((1, 2))
            count += band.shape[1] * band.shape[2]
            shapes.append(tuple(band.shape))
            spill.write(band.contiguous().cpu().numpy().tobytes())
            del b
        s_mean = sums / count
        s_std = ((squares - sums * s_mean) / max(count - 1, 1)).clamp_min(0).sqrt()
        l = lr.float()
        l_mean, l_std = l.mean((1, 2)), l.std((1, 2))
        gain = (l_std / (s_std.float() + ADAIN_EPS)).view(3, 1, 1)
        s_mean, l_mean = s_mean.float().view(3, 1, 1), l_mean.view(3, 1, 1)
        spill.seek(0)
        for shape in shapes:
            band = torch.from_numpy(np.fromfile(spill, dtype=np.float32, count=math.prod(shape)).reshape(shape))
            yield ((band - s_mean) * gain + l_mean).clamp_(0.0, 1.0)


@torch.no_grad()
def upscale_bands(
    model: Model,
    lr: torch.Tensor,
    scale: int = 4,
    tile: int = 128,
    overlap: int = 32,
    multiple: int = 1,
    color_fix: str | Callable | None = None,
    progress: bool = False,
    blend: Literal["cosine", "linear"] = "cosine",
    batch_size: int = 4,
    spill_dir: str | None = None,
) -> Iterator[torch.Tensor]:
    """Stream `tiled_upscale` of one image (1×3×H×W or 3×H×W): yields float32 bands
    (3, rows, W·scale) in [0, 1], top to bottom, that together equal `tiled_upscale`'s result.

    `color_fix` is None, "none" or "adain" (uncorrected bands then wait in a temporary file in
    `spill_dir`, default the system's); the wavelet fix needs the whole image and is refused.
    """
    if isinstance(lr, torch.Tensor) and lr.ndim == 3:
        lr = lr[None]
    _check(lr, scale, tile, overlap, multiple, batch_size)
    _check_blend(blend)
    if lr.shape[0] != 1:
        raise UserError(f"streamed upscaling takes one image at a time, got a batch of {lr.shape[0]}")
    if color_fix not in (None, "none", "adain", adain_color_fix):
        name = color_fix if isinstance(color_fix, str) else getattr(color_fix, "__name__", "custom")
        get_color_fix(color_fix)  # unknown names get the usual message
        raise UserError(f"colour fix '{name}' needs the whole image at once; streamed upscaling supports adain or none")
    img = lr[0].float()
    total = math.prod(len(_grid(s, tile, overlap, multiple)[2]) for s in img.shape[-2:])
    with tqdm(total=total, desc="tiles", unit="tile", disable=not progress) as bar:
        raw = _raw_bands(model, img, scale, tile, overlap, multiple, blend, batch_size, bar)
        if color_fix in ("adain", adain_color_fix):
            yield from _adain_bands(raw, img, spill_dir)
        else:
            for band in raw:
                yield band.clamp_(0.0, 1.0)
