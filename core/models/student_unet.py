"""The AdcSR student's UNet: SD's UNet without time embedding, text or cross-attention, built from
diffusers blocks under `UNet2DConditionModel`'s parameter names so teacher weights map by name."""

from __future__ import annotations

from typing import Sequence

import torch
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.downsampling import Downsample2D
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.upsampling import Upsample2D
from torch import nn

from ..errors import UserError
from .vae_decoder import checkpointed


def pick_groups(channels: int, candidates: Sequence[int]) -> int:
    """The first candidate group count that divides `channels` (the release's rule)."""
    for g in candidates:
        if channels % g == 0:
            return g
    raise UserError(f"no GroupNorm group count in {list(candidates)} divides {channels} channels")


class SelfAttnTransformer(nn.Module):
    """`Transformer2DModel` (linear projections) with self-attention only; same parameter names."""

    def __init__(self, channels: int, heads: int, head_dim: int, ff_inner: int, groups: int, upcast: bool):
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim, self.inner_dim = heads, head_dim, inner
        self.norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList(
            [
                BasicTransformerBlock(
                    inner, heads, head_dim, cross_attention_dim=None, activation_fn="geglu",
                    attention_bias=False, upcast_attention=upcast, ff_inner_dim=ff_inner,
                )
            ]
        )
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.norm(x).permute(0, 2, 3, 1).reshape(b, h * w, c)
        y = self.proj_in(y)
        for blk in self.transformer_blocks:
            y = blk(y)
        y = self.proj_out(y).reshape(b, h, w, c).permute(0, 3, 1, 2)
        return y + x


class _Block(nn.Module):
    """One UNet level: resnets, optional attentions, optional down/upsampler."""

    def __init__(self):
        super().__init__()
        self.resnets = nn.ModuleList()
        self.attentions = nn.ModuleList()


def _resnet(cin: int, cout: int, cand: Sequence[int], eps: float) -> ResnetBlock2D:
    return ResnetBlock2D(
        in_channels=cin, out_channels=cout, temb_channels=None, eps=eps,
        groups=pick_groups(cin, cand), groups_out=pick_groups(cout, cand), non_linearity="silu",
    )


class StudentUNet(nn.Module):
    """The SD UNet with no time embedding, no text and no cross-attention."""

    def __init__(self, cfg):
        super().__init__()
        C = list(cfg.block_out_channels)
        L, n = len(C), cfg.layers_per_block
        cand, eps = cfg.norm_group_candidates, cfg.norm_eps

        def attn(level: int) -> SelfAttnTransformer:
            return SelfAttnTransformer(
                C[level], cfg.num_attention_heads[level], cfg.attention_head_dim[level],
                cfg.ff_inner_dim[level], pick_groups(C[level], cand), cfg.upcast_attention,
            )

        self.conv_in = nn.Conv2d(cfg.in_channels * 4, C[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        for lvl in range(L):
            blk = _Block()
            for j in range(n):
                blk.resnets.append(_resnet(C[lvl - 1] if (j == 0 and lvl > 0) else C[lvl], C[lvl], cand, eps))
                if cfg.attention_levels[lvl]:
                    blk.attentions.append(attn(lvl))
            if lvl < L - 1:
                blk.downsamplers = nn.ModuleList([Downsample2D(C[lvl], use_conv=True, out_channels=C[lvl], padding=1, name="op")])
            self.down_blocks.append(blk)
        self.mid_block = _Block()
        self.mid_block.resnets.extend([_resnet(C[-1], C[-1], cand, eps) for _ in range(2)])
        self.mid_block.attentions.append(attn(L - 1))
        self.up_blocks = nn.ModuleList()
        prev = C[-1]
        for i in range(L):
            lvl = L - 1 - i
            out, skip_in = C[lvl], C[max(lvl - 1, 0)]
            blk = _Block()
            for j in range(n + 1):
                skip = skip_in if j == n else out
                blk.resnets.append(_resnet((prev if j == 0 else out) + skip, out, cand, eps))
                if cfg.attention_levels[lvl]:
                    blk.attentions.append(attn(lvl))
            if i < L - 1:
                blk.upsamplers = nn.ModuleList([Upsample2D(out, use_conv=True, out_channels=out)])
            self.up_blocks.append(blk)
            prev = out
        self.conv_norm_out = nn.GroupNorm(pick_groups(C[0], cand), C[0], eps=eps)
        self.conv_act = nn.SiLU()
        self.gradient_checkpointing = False  # set by diffusers' enable_gradient_checkpointing

    def _run(self, blk: _Block, x: torch.Tensor, i: int) -> torch.Tensor:
        x = checkpointed(self, blk.resnets[i], x, None)
        return checkpointed(self, blk.attentions[i], x) if len(blk.attentions) else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        skips = [x]
        for blk in self.down_blocks:
            for i in range(len(blk.resnets)):
                x = self._run(blk, x, i)
                skips.append(x)
            if hasattr(blk, "downsamplers"):
                x = blk.downsamplers[0](x)
                skips.append(x)
        x = self._run(self.mid_block, x, 0)
        x = checkpointed(self, self.mid_block.resnets[1], x, None)
        for blk in self.up_blocks:
            for i in range(len(blk.resnets)):
                x = self._run(blk, torch.cat([x, skips.pop()], dim=1), i)
            if hasattr(blk, "upsamplers"):
                x = blk.upsamplers[0](x)
        return self.conv_act(self.conv_norm_out(x))
