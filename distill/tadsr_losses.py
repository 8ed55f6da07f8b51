"""TAD-SR's loss terms (He et al., Eqs. 6–8 and 11–12), on ResShift's residual-shifting schedule.

Latents are VQ-f4 latents; `t` holds 0-based step indices (N,) as `ResShiftSchedule` takes them;
the forward process is q(x_t | x0, y) = x0 + η_t (y − x0) + κ√η_t ε.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from adcsr.core.models.resshift_schedule import ResShiftSchedule

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t) -> x̂0


def regression_loss(student_x0: torch.Tensor, teacher_x0: torch.Tensor) -> torch.Tensor:
    """L_distill (Eq. 6): MSE between the student's one-step x̂0 and the multi-step teacher's x0,
    both from the same x_T."""
    return F.mse_loss(student_x0, teacher_x0)


def eps_from_x0(schedule: ResShiftSchedule, x_t: torch.Tensor, x0: torch.Tensor, y: torch.Tensor,
                t: torch.Tensor) -> torch.Tensor:
    """The noise an x0 prediction implies (the paper's Eq. 14):
    ε̂ = (x_t − x̂0 − η_t (y − x̂0)) / (κ√η_t)."""
    return (x_t - x0 - schedule.eta(t, x_t) * (y - x0)) / schedule.noise_std(t, x_t)


@torch.no_grad()
def hsd_gradient(student_x0: torch.Tensor, teacher_x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor,
                 noise: torch.Tensor, schedule: ResShiftSchedule, denoise: Denoiser) -> torch.Tensor:
    """High-frequency score distillation's gradient g (Eq. 7), no gradient through it.

    Both x0s go to x_t with the SAME noise; the frozen teacher `denoise(x_t, t)` predicts x0 from
    each; g = ε̂(x_t^stu) − ε̂(x_t^tch). It is zero when the student's x0 equals the teacher's.
    Written out (the paper's Eq. 8) g = (1 − η_t)/(κ√η_t)·(x̂0^stu − x0^tch + F(x_t^tch) − F(x_t^stu)):
    at t ∈ {0, 1, 2} (κ√η_t ≈ 0.04–0.07) the factor is ≈ 14–25."""
    xs = schedule.q_sample(student_x0.detach(), y, t, noise)
    xt = schedule.q_sample(teacher_x0, y, t, noise)
    return eps_from_x0(schedule, xs, denoise(xs, t), y, t) - eps_from_x0(schedule, xt, denoise(xt, t), y, t)


def hsd_loss(student_x0: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """L_hsd as a surrogate: ½·MSE(x̂0, sg(x̂0 − g)), whose gradient with respect to x̂0 is
    g / x̂0.numel(): the paper's weighting ω = 1/(C·S) per sample, averaged over the batch (the
    release's mean(g·x̂0) has the same gradient). Its value is ½·mean(g²)."""
    return 0.5 * F.mse_loss(student_x0, (student_x0 - gradient).detach())


def _mean_over_heads(terms: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.stack([x.mean() for x in terms]).mean()


def hinge_discriminator(real: Sequence[torch.Tensor], fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """Eq. 12: mean over heads of mean relu(1 − D(real)) + mean relu(1 + D(fake)) (each head's
    logit map averaged first: "the final output is obtained by averaging the results from each
    head")."""
    return _mean_over_heads([F.relu(1 - r) for r in real]) + _mean_over_heads([F.relu(1 + f) for f in fake])


def hinge_generator(fake: Sequence[torch.Tensor]) -> torch.Tensor:
    """Eq. 11: −D(fake), averaged over positions and heads."""
    return -_mean_over_heads(fake)
