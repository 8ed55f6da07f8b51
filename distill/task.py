"""What a stage gives the trainer: a `Task` (its models, data, losses) made of `Phase`s, one per
optimizer, and the optimizers the stages build."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from adcsr.core.models.teachers import Teacher

LossFn = Callable[[dict, int], "tuple[torch.Tensor, dict[str, float]] | None"]


@dataclass
class Phase:
    optimizer: str  # the optimizer this phase steps
    # (micro_batch, step) -> (loss, {name: value}), or None to skip this phase at this step (e.g.
    # an adversarial term not switched on yet); it may stash tensors in the batch for later phases
    loss: LossFn


class Task:
    """What a stage gives the trainer. Subclasses set `modules`, `phases`, `ema_module`."""

    modules: dict[str, nn.Module]  # every module whose weights are checkpointed
    phases: list[Phase]
    frozen: dict[str, nn.Module] = {}  # fixed helpers (encoders, loss networks): on the trainer's device
    teachers: dict[str, Teacher] = {}  # on the trainer's device, in its AMP precision (`Trainer.dtype`)
    ema_module: str | None = None
    fixed_lr: tuple[str, ...] = ()  # optimizers that keep their learning rate whatever the schedule

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def batch(self, step: int, indices: list[int], device: torch.device) -> dict:
        """The micro-batch made of the given global sample indices (deterministic in them)."""
        raise NotImplementedError

    def evaluate(self, step: int) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        """Held-out metrics and sample images (NCHW in [0, 1]); main process only."""
        return {}, {}


def adam(params, lr: float) -> torch.optim.Adam:
    """Every stage's optimizer: Adam with its fused kernel (one pass over all tensors; about a
    tenth of a CPU step of the tiny student, where the per-tensor loop is overhead)."""
    return torch.optim.Adam(params, lr, fused=True)


def adamw(params, lr: float) -> torch.optim.AdamW:
    """The baselines' optimizer (DFOSD and TSD-SR train with AdamW)."""
    return torch.optim.AdamW(params, lr)
