"""Held-out figures the stages report."""

from __future__ import annotations

import torch


def mean_psnr_y(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean PSNR on luma (Y) of two NCHW [0, 1] batches (`adcsr.core.metrics.psnr_y`)."""
    from adcsr.core.metrics import psnr_y

    return float(torch.as_tensor(psnr_y(a.clamp(0, 1), b.clamp(0, 1))).float().mean())
