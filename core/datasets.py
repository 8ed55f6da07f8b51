"""Training datasets of HR crops (and optional LR crops): the bundled photos or a user's folders.

Items are dicts `{"hr": (3, s, s)}` plus `"lr": (3, s/scale, s/scale)` for paired folders with an
LR folder, and `"name"`. The realistic LR side is made batch-wise by the trainer with
`adcsr.core.degradations.RealESRGANDegradation`, so it is not done here.

Randomness (crop position, flip) is drawn from a generator seeded by (seed, epoch, index), so an
item is the same whichever DataLoader worker builds it; `set_epoch` gives new crops each epoch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from .errors import UserError
from .imaging import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES, image_size, list_images, read_image
from .photos import shared_photo, split_photos


class _SeededItems(Dataset):
    def __init__(self, seed: int):
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _generator(self, index: int) -> torch.Generator:
        return torch.Generator().manual_seed(((self.seed * 1_000_003 + self.epoch) * 1_000_033 + index) % 2**62)


def _crop_flip(img: torch.Tensor, top: int, left: int, size: int, flip: bool) -> torch.Tensor:
    crop = img[:, top:top + size, left:left + size]
    return (crop.flip(-1) if flip else crop).contiguous()


class SamplePhotoDataset(_SeededItems):
    """`length` random crops (with horizontal flips) of the bundled photos of one split."""

    def __init__(self, split: str = "train", crop_size: int = 128, length: int = 1000, seed: int = 0):
        super().__init__(seed)
        if crop_size < 1 or length < 1:
            raise UserError(f"crop_size and length must be positive, got {crop_size} and {length}")
        self.names = [n for n in split_photos(split) if min(shared_photo(n).shape[1:]) >= crop_size]
        if not self.names:
            raise UserError(f"no {split} photo is at least {crop_size}×{crop_size} pixels")
        self.crop_size = crop_size
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        g = self._generator(index)
        name = self.names[int(torch.randint(0, len(self.names), (1,), generator=g))]
        img = shared_photo(name)
        s = self.crop_size
        top = int(torch.randint(0, img.shape[1] - s + 1, (1,), generator=g))
        left = int(torch.randint(0, img.shape[2] - s + 1, (1,), generator=g))
        flip = bool(torch.randint(0, 2, (1,), generator=g))
        return {"hr": _crop_flip(img, top, left, s, flip), "name": name}


def _rel_stem(path: Path, root: Path) -> str:
    return path.relative_to(root).with_suffix("").as_posix()


def _some(names: list[str], n: int = 3) -> str:
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


class PairedFolderDataset(_SeededItems):
    """HR images from a folder (recursive, sorted), optionally paired with LR images.

    LR files pair with HR files by relative path without extension (`a/b.png` ↔ `a/b.jpg`), and
    each LR image must be the HR size divided by `scale`. Every check runs on file headers when
    the dataset is built, so a bad folder fails before training starts.
    """

    def __init__(
        self,
        hr_dir: str | os.PathLike,
        lr_dir: str | os.PathLike | None = None,
        crop_size: int = 128,
        scale: int = 4,
        seed: int = 0,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ):
        super().__init__(seed)
        if scale < 1 or crop_size < 1:
            raise UserError(f"crop_size and scale must be positive, got {crop_size} and {scale}")
        if lr_dir is not None and crop_size % scale:
            raise UserError(f"crop_size {crop_size} must be a multiple of scale {scale} when an LR folder is given")
        self.hr_dir, self.crop_size, self.scale, self.max_pixels = Path(hr_dir), crop_size, scale, max_pixels
        self.hr_files = self._files(self.hr_dir, "HR")
        self.lr_files: list[Path] | None = None
        if lr_dir is not None:
            self.lr_files = self._pair(Path(lr_dir))
        for i, hr in enumerate(self.hr_files):
            h, w = image_size(hr, max_pixels)
            if min(h, w) < crop_size:
                raise UserError(f"{hr}: {w}×{h} is smaller than the crop size {crop_size}")
            if self.lr_files is not None:
                lh, lw = image_size(self.lr_files[i], max_pixels)
                if (lh, lw) != (h // scale, w // scale):
                    raise UserError(
                        f"{self.lr_files[i]}: LR is {lw}×{lh} but HR {hr.name} is {w}×{h}; expected {w // scale}×{h // scale} for scale {scale}"
                    )

    @staticmethod
    def _files(folder: Path, what: str) -> list[Path]:
        files = list_images(folder)
        if not files:
            raise UserError(f"{what} folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)}, searched recursively)")
        return files

    def _pair(self, lr_dir: Path) -> list[Path]:
        lr = {_rel_stem(p, lr_dir): p for p in self._files(lr_dir, "LR")}
        hr = [_rel_stem(p, self.hr_dir) for p in self.hr_files]
        missing = [n for n in hr if n not in lr]
        extra = sorted(set(lr) - set(hr))
        if missing or extra:
            parts = [f"no LR image for {_some(missing)}"] if missing else []
            parts += [f"no HR image for {_some(extra)}"] if extra else []
            raise UserError(f"HR folder {self.hr_dir} and LR folder {lr_dir} do not match: {'; '.join(parts)}")
        return [lr[n] for n in hr]

    def __len__(self) -> int:
        return len(self.hr_files)

    @property
    def names(self) -> list[str]:
        """Every item's `"name"`: its path relative to the HR folder, without extension."""
        return [_rel_stem(f, self.hr_dir) for f in self.hr_files]

    def __getitem__(self, index: int) -> dict[str, Any]:
        hr = read_image(self.hr_files[index], self.max_pixels)
        g = self._generator(index)
        s, k = self.crop_size, self.scale
        step = k if self.lr_files is not None else 1  # HR crops aligned to the LR grid
        top = int(torch.randint(0, (hr.shape[1] - s) // step + 1, (1,), generator=g)) * step
        left = int(torch.randint(0, (hr.shape[2] - s) // step + 1, (1,), generator=g)) * step
        flip = bool(torch.randint(0, 2, (1,), generator=g))
        item: dict[str, Any] = {"hr": _crop_flip(hr, top, left, s, flip), "name": _rel_stem(self.hr_files[index], self.hr_dir)}
        if self.lr_files is not None:
            lr = read_image(self.lr_files[index], self.max_pixels)
            item["lr"] = _crop_flip(lr, top // k, left // k, s // k, flip)
        return item
