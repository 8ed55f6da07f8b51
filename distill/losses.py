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


def cfg(uncond: torch.Tensor, cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: uncond + scale·(cond − uncond)."""
    return uncond + scale * (cond - uncond)


def tsd_gradient(x: torch.Tensor, z: torch.Tensor, sigmas: torch.Tensor, index: int, teacher, lora,
                 steps: int = 1, stride: int = 50, weights=(1.0, 0.3, 0.3, 0.3), vsd_weight: float = 0.7,
                 tsm_weight: float = 0.3) -> torch.Tensor:
    """TSD-SR's target score distillation gradient with its distribution-aware sampling (DASM).

    `x`, `z`: the noised student latent and noised HR latent at schedule index `index` (same noise);
    `teacher(latent, k)` / `lora(latent, k)`: velocity predictions at schedule index k (guided).
    For each of `steps` points along the trajectory (index stride `stride`):
      g_VSD += w·σ²·(v_teacher(x) − v_lora(x)),  g_TSM += w·σ²·(v_teacher(x) − v_teacher(z)),
    then x and z take an Euler step to the next index (x along the LoRA model, z along the teacher).
    Returns vsd_weight·g_VSD + tsm_weight·g_TSM (no gradient flows through it)."""
    g_vsd = torch.zeros_like(x)
    g_tsm = torch.zeros_like(x)
    with torch.no_grad():
        for k in range(steps):
            i = index + k * stride
            sigma = sigmas[i]
            w = weights[k] if k < len(weights) else weights[-1]
            v_tx, v_lx, v_tz = teacher(x, i), lora(x, i), teacher(z, i)
            g_vsd += w * sigma**2 * (v_tx - v_lx)
            g_tsm += w * sigma**2 * (v_tx - v_tz)
            if k + 1 < steps:
                step = sigmas[i + stride] - sigma
                x, z = x + step * v_lx, z + step * v_tz
    return vsd_weight * g_vsd + tsm_weight * g_tsm


def tsd_loss(latent: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """½·MSE(ẑ, sg(ẑ − g)): its gradient with respect to ẑ is g / ẑ.numel()."""
    return 0.5 * F.mse_loss(latent, (latent - gradient).detach())
