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
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal

import numpy as np

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .colorfix import ADAIN_EPS
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


@dataclass(frozen=True)
class TileSpec:
    """How an image is cut and blended: ×`scale`; tiles of `tile` LR pixels (a multiple of the
    model's size `multiple`) overlapping by `overlap`; the `blend` ramp; `batch_size` tiles per call."""

    scale: int = 4
    tile: int = 128
    overlap: int = 32
    multiple: int = 1
    blend: Literal["cosine", "linear"] = "cosine"
    batch_size: int = 4

    def check(self) -> None:
        if min(self.scale, self.tile, self.multiple, self.batch_size) < 1:
            raise UserError("scale, tile, multiple and batch size must be positive")
        if self.tile % self.multiple:
            raise UserError(f"tile size {self.tile} must be a multiple of the model's size multiple {self.multiple}")
        if not 0 <= self.overlap < self.tile:
            raise UserError(f"tile overlap must be in [0, {self.tile}), got {self.overlap}")
        if self.blend not in ("cosine", "linear"):
            raise UserError(f"blend must be 'cosine' or 'linear', got {self.blend!r}")

    def grid(self, size: int) -> tuple[int, int, list[int]]:
        """(padded size, tile length, tile starts) along one axis."""
        padded = math.ceil(size / self.multiple) * self.multiple
        length = min(self.tile, padded)
        return padded, length, tile_starts(padded, length, self.overlap)

    def count(self, height: int, width: int) -> int:
        """How many tiles an image of `height`×`width` LR pixels is cut into."""
        return len(self.grid(height)[2]) * len(self.grid(width)[2])

    def windows(self, starts: list[int], length: int) -> list[torch.Tensor]:
        """The blending weights along one axis of every tile starting at `starts`."""
        return [axis_window(starts, i, length, self.scale, self.blend) for i in range(len(starts))]


def _pad_to(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    ph, pw = h - x.shape[-2], w - x.shape[-1]
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < x.shape[-2] and pw < x.shape[-1] else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def _batches(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _check_batch(lr: torch.Tensor) -> None:
    if not isinstance(lr, torch.Tensor) or lr.ndim != 4 or lr.shape[1] != 3:
        shape = tuple(lr.shape) if isinstance(lr, torch.Tensor) else type(lr).__name__
        raise UserError(f"tiled upscaling takes an N×3×H×W RGB batch, got {shape}")


def _run_model(model: Model, tiles: torch.Tensor, count: int, th: int, tw: int, spec: TileSpec,
               device: torch.device) -> torch.Tensor:
    """`model` on a batch of `count` th×tw tiles, its output checked and as float32 on `device`."""
    sr = model(tiles)
    if not isinstance(sr, torch.Tensor) or tuple(sr.shape) != (count, 3, th * spec.scale, tw * spec.scale):
        got = tuple(sr.shape) if isinstance(sr, torch.Tensor) else type(sr).__name__
        raise UserError(f"the model returned {got} for {count} tiles of {th}×{tw}; expected ×{spec.scale} RGB")
    return sr.to(device, torch.float32)


def _accumulators(rows: int, cols: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Zeroed (3, rows, cols) weighted-sum and (1, rows, cols) weight buffers."""
    return (torch.zeros(3, rows, cols, dtype=torch.float32, device=device),
            torch.zeros(1, rows, cols, dtype=torch.float32, device=device))


def _upscale_one(model: Model, lr: torch.Tensor, spec: TileSpec, bar: tqdm) -> torch.Tensor:
    h, w = lr.shape[-2:]
    scale = spec.scale
    (hp, th, ys), (wp, tw, xs) = spec.grid(h), spec.grid(w)
    padded = _pad_to(lr[None], hp, wp)
    wy, wx = spec.windows(ys, th), spec.windows(xs, tw)
    out, weight = _accumulators(hp * scale, wp * scale, lr.device)
    for batch in _batches([(i, j) for i in range(len(ys)) for j in range(len(xs))], spec.batch_size):
        tiles = torch.cat([padded[..., ys[i]:ys[i] + th, xs[j]:xs[j] + tw] for i, j in batch])
        sr = _run_model(model, tiles, len(batch), th, tw, spec, out.device)
        for k, (i, j) in enumerate(batch):
            win = (wy[i][:, None] * wx[j][None, :]).to(out.device)
            y0, x0 = ys[i] * scale, xs[j] * scale
            out[:, y0:y0 + th * scale, x0:x0 + tw * scale].addcmul_(sr[k], win)
            weight[:, y0:y0 + th * scale, x0:x0 + tw * scale].add_(win)
        bar.update(len(batch))
    out.div_(weight)
    return out[:, : h * scale, : w * scale]


@torch.no_grad()
def tiled_upscale(model: Model, lr: torch.Tensor, *, color_fix: str | Callable | None = None, progress: bool = False,
                  **tiling: Any) -> torch.Tensor:
    """Upscale N×3×H×W `lr` with `model` (NCHW batch -> ×scale NCHW batch) tile by tile.

    `tiling` holds `TileSpec`'s keywords (defaults: scale=4, tile=128, overlap=32, multiple=1,
    blend="cosine", batch_size=4): `tile` and `overlap` are in LR pixels; `tile` must be a
    multiple of `multiple` (the model's stride). `color_fix` is None, "adain", "wavelet" or a
    callable `(sr, lr) -> sr`. Returns N×3×(H·scale)×(W·scale) float32 in [0, 1].
    """
    spec = TileSpec(**tiling)
    _check_batch(lr)
    spec.check()
    fix = get_color_fix(color_fix)
    lr = lr.float()
    n, _, h, w = lr.shape
    result = torch.empty(n, 3, h * spec.scale, w * spec.scale, dtype=torch.float32, device=lr.device)
    with tqdm(total=n * spec.count(h, w), desc="tiles", unit="tile", disable=not progress) as bar:
        for i, img in enumerate(lr):
            sr = _upscale_one(model, img, spec, bar)[None]
            if fix is not None:
                sr = fix(sr, img[None])
            result[i] = sr[0].clamp_(0.0, 1.0)
            del sr
    return result


def _strip(lr: torch.Tensor, y: int, th: int, hp: int, wp: int) -> torch.Tensor:
    """Rows y … y+th of the padded image, padded exactly as the whole image is (a slab from one
    tile higher holds every row the bottom reflection copies)."""
    h = lr.shape[-2]
    top = max(0, y - th) if y + th > h else y
    slab = lr[None, :, top:min(h, y + th)]
    return _pad_to(slab, min(hp, y + th) - top, wp)[..., y - top:y - top + th, :]


def _raw_bands(model: Model, lr: torch.Tensor, spec: TileSpec, bar: tqdm) -> Iterator[torch.Tensor]:
    """Blended, uncorrected bands (3, rows, W·scale) of one 3×H×W image, top to bottom."""
    h, w = lr.shape[-2:]
    scale = spec.scale
    (hp, th, ys), (wp, tw, xs) = spec.grid(h), spec.grid(w)
    wx = spec.windows(xs, tw)
    carry: tuple[torch.Tensor, torch.Tensor] | None = None
    for i, y in enumerate(ys):
        strip = _strip(lr, y, th, hp, wp)
        wy = axis_window(ys, i, th, scale, spec.blend)
        out, weight = _accumulators(th * scale, wp * scale, lr.device)
        if carry is not None:
            n = carry[0].shape[1]
            out[:, :n], weight[:, :n] = carry
        for batch in _batches(list(range(len(xs))), spec.batch_size):
            tiles = torch.cat([strip[..., xs[j]:xs[j] + tw] for j in batch])
            sr = _run_model(model, tiles, len(batch), th, tw, spec, out.device)
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
        del out, weight, strip


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
def upscale_bands(model: Model, lr: torch.Tensor, *, color_fix: str | Callable | None = None, progress: bool = False,
                  spill_dir: str | None = None, **tiling: Any) -> Iterator[torch.Tensor]:
    """Stream `tiled_upscale` of one image (1×3×H×W or 3×H×W): yields float32 bands
    (3, rows, W·scale) in [0, 1], top to bottom, that together equal `tiled_upscale`'s result
    for the same `tiling` keywords (`TileSpec`'s).

    `color_fix` is None, "none" or "adain" (uncorrected bands then wait in a temporary file in
    `spill_dir`, default the system's); the wavelet fix needs the whole image and is refused.
    """
    spec = TileSpec(**tiling)
    if isinstance(lr, torch.Tensor) and lr.ndim == 3:
        lr = lr[None]
    _check_batch(lr)
    spec.check()
    if lr.shape[0] != 1:
        raise UserError(f"streamed upscaling takes one image at a time, got a batch of {lr.shape[0]}")
    if color_fix not in (None, "none", "adain", adain_color_fix):
        name = color_fix if isinstance(color_fix, str) else getattr(color_fix, "__name__", "custom")
        get_color_fix(color_fix)  # unknown names get the usual message
        raise UserError(f"colour fix '{name}' needs the whole image at once; streamed upscaling supports adain or none")
    img = lr[0].float()
    with tqdm(total=spec.count(*img.shape[-2:]), desc="tiles", unit="tile", disable=not progress) as bar:
        raw = _raw_bands(model, img, spec, bar)
        if color_fix in ("adain", adain_color_fix):
            yield from _adain_bands(raw, img, spill_dir)
        else:
            for band in raw:
                yield band.clamp_(0.0, 1.0)
