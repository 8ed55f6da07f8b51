"""The trainer's and the data's config sections (dataclasses loaded with `load_config`).

Stage configs (stage0/1/2) nest these two sections; every YAML under `distill/configs/` is one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from adcsr.core.config import path_field
from adcsr.core.degradations import DegradationConfig


@dataclass
class TrainerConfig:
    steps: int = 100
    batch_size: int = 4  # global: split over processes and accumulation micro-steps
    grad_accum: int = 1
    seed: int = 0
    schedule: Literal["constant", "halving", "cosine"] = "constant"
    halve_every: int = 100_000  # the paper's generator schedule: lr halved every 100K steps
    warmup_steps: int = 0
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"  # AMP on CUDA via accelerate
    grad_checkpointing: bool = False
    grad_clip: Optional[float] = None
    ema_decay: float = 0.0  # 0 disables the EMA copy of the trained model
    checkpoint_every: int = 50
    keep_last: int = 3
    log_every: int = 10
    eval_every: int = 50
    cpu: bool = False  # force CPU even when a GPU is present
    deterministic: bool = True
    progress: bool = True


@dataclass
class DataConfig:
    hr_size: int = 64  # HR crop side; the LR side is hr_size // degradation.scale
    hr_folder: Optional[str] = path_field()  # your HR photos; default: the bundled sample photos
    epoch_length: int = 1000  # crops per epoch; each epoch draws new crops and flips
    heldout_count: int = 4  # fixed crops of the held-out photos, for evaluation
    heldout_size: int = 64
    degradation: DegradationConfig = field(default_factory=DegradationConfig)


def check_batch(cfg: TrainerConfig, world: int) -> int:
    """Per-process micro-batch size, or a UserError when the global batch does not split evenly."""
    from adcsr.core.errors import UserError

    for name in ("steps", "grad_accum", "checkpoint_every", "keep_last", "log_every", "eval_every",
                 "halve_every"):
        if getattr(cfg, name) < 1:
            raise UserError(f"trainer.{name} must be at least 1, got {getattr(cfg, name)}")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise UserError(f"trainer.ema_decay must be in [0, 1), got {cfg.ema_decay}")
    parts = world * cfg.grad_accum
    if cfg.batch_size < 1 or cfg.batch_size % parts:
        raise UserError(
            f"trainer.batch_size {cfg.batch_size} must be a positive multiple of "
            f"processes × grad_accum = {world} × {cfg.grad_accum}"
        )
    return cfg.batch_size // parts
