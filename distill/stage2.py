"""Stage 2: adversarial feature distillation (AdcSR as released, FACTS §1).

The student (UNet + link + decoder mid-block trainable, up path frozen) regresses the teacher's
features in the pruned decoder's space, L_distill = L1(f_student, f_teacher), while a LoRA-UNet
discriminator tells f_student from f_GT = space.from_image(HR): generator loss
distill_weight·L_distill + adv_weight·softplus(−D(f_student)), discriminator loss
softplus(D(f_student)) + softplus(−D(f_GT)). `distill_level` switches the L1 to the mid-block
input (`pre_mid`) or to the SR image (`image`): the paper's ablation; D always reads mid features.
Beyond the release: `image_weight` / `perceptual_weight` add terms between the student's and the
teacher's SR images, `train_decoder` trains the up path with them, and `teacher_pool` reuses the
teacher's outputs for a fixed pool of training samples.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from adcsr.core.config import load_config
from adcsr.core.errors import UserError
from adcsr.core.metrics.fidelity import mean_psnr_y
from adcsr.core.models.feature_space import FeatureSpace
from adcsr.core.models.identity_init import zero_residual_branches
from adcsr.core.models.padding import pad_to_multiple
from adcsr.core.models.sd_configs import unet_config
from adcsr.core.models.student import AdcSRStudent
from adcsr.core.models.teachers import get_teacher
from adcsr.core.models.vae_decoder import PrunedVAEDecoder, run_mid_block
from adcsr.core.perceptual import perceptual_loss

from .config import DiscriminatorConfig, Stage2Config
from .data import DegradedCrops
from .discriminator import FeatureDiscriminator
from .losses import discriminator_adv, generator_adv
from .run_folder import finish_run, fit_run
from .stage1 import encoder_role, load_vae
from .task import Phase, Task, adam


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
    return FeatureDiscriminator(unet, channels, cfg.rank, cfg.timestep, prompt, seed=seed, alpha=cfg.alpha)


def load_image_embeds(path: str, names: list[str], width: int) -> dict[str, torch.Tensor]:
    """The per-image embeddings of every training image, checked before training starts."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(path)
    except (OSError, SafetensorError) as e:
        raise UserError(f"cannot read image_embeds {path}: {str(e).strip().splitlines()[0][:200]}") from None
    missing = [n for n in names if n not in tensors]
    if missing:
        raise UserError(f"image_embeds {path} has no embedding for {len(missing)} training image(s), e.g. {missing[0]!r}")
    shapes = {tuple(tensors[n].shape) for n in names}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2 or next(iter(shapes))[1] != width:
        raise UserError(f"image_embeds {path}: every embedding must be (L, {width}) with one L, got {sorted(shapes)[:3]}")
    return {n: tensors[n].float() for n in names}


class DistillTask(Task):
    fixed_lr = ("disc",)  # the release schedules the generator's lr only; D keeps disc_lr

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
        if cfg.zero_residuals:
            zero_residual_branches(self.student.unet)
        self.student.init_decoder_from(decoder)
        if cfg.lr_skip or self.student.config.lr_skip:  # stage 1's output conv made images, not residuals
            self.student = self.student.with_lr_skip()
        self.student.requires_grad_(False)
        for p in self.trained_parameters():
            p.requires_grad_(True)
        self.teacher = get_teacher(cfg.teacher, **cfg.teacher_options)
        self.disc = build_discriminator(cfg.discriminator, self.space.channels, cfg.trainer.seed)
        self.image_embeds = load_image_embeds(
            cfg.discriminator.image_embeds, self.data.image_names,
            self.disc.unet.config.cross_attention_dim) if cfg.discriminator.image_embeds else None
        self.target_space = PreMidSpace(self.space) if cfg.distill_level == "pre_mid" else self.space
        self.modules = {"student": self.student, "disc": self.disc}
        self.frozen = {"space": self.space}
        if cfg.perceptual_weight > 0:
            self.perceptual = perceptual_loss(cfg.lpips_weights)
            self.frozen["perceptual"] = self.perceptual
        self.pool: dict[int, dict[str, torch.Tensor]] = {}
        self.teachers = {"teacher": self.teacher}
        self.phases = [Phase("student", self.student_loss), Phase("disc", self.disc_loss)]
        self.ema_module = "student"
        self.heldout: dict[str, torch.Tensor] | None = None  # at the first evaluation (teacher placed)

    def trained_parameters(self) -> list[nn.Parameter]:
        if self.cfg.train_decoder:
            return [p for n, p in self.student.named_parameters() if not n.startswith("decoder.conv_in")]
        return self.student.stage2_parameters()

    def optimizers(self):
        return {"student": adam(self.trained_parameters(), self.cfg.lr),
                "disc": adam([p for p in self.disc.parameters() if p.requires_grad], self.cfg.disc_lr)}

    # ---- targets and student outputs at the configured level ---------------------------------
    @torch.no_grad()
    def teacher_outputs(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the distillation target at the configured level, the teacher's SR), one teacher run."""
        if self.cfg.distill_level == "image":
            sr = self.teacher.upscale(lr, color_fix="none")
            return sr, sr
        sr, target = self.teacher.targets(lr, self.target_space, multiple=self.student.size_multiple)
        return target, sr

    def student_outputs(self, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(what L_distill compares, the mid-block features the discriminator reads)."""
        s = self.student
        if self.cfg.distill_level == "pre_mid":
            x, _ = pad_to_multiple(lr * 2 - 1, s.size_multiple)
            pre = s.link(s.unet(F.pixel_unshuffle(x, 2)))
            return pre, run_mid_block(s.decoder, pre)
        feats = s.features(lr)
        if self.cfg.distill_level == "image":
            return s.decode(feats, lr), feats
        return feats, feats

    @property
    def needs_teacher_sr(self) -> bool:
        return self.cfg.image_weight > 0 or self.cfg.perceptual_weight > 0

    @torch.no_grad()
    def samples(self, indices: list[int], device: torch.device) -> dict[str, torch.Tensor]:
        """HR, LR and the teacher's outputs for these sample indices (through the pool if any), on
        the CPU; the teacher runs on `device`."""
        n = self.cfg.teacher_pool
        slots = [i % n for i in indices] if n else list(indices)
        todo = [s for s in slots if s not in self.pool]
        if todo:
            b = self.data.batch(todo, names=True)
            names = b.pop("names")
            if self.image_embeds is not None:
                b["embeds"] = torch.stack([self.image_embeds[name] for name in names])
            target, sr = self.teacher_outputs(b["lr"].to(device))
            b["target"] = target.cpu()
            if self.needs_teacher_sr:
                b["teacher_sr"] = sr.cpu()
            if not n:  # no pool: todo is the indices themselves, in order
                return b
            self.pool.update({s: {k: v[j] for k, v in b.items()} for j, s in enumerate(todo)})
        return {k: torch.stack([self.pool[s][k] for s in slots]) for k in self.pool[slots[0]]}

    # ---- phases ------------------------------------------------------------------------------
    def batch(self, step, indices, device):
        b = {k: v.to(device) for k, v in self.samples(indices, device).items()}
        hr = b.pop("hr")
        if self.adversarial(step):  # f_GT feeds the discriminator only (≈ a third of a plain step)
            with torch.no_grad():
                b["real"] = self.space.from_image(hr)
        return b

    def adversarial(self, step: int) -> bool:
        return step >= self.cfg.adv_start and self.cfg.adv_weight > 0

    def student_loss(self, b, step):
        out, feats = self.student_outputs(b["lr"])
        b["fake"] = feats.detach()
        distill = (out - b["target"]).abs().mean()
        c = self.cfg
        loss, logs = c.distill_weight * distill, {"distill": distill.item()}
        if self.needs_teacher_sr:
            sr = out if c.distill_level == "image" else self.student.decode(feats, b["lr"])
            if c.image_weight > 0:
                image = (sr - b["teacher_sr"]).abs().mean()
                loss, logs["image"] = loss + c.image_weight * image, image.item()
            if c.perceptual_weight > 0:
                per = self.perceptual(sr, b["teacher_sr"])
                loss, logs["perceptual"] = loss + c.perceptual_weight * per, per.item()
        if self.adversarial(step):
            adv = generator_adv(self.disc(feats, b.get("embeds")))
            loss = loss + self.cfg.adv_weight * adv
            logs["adv"] = adv.item()
        return loss, logs

    def disc_loss(self, b, step):
        if not self.adversarial(step):
            return None
        loss = discriminator_adv(self.disc(b["fake"], b.get("embeds")), self.disc(b["real"], b.get("embeds")))
        return loss, {"disc": loss.item()}

    # ---- evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def _heldout(self, device: torch.device) -> dict[str, torch.Tensor]:
        h = self.data.heldout()
        lr = h["lr"].to(device)
        target, sr = self.teacher_outputs(lr)
        return {**h, "target": target.cpu(), "teacher_sr": sr.cpu()}

    def evaluate(self, step):
        dev = next(self.student.parameters()).device
        if self.heldout is None:
            self.heldout = self._heldout(dev)
        h = self.heldout
        lr = h["lr"].to(dev)
        out, feats = self.student_outputs(lr)
        sr = self.student.decode(feats, lr).cpu()
        metrics = {
            "distill": float((out.cpu() - h["target"]).abs().mean()),
            "psnr_y_student_vs_teacher": mean_psnr_y(sr, h["teacher_sr"]),
            "psnr_y_student_vs_hr": mean_psnr_y(sr, h["hr"]),
            "psnr_y_teacher_vs_hr": mean_psnr_y(h["teacher_sr"], h["hr"]),
        }
        return metrics, {"heldout_teacher_student_hr": torch.cat([h["teacher_sr"], sr, h["hr"]])}


def _conditioning(cfg: DiscriminatorConfig, task: DistillTask) -> str:
    if task.image_embeds is not None:
        return f"per-image text embeddings from {cfg.image_embeds} ({len(task.image_embeds)} images)"
    if cfg.prompt_embeds:
        return f"one fixed text embedding from {cfg.prompt_embeds} for every sample"
    return "one fixed seeded stand-in embedding for every sample (no text embeddings given)"


def distill(cfg: Stage2Config | str | Path | dict, resume: bool = False) -> Path:
    """Distil the teacher into the student; returns its `save_pretrained` folder (`<run_dir>/student`)."""
    if not isinstance(cfg, Stage2Config):
        cfg = load_config(Stage2Config, cfg)
    if not cfg.decoder:  # bad input fails before the run folder is made
        raise UserError("decoder: give stage 1's decoder folder (`adcsr distill stage1` output)")
    load_vae(cfg.vae)
    run_dir, trainer = fit_run(cfg, resume, DistillTask, "stage2")
    task = trainer.task
    student = trainer.final_modules()["student"]
    return finish_run(
        trainer, run_dir, "student", lambda d: student.save_pretrained(d), stage="stage2",
        model="AdcSRStudent", teacher=task.teacher.describe(), encoder=encoder_role(cfg.vae),
        decoder=cfg.decoder,
        student_init=(cfg.student or f"randomly initialised `{cfg.student_preset}` preset (no compress output given)")
        + ("; UNet residual branches zeroed (identity blocks)" if cfg.zero_residuals else "")
        + ("; lr_skip: the up path's output is a residual over the bicubic LR (its output conv zeroed)"
           if student.config.lr_skip else ""),
        distill_level=cfg.distill_level, adv_weight=cfg.adv_weight, lr=cfg.lr, disc_lr=cfg.disc_lr,
        teacher_pool=cfg.teacher_pool or "none: the teacher ran on every sample",
        image_loss={"l1_weight": cfg.image_weight, "perceptual_weight": cfg.perceptual_weight,
                    "perceptual": task.perceptual.name if cfg.perceptual_weight > 0 else None},
        trained=("UNet + link + the whole decoder (up path included: not the release's choice)"
                 if cfg.train_decoder else "UNet + link + decoder mid-block (up path frozen, as released)"),
        discriminator={"backbone": cfg.discriminator.unet or f"randomly initialised `{cfg.discriminator.preset}` "
                       "UNet2DConditionModel (no SD UNet given)", "lora_rank": cfg.discriminator.rank,
                       "lora_scale": cfg.discriminator.alpha / cfg.discriminator.rank,
                       "timestep": cfg.discriminator.timestep,
                       "conditioning": _conditioning(cfg.discriminator, task),
                       "lr": f"{cfg.disc_lr} constant (the trainer's schedule applies to the student only)",
                       "trainable_params": sum(p.numel() for p in task.disc.parameters() if p.requires_grad)},
        ema=cfg.trainer.ema_decay > 0,
    )
