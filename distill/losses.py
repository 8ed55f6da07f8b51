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

