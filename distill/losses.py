"""Loss terms shared by the stages."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def generator_adv(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss: softplus(−D(fake))."""
    return F.softplus(-fake_logits).mean()


def discriminator_adv(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    """softplus(D(fake)) + softplus(−D(real))."""
    return F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()



def forward_diffusion(z: torch.Tensor, t: torch.Tensor, alphas_cumprod: torch.Tensor,
                      noise: torch.Tensor) -> torch.Tensor:
    """F(z, t) = √ᾱ_t·z + √(1−ᾱ_t)·ε (DFOSD Eq. 4), `t` one timestep per sample."""
    a = alphas_cumprod.to(z.device)[t].float().view(-1, *([1] * (z.dim() - 1)))
    return a.sqrt() * z + (1 - a).sqrt() * noise
