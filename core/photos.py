"""Real photographs that ship inside installed packages (no downloads), with a fixed split.

scikit-image's `skimage.data`, scikit-learn's sample images and matplotlib's sample data. The
held-out photos are natural scenes never used for training: a cat, a flower and a portrait.
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np
import torch

from .errors import UserError


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()

    return load


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)

    return load


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as img:
        return np.asarray(img.convert("RGB"))


_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _skimage("astronaut"),
    "coffee": _skimage("coffee"),
    "chelsea": _skimage("chelsea"),
    "rocket": _skimage("rocket"),
    "hubble_deep_field": _skimage("hubble_deep_field"),
    "retina": _skimage("retina"),
    "immunohistochemistry": _skimage("immunohistochemistry"),
    "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
    "grace_hopper": _grace_hopper,
}

TRAIN_PHOTOS: tuple[str, ...] = (
    "astronaut", "coffee", "rocket", "china", "hubble_deep_field", "retina", "immunohistochemistry",
)
HELDOUT_PHOTOS: tuple[str, ...] = ("chelsea", "flower", "grace_hopper")
SPLITS = {"train": TRAIN_PHOTOS, "heldout": HELDOUT_PHOTOS}


def shared_photo(name: str) -> torch.Tensor:
    """The cached tensor itself, shared by every caller: read it, never modify it."""
    if name not in _LOADERS:
        raise UserError(f"unknown photo '{name}' (choose from {', '.join(_LOADERS)})")
    return _decoded(name)


@functools.lru_cache(maxsize=None)
def _decoded(name: str) -> torch.Tensor:
    a = _LOADERS[name]()
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(a[..., :3])).permute(2, 0, 1).float().div(255.0)


def load_photo(name: str) -> torch.Tensor:
    """A bundled photo as float32 RGB (3, H, W) in [0, 1] (a fresh copy each call)."""
    return shared_photo(name).clone()


def split_photos(split: str) -> tuple[str, ...]:
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}' (choose 'train' or 'heldout')")
    return SPLITS[split]


def random_crop(img: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """A size×size crop of (C, H, W) at a position drawn from `generator`."""
    _, h, w = img.shape
    top = int(torch.randint(0, h - size + 1, (1,), generator=generator))
    left = int(torch.randint(0, w - size + 1, (1,), generator=generator))
    return img[:, top:top + size, left:left + size]


def hr_crops(split: str, size: int, count: int, seed: int = 0) -> torch.Tensor:
    """`count` HR crops (count, 3, size, size) cycling over the split's photos; same seed, same crops.

    Photos smaller than `size` are skipped; no photo large enough is an error.
    """
    if size < 1 or count < 1:
        raise UserError(f"crop size and count must be positive, got size={size}, count={count}")
    names = [n for n in split_photos(split) if min(shared_photo(n).shape[1:]) >= size]
    if not names:
        raise UserError(f"no {split} photo is at least {size}×{size} pixels")
    g = torch.Generator().manual_seed(seed)
    return torch.stack([random_crop(shared_photo(names[i % len(names)]), size, g) for i in range(count)]).clone()
