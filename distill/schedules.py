"""The learning-rate schedules of `TrainerConfig.schedule`: constant, halving, cosine, each after
an optional linear warm-up."""

from __future__ import annotations

import math

import torch

from .config import TrainerConfig


def lr_schedule(opt: torch.optim.Optimizer, cfg: TrainerConfig, fixed: bool = False):
    """A LambdaLR for `opt`; `fixed` keeps its learning rate (an optimizer in `Task.fixed_lr`)."""
    warm = cfg.warmup_steps

    def factor(step: int) -> float:
        if fixed:
            return 1.0
        w = min(1.0, (step + 1) / warm) if warm else 1.0
        if cfg.schedule == "halving":
            return w * 0.5 ** (step // cfg.halve_every)
        if cfg.schedule == "cosine":
            return w * 0.5 * (1 + math.cos(math.pi * min(step, cfg.steps) / cfg.steps))
        return w

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)
