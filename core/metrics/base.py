"""What every learned metric module shares: frozen eval-mode weights and a reduction over the batch."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError


class LearnedMetric(nn.Module):
    """A frozen network; subclasses set `name`, `lower_is_better` and `fetch` (what to download, from where)."""

    name: str = ""
    lower_is_better: bool = True
    fetch: str = ""
    ignore_keys: tuple[str, ...] = ()  # key prefixes of published files this module does not use

    def freeze(self) -> "LearnedMetric":
        self.requires_grad_(False)
        return self.eval()

    def train(self, mode: bool = True) -> "LearnedMetric":
        return super().train(False)  # never train-mode: dropout/BatchNorm stay as published


def check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    for t in (a, b):
        if not isinstance(t, torch.Tensor) or t.ndim != 4 or t.shape[1] != 3:
            raise UserError(f"expected NCHW RGB tensors, got {getattr(t, 'shape', type(t).__name__)}")
    if a.shape != b.shape:
        raise UserError(f"images differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")


def reduce(per_image: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_image.mean()
    if reduction == "none":
        return per_image
    raise UserError(f"reduction must be 'mean' or 'none', got {reduction!r}")
