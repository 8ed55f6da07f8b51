"""The teacher interface every distillation teacher offers (the registry that names them is `teachers/__init__.py`)."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

import torch

from ...errors import UserError

if TYPE_CHECKING:
    from ..feature_space import FeatureSpace


class Teacher(abc.ABC):
    """A ×4 super-resolution teacher.

    `upscale(lr)` maps NCHW float32 RGB [0, 1] to the ×4 SR image (any LR size, tiled).
    `features(lr, space)` is the teacher's distillation target in the student's feature space:
    the same shape as `AdcSRStudent.features(lr)` — the LR is reflect-padded to `multiple` (the
    student's `size_multiple`) first, exactly as the student pads it.
    """

    name: str = ""
    scale: int = 4
    #: LR sizes the network itself accepts are multiples of this (tiles are padded to it).
    size_multiple: int = 1

    @abc.abstractmethod
    def forward_tile(self, lr: torch.Tensor) -> torch.Tensor:
        """One untiled forward pass on a batch whose size is a multiple of `size_multiple`."""

    @abc.abstractmethod
    def features(self, lr: torch.Tensor, space: FeatureSpace, multiple: int = 16) -> torch.Tensor:
        """The distillation target for `lr` in `space` (see the class docstring)."""

    def targets(self, lr: torch.Tensor, space: FeatureSpace, multiple: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
        """(SR, features) together; teachers whose features come from their SR override it to run once."""
        return self.upscale(lr), self.features(lr, space, multiple)

    @abc.abstractmethod
    def to(self, device: str | torch.device, dtype: torch.dtype = torch.float32) -> Teacher:
        """Run on `device` in `dtype` from now on (stage 2: the trainer's device and AMP precision);
        inputs and outputs stay float32 on the caller's device."""

    def describe(self) -> dict[str, Any]:
        """What this teacher is, for outputs and manifests (weights, prompts, precision)."""
        return {"name": self.name}

    @torch.no_grad()
    def upscale(self, lr: torch.Tensor, tile: int = 128, overlap: int = 32, color_fix: str | None = None,
                progress: bool = False) -> torch.Tensor:
        from ...tiling import tiled_upscale

        _check_image(lr)
        return tiled_upscale(
            self.forward_tile, lr, scale=self.scale, tile=tile, overlap=overlap,
            multiple=self.size_multiple, color_fix=color_fix, progress=progress,
        )


def _check_image(lr: torch.Tensor) -> None:
    if not isinstance(lr, torch.Tensor) or lr.ndim != 4 or lr.shape[1] != 3:
        shape = tuple(lr.shape) if isinstance(lr, torch.Tensor) else type(lr).__name__
        raise UserError(f"a teacher takes an N×3×H×W RGB batch in [0, 1], got {shape}")
