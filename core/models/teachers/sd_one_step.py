"""What OSEDiff and DFOSD share: one step of an SD2.1-shaped (epsilon-prediction) UNet from the
LR's latent. LR bicubic ×4 → VAE encode (latent mean, so the teacher is deterministic) × the
scaling factor → ε = UNet(z_L, T, prompt) → x0 = (z_L − √(1−ᾱ_T)·ε)/√ᾱ_T → decode. The
differentiable pieces (`predict_x0`, `decode`) are what their training objectives call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ...errors import UserError
from .base import Teacher

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from ..feature_space import FeatureSpace

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def check_precision(dtype: str, device: str | torch.device) -> None:
    if dtype not in DTYPES:
        raise UserError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype != "fp32" and torch.device(device).type != "cuda":
        raise UserError(f"{dtype} runs on CUDA only; use dtype=fp32 on {torch.device(device).type}")


def place_networks(nets, device: str | torch.device, dtype: torch.dtype) -> str:
    """Move a teacher's diffusers networks to `device` in `dtype` (checked first); returns the dtype's name."""
    name = {v: k for k, v in DTYPES.items()}[dtype]
    check_precision(name, device)
    for net in nets:
        net.to(torch.device(device))
        if net.dtype != dtype:  # diffusers warns at every cast, even to the same dtype
            net.to(dtype=dtype)
    return name


def sd21_scheduler(folder=None):
    """The SD folder's DDPM scheduler, else SD2.1-base's; epsilon prediction is required."""
    from diffusers import DDPMScheduler

    if folder is not None and (folder / "scheduler" / "scheduler_config.json").is_file():
        sched = DDPMScheduler.from_pretrained(folder, subfolder="scheduler")
    else:
        sched = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              num_train_timesteps=1000, clip_sample=False)
    if sched.config.prediction_type != "epsilon":
        raise UserError(f"needs an epsilon-prediction base (SD2.1-base), got {sched.config.prediction_type}")
    return sched


def require_subfolders(folder, subs: tuple[str, ...], kind: str = "SD") -> None:
    """A diffusers model folder holding each of `subs` (their config.json), else one line."""
    from pathlib import Path

    for sub in subs:
        if not (Path(folder) / sub / "config.json").is_file():
            raise UserError(f"{folder} is not a diffusers {kind} folder (no {sub}/config.json)")


def randomize_lora(models, generator: torch.Generator, std: float) -> None:
    """Non-zero LoRA B weights for the random-weight presets, so the LoRA paths are exercised."""
    with torch.no_grad():
        for model in models:
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=generator) * std)


def merge_lora_adapters(models) -> None:
    """Fold every peft adapter of each model into its base weights and drop the adapters."""
    for model in models:
        if getattr(model, "peft_config", None):
            model.fuse_lora(adapter_names=list(model.peft_config))
            model.unload_lora()


class OneStepSDTeacher(Teacher):
    size_multiple = 16  # the UNet halves the latent 3 times: latent % 8, image % 64, LR % 16
    default_color_fix = "adain"

    def __init__(self, unet: UNet2DConditionModel, vae: AutoencoderKL, scheduler: Any, prompt_embeds: torch.Tensor,
                 timestep: int, info: dict[str, Any], dtype: str = "fp32", device: str | torch.device = "cpu"):
        super().__init__()
        check_precision(dtype, device)
        if not 0 <= timestep < scheduler.config.num_train_timesteps:
            raise UserError(f"timestep must be in [0, {scheduler.config.num_train_timesteps}), got {timestep}")
        self.unet = unet.eval().requires_grad_(False)
        self.vae = vae.eval().requires_grad_(False)
        self.prompt_embeds = prompt_embeds
        self.timestep = timestep
        self.alphas_cumprod = scheduler.alphas_cumprod.float().clone()
        alpha = self.alphas_cumprod[timestep].item()
        self._sqrt_a, self._sqrt_1ma = alpha**0.5, (1 - alpha) ** 0.5
        self.info = {**info, "dtype": dtype, "merged": False, "latent": "mean", "timestep": timestep}
        self.to(device, DTYPES[dtype])

    def place(self, device: torch.device, dtype: torch.dtype) -> None:
        name = place_networks((self.unet, self.vae), device, dtype)
        self.device, self.dtype = torch.device(device), dtype
        self.prompt_embeds = self.prompt_embeds.to(self.device, dtype)
        self.info["dtype"] = name

    @torch.no_grad()
    def lr_latent(self, lr: torch.Tensor) -> torch.Tensor:
        """z_L: the bicubically upsampled LR encoded (scaled latent mean), for an LR batch % 16."""
        p = next(self.vae.parameters())  # where the VAE is now (a trainer may have moved it)
        hq = F.interpolate(lr.to(p.device, torch.float32), scale_factor=4, mode="bicubic", align_corners=False)
        hq = hq.clamp(0, 1) * 2 - 1
        return self.vae.encode(hq.to(p.dtype)).latent_dist.mean * self.vae.config.scaling_factor

    def predict_x0(self, z: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
        """Eq. 1 of DFOSD (OSEDiff's one DDPM step): x0 = (z − √(1−ᾱ_T)·ε_θ(z; T)) / √ᾱ_T, float32."""
        t = torch.full((z.shape[0],), self.timestep, device=z.device, dtype=torch.long)
        eps = self.unet(z, t, encoder_hidden_states=embeds.expand(z.shape[0], -1, -1).to(z.dtype)).sample
        return (z.float() - self._sqrt_1ma * eps.float()) / self._sqrt_a

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """A scaled latent → the image in [0, 1]."""
        img = self.vae.decode((x0 / self.vae.config.scaling_factor).to(next(self.vae.parameters()).dtype)).sample
        return (img.float().clamp(-1, 1) + 1) / 2

    @torch.no_grad()
    def x0_latent(self, lr: torch.Tensor) -> torch.Tensor:
        """The one-step prediction x0 (scaled latent, float32) for an LR batch whose size is a multiple of 16."""
        return self.predict_x0(self.lr_latent(lr), self.prompt_embeds)

    @torch.no_grad()
    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.decode(self.x0_latent(lr)).to(lr.device)

    @torch.no_grad()
    def features(self, lr: torch.Tensor, space: FeatureSpace, multiple: int = 16) -> torch.Tensor:
        from ..padding import pad_to_multiple

        padded, _ = pad_to_multiple(lr, multiple)  # as the student pads
        h, w = padded.shape[-2:]
        net_in, _ = pad_to_multiple(padded, self.size_multiple)  # further, if the UNet needs it
        p = next(space.parameters())
        feats = space.from_latent(self.x0_latent(net_in).to(p.device, p.dtype))
        ratio = net_in.shape[-1] // feats.shape[-1]
        return feats[..., : h // ratio, : w // ratio]

    def merge_lora(self) -> None:
        """Fold every LoRA adapter into its base weights (peft merge) and drop the adapters."""
        if self.info["merged"]:
            return
        merge_lora_adapters((self.unet, self.vae))
        self.info["merged"] = True

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **self.info}
