"""Training batches: HR crops from `adcsr.core.datasets`, degraded on the fly by Real-ESRGAN's
pipeline. Everything random is seeded by the sample's global index, so sample i is the same
whichever process or step asks for it (the trainer's data position is its step counter)."""

from __future__ import annotations

import torch

from adcsr.core.datasets import PairedFolderDataset, SamplePhotoDataset
from adcsr.core.degradations import RealESRGANDegradation
from adcsr.core.errors import UserError
from adcsr.core.photos import hr_crops

from .config import DataConfig


def _generator(seed: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + index) % 2**62)


class DegradedCrops:
    def __init__(self, cfg: DataConfig, seed: int):
        if cfg.hr_size % cfg.degradation.scale or cfg.heldout_size % cfg.degradation.scale:
            raise UserError(f"data.hr_size and data.heldout_size must be multiples of the scale "
                            f"{cfg.degradation.scale}")
        self.cfg, self.seed = cfg, seed
        if cfg.hr_folder:
            self.dataset = PairedFolderDataset(cfg.hr_folder, crop_size=cfg.hr_size, seed=seed)
        else:
            self.dataset = SamplePhotoDataset("train", cfg.hr_size, cfg.epoch_length, seed=seed)
        self.degrade = RealESRGANDegradation(cfg.degradation)

    @property
    def image_names(self) -> list[str]:
        """The names of the images crops are taken from (what per-image side data is keyed by)."""
        return list(self.dataset.names)

    def _items(self, indices: list[int]) -> list[dict]:
        n = len(self.dataset)
        out = []
        for i in indices:
            self.dataset.set_epoch(i // n)
            out.append(self.dataset[i % n])
        return out

    def hr(self, indices: list[int]) -> torch.Tensor:
        return torch.stack([item["hr"] for item in self._items(indices)])

    def lr(self, hr: torch.Tensor, indices: list[int]) -> torch.Tensor:
        return torch.cat([self.degrade(hr[k:k + 1], _generator(self.seed, i)) for k, i in enumerate(indices)])

    def batch(self, indices: list[int], names: bool = False) -> dict:
        """{"hr", "lr"} tensors, plus "names" (each sample's image name) when asked."""
        items = self._items(indices)
        hr = torch.stack([item["hr"] for item in items])
        b = {"hr": hr, "lr": self.lr(hr, indices)}
        if names:
            b["names"] = [item["name"] for item in items]
        return b

    def heldout(self) -> dict[str, torch.Tensor]:
        """Fixed crops of the held-out photos (never trained on) and their degraded LR."""
        hr = hr_crops("heldout", self.cfg.heldout_size, self.cfg.heldout_count, seed=12345)
        far = [10**12 + k for k in range(len(hr))]  # generator indices no training sample uses
        return {"hr": hr, "lr": self.lr(hr, far)}
