"""DISTS (Ding et al. 2020) and the edge-aware EA-DISTS of DFOSD.

DISTS: a VGG16 whose max-pools are L2 pools (Hanning 3×3, stride 2); at the input and the five
stage outputs, per-channel texture (mean) and structure (variance/covariance) similarities are
weighted by learned α, β (normalised to sum to 1): score = 1 − Σ α·S1 + β·S2.
EA-DISTS(x̂, x) = DISTS(x̂, x) + DISTS(Sobel(x̂), Sobel(x)), Sobel = per-channel gradient magnitude.

Key names: torchvision's VGG16 (`features.N.*`) and DISTS's `weights.pt` (`alpha`, `beta`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import TORCHVISION_VGG16, vgg16_features
from .base import LearnedMetric, check_pair, reduce

_DISTS_URL = "https://github.com/dingkeyan93/DISTS/raw/master/DISTS_pytorch/weights.pt"
_CHANNELS = (3, 64, 128, 256, 512, 512)
_STAGE_ENDS = (4, 9, 16, 23, 30)  # features[prev:end] is one stage (pool first, except stage 1)
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
_C1 = _C2 = 1e-6


class L2Pool(nn.Module):
    """sqrt(Hanning-blur(x²)) with stride 2: DISTS's alias-free replacement of max pooling."""

    def __init__(self, channels: int):
        super().__init__()
        a = torch.hann_window(5, periodic=False, dtype=torch.float64)[1:-1]
        g = (a[:, None] * a[None, :]) / (a.sum() ** 2)
        self.register_buffer("filter", g.float().expand(channels, 1, 3, 3).contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(x * x, self.filter, stride=2, padding=1, groups=x.shape[1])
        return (out + 1e-12).sqrt()


class DISTS(LearnedMetric):
    name = "dists"
    lower_is_better = True
    ignore_keys = ("classifier.",)
    fetch = (
        f"pass torchvision's VGG16 ({TORCHVISION_VGG16}) and DISTS's alpha/beta ({_DISTS_URL}), "
        "or one .safetensors saved by adcsr.core.metrics.save_weights"
    )

    def __init__(self):
        super().__init__()
        self.features = vgg16_features(pool=L2Pool)[: _STAGE_ENDS[-1]]
        n = sum(_CHANNELS)
        self.alpha = nn.Parameter(torch.randn(1, n, 1, 1) * 0.01 + 0.1)
        self.beta = nn.Parameter(torch.randn(1, n, 1, 1) * 0.01 + 0.1)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    def _feats(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, h, start = [x], (x - self.mean) / self.std, 0
        for end in _STAGE_ENDS:
            h = self.features[start:end](h)
            out.append(h)
            start = end
        return out

    def forward(self, a: torch.Tensor, b: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """1 − similarity of two NCHW [0, 1] batches (0 for identical images)."""
        check_pair(a, b)
        w = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / w, _CHANNELS, dim=1)
        betas = torch.split(self.beta / w, _CHANNELS, dim=1)
        sim = a.new_zeros(a.shape[0])
        for fa, fb, al, be in zip(self._feats(a), self._feats(b), alphas, betas):
            ma, mb = fa.mean((2, 3), keepdim=True), fb.mean((2, 3), keepdim=True)
            s1 = (2 * ma * mb + _C1) / (ma**2 + mb**2 + _C1)
            va = ((fa - ma) ** 2).mean((2, 3), keepdim=True)
            vb = ((fb - mb) ** 2).mean((2, 3), keepdim=True)
            cov = (fa * fb).mean((2, 3), keepdim=True) - ma * mb
            s2 = (2 * cov + _C2) / (va + vb + _C2)
            sim = sim + (al * s1 + be * s2).sum((1, 2, 3))
        return reduce(1 - sim, reduction)


def sobel(x: torch.Tensor) -> torch.Tensor:
    """Per-channel Sobel gradient magnitude (replicate border; +1e-12 under the root keeps it differentiable)."""
    gx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=x.dtype, device=x.device)
    k = torch.stack([gx, gx.T])[:, None].repeat(x.shape[1], 1, 1, 1)  # (2C, 1, 3, 3)
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=x.shape[1])
    g = g.view(x.shape[0], x.shape[1], 2, *x.shape[-2:])
    return (g.pow(2).sum(2) + 1e-12).sqrt()


class EADISTS(DISTS):
    name = "ea-dists"

    def forward(self, a: torch.Tensor, b: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        check_pair(a, b)
        per = super().forward(a, b, "none") + super().forward(sobel(a), sobel(b), "none")
        return reduce(per, reduction)
