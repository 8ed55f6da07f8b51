"""TAD-SR's time-aware discriminator (He et al., Eqs. 9–12).

It reads the frozen teacher's encoder: the ResShift UNet's input blocks and middle block run on a
latent noised to t_dis by the ResShift forward process (input scaled and conditioned on the LR
image as the network always is). The features taken are those the release takes: the output of
every downsampling block, of the last input block and of the middle block (for the released
network: input blocks 3, 6, 9, 11 and the middle, 160/320/320/640/640 channels). Per scale:
GroupNorm → FiLM from t_dis (ĥ = norm(F)·(1 + γ) + β, γ and β from a sinusoidal embedding through
an MLP) → a head of spectrally normalised convolutions → a logit map. The release's heads are 1-D
convolutions over the flattened map with 64 logits per position; here they are 2-D convolutions
with one logit per position (the same role, written for image features).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from diffusers.models.embeddings import get_timestep_embedding
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from adcsr.core.models.resshift_schedule import ResShiftSchedule
from adcsr.core.models.resshift_blocks import Downsample
from adcsr.core.models.resshift_unet import ResShiftUNet


def feature_indices(unet: ResShiftUNet) -> list[int]:
    """The input blocks whose outputs the discriminator reads: each downsampler and the last block."""
    blocks = unet.input_blocks
    return [i for i, b in enumerate(blocks) if isinstance(b[0], Downsample)] + [len(blocks) - 1]


def feature_channels(unet: ResShiftUNet) -> list[int]:
    """The widths of `encoder_features`' maps, from the network's config."""
    c = unet.config
    return [c.model_channels * m for m in c.channel_mult[:-1]] + [c.model_channels * c.channel_mult[-1]] * 2


def encoder_features(unet: ResShiftUNet, schedule: ResShiftSchedule, x_t: torch.Tensor, t: torch.Tensor,
                     lq: torch.Tensor) -> list[torch.Tensor]:
    """The frozen network's multi-scale down-path features of x_t at step indices t (N,), float32.
    Differentiable in x_t (the fake branch passes the generator's gradient through it)."""
    skips, mid, _ = unet.down_path(x_t * schedule.input_scale(t, x_t), t, lq)
    return [skips[i].float() for i in feature_indices(unet)] + [mid.float()]


class ScaleHead(nn.Module):
    """One scale: GroupNorm, FiLM from the t embedding, spectrally normalised convs → (N, 1, h, w)."""

    def __init__(self, channels: int, embed_dim: int):
        super().__init__()
        self.norm = nn.GroupNorm(math.gcd(32, channels), channels)
        self.film = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, 2 * channels))
        self.head = nn.Sequential(
            nn.SiLU(), spectral_norm(nn.Conv2d(channels, channels, 3, padding=1)), nn.LeakyReLU(0.2),
            spectral_norm(nn.Conv2d(channels, 1, 1)),
        )

    def forward(self, feature: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film(emb)[..., None, None].chunk(2, dim=1)
        return self.head(self.norm(feature) * (1 + gamma) + beta)


class TimeAwareDiscriminator(nn.Module):
    """`forward(features, t)` → one logit map per scale; `t` (N,) the step index the features'
    latent was noised to. `embed_dim`: the width of the sinusoidal t embedding (the release: the
    network's model_channels)."""

    def __init__(self, channels: Sequence[int], embed_dim: int):
        super().__init__()
        self.embed_dim = embed_dim
        self.scales = nn.ModuleList([ScaleHead(c, embed_dim) for c in channels])

    def forward(self, features: Sequence[torch.Tensor], t: torch.Tensor) -> list[torch.Tensor]:
        if len(features) != len(self.scales):
            raise ValueError(f"expected {len(self.scales)} feature maps, got {len(features)}")
        emb = get_timestep_embedding(t, self.embed_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        emb = emb.to(features[0].dtype)
        return [scale(f, emb) for scale, f in zip(self.scales, features)]
