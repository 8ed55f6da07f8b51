"""Stage 1: pretrain the pruned VAE decoder behind a frozen VAE encoder (never released by the
AdcSR authors; built from the paper): L1 + perceptual + patch-adversarial, the adversarial weight
0 for the first `adv_start` steps then `adv_weight`, Adam."""

from __future__ import annotations

from pathlib import Path

import torch

from adcsr.core.config import load_config
from adcsr.core.errors import UserError
from adcsr.core.metrics.fidelity import mean_psnr_y
from adcsr.core.models.vae_decoder import PrunedVAEDecoder
from adcsr.core.perceptual import perceptual_loss

from .config import Stage1Config
from .data import DegradedCrops
from .discriminator import PatchDiscriminator
from .losses import discriminator_adv, generator_adv
from .run_folder import finish_run, fit_run
from .task import Phase, Task, adam


def load_vae(path: str):
    from diffusers import AutoencoderKL

    if not path:
        raise UserError("vae: give a diffusers AutoencoderKL folder (SD's VAE, or the output of "
                        "`adcsr distill stage0`)")
    try:
        vae = AutoencoderKL.from_pretrained(path)
    except (OSError, ValueError, RuntimeError) as e:
        raise UserError(f"cannot load the VAE from {path}: {str(e).strip().splitlines()[0][:200]}") from None
    return vae.requires_grad_(False).eval()


def encoder_role(path: str) -> str:
    """How a run's manifest describes its frozen encoder."""
    manifest = Path(path).parent / "manifest.json"
    if manifest.is_file() and '"stage": "stage0"' in manifest.read_text():
        return (f"encoder of the run's own small KL autoencoder ({path}, trained by stage 0 on the "
                "sample photos) in the frozen SD VAE encoder's role: no SD VAE was given")
    return f"frozen VAE encoder from {path}"


def initial_decoder(cfg: Stage1Config, vae) -> PrunedVAEDecoder:
    if not cfg.decoder:
        return PrunedVAEDecoder(**PrunedVAEDecoder.config_from_vae(dict(vae.config), cfg.decoder_ratio))
    given = PrunedVAEDecoder.from_pretrained(cfg.decoder)
    if given.config.latent_channels != vae.config.latent_channels:
        raise UserError(f"decoder {cfg.decoder} reads {given.config.latent_channels} latent channels but the VAE "
                        f"gives {vae.config.latent_channels}")
    return given if cfg.init == "pruned" else PrunedVAEDecoder.from_config(given.config)


class DecoderTask(Task):
    def __init__(self, cfg: Stage1Config):
        self.cfg = cfg
        self.data = DegradedCrops(cfg.data, cfg.trainer.seed)
        self.heldout = self.data.heldout()["hr"]
        self.vae = load_vae(cfg.vae)
        self.decoder = initial_decoder(cfg, self.vae)
        self.disc = PatchDiscriminator(cfg.disc_channels)
        self.perceptual = perceptual_loss(cfg.lpips_weights)
        self.modules = {"decoder": self.decoder, "disc": self.disc}
        self.frozen = {"vae": self.vae, "perceptual": self.perceptual}
        self.phases = [Phase("decoder", self.decoder_loss), Phase("disc", self.disc_loss)]
        self.ema_module = "decoder"

    def optimizers(self):
        return {"decoder": adam(self.decoder.parameters(), self.cfg.lr),
                "disc": adam(self.disc.parameters(), self.cfg.disc_lr)}

    @torch.no_grad()
    def latents(self, hr: torch.Tensor) -> torch.Tensor:
        return self.vae.encode(hr * 2 - 1).latent_dist.mode() * self.vae.config.scaling_factor

    def batch(self, step, indices, device):
        hr = self.data.hr(indices).to(device)
        return {"hr": hr, "z": self.latents(hr)}

    def adversarial(self, step: int) -> bool:
        return step >= self.cfg.adv_start and self.cfg.adv_weight > 0

    def decoder_loss(self, b, step):
        c = self.cfg
        rec = self.decoder(b["z"])
        b["rec"] = rec.detach()
        l1 = (rec - b["hr"]).abs().mean()
        per = self.perceptual(rec, b["hr"])
        loss = c.l1_weight * l1 + c.perceptual_weight * per
        logs = {"l1": l1.item(), "perceptual": per.item()}
        if self.adversarial(step):
            adv = generator_adv(self.disc(rec))
            loss = loss + c.adv_weight * adv
            logs["adv"] = adv.item()
        return loss, logs

    def disc_loss(self, b, step):
        if not self.adversarial(step):
            return None
        loss = discriminator_adv(self.disc(b["rec"]), self.disc(b["hr"]))
        return loss, {"disc": loss.item()}

    def evaluate(self, step):
        hr = self.heldout.to(self.decoder.device)
        rec = self.decoder(self.latents(hr)).cpu()
        return {"psnr_y": mean_psnr_y(rec, self.heldout)}, {"heldout_hr_vs_decoded": torch.cat([self.heldout, rec])}


def pretrain_decoder(cfg: Stage1Config | str | Path | dict, resume: bool = False) -> Path:
    """Train the pruned decoder; returns its `save_pretrained` folder (`<run_dir>/decoder`)."""
    if not isinstance(cfg, Stage1Config):
        cfg = load_config(Stage1Config, cfg)
    load_vae(cfg.vae)  # a bad VAE folder fails before the run folder is made
    run_dir, trainer = fit_run(cfg, resume, DecoderTask, "stage1")
    dec = trainer.final_modules()["decoder"]
    return finish_run(
        trainer, run_dir, "decoder", lambda d: dec.save_pretrained(d), stage="stage1",
        model="PrunedVAEDecoder", encoder=encoder_role(cfg.vae), decoder_config=dict(dec.config),
        initialised=(f"from compress's pruned weights ({cfg.decoder})" if cfg.decoder and cfg.init == "pruned"
                     else "fresh (trained from scratch, as the paper does)"),
        perceptual_loss=trainer.task.perceptual.name, adv_start=cfg.adv_start,
        ema=cfg.trainer.ema_decay > 0,
    )
