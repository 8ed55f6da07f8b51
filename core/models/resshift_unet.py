"""ResShift's Swin-UNet (`UNetModelSwin` of the ResShift release), the network of ResShift and TAD-SR.

Written here because no maintained library has it: diffusers' UNets have no Swin-transformer
blocks. Module and parameter names follow the release's module tree (`input_blocks.1.0.in_layers.0`,
`…blocks.1.attn.relative_position_bias_table`, the `attn_mask` / `relative_position_index`
buffers), so the released checkpoints load with `strict=True`.

The network predicts x0 from the (scaled) noisy latent concatenated with `lq`. In the release
`lq` is the LR image itself in [-1, 1]: its size equals the f4 latent's of the ×4 bicubic
upsample, so no feature extractor is built (`lq_size == image_size`). `image_size` is the
latent size the release built the blocks for: it fixes each Swin block's window (shrunk to the
feature size where that is smaller) and the `attn_mask` buffers; other sizes recompute the mask.
"""

from __future__ import annotations

import math
import os
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import get_timestep_embedding
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..errors import UserError
from .padding import crop_to, pad_to_multiple

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


class GroupNorm32(nn.GroupNorm):
    """The release's `normalization`: 32 groups, computed in float32 whatever the input dtype."""

    def __init__(self, channels: int):
        super().__init__(32, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


class ResBlock(nn.Module):
    """The guided-diffusion residual block with a timestep embedding (scale-shift or additive)."""

    def __init__(self, channels: int, emb_channels: int, out_channels: int, scale_shift: bool):
        super().__init__()
        self.scale_shift = scale_shift
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels * (2 if scale_shift else 1)))
        self.out_layers = nn.Sequential(GroupNorm32(out_channels), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        nn.init.zeros_(self.out_layers[3].weight)  # the release's zero_module
        nn.init.zeros_(self.out_layers[3].bias)
        self.skip_connection = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        e = self.emb_layers(emb).type(h.dtype)[..., None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_layers[1:](self.out_layers[0](h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + e)
        return self.skip_connection(x) + h


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


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


class TimestepSequential(nn.Sequential):
    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


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
        heads = swin_embed_dim // num_head_channels

        def swin(ch: int, ds: int) -> BasicLayer:
            return BasicLayer(ch, swin_embed_dim, heads, window_size, swin_depth, ds, mlp_ratio)

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, emb_dim, cout, use_scale_shift_norm)

        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        ch = model_channels * channel_mult[0]
        self.input_blocks = nn.ModuleList([TimestepSequential(nn.Conv2d(in_channels + lq_channels, ch, 3, padding=1))])
        skips, ds = [ch], image_size
        windows = []  # (window, downsampling) of every Swin block, for size_multiple
        for level, mult in enumerate(channel_mult):
            for j in range(num_res_blocks):
                layers: list[nn.Module] = [res(ch, model_channels * mult)]
                ch = model_channels * mult
                if ds in attention_resolutions and j == 0:
                    layers.append(swin(ch, ds))
                    windows.append((min(window_size, ds), 2 ** level))
                self.input_blocks.append(TimestepSequential(*layers))
                skips.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(TimestepSequential(Downsample(ch)))
                skips.append(ch)
                ds //= 2
        self.middle_block = TimestepSequential(res(ch, ch), swin(ch, ds), res(ch, ch))
        windows.append((min(window_size, ds), 2 ** (len(channel_mult) - 1)))
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skips.pop(), model_channels * mult)]
                ch = model_channels * mult
                if ds in attention_resolutions and i == 0:
                    layers.append(swin(ch, ds))
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch))
                    ds *= 2
                self.output_blocks.append(TimestepSequential(*layers))
        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.Conv2d(ch, out_channels, 3, padding=1))
        self._multiple = math.lcm(2 ** (len(channel_mult) - 1), *(w * d for w, d in windows))

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


def read_release_state(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    """A state dict from a ResShift / TAD-SR release `.pth` (tensors only, `weights_only=True`).

    The releases save either the bare state dict (EMA weights) or a training checkpoint holding it
    under `state_dict`; trained under DDP or `torch.compile` its keys start `module.` /
    `_orig_mod.`, which the release's `reload_model` strips too."""
    if not os.path.isfile(path):
        raise UserError(f"{what} checkpoint not found: {path}")
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise UserError(f"cannot read {what} checkpoint {path}: {str(e).strip().splitlines()[0][:200]}") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path} is not a {what} checkpoint (no state dict of tensors)")
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in obj.items()}


def fit_state(model: nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike, what: str) -> None:
    """Load `state` into `model` with strict=True, or a one-line UserError naming the first misfit."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        first = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        raise UserError(f"{path} does not fit the {what}: {len(missing)} missing key(s), {len(extra)} unexpected; "
                        f"first {first}")
    bad = next((k for k in expected if state[k].shape != expected[k].shape), None)
    if bad is not None:
        raise UserError(f"{path} does not fit the {what}: {bad} has shape {tuple(state[bad].shape)}, "
                        f"the model's is {tuple(expected[bad].shape)} (another preset?)")
    model.load_state_dict(state, strict=True)


def load_release_unet(path: str | os.PathLike, preset: str = "full") -> ResShiftUNet:
    """A released ResShift / TAD-SR network checkpoint (`resshift_realsrx4_s15_v1.pth`, `TAD-SR.pth`)."""
    model = ResShiftUNet.from_preset(preset)
    fit_state(model, read_release_state(path, "ResShift UNet"), path, "ResShift UNet")
    return model.eval()
