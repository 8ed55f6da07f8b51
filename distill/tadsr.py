"""TAD-SR's own training objective (time-aware distillation of ResShift), as its paper and
released training code describe it.

Teacher: ResShift's 15-step model (`resshift_realsrx4_s15_v1.pth`), frozen. Student: a copy of
the teacher's network (the release initialises it so), run once at t = T−1 from
x_T = y + κ√η_T ε. Per step, for each sample (all draws seeded by the sample's global index):
  1. ε → x_T; the student's x̂0; the teacher's x0 from the SAME x_T by the 15-step deterministic
     sampler the release distils from (DDIM with η = 0: `ddim_sample`);
  2. student: L = λ_reg·MSE(x̂0, x0^tch) + λ_hsd·L_hsd + λ_GAN·(−D(F(x̂0_{t_dis}), t_dis)), with
     HSD at t' drawn uniformly from `hsd_timesteps` ({0, 1, 2}: the paper's "uniformly in [1, 3]"
     in its 1-based steps, and the release's `randint(0, 3)` per sample agree) and fresh noise ε'
     shared by both perturbed outputs (`tadsr_losses.hsd_gradient`);
  3. discriminator (`tadsr_discriminator`): hinge loss between the noised HR latent (real) and
     the noised sg(x̂0) (fake), the same t_dis (uniform in `disc_timesteps`, [0, 13]) and noise.
Beside the release: noise here is Gaussian (the release draws the HSD and discriminator noise
with `rand_like`, uniform in [0, 1)); the teacher's input is scaled once (the release scales the
HSD input twice, a change of < 0.1% at t ≤ 2); the generator phase runs before the
discriminator's (the release updates D first on the same student output).
AdamW, lr 5e-5 for both, weight decay 0 (the release's); 30K iterations.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, Optional

import torch

from adcsr.core.config import load_config, path_field
from adcsr.core.errors import UserError
from adcsr.core.metrics.fidelity import mean_psnr_y

from .config import DataConfig, RunConfig
from .data import DegradedCrops
from .run_folder import finish_run, fit_run
from .tadsr_discriminator import TimeAwareDiscriminator, encoder_features, feature_channels
from .tadsr_losses import eps_from_x0, hinge_discriminator, hinge_generator, hsd_gradient, hsd_loss, regression_loss
from .task import Phase, Task

HELDOUT_NOISE_SEED = 4242


@dataclass
class TADSRConfig(RunConfig):
    RUN_NAME: ClassVar[str] = "tadsr"
    preset: Optional[Literal["tiny", "full"]] = None  # random teacher weights of that shape (CI, timing)
    teacher_checkpoint: Optional[str] = path_field()  # instead: ResShift's resshift_realsrx4_s15_v1.pth
    autoencoder: Optional[str] = path_field()  # and its autoencoder_vq_f4.pth
    architecture: Literal["tiny", "full"] = "full"  # a checkpoint's shapes (the release: full)
    lr: float = 5e-5
    disc_lr: float = 5e-5  # the release: the student's settings
    weight_decay: float = 0.0  # the release's, for both AdamWs
    regression_weight: float = 1.0
    hsd_weight: float = 1.0  # λ1
    hsd_timesteps: list[int] = field(default_factory=lambda: [0, 1, 2])
    gan_weight: float = 0.02  # λ2
    disc_timesteps: list[int] = field(default_factory=lambda: [0, 13])  # t_dis uniform in [lo, hi]
    data: DataConfig = field(default_factory=lambda: DataConfig(hr_size=256, heldout_size=256))


def _check(cfg: TADSRConfig, steps: int = 15) -> None:
    if bool(cfg.preset) == bool(cfg.teacher_checkpoint or cfg.autoencoder):
        raise UserError("tadsr: give exactly one of preset (tiny|full) or teacher_checkpoint + autoencoder")
    if not cfg.preset and not (cfg.teacher_checkpoint and cfg.autoencoder):
        raise UserError("tadsr: teacher_checkpoint and autoencoder go together (the network and its VQGAN)")
    if not cfg.hsd_timesteps or not all(0 <= t < steps for t in cfg.hsd_timesteps):
        raise UserError(f"tadsr: hsd_timesteps {cfg.hsd_timesteps} must be step indices in [0, {steps - 1}]")
    if len(cfg.disc_timesteps) != 2 or not 0 <= cfg.disc_timesteps[0] <= cfg.disc_timesteps[1] < steps:
        raise UserError(f"tadsr: disc_timesteps {cfg.disc_timesteps} must be [lo, hi], 0 <= lo <= hi <= {steps - 1}")


def _build_teacher(cfg: TADSRConfig):
    from adcsr.core.models.teachers.resshift import ResShiftTeacher

    if cfg.preset:
        return ResShiftTeacher.load(cfg.preset, seed=cfg.trainer.seed)
    return ResShiftTeacher.load(cfg.architecture, cfg.teacher_checkpoint, cfg.autoencoder)


def predict(unet, schedule, x_t: torch.Tensor, lq: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """A network's x0 at per-sample step indices t (N,), input scaled by 1/√(η_t κ² + 1)."""
    return unet(x_t * schedule.input_scale(t, x_t), t, lq).float()


@torch.no_grad()
def ddim_sample(teacher, x_T: torch.Tensor, y: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
    """The teacher's x0 after T deterministic steps from x_T (the release's distillation target):
    x_{t−1} = q(x̂0, y, t−1) with the noise x̂0 implies at t, ε̂; the last step returns x̂0."""
    s = teacher.schedule
    x = x_T
    for step in range(s.steps - 1, 0, -1):
        t = torch.full((x.shape[0],), step, dtype=torch.long, device=x.device)
        x0 = predict(teacher.unet, s, x, lq, t)
        x = s.q_sample(x0, y, t - 1, eps_from_x0(s, x, x0, y, t))
    return predict(teacher.unet, s, x, lq, torch.zeros(x.shape[0], dtype=torch.long, device=x.device))


def _sample_draws(cfg: TADSRConfig, index: int, shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """One sample's random draws, seeded by its global index (the same whatever the process split)."""
    g = torch.Generator().manual_seed(((cfg.trainer.seed + 1) * 1_000_033 + index) % 2**62)
    lo, hi = cfg.disc_timesteps
    choice = int(torch.randint(len(cfg.hsd_timesteps), (1,), generator=g))
    return {"noise_T": torch.randn(shape, generator=g), "noise_hsd": torch.randn(shape, generator=g),
            "noise_dis": torch.randn(shape, generator=g), "t_hsd": torch.tensor(cfg.hsd_timesteps[choice]),
            "t_dis": torch.randint(lo, hi + 1, (), generator=g)}


class TADSRTask(Task):
    def __init__(self, cfg: TADSRConfig):
        _check(cfg)
        self.cfg = cfg
        self.teacher = _build_teacher(cfg)
        self.schedule = self.teacher.schedule
        multiple = self.teacher.unet.size_multiple * 4
        if cfg.data.hr_size % multiple or cfg.data.heldout_size % multiple:
            raise UserError(f"tadsr: data.hr_size and data.heldout_size must be multiples of {multiple} "
                            "(4 × the network's size multiple)")
        self.data = DegradedCrops(cfg.data, cfg.trainer.seed)
        self.student = copy.deepcopy(self.teacher.unet).requires_grad_(True)  # initialised from the teacher
        unet = self.teacher.unet
        self.disc = TimeAwareDiscriminator(feature_channels(unet), unet.config.model_channels)
        self.modules = {"student": self.student, "disc": self.disc}
        self.teachers = {"teacher": self.teacher}
        self.phases = [Phase("student", self.student_loss), Phase("disc", self.disc_loss)]
        self.ema_module = "student"
        self.heldout = None

    def optimizers(self):
        wd = self.cfg.weight_decay
        return {"student": torch.optim.AdamW(self.student.parameters(), self.cfg.lr, weight_decay=wd),
                "disc": torch.optim.AdamW(self.disc.parameters(), self.cfg.disc_lr, weight_decay=wd)}

    def _one_step(self, x_T: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        t = torch.full((x_T.shape[0],), self.schedule.steps - 1, dtype=torch.long, device=x_T.device)
        return predict(self.student, self.schedule, x_T, lq, t)

    @torch.no_grad()
    def batch(self, step, indices, device):
        b = self.data.batch(indices)
        y, lq = self.teacher.lr_latent(b["lr"].to(device))
        vq = self.teacher.vqgan
        z_hr = vq.encode((b["hr"].to(device) * 2 - 1).to(next(vq.parameters()).dtype)).latents.float()
        draws = [_sample_draws(self.cfg, i, tuple(y.shape[1:])) for i in indices]
        out = {k: torch.stack([d[k] for d in draws]).to(device) for k in draws[0]}
        out["x_T"] = self.schedule.prior_sample(y, out.pop("noise_T"))
        out["target"] = ddim_sample(self.teacher, out["x_T"], y, lq)
        return {**out, "y": y, "lq": lq, "z_hr": z_hr}

    def _logits(self, x0: torch.Tensor, b: dict) -> list[torch.Tensor]:
        """D on the teacher's features of x0 noised to t_dis (the batch's noise)."""
        x_t = self.schedule.q_sample(x0, b["y"], b["t_dis"], b["noise_dis"])
        return self.disc(encoder_features(self.teacher.unet, self.schedule, x_t, b["t_dis"], b["lq"]), b["t_dis"])

    def student_loss(self, b, step):
        c = self.cfg
        x0 = self._one_step(b["x_T"], b["lq"])
        b["x0"] = x0.detach()
        reg = regression_loss(x0, b["target"])
        g = hsd_gradient(x0, b["target"], b["y"], b["t_hsd"], b["noise_hsd"], self.schedule,
                         lambda x_t, t: predict(self.teacher.unet, self.schedule, x_t, b["lq"], t))
        hsd = hsd_loss(x0, g)
        adv = hinge_generator(self._logits(x0, b))
        loss = c.regression_weight * reg + c.hsd_weight * hsd + c.gan_weight * adv
        return loss, {"regression": reg.item(), "hsd": hsd.item(), "adv": adv.item()}

    def disc_loss(self, b, step):
        with torch.no_grad():
            t, lq = b["t_dis"], b["lq"]
            real = encoder_features(self.teacher.unet, self.schedule,
                                    self.schedule.q_sample(b["z_hr"], b["y"], t, b["noise_dis"]), t, lq)
            fake = encoder_features(self.teacher.unet, self.schedule,
                                    self.schedule.q_sample(b["x0"], b["y"], t, b["noise_dis"]), t, lq)
        loss = hinge_discriminator(self.disc(real, t), self.disc(fake, t))
        return loss, {"disc": loss.item()}

    @torch.no_grad()
    def _heldout(self, device) -> dict[str, torch.Tensor]:
        """Held-out crops, a fixed x_T each, and the teacher's 15-step SR from it (computed once)."""
        h = self.data.heldout()
        y, lq = self.teacher.lr_latent(h["lr"].to(device))
        noise = torch.randn(y.shape, generator=torch.Generator().manual_seed(HELDOUT_NOISE_SEED)).to(device)
        x_T = self.schedule.prior_sample(y, noise)
        target = ddim_sample(self.teacher, x_T, y, lq)
        return {"hr": h["hr"], "lq": lq, "x_T": x_T, "target": target, "teacher_sr": self.teacher.decode(target).cpu()}

    @torch.no_grad()
    def evaluate(self, step):
        dev = next(self.student.parameters()).device
        if self.heldout is None:
            self.heldout = self._heldout(dev)
        h = self.heldout
        x0 = self._one_step(h["x_T"], h["lq"])
        sr = self.teacher.decode(x0).cpu()
        metrics = {"psnr_y_vs_hr": mean_psnr_y(sr, h["hr"]), "psnr_y_vs_teacher": mean_psnr_y(sr, h["teacher_sr"]),
                   "latent_mse_vs_teacher": regression_loss(x0, h["target"]).item()}
        return metrics, {"heldout_sr_teacher_hr": torch.cat([sr, h["teacher_sr"], h["hr"]])}


def train_tadsr(cfg: TADSRConfig | str | Path | dict, resume: bool = False) -> Path:
    """Train TAD-SR; returns the student network's folder (diffusers `save_pretrained`: config.json
    + safetensors; `ResShiftUNet.from_pretrained` reads it; it runs with `TADSRTeacher`)."""
    if not isinstance(cfg, TADSRConfig):
        cfg = load_config(TADSRConfig, cfg)
    _check(cfg)
    run_dir, trainer = fit_run(cfg, resume, TADSRTask, "tadsr")
    task = trainer.task
    student = trainer.final_modules()["student"]
    return finish_run(
        trainer, run_dir, "tadsr", lambda d: student.save_pretrained(d), stage="tadsr",
        method="TAD-SR (time-aware distillation: regression to the 15-step teacher, HSD, time-aware discriminator)",
        teacher=task.teacher.describe(), teacher_sampler="15-step deterministic (DDIM, eta 0), as the release",
        student_init="the teacher's weights", one_step_timestep=task.schedule.steps - 1,
        weights={"regression": cfg.regression_weight, "hsd": cfg.hsd_weight, "gan": cfg.gan_weight},
        hsd_timesteps=cfg.hsd_timesteps, disc_timesteps=cfg.disc_timesteps,
        output_format="diffusers save_pretrained folder of ResShiftUNet (safetensors)",
    )
