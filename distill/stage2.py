"""Stage 2: adversarial feature distillation (AdcSR as released, FACTS §1).

The student (UNet + link + decoder mid-block trainable, up path frozen) regresses the teacher's
features in the pruned decoder's space, L_distill = L1(f_student, f_teacher), while a LoRA-UNet
discriminator tells f_student from f_GT = space.from_image(HR): generator loss
distill_weight·L_distill + adv_weight·softplus(−D(f_student)), discriminator loss
softplus(D(f_student)) + softplus(−D(f_GT)). `distill_level` switches the L1 to the mid-block
input (`pre_mid`) or to the SR image (`image`): the paper's ablation; D always reads mid features.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from adcsr.core.config import load_config, path_field
from adcsr.core.errors import UserError
from adcsr.core.models.feature_space import FeatureSpace
from adcsr.core.models.padding import pad_to_multiple
from adcsr.core.models.sd_configs import unet_config
from adcsr.core.models.student import AdcSRStudent
from adcsr.core.models.teachers import get_teacher
from adcsr.core.models.vae_decoder import PrunedVAEDecoder, run_mid_block

from .config import DataConfig, TrainerConfig
from .data import DegradedCrops
from .discriminator import FeatureDiscriminator
from .evaluation import mean_psnr_y
from .losses import discriminator_adv, generator_adv
from .run import finish_run, open_run
from .stage1 import encoder_role, load_vae
from .trainer import Phase, Task, Trainer


@dataclass
class DiscriminatorConfig:
    unet: Optional[str] = path_field()  # diffusers UNet2DConditionModel folder (SD2.1-base's UNet)
    preset: Literal["tiny", "sd21"] = "tiny"  # randomly initialised backbone when no folder is given
    rank: int = 4
    timestep: int = 999
    prompt_embeds: Optional[str] = path_field()  # safetensors holding "prompt_embeds" (1, L, D)


@dataclass
class Stage2Config:
    vae: Optional[str] = path_field()  # AutoencoderKL folder: SD's VAE or stage 0's autoencoder
    decoder: Optional[str] = path_field()  # stage 1's PrunedVAEDecoder folder
    student: Optional[str] = path_field()  # compress's AdcSRStudent folder
    student_preset: Literal["tiny", "sd21"] = "tiny"  # randomly initialised when no folder is given
    teacher: str = "realesrgan-compact"
    teacher_options: dict[str, Any] = field(default_factory=dict)
    distill_level: Literal["mid", "pre_mid", "image"] = "mid"
    distill_weight: float = 1.0
    adv_weight: float = 1.0  # λ_adv
    adv_start: int = 0
    lr: float = 1e-4  # generator; halved every 100K steps in the paper (trainer.schedule: halving)
    disc_lr: float = 1e-6
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    run_dir: str = "runs/stage2"
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    data: DataConfig = field(default_factory=DataConfig)


class PreMidSpace(nn.Module):
    """The feature space one level earlier: the decoder mid-block's input (post_quant_conv →
    conv_in), so any teacher's `features(lr, space)` gives its target at that level."""

    def __init__(self, space: FeatureSpace):
        super().__init__()
        self.space = space

    def encode(self, img01: torch.Tensor) -> torch.Tensor:
        return self.space.encode(img01)

    def from_latent(self, z_scaled: torch.Tensor) -> torch.Tensor:
        dec = self.space.decoder
        return dec.decoder.conv_in(dec.post_quant_conv(z_scaled / dec.config.scaling_factor))

    def from_image(self, img01: torch.Tensor) -> torch.Tensor:
        return self.from_latent(self.encode(img01))


def _load(cls, path: str, what: str):
    try:
        return cls.from_pretrained(path)
    except UserError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError) as e:
        raise UserError(f"cannot load the {what} from {path}: {str(e).strip().splitlines()[0][:200]}") from None


def build_discriminator(cfg: DiscriminatorConfig, channels: int, seed: int) -> FeatureDiscriminator:
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    unet = _load(UNet2DConditionModel, cfg.unet, "discriminator UNet") if cfg.unet else \
        UNet2DConditionModel(**unet_config(cfg.preset))
    prompt = None
    if cfg.prompt_embeds:
        tensors = load_file(cfg.prompt_embeds)
        if "prompt_embeds" not in tensors:
            raise UserError(f"{cfg.prompt_embeds} holds no 'prompt_embeds' tensor")
        prompt = tensors["prompt_embeds"]
        if prompt.shape[-1] != unet.config.cross_attention_dim:
            raise UserError(f"prompt_embeds width {prompt.shape[-1]} != the UNet's cross_attention_dim "
                            f"{unet.config.cross_attention_dim}")
    return FeatureDiscriminator(unet, channels, cfg.rank, cfg.timestep, prompt, seed=seed)


class DistillTask(Task):
    def __init__(self, cfg: Stage2Config):
        self.cfg = cfg
        self.data = DegradedCrops(cfg.data, cfg.trainer.seed)
        decoder = _load(PrunedVAEDecoder, cfg.decoder, "stage-1 decoder")
        self.space = FeatureSpace(load_vae(cfg.vae), decoder)
        self.student = _load(AdcSRStudent, cfg.student, "student") if cfg.student else \
            AdcSRStudent.from_preset(cfg.student_preset)
        if self.student.feature_channels != self.space.channels:
            raise UserError(f"student feature channels {self.student.feature_channels} != the decoder's "
                            f"{self.space.channels}: use the decoder that matches the student")
        self.student.init_decoder_from(decoder)
        self.student.requires_grad_(False)
        for p in self.student.stage2_parameters():
            p.requires_grad_(True)
        self.teacher = get_teacher(cfg.teacher, **cfg.teacher_options)
        self.disc = build_discriminator(cfg.discriminator, self.space.channels, cfg.trainer.seed)
        self.target_space = PreMidSpace(self.space) if cfg.distill_level == "pre_mid" else self.space
        self.modules = {"student": self.student, "disc": self.disc}
        self.frozen = {"space": self.space}
        self.teachers = {"teacher": self.teacher}
        self.phases = [Phase("student", self.student_loss), Phase("disc", self.disc_loss)]
        self.ema_module = "student"
        self.heldout: dict[str, torch.Tensor] | None = None  # at the first evaluation (teacher placed)

    def optimizers(self):
        return {"student": torch.optim.Adam(self.student.stage2_parameters(), self.cfg.lr),
                "disc": torch.optim.Adam([p for p in self.disc.parameters() if p.requires_grad], self.cfg.disc_lr)}

    # ---- targets and student outputs at the configured level ---------------------------------
    @torch.no_grad()
    def target(self, lr: torch.Tensor) -> torch.Tensor:
        if self.cfg.distill_level == "image":
            return self.teacher.upscale(lr)
        return self.teacher.features(lr, self.target_space, multiple=self.student.size_multiple)

    def student_outputs(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(what L_distill compares, the mid-block features the discriminator reads)."""
        s = self.student
        if self.cfg.distill_level == "pre_mid":
            x, _ = pad_to_multiple(lr * 2 - 1, s.size_multiple)
            pre = s.link(s.unet(F.pixel_unshuffle(x, 2)))
            return pre, run_mid_block(s.decoder, pre)
        feats = s.features(lr)
        if self.cfg.distill_level == "image":
            return s.decode(feats, tuple(lr.shape[-2:])), feats
        return feats, feats

    # ---- phases ------------------------------------------------------------------------------
    def batch(self, step, indices, device):
        b = self.data.batch(indices)
        hr, lr = b["hr"].to(device), b["lr"].to(device)
        with torch.no_grad():
            return {"lr": lr, "target": self.target(lr).to(device), "real": self.space.from_image(hr)}

    def adversarial(self, step: int) -> bool:
        return step >= self.cfg.adv_start and self.cfg.adv_weight > 0

    def student_loss(self, b, step):
        out, feats = self.student_outputs(b["lr"])
        b["fake"] = feats.detach()
        distill = (out - b["target"]).abs().mean()
        loss, logs = self.cfg.distill_weight * distill, {"distill": distill.item()}
        if self.adversarial(step):
            adv = generator_adv(self.disc(feats))
            loss = loss + self.cfg.adv_weight * adv
            logs["adv"] = adv.item()
        return loss, logs

    def disc_loss(self, b, step):
        if not self.adversarial(step):
            return None
        loss = discriminator_adv(self.disc(b["fake"]), self.disc(b["real"]))
        return loss, {"disc": loss.item()}

    # ---- evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def _heldout(self, device: torch.device) -> dict[str, torch.Tensor]:
        h = self.data.heldout()
        lr = h["lr"].to(device)
        return {**h, "target": self.target(lr).cpu(), "teacher_sr": self.teacher.upscale(lr).cpu()}

    def evaluate(self, step):
        dev = next(self.student.parameters()).device
        if self.heldout is None:
            self.heldout = self._heldout(dev)
        h = self.heldout
        lr = h["lr"].to(dev)
        out, feats = self.student_outputs(lr)
        sr = self.student.decode(feats, tuple(lr.shape[-2:])).cpu()
        metrics = {
            "distill": float((out.cpu() - h["target"]).abs().mean()),
            "psnr_y_student_vs_teacher": mean_psnr_y(sr, h["teacher_sr"]),
            "psnr_y_student_vs_hr": mean_psnr_y(sr, h["hr"]),
            "psnr_y_teacher_vs_hr": mean_psnr_y(h["teacher_sr"], h["hr"]),
        }
        return metrics, {"heldout_teacher_student_hr": torch.cat([h["teacher_sr"], sr, h["hr"]])}


def distill(cfg: Stage2Config | str | Path | dict, resume: bool = False) -> Path:
    """Distil the teacher into the student; returns its `save_pretrained` folder (`<run_dir>/student`)."""
    if not isinstance(cfg, Stage2Config):
        cfg = load_config(Stage2Config, cfg)
    if not cfg.decoder:  # bad input fails before the run folder is made
        raise UserError("decoder: give stage 1's decoder folder (`adcsr distill stage1` output)")
    load_vae(cfg.vae)
    run_dir = open_run(cfg, resume)
    trainer = Trainer(cfg.trainer, run_dir, lambda: DistillTask(cfg), name="stage2")
    trainer.fit(resume=resume)
    task = trainer.task
    student = trainer.final_modules()["student"]
    return finish_run(
        trainer, run_dir, "student", lambda d: student.save_pretrained(d), stage="stage2",
        model="AdcSRStudent", teacher=task.teacher.describe(), encoder=encoder_role(cfg.vae),
        decoder=cfg.decoder,
        student_init=cfg.student or f"randomly initialised `{cfg.student_preset}` preset (no compress output given)",
        distill_level=cfg.distill_level, adv_weight=cfg.adv_weight, lr=cfg.lr, disc_lr=cfg.disc_lr,
        discriminator={"backbone": cfg.discriminator.unet or f"randomly initialised `{cfg.discriminator.preset}` "
                       "UNet2DConditionModel (no SD UNet given)", "lora_rank": cfg.discriminator.rank,
                       "timestep": cfg.discriminator.timestep,
                       "prompt": cfg.discriminator.prompt_embeds or "fixed seeded stand-in embedding",
                       "trainable_params": sum(p.numel() for p in task.disc.parameters() if p.requires_grad)},
        ema=cfg.trainer.ema_decay > 0,
    )
