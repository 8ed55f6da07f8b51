"""Real photographs that ship inside installed packages (no downloads), with a fixed split.

scikit-image's `skimage.data`, scikit-learn's sample images and matplotlib's sample data. The
held-out photos are natural scenes never used for training: a cat, a flower and a portrait.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import torch

from .errors import UserError
from .imaging import read_image


# (package, file inside it): the files behind skimage.data.<name>(), sklearn's
# load_sample_image() and matplotlib's sample data, read directly so that loading a photo does not
# import those (slow to import) packages.
_FILES: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "data/astronaut.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "chelsea": ("skimage", "data/chelsea.png"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "hubble_deep_field": ("skimage", "data/hubble_deep_field.jpg"),
    "retina": ("skimage", "data/retina.jpg"),
    "immunohistochemistry": ("skimage", "data/ihc.png"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
}


def photo_path(name: str) -> Path:
    """Where the installed package keeps photo `name`."""
    package, rel = _FILES[name]
    spec = importlib.util.find_spec(package)
    path = Path(spec.submodule_search_locations[0]) / rel if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise UserError(f"photo '{name}' not found: is the '{package}' package installed?")
    return path


TRAIN_PHOTOS: tuple[str, ...] = (
    "astronaut", "coffee", "rocket", "china", "hubble_deep_field", "retina", "immunohistochemistry",
)
HELDOUT_PHOTOS: tuple[str, ...] = ("chelsea", "flower", "grace_hopper")
SPLITS = {"train": TRAIN_PHOTOS, "heldout": HELDOUT_PHOTOS}


def shared_photo(name: str) -> torch.Tensor:
    """The cached tensor itself, shared by every caller: read it, never modify it."""
    if name not in _FILES:
        raise UserError(f"unknown photo '{name}' (choose from {', '.join(_FILES)})")
    return _decoded(name)


@functools.lru_cache(maxsize=None)
def _decoded(name: str) -> torch.Tensor:
    return read_image(photo_path(name))


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
