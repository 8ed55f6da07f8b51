"""ResShift (Yue et al., 15 steps) and TAD-SR (He et al., its one-step distillation) at inference,
as their authors released them.

Both run ResShift's Swin-UNet (`resshift_unet.py`) in the VQGAN-f4 latent (`vqgan_f4.py`) with the
residual-shifting schedule (`resshift_schedule.py`): LR [0, 1] → [-1, 1] → bicubic ×4 → VQ encode
→ y; x_T = y + κ√η_T ε; the network predicts x0 from (x_t / √(η_t κ² + 1), t, the LR in [-1, 1]);
ResShift draws x_{t−1} from q(x_{t−1} | x_t, x̂0) down to t = 0, TAD-SR keeps the first x0
prediction (t = T−1); decode (quantised), clamp, [0, 1]. The releases apply no colour fix.

The noise comes from a CPU generator seeded with `seed` at every forward call, so a tile
always gives the same SR (the releases seed the global RNG once per run).

Weights: `checkpoint` (the released network: `resshift_realsrx4_s15_v1.pth`, `TAD-SR.pth`, or the
folder `adcsr train tadsr` saves) and `autoencoder` (`autoencoder_vq_f4.pth`), read with
`weights_only=True`; without them `preset` builds random weights (`tiny` for tests, `full` for
benchmarks).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ...errors import UserError
from ..loading import load_or_user_error
from ..padding import crop_to, pad_to_multiple
from ..resshift_schedule import ResShiftSchedule
from ..resshift_unet import ResShiftUNet, load_release_unet
from ..vqgan_f4 import build_vqgan, load_ldm_vqgan
from .base import Teacher
from .sd_one_step import DTYPES, check_precision, place_networks

if TYPE_CHECKING:
    from diffusers import VQModel

    from ..feature_space import FeatureSpace


class ResShiftTeacher(Teacher):
    name = "resshift"
    one_step = False
    default_color_fix = "none"

    def __init__(self, unet: ResShiftUNet, vqgan: VQModel, info: dict[str, Any], seed: int = 0,
                 dtype: str = "fp32", device: str | torch.device = "cpu"):
        super().__init__()
        check_precision(dtype, device)
        self.unet = unet.eval().requires_grad_(False)
        self.vqgan = vqgan.eval().requires_grad_(False)
        self.schedule = ResShiftSchedule()
        self.seed = seed
        self.size_multiple = unet.size_multiple  # the latent of the ×4 upsample has the LR's size (f4)
        steps = 1 if self.one_step else self.schedule.steps
        self.info = {**info, "seed": seed, "steps": steps, "kappa": self.schedule.kappa, "dtype": dtype}
        self.to(device, DTYPES[dtype])

    @classmethod
    def load(cls, preset: str = "full", checkpoint: str | None = None, autoencoder: str | None = None,
             seed: int | str = 0, dtype: str = "fp32", device: str = "cpu") -> ResShiftTeacher:
        """The released network + VQGAN files (in `preset`'s architecture), or random weights."""
        if bool(checkpoint) != bool(autoencoder):
            raise UserError(f"{cls.name} needs both checkpoint=<network .pth> and autoencoder=<autoencoder_vq_f4.pth>, "
                            "or neither (random weights)")
        try:  # an option from the CLI arrives as text
            seed = int(seed)
        except (TypeError, ValueError):
            raise UserError(f"{cls.name}: seed must be an integer, got {seed!r}") from None
        if checkpoint:
            unet, vqgan = load_network(checkpoint, preset), load_ldm_vqgan(autoencoder, preset)
            info: dict[str, Any] = {"preset": preset, "checkpoint": str(checkpoint), "autoencoder": str(autoencoder)}
        else:
            torch.manual_seed(seed)
            unet, vqgan = ResShiftUNet.from_preset(preset), build_vqgan(preset)
            # diffusers starts the codebook in ±1/n: every latent would decode to almost the same image
            torch.nn.init.normal_(vqgan.quantize.embedding.weight)
            info = {"preset": preset, "weights": "random (preset)"}
        return cls(unet, vqgan, info, seed, dtype, device)

    def place(self, device: torch.device, dtype: torch.dtype) -> None:
        name = place_networks((self.unet, self.vqgan), device, dtype)
        self.device, self.dtype = torch.device(device), dtype
        self.info["dtype"] = name

    @torch.no_grad()
    def lr_latent(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(y, lq): the VQ latent of the bicubic ×4 LR (float32) and the LR in [-1, 1], the network's condition."""
        p = next(self.vqgan.parameters())
        lq = lr.to(p.device, torch.float32) * 2 - 1
        up = F.interpolate(lq, scale_factor=4, mode="bicubic", align_corners=False)  # not clamped, as released
        return self.vqgan.encode(up.to(p.dtype)).latents.float(), lq

    def predict_x0(self, x_t: torch.Tensor, lq: torch.Tensor, t: int) -> torch.Tensor:
        """The network's x0 at step index t, input scaled by 1/√(η_t κ² + 1); float32, differentiable."""
        tt = torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device)
        return self.unet(x_t * self.schedule.input_scale(tt, x_t), tt, lq).float()

    @torch.no_grad()
    def sample(self, y: torch.Tensor, lq: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The x0 latent from y: T ancestral steps (ResShift) or the first x0 prediction (TAD-SR)."""
        def noise() -> torch.Tensor:
            return torch.randn(y.shape, generator=generator).to(y.device)

        x = self.schedule.prior_sample(y, noise())
        for t in reversed(range(self.schedule.steps)):
            x0 = self.predict_x0(x, lq, t)
            if self.one_step:
                return x0
            x = self.schedule.step(x0, x, t, noise() if t > 0 else None)
        return x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """A latent → the image in [0, 1] (the VQ decoder quantises first, as released)."""
        img = self.vqgan.decode(z.to(next(self.vqgan.parameters()).dtype)).sample
        return (img.float().clamp(-1, 1) + 1) / 2

    @torch.no_grad()
    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        y, lq = self.lr_latent(lr)
        z = self.sample(y, lq, torch.Generator().manual_seed(self.seed))
        return self.decode(z).to(lr.device)

    @torch.no_grad()
    def targets(self, lr: torch.Tensor, space: FeatureSpace, multiple: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
        """One (tiled) sampler run on the LR padded to `multiple` as the student pads it: the SR
        cropped back, and the student's feature space of the padded SR (the VQ latent is not the
        student's, as for the pixel-space teachers)."""
        padded, size = pad_to_multiple(lr, multiple)
        sr = self.upscale(padded, color_fix="none")
        p = next(space.parameters())
        return crop_to(sr, size, self.scale), space.from_image(sr.to(p.device, p.dtype))

    @torch.no_grad()
    def features(self, lr: torch.Tensor, space: FeatureSpace, multiple: int = 16) -> torch.Tensor:
        return self.targets(lr, space, multiple)[1]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **self.info}


def load_network(checkpoint: str, preset: str) -> ResShiftUNet:
    """A released `.pth` in `preset`'s architecture, or `adcsr train tadsr`'s output folder (its
    own config.json gives the architecture)."""
    if not Path(checkpoint).is_dir():
        return load_release_unet(checkpoint, preset)
    return load_or_user_error(ResShiftUNet.from_pretrained, "ResShift UNet folder", checkpoint).eval()


class TADSRTeacher(ResShiftTeacher):
    """TAD-SR: the same network and schedule, one step (x̂0 at t = T−1 from x_T)."""

    name = "tadsr"
    one_step = True
