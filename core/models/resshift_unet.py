"""ResShift's Swin-UNet (`UNetModelSwin` of the ResShift release), the network of ResShift and TAD-SR.

Written here because no maintained library has it: diffusers' UNets have no Swin-transformer
blocks (they are in `resshift_swin.py`, the residual blocks in `resshift_blocks.py`, checkpoint
reading in `release_checkpoint.py`). Module and parameter names follow the release's module tree
(`input_blocks.1.0.in_layers.0`, `…blocks.1.attn.relative_position_bias_table`, the `attn_mask` /
`relative_position_index` buffers), so the released checkpoints load with `strict=True`.

The network predicts x0 from the (scaled) noisy latent concatenated with `lq`. In the release
`lq` is the LR image itself in [-1, 1]: its size equals the f4 latent's of the ×4 bicubic
upsample, so no feature extractor is built (`lq_size == image_size`). `image_size` is the
latent size the release built the blocks for: it fixes each Swin block's window (shrunk to the
feature size where that is smaller) and the `attn_mask` buffers; other sizes recompute the mask.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..errors import UserError
from .padding import crop_to, pad_to_multiple
from .release_checkpoint import fit_state, read_release_state
from .resshift_blocks import Downsample, GroupNorm32, ResBlock, TimestepSequential, Upsample
from .resshift_swin import BasicLayer

_FULL = dict(
    image_size=64, in_channels=3, lq_channels=3, out_channels=3, model_channels=160, channel_mult=(1, 2, 2, 4),
    num_res_blocks=2, attention_resolutions=(64, 32, 16, 8), swin_depth=2, swin_embed_dim=192, window_size=8,
    mlp_ratio=4.0, num_head_channels=32, use_scale_shift_norm=True,
)
# Two levels, one block per level, 4×4 windows: every kind of block (shifted windows included),
# small enough for tests.
_TINY = dict(
    image_size=16, in_channels=3, lq_channels=3, out_channels=3, model_channels=32, channel_mult=(1, 2),
    num_res_blocks=1, attention_resolutions=(16, 8), swin_depth=2, swin_embed_dim=32, window_size=4,
    mlp_ratio=2.0, num_head_channels=16, use_scale_shift_norm=True,
)
PRESETS = {"full": _FULL, "tiny": _TINY}


@dataclass(frozen=True)
class _Makers:
    """Builds the UNet's residual and Swin blocks from the few settings they share."""

    emb_dim: int
    scale_shift: bool
    swin_embed_dim: int
    heads: int
    window: int
    depth: int
    mlp_ratio: float

    def res(self, cin: int, cout: int) -> ResBlock:
        return ResBlock(cin, self.emb_dim, cout, self.scale_shift)

    def swin(self, ch: int, resolution: int) -> BasicLayer:
        return BasicLayer(ch, self.swin_embed_dim, self.heads, self.window, self.depth, resolution, self.mlp_ratio)


class ResShiftUNet(ModelMixin, ConfigMixin):
    """`forward(x, t, lq)`: x (N, in_channels, h, w) the scaled noisy latent, t (N,) step indices,
    lq (N, lq_channels, h, w) → the x0 prediction. Any h, w: reflect-padded inside to
    `size_multiple` and cropped back (the release pads the LR image to 64 before it starts)."""

    @register_to_config
    def __init__(
        self,
        image_size: int = 64,
        in_channels: int = 3,
        lq_channels: int = 3,
        out_channels: int = 3,
        model_channels: int = 160,
        channel_mult: Sequence[int] = (1, 2, 2, 4),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (64, 32, 16, 8),
        swin_depth: int = 2,
        swin_embed_dim: int = 192,
        window_size: int = 8,
        mlp_ratio: float = 4.0,
        num_head_channels: int = 32,
        use_scale_shift_norm: bool = True,
    ):
        super().__init__()
        emb_dim = model_channels * 4
        make = _Makers(emb_dim, use_scale_shift_norm, swin_embed_dim, swin_embed_dim // num_head_channels,
                       window_size, swin_depth, mlp_ratio)
        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        skips, ch, ds, windows = self._build_input_blocks(make)
        self.middle_block = TimestepSequential(make.res(ch, ch), make.swin(ch, ds), make.res(ch, ch))
        windows.append((min(window_size, ds), 2 ** (len(channel_mult) - 1)))
        ch = self._build_output_blocks(make, skips, ch, ds)
        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.Conv2d(ch, out_channels, 3, padding=1))
        self._multiple = math.lcm(2 ** (len(channel_mult) - 1), *(w * d for w, d in windows))

    def _build_input_blocks(self, make: _Makers) -> tuple[list[int], int, int, list[tuple[int, int]]]:
        """`input_blocks`; returns (each block's output width, for the skips; the last width; the
        feature size reached; (window, downsampling) of every Swin block, for `size_multiple`)."""
        cfg = self.config
        ch = cfg.model_channels * cfg.channel_mult[0]
        self.input_blocks = nn.ModuleList(
            [TimestepSequential(nn.Conv2d(cfg.in_channels + cfg.lq_channels, ch, 3, padding=1))])
        skips, ds, windows = [ch], cfg.image_size, []
        for level, mult in enumerate(cfg.channel_mult):
            for j in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [make.res(ch, cfg.model_channels * mult)]
                ch = cfg.model_channels * mult
                if ds in cfg.attention_resolutions and j == 0:
                    layers.append(make.swin(ch, ds))
                    windows.append((min(cfg.window_size, ds), 2 ** level))
                self.input_blocks.append(TimestepSequential(*layers))
                skips.append(ch)
            if level != len(cfg.channel_mult) - 1:
                self.input_blocks.append(TimestepSequential(Downsample(ch)))
                skips.append(ch)
                ds //= 2
        return skips, ch, ds, windows

    def _build_output_blocks(self, make: _Makers, skips: list[int], ch: int, ds: int) -> int:
        """`output_blocks`, consuming the skip widths; returns the last width."""
        cfg = self.config
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [make.res(ch + skips.pop(), cfg.model_channels * mult)]
                ch = cfg.model_channels * mult
                if ds in cfg.attention_resolutions and i == 0:
                    layers.append(make.swin(ch, ds))
                if level and i == cfg.num_res_blocks:
                    layers.append(Upsample(ch))
                    ds *= 2
                self.output_blocks.append(TimestepSequential(*layers))
        return ch

    @property
    def size_multiple(self) -> int:
        """Input sizes the blocks take unpadded: every Swin window tiles its level's feature map."""
        return self._multiple

    @classmethod
    def from_preset(cls, name: str) -> ResShiftUNet:
        if name not in PRESETS:
            raise UserError(f"unknown ResShift UNet preset {name!r} (known: {', '.join(PRESETS)})")
        return cls(**PRESETS[name])

    def down_path(self, x: torch.Tensor, t: torch.Tensor,
                  lq: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """The encoder half of `forward` on the input padded to `size_multiple`: (every input
        block's output, the middle block's output, the timestep embedding). TAD-SR's time-aware
        discriminator reads these multi-scale features of the frozen teacher."""
        dtype = self.out[2].weight.dtype
        emb = self.time_embed(get_timestep_embedding(t, self.config.model_channels, flip_sin_to_cos=True,
                                                     downscale_freq_shift=0).to(dtype))
        h, _ = pad_to_multiple(torch.cat([x, lq], dim=1).to(dtype), self.size_multiple)
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        return skips, self.middle_block(h, emb), emb

    def forward(self, x: torch.Tensor, t: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        skips, h, emb = self.down_path(x, t, lq)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return crop_to(self.out(h), tuple(x.shape[-2:]))


def load_release_unet(path: str | os.PathLike, preset: str = "full") -> ResShiftUNet:
    """A released ResShift / TAD-SR network checkpoint (`resshift_realsrx4_s15_v1.pth`, `TAD-SR.pth`)."""
    model = ResShiftUNet.from_preset(preset)
    fit_state(model, read_release_state(path, "ResShift UNet"), path, "ResShift UNet")
    return model.eval()
