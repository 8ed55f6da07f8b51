"""FID (Heusel et al. 2017) with the TensorFlow-FID Inception-v3 (pool3, 2048-d), as pytorch-fid.

The network is Inception-v3 with the FID variant's quirks: average pools that exclude padding and
a max pool in the last block's pool branch. Inputs are resized to 299×299 (bilinear) and mapped
to [-1, 1]. Key names match pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (its `fc.*`
1008-way classifier is not used). FID between two sets = ‖μ1−μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1Σ2)^½).
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .base import LearnedMetric

_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"


class _Conv(nn.Module):
    """Inception's BasicConv2d: bias-free conv, BatchNorm (eps 1e-3), ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)
        # He init keeps a fresh (untrained) network's activations at scale through ~100 layers;
        # PyTorch's default shrinks them into denormals, which is slow and useless for checks.
        nn.init.kaiming_normal_(self.conv.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class _BlockA(nn.Module):
    def __init__(self, cin: int, pool: int):
        super().__init__()
        self.branch1x1 = _Conv(cin, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = _Conv(cin, 48, 1), _Conv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, padding=1)
        self.branch_pool = _Conv(cin, pool, 1)

    def forward(self, x):
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg(x)),
        ], 1)


class _BlockB(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = _Conv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = _Conv(cin, 64, 1)
        self.branch3x3dbl_2 = _Conv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = _Conv(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, 3, stride=2),
        ], 1)


class _BlockC(nn.Module):
    def __init__(self, cin: int, c7: int):
        super().__init__()
        self.branch1x1 = _Conv(cin, 192, 1)
        self.branch7x7_1 = _Conv(cin, c7, 1)
        self.branch7x7_2 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = _Conv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = _Conv(cin, c7, 1)
        self.branch7x7dbl_2 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = _Conv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = _Conv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = _Conv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x):
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            d,
            self.branch_pool(_avg(x)),
        ], 1)


class _BlockD(nn.Module):
    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = _Conv(cin, 192, 1), _Conv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = _Conv(cin, 192, 1)
        self.branch7x7x3_2 = _Conv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = _Conv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = _Conv(192, 192, 3, stride=2)

    def forward(self, x):
        b = x
        for i in range(1, 5):
            b = getattr(self, f"branch7x7x3_{i}")(b)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b, F.max_pool2d(x, 3, stride=2)], 1)


class _BlockE(nn.Module):
    """`max_pool=True` is FID's Mixed_7c quirk (TensorFlow graph used a max pool there)."""

    def __init__(self, cin: int, max_pool: bool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = _Conv(cin, 320, 1)
        self.branch3x3_1 = _Conv(cin, 384, 1)
        self.branch3x3_2a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = _Conv(cin, 448, 1)
        self.branch3x3dbl_2 = _Conv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _Conv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = _Conv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = _Conv(cin, 192, 1)

    def forward(self, x):
        s = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(s), self.branch3x3_2b(s),
            self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d),
            self.branch_pool(pooled),
        ], 1)


def _trace_sqrt_product(fa: np.ndarray, fb: np.ndarray) -> float:
    """tr sqrtm(Σa Σb) of the two feature sets' covariances.

    With fewer images than feature dimensions the covariances are low-rank, Σa = AᵀA/(na−1) with
    A the centred features, and Σa Σb has the same non-zero eigenvalues as the small symmetric
    M = (A Bᵀ)(B Aᵀ)/((na−1)(nb−1)); sqrtm of M is exact and takes milliseconds instead of
    minutes for a 2048×2048 product.
    """
    a, b = fa - fa.mean(0), fb - fb.mean(0)
    na, nb = len(fa) - 1, len(fb) - 1
    if min(na, nb) < fa.shape[1]:
        ab = a @ b.T
        prod = ab @ ab.T / (na * nb) if na <= nb else ab.T @ ab / (na * nb)
    else:
        prod = (a.T @ a / na) @ (b.T @ b / nb)
    with warnings.catch_warnings():  # a product of sample covariances is singular by nature
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(prod)
    if not np.isfinite(root).all():  # pytorch-fid's retry: nudge a singular product
        root = scipy.linalg.sqrtm(prod + np.eye(len(prod)) * 1e-6)
    return float(np.trace(np.real(root)))


def fid_from_features(fa: np.ndarray, fb: np.ndarray) -> float:
    """Fréchet distance ‖μa−μb‖² + tr Σa + tr Σb − 2 tr sqrtm(Σa Σb) of two (N, D) feature sets."""
    fa, fb = np.asarray(fa, np.float64), np.asarray(fb, np.float64)
    if len(fa) < 2 or len(fb) < 2:
        raise UserError(f"FID needs at least two images per set, got {len(fa)} and {len(fb)}")
    diff = fa.mean(0) - fb.mean(0)
    tr_a, tr_b = np.var(fa, axis=0, ddof=1).sum(), np.var(fb, axis=0, ddof=1).sum()
    return float(diff @ diff + tr_a + tr_b - 2 * _trace_sqrt_product(fa, fb))


class FID(LearnedMetric):
    name = "fid"
    lower_is_better = True
    ignore_keys = ("fc.",)
    fetch = f"pass pytorch-fid's Inception weights ({_URL}) or one .safetensors saved by adcsr.core.metrics.save_weights"

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = _Conv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = _Conv(32, 32, 3)
        self.Conv2d_2b_3x3 = _Conv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = _Conv(64, 80, 1)
        self.Conv2d_4a_3x3 = _Conv(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = _BlockA(192, 32), _BlockA(256, 64), _BlockA(288, 64)
        self.Mixed_6a = _BlockB(288)
        self.Mixed_6b, self.Mixed_6c = _BlockC(768, 128), _BlockC(768, 160)
        self.Mixed_6d, self.Mixed_6e = _BlockC(768, 160), _BlockC(768, 192)
        self.Mixed_7a = _BlockD(768)
        self.Mixed_7b, self.Mixed_7c = _BlockE(1280, max_pool=False), _BlockE(2048, max_pool=True)
        self.freeze()

    @torch.no_grad()
    def features(self, img: torch.Tensor, batch: int = 16) -> torch.Tensor:
        """(N, 2048) pool3 features of NCHW [0, 1] images."""
        if not isinstance(img, torch.Tensor) or img.ndim != 4 or img.shape[1] != 3:
            raise UserError(f"expected NCHW RGB tensors, got {getattr(img, 'shape', type(img).__name__)}")
        return torch.cat([self._pool3(img[i:i + batch]) for i in range(0, len(img), batch)])

    def _pool3(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean((2, 3))

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> float:
        """FID between the image sets a and b (each at least two images; published FIDs use thousands)."""
        if len(a) < 2 or len(b) < 2:
            raise UserError(f"FID needs at least two images per set, got {len(a)} and {len(b)}")
        return fid_from_features(self.features(a).double().numpy(), self.features(b).double().numpy())
