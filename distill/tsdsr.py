"""TSD-SR's own training objective (target score distillation), as its paper and released
training script describe it.

The student (`adcsr.core.models.teachers.tsdsr`: SD3 transformer + rank-64 LoRA, VAE encoder +
rank-64 LoRA) gives ẑ = z_L − v in one step. A frozen copy of the SD3 transformer is the teacher
(its adapters disabled) and, with a trainable "reg" LoRA, the LoRA model that learns the
student's distribution. Per step (SD3's flow-matching schedule, shift 3.0):
  1. an index i uniform in [50, 950 − stride·(N−1)); one noise n; x = σ_i·n + (1−σ_i)·ẑ,
     z = σ_i·n + (1−σ_i)·z_HR;
  2. g = DASM-accumulated 0.7·g_VSD + 0.3·g_TSM over N points (`distill.losses.tsd_gradient`),
     teacher and LoRA predictions guided with CFG 7.5 against zero (null) embeddings;
  3. student: L_TSD = ½·MSE(ẑ, sg(ẑ − g)) + λ_lpips·perceptual(x̂, x_HR) + λ_mse·MSE(ẑ, z_HR);
  4. reg LoRA: flow-matching loss on sg(ẑ): MSE(v_reg(σ·n' + (1−σ)·ẑ, t), n' − ẑ).
AdamW: 5e-6 (student), 1e-6 (LoRA model). The perceptual term is LPIPS from a local weights file,
else the bundled EfficientNet-Lite0 distance (named in the manifest).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, Optional

import torch
import torch.nn.functional as F

from adcsr.core.config import load_config, path_field
from adcsr.core.errors import UserError
from adcsr.core.metrics.fidelity import mean_psnr_y
from adcsr.core.perceptual import perceptual_loss

from .config import DataConfig, PerceptualRunConfig
from .data import DegradedCrops
from .losses import cfg as guided
from .losses import tsd_gradient, tsd_loss
from .run_folder import finish_run, fit_run
from .partly_trained import CheckpointedBackbone, PartlyTrained
from .task import Phase, Task, adamw

REG_TARGETS = ["to_k", "to_q", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj"]  # the script's


@dataclass
class TSDSRConfig(PerceptualRunConfig):
    RUN_NAME: ClassVar[str] = "tsdsr"
    sd3_folder: Optional[str] = path_field()  # SD3-medium diffusers folder (transformer/, vae/)
    preset: Optional[Literal["tiny"]] = None  # instead: random SD3-shaped weights (CI)
    prompt_embeds: Optional[str] = path_field()  # the release's prompt_embeds.pt (default prompt)
    pooled_embeds: Optional[str] = path_field()  # and pool_embeds.pt
    rank: int = 64
    reg_rank: int = 64  # the paper: 64 for both (the released script defaults to 16)
    lr: float = 5e-6
    reg_lr: float = 1e-6
    vsd_weight: float = 0.7
    tsm_weight: float = 0.3
    guidance: float = 7.5
    dasm_steps: int = 1  # N: the paper's DASM uses 4; the authors' script runs 1
    dasm_stride: int = 50
    dasm_weights: list[float] = field(default_factory=lambda: [1.0, 0.3, 0.3, 0.3])
    index_range: list[int] = field(default_factory=lambda: [50, 950])
    lpips_weight: float = 1.0
    latent_mse_weight: float = 1.0  # the paper's early phase; 0 later (with DASM on)
    data: DataConfig = field(default_factory=lambda: DataConfig(hr_size=512))


class TSDSRStudent(CheckpointedBackbone):
    """The trainable student: the teacher-class model's transformer and VAE with their LoRA."""

    backbone = "transformer"

    def __init__(self, model):
        super().__init__()
        self.model = model  # a TSDSRTeacher (LoRA unmerged): its lr_latent / predict_latent / decode
        self.transformer, self.vae = model.transformer, model.vae
        for m in (self.transformer, self.vae):
            m.requires_grad_(False)
            for n, p in m.named_parameters():
                if "lora" in n:
                    p.requires_grad_(True)
        self.register_buffer("prompt_embeds", model.prompt_embeds.detach().clone().float())
        self.register_buffer("pooled_embeds", model.pooled_embeds.detach().clone().float())

    def forward(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(ẑ, x̂): the one step with gradients through both LoRAs (the VAE encoder's too)."""
        p = next(self.vae.parameters())
        hq = F.interpolate(lr.float(), scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1) * 2 - 1
        z = self.vae.encode(hq.to(p.dtype)).latent_dist.mean * self.vae.config.scaling_factor
        latent = self.model.predict_latent(z, self.prompt_embeds, self.pooled_embeds)
        return latent, self.model.decode(latent)


class RegModel(PartlyTrained):
    """The frozen SD3 transformer with a trainable "reg" LoRA: with adapters off it is the teacher,
    with them on the LoRA model. Predictions are guided (CFG) against zero embeddings."""

    def __init__(self, transformer, rank: int, prompt: torch.Tensor, pooled: torch.Tensor):
        super().__init__()
        from peft import LoraConfig

        transformer.requires_grad_(False)
        transformer.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                           target_modules=REG_TARGETS), adapter_name="reg")
        self.transformer = transformer
        self.register_buffer("prompt", prompt.detach().clone().float())
        self.register_buffer("pooled", pooled.detach().clone().float())

    def velocity(self, latent: torch.Tensor, t: torch.Tensor, guidance: float | None, lora: bool) -> torch.Tensor:
        if lora:
            self.transformer.enable_adapters()
        else:
            self.transformer.disable_adapters()
        b = latent.shape[0]
        prompt, pooled = self.prompt.expand(b, -1, -1), self.pooled.expand(b, -1)
        if guidance is None:
            return self.transformer(hidden_states=latent, timestep=t, encoder_hidden_states=prompt,
                                    pooled_projections=pooled).sample.float()
        out = self.transformer(hidden_states=torch.cat([latent, latent]), timestep=torch.cat([t, t]),
                               encoder_hidden_states=torch.cat([torch.zeros_like(prompt), prompt]),
                               pooled_projections=torch.cat([torch.zeros_like(pooled), pooled])).sample.float()
        uncond, cond = out.chunk(2)
        return guided(uncond, cond, guidance)


def _check_source(cfg: TSDSRConfig) -> None:
    if bool(cfg.sd3_folder) == bool(cfg.preset):
        raise UserError("tsdsr: give exactly one of sd3_folder (an SD3-medium diffusers folder) or preset: tiny")
    lo, hi = cfg.index_range
    if not 0 <= lo < hi - cfg.dasm_stride * (cfg.dasm_steps - 1) <= 1000:
        raise UserError(f"tsdsr: index_range {cfg.index_range} leaves no room for {cfg.dasm_steps} DASM steps of "
                        f"stride {cfg.dasm_stride}")


def _build_model(cfg: TSDSRConfig):
    from adcsr.core.models.teachers.tsdsr import TSDSRTeacher

    if cfg.preset:
        model = TSDSRTeacher.from_preset(cfg.preset, seed=cfg.trainer.seed)
        with torch.no_grad():  # a fresh student: its LoRA starts at zero, as peft's gaussian init gives
            for m in (model.transformer, model.vae):
                for n, p in m.named_parameters():
                    if "lora_B" in n:
                        p.zero_()
        return model
    from diffusers import AutoencoderKL, SD3Transformer2DModel

    from adcsr.core.models.teachers.tsdsr import add_adapters, read_embedding

    folder = Path(cfg.sd3_folder)
    transformer = SD3Transformer2DModel.from_pretrained(folder, subfolder="transformer")
    vae = AutoencoderKL.from_pretrained(folder, subfolder="vae")
    add_adapters(transformer, vae, cfg.rank)
    d = transformer.config
    if cfg.prompt_embeds and cfg.pooled_embeds:
        pe = read_embedding(cfg.prompt_embeds, (1, -1, d.joint_attention_dim), "prompt embedding")
        pooled = read_embedding(cfg.pooled_embeds, (1, d.pooled_projection_dim), "pooled prompt embedding")
    else:
        pe, pooled = torch.zeros(1, 333, d.joint_attention_dim), torch.zeros(1, d.pooled_projection_dim)
    return TSDSRTeacher(transformer, vae, pe, pooled, {"sd3_folder": str(folder)})


class TSDSRTask(Task):
    fixed_lr = ()

    def __init__(self, cfg: TSDSRConfig):
        from diffusers import FlowMatchEulerDiscreteScheduler

        _check_source(cfg)
        if cfg.data.hr_size % 16 or cfg.data.heldout_size % 16:
            raise UserError("tsdsr: data.hr_size and data.heldout_size must be multiples of 16 (VAE ÷ 8, patches of 2)")
        self.cfg = cfg
        self.data = DegradedCrops(cfg.data, cfg.trainer.seed)
        model = _build_model(cfg)
        base = copy.deepcopy(model.transformer)  # the teacher: SD3 itself (the student's LoRA removed below)
        base.unload_lora()
        self.student = TSDSRStudent(model)
        self.reg = RegModel(base, cfg.reg_rank, model.prompt_embeds, model.pooled_embeds)
        sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
        self.sigmas, self.timesteps = sched.sigmas.float(), sched.timesteps.float()
        self.perceptual = perceptual_loss(cfg.lpips_weights)
        self.modules = {"student": self.student, "reg": self.reg}
        self.frozen = {"perceptual": self.perceptual}
        self.phases = [Phase("student", self.student_loss), Phase("reg", self.reg_loss)]
        self.ema_module = "student"
        self.heldout = None

    def optimizers(self):
        return {"student": adamw(self.student.trainable_parameters(), self.cfg.lr),
                "reg": adamw(self.reg.trainable_parameters(), self.cfg.reg_lr)}

    def batch(self, step, indices, device):
        c = self.cfg
        b = self.data.batch(indices)
        hr = b["hr"].to(device)
        vae = self.student.vae
        with torch.no_grad():
            z_hr = vae.encode(hr * 2 - 1).latent_dist.mean * vae.config.scaling_factor
        g = torch.Generator().manual_seed(c.trainer.seed * 1_000_003 + step)
        hi = c.index_range[1] - c.dasm_stride * (c.dasm_steps - 1)
        index = int(torch.randint(c.index_range[0], hi, (1,), generator=g))
        noise = [torch.randn(z_hr.shape, generator=g).to(device) for _ in range(2)]
        reg_index = int(torch.randint(0, 1000, (1,), generator=g))
        return {"lr": b["lr"].to(device), "hr": hr, "z_hr": z_hr, "index": index, "reg_index": reg_index,
                "noise": noise}

    def _at(self, i: int, b: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sigmas[i].to(device), self.timesteps[i].to(device).expand(b)

    def student_loss(self, b, step):
        c = self.cfg
        latent, sr = self.student(b["lr"])
        b["latent"] = latent.detach()
        n = b["noise"][0]
        sigma, _ = self._at(b["index"], n.shape[0], n.device)
        x = sigma * n + (1 - sigma) * latent.detach()
        z = sigma * n + (1 - sigma) * b["z_hr"]

        def teacher(lat, i):
            return self.reg.velocity(lat, self._at(i, lat.shape[0], lat.device)[1], c.guidance, lora=False)

        def lora(lat, i):
            return self.reg.velocity(lat, self._at(i, lat.shape[0], lat.device)[1], c.guidance, lora=True)

        grad = tsd_gradient(x, z, self.sigmas.to(n.device), b["index"], teacher, lora, c.dasm_steps, c.dasm_stride,
                            tuple(c.dasm_weights), c.vsd_weight, c.tsm_weight)
        tsd = tsd_loss(latent, grad)
        per = self.perceptual(sr, b["hr"])
        mse = F.mse_loss(latent, b["z_hr"])
        loss = tsd + c.lpips_weight * per + c.latent_mse_weight * mse
        return loss, {"tsd": tsd.item(), "perceptual": per.item(), "latent_mse": mse.item()}

    def reg_loss(self, b, step):
        """The LoRA model learns the student's distribution: flow matching on sg(ẑ)."""
        latent = b["latent"]
        n = b["noise"][1]
        sigma, t = self._at(b["reg_index"], n.shape[0], n.device)
        v = self.reg.velocity(sigma * n + (1 - sigma) * latent, t, None, lora=True)
        loss = F.mse_loss(v, n - latent)
        return loss, {"reg": loss.item()}

    @torch.no_grad()
    def evaluate(self, step):
        if self.heldout is None:
            self.heldout = self.data.heldout()
        dev = next(self.student.parameters()).device
        latent, sr = self.student(self.heldout["lr"].to(dev))
        vae = self.student.vae
        z_hr = vae.encode(self.heldout["hr"].to(dev) * 2 - 1).latent_dist.mean * vae.config.scaling_factor
        sr = sr.cpu()
        metrics = {"psnr_y_vs_hr": mean_psnr_y(sr, self.heldout["hr"]), "mse_vs_hr": F.mse_loss(sr, self.heldout["hr"]).item(),
                   "latent_mse_vs_hr": F.mse_loss(latent, z_hr).item()}
        return metrics, {"heldout_sr_hr": torch.cat([sr, self.heldout["hr"]])}


def train_tsdsr(cfg: TSDSRConfig | str | Path | dict, resume: bool = False) -> Path:
    """Train TSD-SR; returns the folder with its LoRA files in the release's layout."""
    if not isinstance(cfg, TSDSRConfig):
        cfg = load_config(TSDSRConfig, cfg)
    _check_source(cfg)
    run_dir, trainer = fit_run(cfg, resume, TSDSRTask, "tsdsr")
    task = trainer.task
    student = trainer.final_modules()["student"]
    return finish_run(
        trainer, run_dir, "tsdsr", lambda d: student.model.save_lora(d), stage="tsdsr",
        method="TSD-SR (target score distillation)", perceptual_loss=task.perceptual.name,
        dasm={"steps": cfg.dasm_steps, "stride": cfg.dasm_stride, "weights": cfg.dasm_weights},
        weights={"vsd": cfg.vsd_weight, "tsm": cfg.tsm_weight, "lpips": cfg.lpips_weight,
                 "latent_mse": cfg.latent_mse_weight}, guidance=cfg.guidance,
    )
