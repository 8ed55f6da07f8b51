"""DFOSD's own training objective (distillation-free: no teacher), from its paper.

Generator (`adcsr.core.models.teachers.dfosd`): SD2.1-base UNet + LoRA and a learnable text
embedding, one step at T_L, frozen VAE. Per step:
  1. ẑ_H = generator's x0 for the LR's latent (Eq. 1); x̂_H = decode(ẑ_H); z_H = encode(x_H).
  2. Generator: MSE(x̂_H, x_H) + λ2·EA-DISTS(x̂_H, x_H) + λ1·L_G, L_G = −log D(F(ẑ_H, t))
     (non-saturating, Eq. 2), t uniform in [0, T).
  3. Noise-aware discriminator (`NoiseAwareDiscriminator`): L_D = −log(1 − D(F(ẑ_H, t)))
     − log D(F(z_H, t)) (Eq. 3), the same t and fresh noise for both.
AdamW for both (5e-5 in the paper). EA-DISTS needs DISTS's weights from a local file
(`dists_weights`); without them a stand-in of the same form with the bundled EfficientNet-Lite0
features is used, `ea-efficientnet-lite0 (stand-in: no DISTS weights)`, and the manifest says so.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, Optional

import torch
import torch.nn.functional as F
from torch import nn

from adcsr.core.config import load_config, path_field
from adcsr.core.errors import UserError
from adcsr.core.metrics.dists import sobel
from adcsr.core.metrics.fidelity import mean_psnr_y
from adcsr.core.models.teachers.dfosd import ALPHA, DEFAULT_TIMESTEP, RANK, DFOSDTeacher

from .config import DataConfig, RunConfig
from .data import DegradedCrops
from .discriminator import NoiseAwareDiscriminator
from .losses import discriminator_adv, forward_diffusion, generator_adv
from .run_folder import finish_run, fit_run
from .partly_trained import CheckpointedBackbone
from .task import Phase, Task, adamw


@dataclass
class DFOSDConfig(RunConfig):
    RUN_NAME: ClassVar[str] = "dfosd"
    sd_folder: Optional[str] = path_field()  # SD2.1-base diffusers folder (unet/, vae/)
    preset: Optional[Literal["tiny"]] = None  # instead of sd_folder: random SD-shaped weights (CI)
    timestep: int = DEFAULT_TIMESTEP  # T_L: the paper gives none
    rank: int = RANK
    alpha: float = ALPHA
    lr: float = 5e-5
    disc_lr: float = 5e-5
    mse_weight: float = 1.0
    ea_dists_weight: float = 1.0  # λ2 (the paper gives no value)
    gan_weight: float = 0.1  # λ1 (the paper gives no value)
    dists_weights: Optional[str] = path_field()  # DISTS (VGG16 + alpha/beta) as one .safetensors
    disc_hidden: int = 256
    data: DataConfig = field(default_factory=lambda: DataConfig(hr_size=512))


class EAStandIn(nn.Module):
    """EA-DISTS's form, F(a, b) + F(Sobel(a), Sobel(b)), with the EfficientNet-Lite0 feature
    distance in DISTS's place: what trains when no DISTS weights are given (not DISTS)."""

    name = "ea-efficientnet-lite0 (stand-in: no DISTS weights)"

    def __init__(self):
        super().__init__()
        from adcsr.core.perceptual import EfficientNetPerceptual

        self.features = EfficientNetPerceptual()

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.features(a, b) + self.features(sobel(a), sobel(b))


def ea_loss(dists_weights: str | None) -> nn.Module:
    if not dists_weights:
        return EAStandIn()
    from adcsr.core.metrics import load_metric

    metric = load_metric("ea-dists", dists_weights)
    metric.name = "ea-dists"
    return metric


class DFOSDGenerator(CheckpointedBackbone):
    """The trainable generator: the teacher's UNet (LoRA trained) and VAE (frozen) as submodules,
    its text embedding as a parameter. `forward(lr)` → (ẑ_H, x̂_H), differentiable."""

    def __init__(self, teacher: DFOSDTeacher):
        super().__init__()
        self.teacher = teacher  # its predict/decode/lr_latent; the weights are registered below
        self.unet, self.vae = teacher.unet, teacher.vae
        self.unet.requires_grad_(False)
        for name, p in self.unet.named_parameters():
            if "lora" in name:
                p.requires_grad_(True)
        self.text_embedding = nn.Parameter(teacher.prompt_embeds.detach().clone().float())

    def forward(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.teacher.lr_latent(lr)
        x0 = self.teacher.predict_x0(z, self.text_embedding)
        return x0, self.teacher.decode(x0)


def _check_source(cfg: DFOSDConfig) -> None:
    if bool(cfg.sd_folder) == bool(cfg.preset):
        raise UserError("dfosd: give exactly one of sd_folder (an SD2.1-base diffusers folder) or preset: tiny")
    if cfg.sd_folder:
        from adcsr.core.models.teachers.sd_one_step import require_subfolders

        require_subfolders(cfg.sd_folder, ("unet", "vae"))


def _base_sd(cfg: DFOSDConfig):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from adcsr.core.models.sd_configs import unet_config, vae_config
    from adcsr.core.models.teachers.sd_one_step import sd21_scheduler

    _check_source(cfg)
    if cfg.preset:
        torch.manual_seed(cfg.trainer.seed)
        return (UNet2DConditionModel(**unet_config(cfg.preset)), AutoencoderKL(**vae_config(cfg.preset)),
                sd21_scheduler(None), {"preset": cfg.preset})
    folder = Path(cfg.sd_folder)
    return (UNet2DConditionModel.from_pretrained(folder, subfolder="unet"),
            AutoencoderKL.from_pretrained(folder, subfolder="vae"), sd21_scheduler(folder), {"sd_folder": str(folder)})


class DFOSDTask(Task):
    def __init__(self, cfg: DFOSDConfig):
        self.cfg = cfg
        self.data = DegradedCrops(cfg.data, cfg.trainer.seed)
        if cfg.data.hr_size % 64 or cfg.data.heldout_size % 64:
            raise UserError("dfosd: data.hr_size and data.heldout_size must be multiples of 64 (latent ÷ 8, UNet ÷ 8)")
        unet, vae, scheduler, info = _base_sd(cfg)
        nad_unet = copy.deepcopy(unet)  # the NAD starts from the same pretrained UNet (before any LoRA)
        teacher = DFOSDTeacher.build(unet, vae, scheduler, info, timestep=cfg.timestep, rank=cfg.rank, alpha=cfg.alpha)
        self.generator = DFOSDGenerator(teacher)
        self.disc = NoiseAwareDiscriminator(nad_unet, cfg.rank, cfg.alpha, cfg.disc_hidden)
        self.alphas_cumprod = teacher.alphas_cumprod
        self.steps_total = len(self.alphas_cumprod)
        self.perceptual = ea_loss(cfg.dists_weights)
        self.modules = {"generator": self.generator, "disc": self.disc}
        self.frozen = {"perceptual": self.perceptual}
        self.phases = [Phase("generator", self.generator_loss), Phase("disc", self.disc_loss)]
        self.ema_module = "generator"
        self.heldout = None

    def optimizers(self):
        return {"generator": adamw(self.generator.trainable_parameters(), self.cfg.lr),
                "disc": adamw(self.disc.trainable_parameters(), self.cfg.disc_lr)}

    def batch(self, step, indices, device):
        b = self.data.batch(indices)
        hr = b["hr"].to(device)
        with torch.no_grad():
            z_hr = self.generator.vae.encode(hr * 2 - 1).latent_dist.mean * self.generator.vae.config.scaling_factor
        g = torch.Generator().manual_seed(self.cfg.trainer.seed * 1_000_003 + step)
        t = torch.randint(0, self.steps_total, (len(indices),), generator=g)
        noise = [torch.randn(z_hr.shape, generator=g) for _ in range(3)]  # generator / fake / real
        return {"lr": b["lr"].to(device), "hr": hr, "z_hr": z_hr, "t": t.to(device),
                "noise": [n.to(device) for n in noise]}

    def _noised(self, z, b, k):
        return forward_diffusion(z, b["t"], self.alphas_cumprod, b["noise"][k])

    def generator_loss(self, b, step):
        c = self.cfg
        x0, sr = self.generator(b["lr"])
        b["x0"] = x0.detach()
        mse = F.mse_loss(sr, b["hr"])
        ea = self.perceptual(sr, b["hr"])
        adv = generator_adv(self.disc(self._noised(x0, b, 0), b["t"]))
        loss = c.mse_weight * mse + c.ea_dists_weight * ea + c.gan_weight * adv
        return loss, {"mse": mse.item(), "ea": ea.item(), "adv": adv.item()}

    def disc_loss(self, b, step):
        fake = self.disc(self._noised(b["x0"], b, 1), b["t"])
        real = self.disc(self._noised(b["z_hr"], b, 2), b["t"])
        loss = discriminator_adv(fake, real)
        return loss, {"disc": loss.item()}

    @torch.no_grad()
    def evaluate(self, step):
        if self.heldout is None:
            self.heldout = self.data.heldout()
        dev = next(self.generator.parameters()).device
        _, sr = self.generator(self.heldout["lr"].to(dev))
        sr = sr.cpu()
        metrics = {"psnr_y_vs_hr": mean_psnr_y(sr, self.heldout["hr"]), "mse_vs_hr": F.mse_loss(sr, self.heldout["hr"]).item()}
        return metrics, {"heldout_sr_hr": torch.cat([sr, self.heldout["hr"]])}


def train_dfosd(cfg: DFOSDConfig | str | Path | dict, resume: bool = False) -> Path:
    """Train DFOSD; returns its checkpoint (`<run_dir>/dfosd/dfosd.safetensors`, with its .json)."""
    if not isinstance(cfg, DFOSDConfig):
        cfg = load_config(DFOSDConfig, cfg)
    _check_source(cfg)  # a bad SD folder fails before the run folder is made
    run_dir, trainer = fit_run(cfg, resume, DFOSDTask, "dfosd")
    task = trainer.task
    gen = trainer.final_modules()["generator"]
    out = finish_run(
        trainer, run_dir, "dfosd",
        lambda d: gen.teacher.save_checkpoint(d / "dfosd", text_embedding=gen.text_embedding),
        stage="dfosd", method="DFOSD (distillation-free one-step diffusion, built from the paper)",
        base=task.generator.teacher.info, timestep=cfg.timestep, lora={"rank": cfg.rank, "alpha": cfg.alpha},
        perceptual_loss=task.perceptual.name, weights={"mse": cfg.mse_weight, "ea": cfg.ea_dists_weight,
                                                       "gan": cfg.gan_weight},
    )
    return out / "dfosd.safetensors"
