"""DFOSD (Distillation-Free One-Step Diffusion, Li et al.), built from its paper: its authors
never released code or weights.

Generator: the SD2.1-base UNet with peft LoRA (rank = alpha = 16, the paper's), a learnable text
embedding in place of the text encoder (one 77-token embedding, initialised to zeros: the paper
gives no initialisation), the VAE frozen, one step at T_L (Eq. 1). The paper sets T_L to "an
intermediate time step" without a number: it is a parameter here, 500 by default. LoRA goes on
the UNet's attention projections, convolutions and feed-forwards (the OSEDiff release's rule;
DFOSD names no list). Its training objective (noise-aware discriminator, EA-DISTS) is
`adcsr.distill.dfosd`.

Checkpoint (this project's format, as there is no release): `<name>.safetensors` holding
`unet.<LoRA keys>` and `text_embedding`, with `<name>.json` giving rank, alpha, targets and T_L.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from ...errors import UserError
from ..loading import copy_parameters, read_tensors_with_metadata
from ..sd_configs import PRESETS, unet_config, vae_config
from .osediff import unet_lora_targets
from .sd_one_step import OneStepSDTeacher, check_precision, randomize_lora, require_subfolders, sd21_scheduler

RANK = ALPHA = 16
DEFAULT_TIMESTEP = 500
TOKENS = 77
META_KEYS = ("rank", "alpha", "targets", "timestep")


def lora_targets(unet: torch.nn.Module) -> list[str]:
    return [m for group in unet_lora_targets(unet).values() for m in group]


def add_lora(unet: torch.nn.Module, rank: int, alpha: float, targets: list[str]) -> None:
    from peft import LoraConfig

    unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=targets))


def count_full_size(rank: int = RANK) -> dict[str, int]:
    """DFOSD's parameters at full size (SD2.1-base UNet + LoRA, VAE, text embedding), on the meta device."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**unet_config("sd21"))
        vae = AutoencoderKL(**vae_config("sd21"))
        base = sum(p.numel() for p in unet.parameters())
        add_lora(unet, rank, rank, lora_targets(unet))
    lora = sum(p.numel() for n, p in unet.named_parameters() if "lora" in n)
    return {"unet": base, "lora": lora, "vae": sum(p.numel() for p in vae.parameters()),
            "text_embedding": TOKENS * unet.config.cross_attention_dim}


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(metadata, tensors) of a DFOSD checkpoint `<name>.safetensors` + `<name>.json`."""
    meta, tensors = read_tensors_with_metadata(path, "DFOSD")
    path = Path(path).with_suffix(".safetensors")
    missing = [k for k in META_KEYS if k not in meta] + ([] if "text_embedding" in tensors else ["text_embedding"])
    if missing:
        raise UserError(f"{path} is not a DFOSD checkpoint (missing {', '.join(missing)})")
    return meta, tensors


class DFOSDTeacher(OneStepSDTeacher):
    name = "dfosd"

    def __init__(self, unet, vae, scheduler, text_embedding: torch.Tensor, timestep: int, info: dict[str, Any],
                 lora: dict[str, Any], dtype: str = "fp32", device: str | torch.device = "cpu"):
        self.lora = lora
        super().__init__(unet, vae, scheduler, text_embedding, timestep, info, dtype, device)

    @classmethod
    def build(cls, unet, vae, scheduler, info: dict[str, Any], timestep: int = DEFAULT_TIMESTEP, rank: int = RANK,
              alpha: float = ALPHA, dtype: str = "fp32", device: str | torch.device = "cpu") -> DFOSDTeacher:
        """A fresh generator on an SD UNet/VAE: LoRA B = 0 (so it starts as SD itself), zero embedding."""
        targets = lora_targets(unet)
        add_lora(unet, rank, alpha, targets)
        emb = torch.zeros(1, TOKENS, unet.config.cross_attention_dim)
        return cls(unet, vae, scheduler, emb, timestep, info, {"rank": rank, "alpha": alpha, "targets": targets},
                   dtype, device)

    @classmethod
    def load(cls, sd_folder: str | None = None, checkpoint: str | None = None, preset: str | None = None,
             timestep: int | str | None = None, dtype: str = "fp32", device: str = "cpu",
             merge: bool | str = True, seed: int | str = 0) -> DFOSDTeacher:
        """An SD2.1-base diffusers folder (+ a DFOSD checkpoint), or `preset="tiny"` (random weights)."""
        check_precision(dtype, device)
        if preset is not None:
            if sd_folder or checkpoint:
                raise UserError("give either preset or sd_folder (+ checkpoint) for dfosd, not both")
            teacher = cls.from_preset(preset, seed=int(seed), dtype=dtype, device=device,
                                      timestep=int(timestep) if timestep is not None else DEFAULT_TIMESTEP)
        else:
            if not sd_folder:
                raise UserError("dfosd needs sd_folder=<SD2.1-base diffusers folder> (+ checkpoint=<DFOSD "
                                "checkpoint>), or preset=tiny")
            from diffusers import AutoencoderKL, UNet2DConditionModel

            folder = Path(sd_folder)
            require_subfolders(folder, ("unet", "vae"))
            unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet")
            vae = AutoencoderKL.from_pretrained(folder, subfolder="vae")
            info = {"sd_folder": str(folder), "checkpoint": str(checkpoint) if checkpoint else None}
            if checkpoint:
                meta, tensors = read_checkpoint(checkpoint)
                add_lora(unet, int(meta["rank"]), float(meta["alpha"]), list(meta["targets"]))
                cls._copy_lora(unet, tensors, str(checkpoint))
                t = int(timestep) if timestep is not None else int(meta["timestep"])
                teacher = cls(unet, vae, sd21_scheduler(folder), tensors["text_embedding"].float(), t, info,
                              {k: meta[k] for k in ("rank", "alpha", "targets")}, dtype, device)
            else:
                teacher = cls.build(unet, vae, sd21_scheduler(folder), info, dtype=dtype, device=device,
                                    timestep=int(timestep) if timestep is not None else DEFAULT_TIMESTEP)
        if merge in (True, "1", "true", "True", "yes"):
            teacher.merge_lora()
        return teacher

    @classmethod
    def from_preset(cls, preset: str = "tiny", seed: int = 0, timestep: int = DEFAULT_TIMESTEP, dtype: str = "fp32",
                    device: str = "cpu") -> DFOSDTeacher:
        """SD-shaped random weights with non-zero LoRA and embedding (so their paths are exercised);
        `sd21` is the full-size architecture for latency and memory benchmarks."""
        from diffusers import AutoencoderKL, UNet2DConditionModel

        if preset not in PRESETS:
            raise UserError(f"unknown dfosd preset {preset!r} (known: {', '.join(PRESETS)})")
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**unet_config(preset))
        vae = AutoencoderKL(**vae_config(preset))
        teacher = cls.build(unet, vae, sd21_scheduler(None), {"preset": preset, "seed": seed}, timestep=timestep,
                            dtype=dtype, device=device)
        gen = torch.Generator().manual_seed(seed)
        randomize_lora((teacher.unet,), gen, 0.05)
        with torch.no_grad():
            teacher.prompt_embeds.copy_(torch.randn(teacher.prompt_embeds.shape, generator=gen) * 0.1)
        return teacher

    @staticmethod
    def _copy_lora(unet: torch.nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
        copy_parameters(unet, tensors, lambda name: "lora" in name, f"DFOSD checkpoint {where}", prefix="unet.")

    def save_checkpoint(self, path: str | os.PathLike, text_embedding: torch.Tensor | None = None) -> Path:
        """Write `<path>.safetensors` + `<path>.json` (LoRA unmerged); `text_embedding` overrides
        the teacher's own (the trainer's live parameter)."""
        from safetensors.torch import save_file

        from ...atomic import atomic_path, atomic_write_text

        if self.info["merged"]:
            raise UserError("LoRA is merged into the weights; save the checkpoint before merging")
        path = Path(path).with_suffix(".safetensors")
        emb = self.prompt_embeds if text_embedding is None else text_embedding
        tensors = {f"unet.{k}": v.float().contiguous().cpu() for k, v in self.unet.state_dict().items() if "lora" in k}
        tensors["text_embedding"] = emb.detach().float().contiguous().cpu()
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp))
        atomic_write_text(path.with_suffix(".json"), json.dumps({**self.lora, "timestep": self.timestep}, indent=1) + "\n")
        return path
