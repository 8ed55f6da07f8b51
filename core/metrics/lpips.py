"""LPIPS v0.1 (Zhang et al. 2018): unit-normalised VGG16 / AlexNet features, squared differences
weighted per channel by learned 1×1 heads, averaged over space and summed over layers.

Key names match the published files: torchvision's backbone (`features.N.*`) and the LPIPS
heads (`lin0.model.1.weight` … in `lpips/weights/v0.1/{vgg,alex}.pth`).
"""

from __future__ import annotations

import torch
from torch import nn

from .backbones import TORCHVISION_ALEXNET, TORCHVISION_VGG16, alexnet_features, vgg16_features
from .base import LearnedMetric, check_pair, reduce

_LPIPS_URL = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/{}.pth"
# Input scaling of LPIPS (applied to images in [-1, 1]).
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_NETS = {
    # backbone: (factory, ReLU indices tapped, channels, torchvision weights)
    "vgg": (vgg16_features, (3, 8, 15, 22, 29), (64, 128, 256, 512, 512), TORCHVISION_VGG16),
    "alex": (alexnet_features, (1, 4, 7, 9, 11), (64, 192, 384, 256, 256), TORCHVISION_ALEXNET),
}


class _Head(nn.Module):
    """LPIPS's `NetLinLayer`: dropout (inactive at eval) then a bias-free 1×1 conv to one channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))
        # LPIPS heads are trained clamped to >= 0 (a distance); a fresh head starts in that set too.
        nn.init.uniform_(self.model[1].weight, 0.0, 1.0 / channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def fetch_hint(net: str) -> str:
    """What to download for LPIPS with the `net` backbone."""
    return (
        f"pass torchvision's {net} backbone ({_NETS[net][3]}) and the LPIPS heads "
        f"({_LPIPS_URL.format(net)}), or one .safetensors saved by adcsr.core.metrics.save_weights"
    )


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)


class LPIPS(LearnedMetric):
    lower_is_better = True
    ignore_keys = ("classifier.",)

    def __init__(self, net: str = "vgg"):
        super().__init__()
        factory, taps, channels, _ = _NETS[net]
        self.name = f"lpips-{net}" if net != "vgg" else "lpips"
        self.fetch = fetch_hint(net)
        self.features = factory()[: taps[-1] + 1]
        self.taps = taps
        for i, c in enumerate(channels):
            setattr(self, f"lin{i}", _Head(c))
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    def _feats(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = ((2 * x - 1) - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.taps:
                out.append(_unit(h))
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Distance of two NCHW [0, 1] batches: per image with reduction='none', else the batch mean."""
        check_pair(a, b)
        total = a.new_zeros(a.shape[0])
        for i, (fa, fb) in enumerate(zip(self._feats(a), self._feats(b))):
            total = total + getattr(self, f"lin{i}")((fa - fb) ** 2).mean((1, 2, 3))
        return reduce(total, reduction)
