"""The Swin-transformer blocks of ResShift's Swin-UNet: (shifted-)window attention on NCHW features,
with the release's shift mask, and the `BasicLayer` that wraps a stack of them in 1×1 convs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .resshift_blocks import GroupNorm32


def relative_position_index(window: int) -> torch.Tensor:
    """(N, N) index into the (2w−1)² bias table of the offset between tokens i and j (row-major)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]) + (window - 1)
    return rel[0] * (2 * window - 1) + rel[1]


def release_shift_mask(height: int, width: int, window: int, shift: int) -> torch.Tensor:
    """The shifted-window mask (nW, N, N) exactly as the release computes it, which the checkpoints
    were trained with. Unlike Swin's, it labels the three shifted regions along rows only, and it
    flattens each window column-major while the tokens are row-major: token (r, c) of the window
    in window-row i gets the label of feature row i·window + c. Only the bottom row of windows is
    masked, by token column."""
    rows = torch.zeros(height)
    rows[height - window:height - shift] = 1
    rows[height - shift:] = 2
    labels = rows.view(height // window, 1, 1, window).expand(-1, width // window, window, -1)
    labels = labels.reshape(-1, window * window)
    return (labels[:, None, :] != labels[:, :, None]).float() * -100.0


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window: int, heads: int):
        super().__init__()
        self.heads = heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x: (B, nW, N, C) windows; mask: (nW, N, N) additive or None."""
        b, nw, n, c = x.shape
        q, k, v = self.qkv(x).view(b, nw, n, 3, self.heads, c // self.heads).permute(3, 0, 1, 4, 2, 5)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, self.heads).permute(2, 0, 1).to(q.dtype)
        if mask is not None:
            bias = bias + mask[:, None].to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # scale: head_dim ** -0.5, as released
        return self.proj(out.transpose(2, 3).reshape(b, nw, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    """A (shifted-)window attention block on NCHW features, GroupNorm instead of LayerNorm."""

    def __init__(self, dim: int, resolution: int, heads: int, window: int, shift: int, mlp_ratio: float):
        super().__init__()
        if resolution <= window:  # the release shrinks the window to the feature size and does not shift
            window, shift = resolution, 0
        self.window, self.shift, self.resolution = window, shift, resolution
        self.norm1 = GroupNorm32(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = GroupNorm32(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        if shift:
            self.register_buffer("attn_mask", release_shift_mask(resolution, resolution, window, shift))

    def _mask(self, h: int, w: int, device: torch.device) -> torch.Tensor | None:
        if not self.shift:
            return None
        if (h, w) == (self.resolution, self.resolution):
            return self.attn_mask
        return release_shift_mask(h, w, self.window, self.shift).to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        ws, s = self.window, self.shift
        y = self.norm1(x)
        if s:
            y = torch.roll(y, (-s, -s), dims=(2, 3))
        y = y.view(b, c, h // ws, ws, w // ws, ws).permute(0, 2, 4, 3, 5, 1).reshape(b, -1, ws * ws, c)
        y = self.attn(y, self._mask(h, w, x.device))
        y = y.view(b, h // ws, w // ws, ws, ws, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)
        if s:
            y = torch.roll(y, (s, s), dims=(2, 3))
        x = x + y
        return x + self.mlp(self.norm2(x))


class _Proj(nn.Module):
    """The release's PatchEmbed / PatchUnEmbed with patch size 1 and no norm: a 1×1 conv."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class BasicLayer(nn.Module):
    """1×1 conv into the embedding width, `depth` Swin blocks (every second one shifted), 1×1 conv back."""

    def __init__(self, channels: int, embed_dim: int, heads: int, window: int, depth: int, resolution: int,
                 mlp_ratio: float):
        super().__init__()
        self.patch_embed = _Proj(channels, embed_dim)
        self.blocks = nn.ModuleList([
            SwinBlock(embed_dim, resolution, heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio)
            for i in range(depth)
        ])
        self.patch_unembed = _Proj(embed_dim, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        for blk in self.blocks:
            x = blk(x)
        return self.patch_unembed(x)
