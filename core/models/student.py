"""The AdcSR student: PixelUnshuffle(2) → time/text-free SD UNet → link conv → VAE decoder mid + up.

With `lr_skip` (not in the release) the up path's output is a residual over the bicubically
upsampled LR (`lr_upsample.py`): for a student whose decoder is not SD's pretrained one, the LR's
colours and low frequencies then reach the output exactly from the first step.

Built from diffusers blocks (the UNet's, in `student_unet.py`: ResnetBlock2D without time
embedding, BasicTransformerBlock without cross-attention, Downsample2D/Upsample2D; and the VAE
`Decoder`). Every width, head count and head size is in the config, so a pruned student is
rebuilt from its config alone. Parameter names follow `UNet2DConditionModel` / `Decoder`, so
teacher weights map by name (see compress/).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import Decoder
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..errors import UserError
from ..upscaler import Upscaler
from .loading import load_or_user_error
from .lr_upsample import BicubicUpsample
from .padding import crop_to, pad_to_multiple
from .student_unet import StudentUNet
from .vae_decoder import PrunedVAEDecoder, decode_up_path, run_mid_block

DEFAULT_GROUP_CANDIDATES = (32, 24, 16, 8, 4, 2, 1)

# Full-size AdcSR (FACTS §1): SD2.1-base UNet at 75% channels, heads kept (head_dim 64 → 48),
# VAE decoder at 50%.
_SD21 = dict(
    block_out_channels=(240, 480, 960, 960),
    attention_levels=(True, True, True, False),
    num_attention_heads=(5, 10, 20, 20),
    attention_head_dim=(48, 48, 48, 48),
    ff_inner_dim=(960, 1920, 3840, 3840),
    layers_per_block=2,
    norm_group_candidates=DEFAULT_GROUP_CANDIDATES,
    decoder_block_out_channels=(64, 128, 256, 256),
    decoder_layers_per_block=2,
    decoder_norm_num_groups=32,
)

# What `compress.from_teacher` gives for the `tiny` teacher at the default ratios: the same levels,
# attention levels and depths as `_SD21`.
_TINY = dict(
    _SD21,
    block_out_channels=(24, 48, 96, 96),
    num_attention_heads=(2, 2, 4, 4),
    attention_head_dim=(12, 24, 24, 24),
    ff_inner_dim=(96, 192, 384, 384),
    norm_group_candidates=(8, 6, 4, 2, 1),
    decoder_block_out_channels=(16, 32, 32, 32),
    decoder_norm_num_groups=8,
)

# The smallest student of the same class (57 k parameters: one attention level, one block per
# level, an 8-channel decoder): for tests and benchmarks that export or fault an export many times.
_MICRO = dict(
    block_out_channels=(8, 16),
    attention_levels=(True, False),
    num_attention_heads=(1, 1),
    attention_head_dim=(8, 16),
    ff_inner_dim=(16, 32),
    layers_per_block=1,
    norm_group_candidates=(4, 2, 1),
    decoder_block_out_channels=(8, 8, 8, 8),
    decoder_layers_per_block=1,
    decoder_norm_num_groups=4,
    lr_skip=True,
)

PRESETS = {"sd21": _SD21, "tiny": _TINY, "micro": _MICRO}


class AdcSRStudent(Upscaler, ModelMixin, ConfigMixin):  # Upscaler first: nn.Module before ConfigMixin in the MRO
    """LR in [0, 1] (any size) → SR ×4 in [0, 1] (clamped in eval mode only)."""

    #: The release matches the SR's per-channel mean and std to the LR image's after inference;
    #: wherever the student runs for a user (upscale, the report, its artifacts) this is the default.
    default_color_fix = "adain"

    # diffusers' `enable_gradient_checkpointing` switches the UNet and the decoder on: every UNet
    # resnet and attention, the decoder mid-block and its up blocks then run checkpointed
    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        block_out_channels: tuple[int, ...] = _SD21["block_out_channels"],
        attention_levels: tuple[bool, ...] = _SD21["attention_levels"],
        num_attention_heads: tuple[int, ...] = _SD21["num_attention_heads"],
        attention_head_dim: tuple[int, ...] = _SD21["attention_head_dim"],
        ff_inner_dim: tuple[int, ...] = _SD21["ff_inner_dim"],
        layers_per_block: int = 2,
        norm_group_candidates: tuple[int, ...] = DEFAULT_GROUP_CANDIDATES,
        norm_eps: float = 1e-5,
        upcast_attention: bool = False,
        decoder_block_out_channels: tuple[int, ...] = _SD21["decoder_block_out_channels"],
        decoder_layers_per_block: int = 2,
        decoder_norm_num_groups: int = 32,
        lr_skip: bool = False,
    ):
        super().__init__()
        per_level = (attention_levels, num_attention_heads, attention_head_dim, ff_inner_dim)
        if any(len(v) != len(block_out_channels) for v in per_level):
            raise UserError("student config: per-level lists must all have one entry per UNet level")
        self.unet = StudentUNet(self.config)
        mid_ch = decoder_block_out_channels[-1]
        self.link = nn.Conv2d(block_out_channels[0], mid_ch, 3, padding=1)
        self.decoder = Decoder(
            in_channels=4, out_channels=out_channels,
            up_block_types=("UpDecoderBlock2D",) * len(decoder_block_out_channels),
            block_out_channels=tuple(decoder_block_out_channels), layers_per_block=decoder_layers_per_block,
            norm_num_groups=decoder_norm_num_groups, act_fn="silu", mid_block_add_attention=True,
        )
        # The link feeds the mid-block directly: the decoder's conv_in is unused (FACTS §1).
        self.decoder.conv_in = nn.Identity()
        if lr_skip:
            if in_channels != out_channels:
                raise UserError("student config: lr_skip needs as many output channels as input channels")
            self.lr_upsample = BicubicUpsample(in_channels, self.scale)

    @classmethod
    def from_preset(cls, name: str) -> "AdcSRStudent":
        if name not in PRESETS:
            raise UserError(f"unknown student preset {name!r} (known: {', '.join(PRESETS)})")
        return cls(**PRESETS[name])

    @classmethod
    def from_release(cls, net, decoder) -> "AdcSRStudent":
        """The AdcSR authors' released model: `net_params_200.pkl` (the trained body) and
        `halfDecoder.ckpt` (the decoder's up path), mapped key by key (see `release.py`)."""
        from .release import load_release

        return load_release(net, decoder)

    @classmethod
    def from_pretrained(cls, path, **kw) -> "AdcSRStudent":
        """diffusers' loader; a missing folder or weights that do not fit the config is a UserError."""
        return load_or_user_error(super().from_pretrained, "student", path, **kw)

    @property
    def size_multiple(self) -> int:
        """LR sides are padded to this: PixelUnshuffle(2) then one stride-2 per UNet level but the last."""
        return 2 * 2 ** (len(self.config.block_out_channels) - 1)

    @property
    def feature_channels(self) -> int:
        return self.config.decoder_block_out_channels[-1]

    @property
    def scale(self) -> int:
        return 2 ** (len(self.config.decoder_block_out_channels) - 1) // 2

    def features(self, lr: torch.Tensor) -> torch.Tensor:
        """Decoder mid-block output at (padded LR)/2: the stage-2 distillation space."""
        if lr.dim() != 4 or lr.shape[1] != self.config.in_channels:
            raise UserError(f"expected LR images of shape (N, {self.config.in_channels}, H, W), got {tuple(lr.shape)}")
        x, _ = pad_to_multiple(lr * 2 - 1, self.size_multiple)
        x = self.unet(F.pixel_unshuffle(x, 2))
        return run_mid_block(self.decoder, self.link(x))

    def decode(self, features: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        """Features of `lr` → SR in [0, 1], the padding cropped away. The up path's output (in
        [-1, 1]) is halved onto mid-grey, or with `lr_skip` onto the bicubically upsampled LR."""
        img = crop_to(decode_up_path(self.decoder, features), tuple(lr.shape[-2:]), self.scale) / 2
        if self.config.lr_skip:
            img = img + self.lr_upsample(lr)
        else:
            img = img + 0.5
        return img if self.training else img.clamp(0, 1)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.decode(self.features(lr), lr)

    def describe(self) -> dict:
        """The `Upscaler` description: where the weights came from (a `save_pretrained` folder) and the shape."""
        folder = self.config.get("_name_or_path")
        return {"name": "student", **({"folder": str(folder)} if folder else {}),
                "widths": list(self.config.block_out_channels), "lr_skip": bool(self.config.lr_skip)}

    def with_lr_skip(self) -> "AdcSRStudent":
        """This student with `lr_skip` on: same weights, the decoder's output conv zeroed so that
        it starts as the bicubic upsampling of its input (its up path learns the residual)."""
        settings = {k: v for k, v in self.config.items() if not k.startswith("_")}
        skip = type(self)(**{**settings, "lr_skip": True})
        skip.load_state_dict(self.state_dict())
        nn.init.zeros_(skip.decoder.conv_out.weight)
        nn.init.zeros_(skip.decoder.conv_out.bias)
        return skip

    def stage2_parameters(self) -> list[nn.Parameter]:
        """What stage 2 trains: UNet + link + decoder mid-block (the up path stays frozen)."""
        return [*self.unet.parameters(), *self.link.parameters(), *self.decoder.mid_block.parameters()]

    def init_decoder_from(self, dec: PrunedVAEDecoder) -> None:
        """Copy the mid-block and up path (and output convs) of a stage-1 decoder."""
        src = {k: v for k, v in dec.decoder.state_dict().items() if not k.startswith("conv_in.")}
        dst = self.decoder.state_dict()
        bad = [k for k in dst if k not in src or src[k].shape != dst[k].shape]
        if bad or len(src) != len(dst):
            raise UserError(f"decoder does not fit the student (first mismatch: {(bad or ['extra keys'])[0]})")
        self.decoder.load_state_dict(src)
