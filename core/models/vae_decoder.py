"""The pruned VAE decoder that stage 1 trains: diffusers' `Decoder` plus the VAE's `post_quant_conv`.

Its `conv_in` + `mid_block` (after `post_quant_conv`) define the feature space of stage 2; its
`mid_block` and up path initialise the student's decoder.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import Decoder
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from ..errors import UserError
from .loading import load_or_user_error
from .release_ratios import DECODER_RATIO
from .sd_configs import vae_config



def pruned_widths(widths: list[int], ratio: float, groups: int) -> list[int]:
    """Widths kept after pruning a `ratio` of channels, rounded to a multiple of `groups`."""
    out = []
    for c in widths:
        k = max(groups, int(round(c * (1.0 - ratio) / groups)) * groups)
        out.append(min(k, c))
    return out


class PrunedVAEDecoder(ModelMixin, ConfigMixin):
    """z_scaled (latent × scaling_factor) → RGB in [0, 1] (clamped in eval mode only, so training
    keeps gradients at the range ends)."""

    # diffusers' `enable_gradient_checkpointing` switches the inner `Decoder` on; its mid-block and
    # up blocks then run checkpointed (`run_mid_block`, `decode_up_path`)
    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        latent_channels: int = 4,
        block_out_channels: tuple[int, ...] = (64, 128, 256, 256),
        layers_per_block: int = 2,
        norm_num_groups: int = 32,
        scaling_factor: float = 0.18215,
        out_channels: int = 3,
    ):
        super().__init__()
        for c in block_out_channels:
            if c % norm_num_groups:
                raise UserError(f"decoder width {c} is not divisible by {norm_num_groups} norm groups")
        self.post_quant_conv = nn.Conv2d(latent_channels, latent_channels, 1)
        self.decoder = Decoder(
            in_channels=latent_channels,
            out_channels=out_channels,
            up_block_types=("UpDecoderBlock2D",) * len(block_out_channels),
            block_out_channels=tuple(block_out_channels),
            layers_per_block=layers_per_block,
            norm_num_groups=norm_num_groups,
            act_fn="silu",
            mid_block_add_attention=True,
        )

    @classmethod
    def from_pretrained(cls, path, **kw) -> "PrunedVAEDecoder":
        """diffusers' loader; a missing folder or weights that do not fit the config is a UserError."""
        return load_or_user_error(super().from_pretrained, "decoder", path, **kw)

    @property
    def feature_channels(self) -> int:
        """Channels of the decoder mid-block (the stage-2 feature space)."""
        return self.config.block_out_channels[-1]

    @property
    def upscale(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    def mid_features(self, z_scaled: torch.Tensor) -> torch.Tensor:
        """z_scaled → ÷ scaling_factor → post_quant_conv → conv_in → mid_block (released path)."""
        x = self.post_quant_conv(z_scaled / self.config.scaling_factor)
        return run_mid_block(self.decoder, self.decoder.conv_in(x))

    def decode_features(self, feats: torch.Tensor) -> torch.Tensor:
        """Mid-block output → up path → RGB in [-1, 1] (unclamped)."""
        return decode_up_path(self.decoder, feats)

    def forward(self, z_scaled: torch.Tensor) -> torch.Tensor:
        img = (self.decode_features(self.mid_features(z_scaled)) + 1) / 2
        return img if self.training else img.clamp(0, 1)

    @classmethod
    def config_from_vae(cls, vae_cfg: dict, ratio: float = DECODER_RATIO) -> dict:
        """Config of the decoder of an `AutoencoderKL` config with `ratio` of channels pruned."""
        groups = vae_cfg.get("norm_num_groups", 32)
        widths = pruned_widths(list(vae_cfg["block_out_channels"]), ratio, groups)
        if any(w % groups for w in widths) or any(w < groups for w in widths):
            raise UserError(f"decoder ratio {ratio} leaves widths {widths} not divisible by {groups} groups")
        return dict(
            latent_channels=vae_cfg.get("latent_channels", 4),
            block_out_channels=tuple(widths),
            layers_per_block=vae_cfg.get("layers_per_block", 2),
            norm_num_groups=groups,
            scaling_factor=vae_cfg.get("scaling_factor", 0.18215),
            out_channels=vae_cfg.get("out_channels", 3),
        )

    @classmethod
    def from_preset(cls, preset: str, ratio: float = DECODER_RATIO) -> "PrunedVAEDecoder":
        """The `sd21` (64/128/256/256) or `tiny` decoder, randomly initialised."""
        return cls(**cls.config_from_vae(vae_config(preset), ratio))


def checkpointed(owner: nn.Module, block: nn.Module, *args: torch.Tensor | None) -> torch.Tensor:
    """`block(*args)`; once diffusers' `enable_gradient_checkpointing` has set `owner`'s flag, through
    the checkpointing function it gave `owner` (activations recomputed in backward, not stored),
    as diffusers' own blocks do."""
    if torch.is_grad_enabled() and owner.gradient_checkpointing:
        return owner._gradient_checkpointing_func(block, *args)
    return block(*args)


def run_mid_block(decoder: Decoder, x: torch.Tensor) -> torch.Tensor:
    """The decoder's mid-block (no latent embeds), checkpointed as in diffusers' `Decoder.forward`."""
    return checkpointed(decoder, decoder.mid_block, x, None)


def decode_up_path(decoder: Decoder, feats: torch.Tensor) -> torch.Tensor:
    """The part of diffusers' `Decoder.forward` after the mid-block (no latent embeds)."""
    x = feats
    for block in decoder.up_blocks:
        x = checkpointed(decoder, block, x, None)
    x = decoder.conv_norm_out(x)
    x = decoder.conv_act(x)
    return decoder.conv_out(x)
