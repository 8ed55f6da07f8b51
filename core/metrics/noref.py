"""What the no-reference metrics (CLIPIQA, MUSIQ, MANIQA) share: input checks and fixed-size crops."""

from __future__ import annotations

import torch

from ..errors import UserError


def check_images(x: torch.Tensor, min_size: int = 1) -> None:
    """`x` must be an NCHW RGB batch whose sides are at least `min_size`."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
        raise UserError(f"expected an NCHW RGB tensor, got {getattr(x, 'shape', type(x).__name__)}")
    if x.shape[0] == 0:
        raise UserError("expected at least one image, got an empty batch")
    if min(x.shape[-2:]) < min_size:
        raise UserError(f"images must be at least {min_size}×{min_size} pixels, got {tuple(x.shape[-2:])}")


def grid_crops(x: torch.Tensor, size: int) -> torch.Tensor:
    """Evenly spaced `size`×`size` crops covering every pixel: (N, K, 3, size, size), same K for all images."""
    h, w = x.shape[-2:]

    def starts(length: int) -> list[int]:
        n = -(-length // size)  # ceil
        return [round(i * (length - size) / (n - 1)) if n > 1 else 0 for i in range(n)]

    crops = [x[..., t : t + size, s : s + size] for t in starts(h) for s in starts(w)]
    return torch.stack(crops, 1)
