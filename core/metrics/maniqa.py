"""MANIQA (Yang et al., CVPRW 2022, NTIRE 2022 NR-IQA winner): ViT-B/8 features of blocks 7–10,
refined by transposed attention (TAB, over channels) and Swin blocks in two stages, scored per
patch with a learned per-patch weight: score = Σ w·s / Σ w.

Key names are pyiqa's `MANIQA_PIPAL-ae6d356b.pth` (timm's `vit.*` layout). The ViT's last two
blocks, final norm and classifier, and each Swin stage's unused `downsample` conv, are published
but never used, so they are not built (`ignore_keys`). The network sees 224×224 crops; where pyiqa
averages 20 random crops, this averages a fixed grid of crops covering the image (deterministic).
Images with a side under 224 are first enlarged (bilinear) so that side is 224, as pyiqa does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from .base import LearnedMetric, reduce
from .noref import check_images, grid_crops

_PIPAL_URL = "https://github.com/chaofengc/IQA-PyTorch/releases/download/v0.1-weights/MANIQA_PIPAL-ae6d356b.pth"
_SIZE, _PATCH, _DIM, _HEADS = 224, 8, 768, 12  # 224 / 8 = 28×28 tokens
_TAPS = (6, 7, 8, 9)  # ViT blocks whose outputs are concatenated
_WINDOW, _SWIN_HEADS, _SWIN_MLP, _SWIN_SCALE = 4, 4, 768, 0.13


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _ViTAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv, self.proj = nn.Linear(_DIM, 3 * _DIM), nn.Linear(_DIM, _DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, _HEADS, -1).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, t, c))


class _ViTBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(_DIM, eps=1e-6), nn.LayerNorm(_DIM, eps=1e-6)
        self.attn, self.mlp = _ViTAttention(), _Mlp(_DIM, 4 * _DIM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Conv2d(3, _DIM, _PATCH, _PATCH)


class _ViT(nn.Module):
    """timm's `vit_base_patch8_224` up to the last tapped block; returns the tapped token maps."""

    def __init__(self, side: int):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, _DIM))
        self.pos_embed = nn.Parameter(0.02 * torch.randn(1, side * side + 1, _DIM))
        self.patch_embed = _PatchEmbed()
        self.blocks = nn.Sequential(*(_ViTBlock() for _ in range(_TAPS[-1] + 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        taps = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in _TAPS:
                taps.append(x[:, 1:])
        return torch.cat(taps, 2)  # N, side², 4·768


class _TABlock(nn.Module):
    """Attention across channels: each channel's side²-long token map is one query/key/value."""

    def __init__(self, n: int):
        super().__init__()
        self.c_q, self.c_k, self.c_v = nn.Linear(n, n), nn.Linear(n, n), nn.Linear(n, n)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, n = x.shape
        attn = (self.c_q(x) @ self.c_k(x).transpose(-2, -1) * n**-0.5).softmax(-1)
        return (attn @ self.c_v(x)).transpose(1, 2).reshape(b, c, n) + x  # the published reshape


def _windows(x: torch.Tensor, w: int) -> torch.Tensor:
    b, h, wd, c = x.shape
    return x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, c)


def _unwindows(x: torch.Tensor, w: int, h: int, wd: int) -> torch.Tensor:
    b = x.shape[0] // ((h // w) * (wd // w))
    return x.view(b, h // w, wd // w, w, w, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, h, wd, -1)


class _WindowAttention(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        w = _WINDOW
        self.relative_position_bias_table = nn.Parameter(0.02 * torch.randn((2 * w - 1) ** 2, _SWIN_HEADS))
        coords = torch.stack(torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (w - 1)
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * w - 1) + rel[..., 1])
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        n, t, c = x.shape
        q, k, v = self.qkv(x).view(n, t, 3, _SWIN_HEADS, -1).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[self.relative_position_index].permute(2, 0, 1)[None]
        if mask is not None:  # (windows, t, t), repeated over the batch
            bias = (bias.unsqueeze(1) + mask[None, :, None]).view(-1, _SWIN_HEADS, t, t)
            bias = bias.repeat(n // mask.shape[0], 1, 1, 1)
        return self.proj(F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2).reshape(n, t, c))


class _SwinBlock(nn.Module):
    def __init__(self, dim: int, shift: int, side: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn, self.mlp = _WindowAttention(dim), _Mlp(dim, _SWIN_MLP)
        self.shift, self.side = shift, side
        mask = None
        if shift:  # regions that a cyclic shift brought together must not attend to each other
            img = torch.zeros(1, side, side, 1)
            cuts = (slice(0, -_WINDOW), slice(-_WINDOW, -shift), slice(-shift, None))
            for i, (hs, ws) in enumerate((hs, ws) for hs in cuts for ws in cuts):
                img[:, hs, ws] = i
            win = _windows(img, _WINDOW)[..., 0]
            mask = (win[:, None, :] - win[:, :, None]).ne(0).float() * -100.0
        self.register_buffer("attn_mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        side = self.side
        h = self.norm1(x).view(b, side, side, c)
        if self.shift:
            h = torch.roll(h, (-self.shift, -self.shift), (1, 2))
        h = _unwindows(self.attn(_windows(h, _WINDOW), self.attn_mask), _WINDOW, side, side)
        if self.shift:
            h = torch.roll(h, (self.shift, self.shift), (1, 2))
        x = x + h.reshape(b, t, c)
        return x + self.mlp(self.norm2(x))


class _SwinLayer(nn.Module):
    def __init__(self, dim: int, side: int):
        super().__init__()
        self.blocks = nn.ModuleList([_SwinBlock(dim, 0, side), _SwinBlock(dim, _WINDOW // 2, side)])
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        b, t, c = x.shape
        x = F.relu(self.conv(x.transpose(1, 2).unflatten(2, (self.blocks[0].side,) * 2)))
        return x.flatten(2).transpose(1, 2)


class _Swin(nn.Module):
    """MANIQA's Swin stage: two layers, each scaled by 0.13 onto a residual."""

    def __init__(self, dim: int, side: int):
        super().__init__()
        self.layers = nn.ModuleList([_SwinLayer(dim, side), _SwinLayer(dim, side)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        x = x.flatten(2).transpose(1, 2)
        for layer in self.layers:
            x = _SWIN_SCALE * layer(x) + x
        return x.transpose(1, 2).unflatten(2, size)


def _head(dim: int, last: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(0.1), nn.Linear(dim, 1), last)


class MANIQA(LearnedMetric):
    name = "maniqa"
    lower_is_better = False
    fetch = (
        f"pass pyiqa's MANIQA PIPAL weights ({_PIPAL_URL}) or one .safetensors saved by "
        "adcsr.core.metrics.save_weights"
    )
    ignore_keys = (
        *(f"vit.blocks.{i}." for i in range(_TAPS[-1] + 1, 12)), "vit.norm.", "vit.head.",
        "swintransformer1.downsample.", "swintransformer2.downsample.",
    )

    def __init__(self, img_size: int = _SIZE):
        """`img_size`: the crop size; the published network is 224 (smaller ones are for tests)."""
        super().__init__()
        if img_size % (_PATCH * _WINDOW) or img_size <= _PATCH * _WINDOW:
            raise UserError(f"img_size must be a multiple of {_PATCH * _WINDOW} above it, got {img_size}")
        self.size, side = img_size, img_size // _PATCH
        self.vit = _ViT(side)
        self.tablock1 = nn.ModuleList([_TABlock(side**2) for _ in range(2)])
        self.conv1 = nn.Conv2d(4 * _DIM, _DIM, 1)
        self.swintransformer1 = _Swin(_DIM, side)
        self.tablock2 = nn.ModuleList([_TABlock(side**2) for _ in range(2)])
        self.conv2 = nn.Conv2d(_DIM, _DIM // 2, 1)
        self.swintransformer2 = _Swin(_DIM // 2, side)
        self.fc_score = _head(_DIM // 2, nn.ReLU())
        self.fc_weight = _head(_DIM // 2, nn.Sigmoid())
        self.freeze()

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        """Scores of a batch of crops normalised to [-1, 1]."""
        grid = (self.size // _PATCH,) * 2
        h = self.vit(x).transpose(1, 2)  # N, 4·768, side²
        for tab in self.tablock1:
            h = tab(h)
        h = self.swintransformer1(self.conv1(h.unflatten(2, grid)))
        h = h.flatten(2)
        for tab in self.tablock2:
            h = tab(h)
        h = self.swintransformer2(self.conv2(h.unflatten(2, grid)))
        h = h.flatten(2).transpose(1, 2)
        s, w = self.fc_score(h)[..., 0], self.fc_weight(h)[..., 0]
        return (w * s).sum(-1) / (w.sum(-1) + 1e-8)

    def forward(self, x: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Quality (≥ 0, higher is better) of an NCHW [0, 1] batch: the mean over a grid of crops."""
        check_images(x)
        h, w = x.shape[-2:]
        if min(h, w) < self.size:
            f = self.size / min(h, w)
            x = F.interpolate(x, (max(self.size, round(h * f)), max(self.size, round(w * f))), mode="bilinear")
        crops = grid_crops(2 * x - 1, self.size)
        return reduce(self._score(crops.flatten(0, 1)).view(crops.shape[:2]).mean(1), reduction)
