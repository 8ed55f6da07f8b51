"""MUSIQ (Ke et al., ICCV 2021): a transformer over 32×32 patches of a multi-scale pyramid — the
image resized (aspect kept) to longer sides 224 and 384, plus the native resolution — with
hash-based 10×10 spatial embeddings and per-scale embeddings. Each patch is embedded by a
weight-standardised ResNet root and one bottleneck. Output: the predicted mean opinion score of
the KonIQ-10k model (≈ 0–100, higher is better).

Key names are pyiqa's converted checkpoints (`musiq_koniq_ckpt-e95806b9.pth`); the resize is
pyiqa's bicubic one (the TensorFlow original uses a Gaussian kernel).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import LearnedMetric, reduce
from .noref import check_images

_KONIQ_URL = "https://github.com/chaofengc/IQA-PyTorch/releases/download/v0.1-weights/musiq_koniq_ckpt-e95806b9.pth"
_PATCH, _GRID, _LONGER_SIDES = 32, 10, (224, 384)
_DIM, _MLP, _HEADS, _LAYERS = 384, 1152, 6, 14


def _same_pad(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """TensorFlow 'SAME' padding (extra pixel bottom/right)."""
    pads = []
    for size in (x.shape[-1], x.shape[-2]):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class _StdConv(nn.Conv2d):
    """Weight-standardised convolution (BiT) with SAME padding."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return F.conv2d(_same_pad(x, self.kernel_size[0], self.stride[0]), w, None, self.stride)


class _Bottleneck(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1, self.gn1 = _StdConv(cin, cin, 1, bias=False), nn.GroupNorm(32, cin, eps=1e-4)
        self.conv2, self.gn2 = _StdConv(cin, cin, 3, bias=False), nn.GroupNorm(32, cin, eps=1e-4)
        self.conv3, self.gn3 = _StdConv(cin, cout, 1, bias=False), nn.GroupNorm(32, cout, eps=1e-4)
        self.conv_proj, self.gn_proj = _StdConv(cin, cout, 1, bias=False), nn.GroupNorm(32, cout, eps=1e-4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.gn1(self.conv1(x)))
        h = F.relu(self.gn2(self.conv2(h)))
        return F.relu(self.gn3(self.conv3(h)) + self.gn_proj(self.conv_proj(x)))


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.query, self.key, self.value, self.out = (nn.Linear(_DIM, _DIM) for _ in range(4))

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        q, k, v = (f(x).view(n, t, _HEADS, -1).transpose(1, 2) for f in (self.query, self.key, self.value))
        return self.out(F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2).reshape(n, t, c))


class _Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(_DIM, _MLP), nn.Linear(_MLP, _DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(_DIM, eps=1e-6), nn.LayerNorm(_DIM, eps=1e-6)
        self.attention, self.mlp = _Attention(), _Mlp()

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), bias)
        return x + self.mlp(self.norm2(x))


class _PosEmb(nn.Module):
    def __init__(self):
        super().__init__()
        self.position_emb = nn.Parameter(0.02 * torch.randn(1, _GRID * _GRID, _DIM))


class _ScaleEmb(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale_emb = nn.Parameter(0.02 * torch.randn(len(_LONGER_SIDES) + 1, _DIM))


class _Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.posembed_input, self.scaleembed_input = _PosEmb(), _ScaleEmb()
        self.cls = nn.Parameter(torch.zeros(1, 1, _DIM))
        self.encoder_norm = nn.LayerNorm(_DIM, eps=1e-6)
        self.transformer = nn.ModuleDict({f"encoderblock_{i}": _Block() for i in range(_LAYERS)})

    def forward(self, x: torch.Tensor, pos: torch.Tensor, scale: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.posembed_input.position_emb[0, pos] + self.scaleembed_input.scale_emb[scale]
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1)
        keep = torch.cat([mask.new_ones(x.shape[0], 1), mask], 1)
        # pyiqa/the original mask padded query *and* key positions with a -1000 logit.
        bias = torch.where(keep[:, None, :, None] & keep[:, None, None, :], 0.0, -1e3).to(x.dtype)
        for block in self.transformer.values():
            x = block(x, bias)
        return self.encoder_norm(x)


def _grid_index(count_h: int, count_w: int) -> torch.Tensor:
    """Hash-based position of each patch: its row and column scaled onto the 10×10 grid (nearest)."""
    grid = torch.arange(_GRID, dtype=torch.float32)[None, None]
    rows = F.interpolate(grid, size=count_h, mode="nearest")[0, 0].long()
    cols = F.interpolate(grid, size=count_w, mode="nearest")[0, 0].long()
    return (rows[:, None] * _GRID + cols[None, :]).flatten()


def multiscale_patches(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Patches (N, T, 3, 32, 32) of every scale, with spatial index, scale index and validity mask (T,)."""
    h, w = x.shape[-2:]
    patches, pos, scale, mask = [], [], [], []
    sizes = [(round(h * s / max(h, w)), round(w * s / max(h, w)), math.ceil(s / _PATCH) ** 2) for s in _LONGER_SIDES]
    sizes.append((h, w, None))  # native resolution, every patch
    for i, (rh, rw, max_len) in enumerate(sizes):
        img = x if max_len is None else F.interpolate(x, (rh, rw), mode="bicubic")
        p = F.unfold(_same_pad(img, _PATCH, _PATCH), _PATCH, stride=_PATCH)  # N, 3·32·32, L
        ids = _grid_index(math.ceil(rh / _PATCH), math.ceil(rw / _PATCH))
        valid = torch.ones(p.shape[-1], dtype=torch.bool)
        if max_len is not None:  # pad with masked zeros (or cut) to the scale's fixed length
            extra = max(max_len - p.shape[-1], 0)
            p = F.pad(p, (0, extra))[..., :max_len]
            ids, valid = F.pad(ids, (0, extra))[:max_len], F.pad(valid, (0, extra))[:max_len]
        patches.append(p)
        pos.append(ids)
        scale.append(torch.full_like(ids, i))
        mask.append(valid)
    p = torch.cat(patches, -1).transpose(1, 2).reshape(x.shape[0], -1, 3, _PATCH, _PATCH)
    return p, torch.cat(pos), torch.cat(scale), torch.cat(mask)


class MUSIQ(LearnedMetric):
    name = "musiq"
    lower_is_better = False
    fetch = (
        f"pass pyiqa's MUSIQ KonIQ weights ({_KONIQ_URL}) or one .safetensors saved by "
        "adcsr.core.metrics.save_weights"
    )

    def __init__(self):
        super().__init__()
        self.conv_root, self.gn_root = _StdConv(3, 64, 7, 2, bias=False), nn.GroupNorm(32, 64, eps=1e-6)
        self.block1 = _Bottleneck(64, 256)
        self.embedding = nn.Linear(256 * (_PATCH // 4) ** 2, _DIM)
        self.transformer_encoder = _Encoder()
        self.head = nn.Linear(_DIM, 1)
        self.freeze()

    def forward(self, x: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Predicted MOS (higher is better) of an NCHW [0, 1] batch."""
        check_images(x)
        patches, pos, scale, mask = multiscale_patches(2 * x - 1)
        n, t = patches.shape[:2]
        h = F.relu(self.gn_root(self.conv_root(patches.flatten(0, 1))))
        h = self.block1(F.max_pool2d(_same_pad(h, 3, 2), 3, 2))
        h = self.embedding(h.permute(0, 2, 3, 1).reshape(n, t, -1))  # TensorFlow's channels-last order
        h = self.transformer_encoder(h, pos, scale, mask.expand(n, -1))
        return reduce(self.head(h[:, 0])[:, 0], reduction)
