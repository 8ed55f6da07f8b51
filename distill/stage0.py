"""Stage 0: a small KL autoencoder trained on the sample photos, for machines without SD's VAE.

Its frozen encoder then plays the SD VAE encoder's role in stages 1 and 2 (the run's manifest
says so). diffusers `AutoencoderKL` with the `tiny` (or `sd21`) config; L1 + perceptual + KL.
"""

from __future__ import annotations

from pathlib import Path

import torch

from adcsr.core.config import load_config
from adcsr.core.metrics.fidelity import mean_psnr_y
from adcsr.core.models.sd_configs import vae_config
from adcsr.core.perceptual import perceptual_loss

from .config import Stage0Config
from .data import DegradedCrops
from .run_folder import finish_run, fit_run
from .task import Phase, Task, adam


class AutoencoderTask(Task):
    def __init__(self, cfg: Stage0Config):
        from diffusers import AutoencoderKL

        self.cfg = cfg
        self.data = DegradedCrops(cfg.data, cfg.trainer.seed)
        self.heldout = self.data.heldout()["hr"]
        self.vae = AutoencoderKL(**vae_config(cfg.preset))
        self.perceptual = perceptual_loss(cfg.lpips_weights)
        self.modules = {"vae": self.vae}
        self.frozen = {"perceptual": self.perceptual}
        self.phases = [Phase("vae", self.loss)]
        self.ema_module = "vae"

    def optimizers(self):
        return {"vae": adam(self.vae.parameters(), self.cfg.lr)}

    def batch(self, step, indices, device):
        return {"hr": self.data.hr(indices).to(device),
                "noise": torch.Generator().manual_seed(self.cfg.trainer.seed * 7919 + indices[0])}

    def loss(self, b, step):
        post = self.vae.encode(b["hr"] * 2 - 1).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=b["noise"]).to(post.mean)
        rec = (self.vae.decode(z).sample + 1) / 2
        l1 = (rec - b["hr"]).abs().mean()
        per = self.perceptual(rec, b["hr"])
        kl = post.kl().mean()
        c = self.cfg
        return c.l1_weight * l1 + c.perceptual_weight * per + c.kl_weight * kl, \
            {"l1": l1.item(), "perceptual": per.item(), "kl": kl.item()}

    def reconstruct(self, hr: torch.Tensor) -> torch.Tensor:
        hr = hr.to(self.vae.device)
        return ((self.vae.decode(self.vae.encode(hr * 2 - 1).latent_dist.mode()).sample + 1) / 2).clamp(0, 1)

    def evaluate(self, step):
        rec = self.reconstruct(self.heldout)
        return {"psnr_y": mean_psnr_y(rec.cpu(), self.heldout)}, {"heldout_hr_vs_reconstruction":
                                                                  torch.cat([self.heldout, rec.cpu()])}


def train_autoencoder(cfg: Stage0Config | str | Path | dict, resume: bool = False) -> Path:
    """Train the small autoencoder; returns its `save_pretrained` folder (`<run_dir>/autoencoder`)."""
    if not isinstance(cfg, Stage0Config):
        cfg = load_config(Stage0Config, cfg)
    run_dir, trainer = fit_run(cfg, resume, AutoencoderTask, "stage0")
    task = trainer.task
    vae = trainer.final_modules()["vae"]
    return finish_run(
        trainer, run_dir, "autoencoder", lambda d: vae.save_pretrained(d), stage="stage0",
        model="diffusers AutoencoderKL", preset=cfg.preset,
        role=("no SD VAE was given: this small KL autoencoder, trained on the sample photos, "
              "stands in for the frozen SD VAE; its encoder plays the SD encoder's role in stages 1 and 2"),
        perceptual_loss=task.perceptual.name, ema=cfg.trainer.ema_decay > 0,
    )
