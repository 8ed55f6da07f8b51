"""The teacher interface every distillation teacher offers (the registry that names them is `teachers/__init__.py`)."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

import torch

from ...upscaler import Upscaler

if TYPE_CHECKING:
    from ..feature_space import FeatureSpace


class Teacher(Upscaler, abc.ABC):
    """A ×4 super-resolution teacher: an `Upscaler` (forward = one untiled pass, `upscale` tiled)
    that also gives stage 2 its targets.

    `features(lr, space)` is the teacher's distillation target in the student's feature space:
    the same shape as `AdcSRStudent.features(lr)` — the LR is reflect-padded to `multiple` (the
    student's `size_multiple`) first, exactly as the student pads it. Its networks are frozen
    submodules; `to(device, dtype)` also moves what is not a module (prompt embeddings).
    """

    name: str = ""
    device: torch.device = torch.device("cpu")  # where `place` put the networks, and in what dtype
    dtype: torch.dtype = torch.float32

    @abc.abstractmethod
    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """One untiled forward pass on a batch whose size is a multiple of `size_multiple`."""

    @abc.abstractmethod
    def features(self, lr: torch.Tensor, space: FeatureSpace, multiple: int = 16) -> torch.Tensor:
        """The distillation target for `lr` in `space` (see the class docstring)."""

    def targets(self, lr: torch.Tensor, space: FeatureSpace, multiple: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
        """(SR, features) together; teachers whose features come from their SR override it to run once."""
        return self.upscale(lr, color_fix="none"), self.features(lr, space, multiple)

    @abc.abstractmethod
    def place(self, device: torch.device, dtype: torch.dtype) -> None:
        """Run on `device` in `dtype` from now on (stage 2: the trainer's device and AMP precision):
        the networks and what is not a module (prompt embeddings); sets `device` and `dtype`.
        Inputs and outputs stay float32 on the caller's device."""

    def to(self, *args: Any, **kwargs: Any) -> Teacher:
        """`nn.Module.to`'s arguments; a device or dtype goes to `place` (so `.to(device, dtype)`
        moves the prompt embeddings too), a memory format to the networks."""
        device, dtype, _, memory_format = torch._C._nn._parse_to(*args, **kwargs)
        if memory_format is not None:
            super().to(memory_format=memory_format)
        if device is not None or dtype is not None:
            self.place(torch.device(device) if device is not None else self.device, dtype or self.dtype)
        return self

    def describe(self) -> dict[str, Any]:
        """What this teacher is, for outputs and manifests (weights, prompts, precision)."""
        return {"name": self.name}
