"""The stage-2 distillation space: the pruned decoder's mid-block output (FACTS §1).

Real features come from the frozen SD VAE encoder (latent-distribution mean × scaling factor);
teacher latents go the same way from `from_latent`. Everything here is frozen.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import UserError
from .vae_decoder import PrunedVAEDecoder


class FeatureSpace(nn.Module):
    """Frozen VAE encoder side (optional) + pruned decoder head (post_quant_conv, conv_in, mid)."""

    def __init__(self, vae, decoder: PrunedVAEDecoder):
        super().__init__()
        self.encoder = vae.encoder if vae is not None else None
        self.quant_conv = getattr(vae, "quant_conv", None) if vae is not None else None
        self.decoder = decoder
        self.scaling_factor = float(decoder.config.scaling_factor)
        if vae is not None:
            lat = vae.config.latent_channels
            if lat != decoder.config.latent_channels:
                raise UserError(f"VAE latent channels {lat} != decoder latent channels {decoder.config.latent_channels}")
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FeatureSpace":
        """Always stays in eval mode: the feature space is frozen."""
        return super().train(False)

    @property
    def channels(self) -> int:
        return self.decoder.feature_channels

    @property
    def downscale(self) -> int:
        """Image size / feature size."""
        return self.decoder.upscale

    def encode(self, img01: torch.Tensor) -> torch.Tensor:
        """Image in [0, 1] → latent mean × scaling_factor."""
        if self.encoder is None:
            raise UserError("this feature space has no VAE encoder: give latents, not images")
        m = self.downscale
        if img01.shape[-1] % m or img01.shape[-2] % m:
            raise UserError(f"image size {tuple(img01.shape[-2:])} is not a multiple of {m}")
        h = self.encoder(img01 * 2 - 1)
        if self.quant_conv is not None:
            h = self.quant_conv(h)
        mean = h.chunk(2, dim=1)[0]
        return mean * self.scaling_factor

    def from_latent(self, z_scaled: torch.Tensor) -> torch.Tensor:
        return self.decoder.mid_features(z_scaled)

    def from_image(self, img01: torch.Tensor) -> torch.Tensor:
        return self.from_latent(self.encode(img01))
