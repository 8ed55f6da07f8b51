"""The training configs, defined once (dataclasses loaded with `load_config`): the trainer's and
the data's sections, the base every trainer's config extends, and stages 0, 1 and 2's configs (the
baselines' own live with their trainers). Every YAML under `distill/configs/` is one of them; the
pipeline's stage sections are these classes. No model code is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Optional

from adcsr.core.config import path_field
from adcsr.core.degradations import DegradationConfig
from adcsr.core.models.release_ratios import DECODER_RATIO


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


@dataclass
class RunConfig:
    """What every trainer's config holds: its run folder (default `runs/<RUN_NAME>`), the
    trainer's settings and the data's."""

    RUN_NAME: ClassVar[str] = "run"
    run_dir: str = ""
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        self.run_dir = self.run_dir or f"runs/{self.RUN_NAME}"


@dataclass
class PerceptualRunConfig(RunConfig):
    """A trainer with a perceptual loss: LPIPS from these weights (a local file), else EfficientNet."""

    lpips_weights: Optional[str] = path_field()


@dataclass
class Stage0Config(PerceptualRunConfig):
    """Stage 0: the small KL autoencoder that stands in for the SD VAE when none is given."""

    RUN_NAME: ClassVar[str] = "stage0"
    preset: Literal["tiny", "sd21"] = "tiny"
    lr: float = 1e-3
    l1_weight: float = 1.0
    perceptual_weight: float = 0.1
    kl_weight: float = 1e-6


@dataclass
class Stage1Config(PerceptualRunConfig):
    """Stage 1: the pruned VAE decoder pretrained behind the frozen encoder."""

    RUN_NAME: ClassVar[str] = "stage1"
    vae: Optional[str] = path_field()  # diffusers AutoencoderKL folder: SD's VAE, or stage 0's autoencoder
    # compress's PrunedVAEDecoder folder: the decoder to train (its widths are compress's decoder
    # ratio). `init: fresh` re-initialises it, as the paper trains the pruned decoder from scratch;
    # `init: pruned` starts from compress's pruned weights. Without a folder: a fresh decoder of the
    # VAE's with `decoder_ratio` of every width removed.
    decoder: Optional[str] = path_field()
    init: Literal["fresh", "pruned"] = "fresh"
    decoder_ratio: float = DECODER_RATIO
    lr: float = 1.3e-6  # the paper's
    disc_lr: float = 1.3e-6
    l1_weight: float = 1.0
    perceptual_weight: float = 1.0
    adv_weight: float = 1.0
    adv_start: int = 50_000  # the paper: adversarial weight 0 for the first 50K of 500K steps
    disc_channels: int = 64


@dataclass
class DiscriminatorConfig:
    unet: Optional[str] = path_field()  # diffusers UNet2DConditionModel folder (SD2.1-base's UNet)
    preset: Literal["tiny", "sd21"] = "tiny"  # randomly initialised backbone when no folder is given
    rank: int = 4
    alpha: float = 8  # LoRA scale alpha / rank: the release keeps peft's default 8 (scale 2 at rank 4)
    timestep: int = 999
    # Conditioning. The release embeds each LR image's DAPE tags with the text encoder; offline,
    # `image_embeds` gives one (L, D) embedding per training image (safetensors keyed by the
    # image's name: the bundled photo's name, or the path under data.hr_folder without extension).
    # Without it, one embedding for all: `prompt_embeds` ("prompt_embeds" (1, L, D)) or a fixed
    # seeded stand-in.
    image_embeds: Optional[str] = path_field()
    prompt_embeds: Optional[str] = path_field()


@dataclass
class Stage2Config(PerceptualRunConfig):
    """Stage 2: adversarial distillation of the teacher into the student in feature space."""

    RUN_NAME: ClassVar[str] = "stage2"
    vae: Optional[str] = path_field()  # AutoencoderKL folder: SD's VAE or stage 0's autoencoder
    decoder: Optional[str] = path_field()  # stage 1's PrunedVAEDecoder folder
    student: Optional[str] = path_field()  # compress's AdcSRStudent folder
    student_preset: Literal["tiny", "sd21"] = "tiny"  # randomly initialised when no folder is given
    # Start the student's UNet with every residual branch at zero (identity blocks). For a student
    # compressed from a randomly initialised teacher UNet (no SD weights): nothing learned is lost.
    zero_residuals: bool = False
    # Train (and save) the student with `lr_skip`: its up path predicts a residual over the LR
    # upsampled bicubically, its output conv starting at zero (the student starts as bicubic).
    lr_skip: bool = False
    teacher: str = "realesrgan-compact"
    teacher_options: dict[str, Any] = field(default_factory=dict)
    # 0: the teacher runs on every batch (the release). N > 0: sample i is pool slot i mod N, and
    # the teacher's outputs for a slot are computed the first time it is drawn, then reused: a
    # slow teacher (Real-ESRGAN x4plus on a CPU) costs N forwards per run instead of one per sample.
    teacher_pool: int = 0
    distill_level: Literal["mid", "pre_mid", "image"] = "mid"
    distill_weight: float = 1.0
    # Not in the release (which distils at the feature level only, the up path frozen): an L1 and
    # a perceptual term between the student's SR and the teacher's SR, and optionally the decoder
    # up path trained with them. Short CPU runs need them: the frozen up path of a briefly
    # trained stage-1 decoder caps what feature distillation alone can reach.
    image_weight: float = 0.0
    perceptual_weight: float = 0.0
    train_decoder: bool = False
    adv_weight: float = 1.0  # λ_adv
    adv_start: int = 0
    lr: float = 1e-4  # generator; halved every 100K steps in the paper (trainer.schedule: halving)
    disc_lr: float = 1e-6
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)


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
