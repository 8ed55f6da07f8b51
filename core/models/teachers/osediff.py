"""OSEDiff (AdcSR's teacher), rebuilt with diffusers + peft as its authors released it.

SD2.1-base UNet + VAE; rank-4 peft LoRA in three UNet adapter groups (encoder = down blocks and
`conv_in`, decoder = up blocks and `conv_out`, others = the rest) and one VAE group (the encoder
and `quant_conv`), peft's default alpha 8 (scale 2.0); `conv_in` fully trained. One step: LR
bicubic ×4 → VAE encode × 0.18215 → UNet at t = 999 → x0 = (z − √(1−ᾱ)·ε)/√ᾱ → decode.
We take the latent mean instead of a sample (as AdcSR's stage 2 does), so the teacher is
deterministic. DAPE is not bundled: the prompt is a text (with the folder's text encoder), an
embedding file, or the empty prompt — `describe()["prompt"]` always says which.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ...errors import UserError
from ..loading import copy_parameters, read_tensors_with_metadata
from ..sd_configs import unet_config, vae_config
from .sd_one_step import OneStepSDTeacher, check_precision, randomize_lora, require_subfolders, sd21_scheduler

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, UNet2DConditionModel

RANK = 4
TIMESTEP = 999
GROUPS = ("default_encoder", "default_decoder", "default_others")
# The released target-module greps (OSEDiff's initialize_unet / initialize_vae).
UNET_GREP = ("to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_in", "conv_shortcut",
             "conv_out", "proj_out", "proj_in", "ff.net.2", "ff.net.0.proj")
VAE_GREP = ("conv1", "conv2", "conv_in", "conv_shortcut", "conv", "conv_out", "to_k", "to_q", "to_v", "to_out.0")
CKPT_KEYS = ("rank_unet", "rank_vae", "unet_lora_encoder_modules", "unet_lora_decoder_modules",
             "unet_lora_others_modules", "vae_lora_encoder_modules", "state_dict_unet", "state_dict_vae")


def unet_lora_targets(unet: torch.nn.Module) -> dict[str, list[str]]:
    """The three released UNet target lists, keyed by adapter group."""
    groups: dict[str, list[str]] = {g: [] for g in GROUPS}
    for name, _ in unet.named_parameters():
        if "bias" in name or "norm" in name or not any(p in name for p in UNET_GREP):
            continue
        module = name.removesuffix(".weight")
        if "down_blocks" in name or "conv_in" in name:
            groups["default_encoder"].append(module)
        elif "up_blocks" in name or "conv_out" in name:
            groups["default_decoder"].append(module)
        else:
            groups["default_others"].append(module)
    return groups


def vae_lora_targets(vae: torch.nn.Module) -> list[str]:
    """The released VAE encoder target list (the release lists some names twice; we do not)."""
    out: list[str] = []
    for name, _ in vae.named_parameters():
        if "bias" in name or "norm" in name:
            continue
        is_encoder = "encoder" in name and any(p in name for p in VAE_GREP)
        if is_encoder or ("quant_conv" in name and "post_quant_conv" not in name):
            out.append(name.removesuffix(".weight"))
    return out


def add_adapters(unet: UNet2DConditionModel, vae: AutoencoderKL, ckpt: dict[str, Any]) -> None:
    """Inject the LoRA groups named by a released-format checkpoint dict (weights not copied)."""
    from peft import LoraConfig

    lists = {"default_encoder": "unet_lora_encoder_modules", "default_decoder": "unet_lora_decoder_modules",
             "default_others": "unet_lora_others_modules"}
    warnings.filterwarnings("ignore", message="Already found a `peft_config`")  # several groups is the design
    for group, key in lists.items():
        unet.add_adapter(LoraConfig(r=ckpt["rank_unet"], init_lora_weights="gaussian",
                                    target_modules=list(ckpt[key])), adapter_name=group)
    unet.set_adapter(list(GROUPS))
    vae.add_adapter(LoraConfig(r=ckpt["rank_vae"], init_lora_weights="gaussian",
                               target_modules=list(ckpt["vae_lora_encoder_modules"])), adapter_name="default_encoder")
    vae.set_adapter(["default_encoder"])


def trained_unet_state(unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in unet.state_dict().items() if "lora" in k or "conv_in" in k}


def trained_vae_state(vae: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in vae.state_dict().items() if "lora" in k}


def _copy_in(model: torch.nn.Module, state: dict[str, torch.Tensor], wanted: str, where: str) -> None:
    copy_parameters(model, state, lambda name: any(w in name for w in wanted.split("|")), f"OSEDiff checkpoint {where}")


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A released-format OSEDiff checkpoint: `.pkl`/`.pt` (torch, weights only) or `.safetensors` + `.json`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"OSEDiff checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        ckpt, tensors = read_tensors_with_metadata(path, "OSEDiff")
        ckpt["state_dict_unet"] = {k[5:]: v for k, v in tensors.items() if k.startswith("unet.")}
        ckpt["state_dict_vae"] = {k[4:]: v for k, v in tensors.items() if k.startswith("vae.")}
    else:
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise UserError(f"cannot read OSEDiff checkpoint {path}: {str(e).splitlines()[0]}") from None
    missing = [k for k in CKPT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise UserError(f"{path} is not an OSEDiff checkpoint (missing {', '.join(missing)})")
    return ckpt


def count_full_size() -> tuple[int, int]:
    """Parameters of the SD2.1-base UNet and VAE OSEDiff builds on, instantiated on the meta device."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    with torch.device("meta"):
        unet = UNet2DConditionModel(**unet_config("sd21"))
        vae = AutoencoderKL(**vae_config("sd21"))
    return sum(p.numel() for p in unet.parameters()), sum(p.numel() for p in vae.parameters())


def _prompt_embeds(folder: Path | None, prompt: str | None, embedding: str | None, dim: int) -> tuple[torch.Tensor, str]:
    if embedding is not None:
        from safetensors.torch import load_file

        try:
            tensors = load_file(str(embedding))
        except Exception as e:  # noqa: BLE001
            raise UserError(f"cannot read prompt embedding {embedding}: {str(e).splitlines()[0]}") from None
        if len(tensors) != 1:
            raise UserError(f"prompt embedding {embedding} must hold exactly one tensor, has {len(tensors)}")
        emb = next(iter(tensors.values())).float()
        emb = emb[None] if emb.ndim == 2 else emb
        if emb.ndim != 3 or emb.shape[0] != 1 or emb.shape[-1] != dim:
            raise UserError(f"prompt embedding {embedding} has shape {tuple(emb.shape)}, expected (1, L, {dim})")
        return emb, f"embedding file {embedding}"
    if folder is not None and (folder / "text_encoder").is_dir() and (folder / "tokenizer").is_dir():
        from transformers import AutoTokenizer, CLIPTextModel

        text = prompt or ""
        tok = AutoTokenizer.from_pretrained(folder, subfolder="tokenizer")
        enc = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder").eval()
        ids = tok(text, max_length=tok.model_max_length, padding="max_length", truncation=True, return_tensors="pt")
        with torch.no_grad():
            return enc(ids.input_ids)[0].float(), f"text encoder, prompt {text!r}"
    if prompt:
        raise UserError("a text prompt needs the SD folder's text_encoder/ and tokenizer/ (or give prompt_embedding)")
    return torch.zeros(1, 77, dim), "empty prompt as zeros (no text encoder, no embedding file)"


class OSEDiffTeacher(OneStepSDTeacher):
    name = "osediff"

    def __init__(self, unet: UNet2DConditionModel, vae: AutoencoderKL, scheduler: Any, prompt_embeds: torch.Tensor,
                 info: dict[str, Any], lora_lists: dict[str, Any], dtype: str = "fp32",
                 device: str | torch.device = "cpu"):
        # the released lists as given (peft shortens long target lists into equivalent suffixes)
        self.lora_lists = {k: (v if k.startswith("rank") else list(v)) for k, v in lora_lists.items()}
        super().__init__(unet, vae, scheduler, prompt_embeds, TIMESTEP, info, dtype, device)

    @classmethod
    def load(cls, sd_folder: str | None = None, checkpoint: str | None = None, preset: str | None = None,
             prompt: str | None = None, prompt_embedding: str | None = None, dtype: str = "fp32",
             device: str = "cpu", merge: bool | str = True, seed: int | str = 0) -> OSEDiffTeacher:
        """From an SD2.1-base diffusers folder + an OSEDiff checkpoint, or `preset="tiny"` (random)."""
        check_precision(dtype, device)
        if preset is not None:
            if sd_folder or checkpoint:
                raise UserError("give either preset or sd_folder + checkpoint for osediff, not both")
            teacher = cls.from_preset(preset, seed=int(seed), prompt_embedding=prompt_embedding, dtype=dtype,
                                      device=device)
        else:
            if not sd_folder or not checkpoint:
                raise UserError("osediff needs sd_folder=<SD2.1-base diffusers folder> and checkpoint=<OSEDiff "
                                "checkpoint> (or preset=tiny)")
            folder = Path(sd_folder)
            require_subfolders(folder, ("unet", "vae"))
            ckpt = read_checkpoint(checkpoint)
            from diffusers import AutoencoderKL, UNet2DConditionModel

            unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet")
            vae = AutoencoderKL.from_pretrained(folder, subfolder="vae")
            add_adapters(unet, vae, ckpt)
            _copy_in(unet, ckpt["state_dict_unet"], "lora|conv_in", str(checkpoint))
            _copy_in(vae, ckpt["state_dict_vae"], "lora", str(checkpoint))
            emb, source = _prompt_embeds(folder, prompt, prompt_embedding, unet.config.cross_attention_dim)
            info = {"sd_folder": str(folder), "checkpoint": str(checkpoint), "prompt": source}
            lists = {k: v for k, v in ckpt.items() if not k.startswith("state_dict")}
            teacher = cls(unet, vae, sd21_scheduler(folder), emb, info, lists, dtype=dtype, device=device)
        if merge in (True, "1", "true", "True", "yes"):
            teacher.merge_lora()
        return teacher

    @classmethod
    def from_preset(cls, preset: str = "tiny", seed: int = 0, prompt_embedding: str | None = None,
                    dtype: str = "fp32", device: str = "cpu") -> OSEDiffTeacher:
        """SD-shaped random weights with non-zero LoRA (so LoRA paths are exercised).

        `tiny` is for tests; `sd21` has the full-size architecture with random weights, for
        latency and memory benchmarks (its outputs mean nothing)."""
        from diffusers import AutoencoderKL, UNet2DConditionModel

        from ..sd_configs import PRESETS

        check_precision(dtype, device)
        if preset not in PRESETS:
            raise UserError(f"unknown osediff preset {preset!r} (known: {', '.join(PRESETS)}); "
                            "real weights: load sd_folder + checkpoint instead")
        emb, source = _prompt_embeds(None, None, prompt_embedding, unet_config(preset)["cross_attention_dim"])
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**unet_config(preset))
        vae = AutoencoderKL(**vae_config(preset))
        targets = unet_lora_targets(unet)
        lists = {
            "rank_unet": RANK, "rank_vae": RANK, "vae_lora_encoder_modules": vae_lora_targets(vae),
            "unet_lora_encoder_modules": targets["default_encoder"],
            "unet_lora_decoder_modules": targets["default_decoder"],
            "unet_lora_others_modules": targets["default_others"],
        }
        add_adapters(unet, vae, lists)
        randomize_lora((unet, vae), torch.Generator().manual_seed(seed), 0.05)
        info = {"preset": preset, "seed": seed, "prompt": source}
        return cls(unet, vae, sd21_scheduler(None), emb, info, lists, dtype=dtype, device=device)

    def checkpoint_dict(self) -> dict[str, Any]:
        """The trained parts in the released checkpoint format (needs unmerged LoRA)."""
        if self.info["merged"]:
            raise UserError("LoRA is merged into the weights; save the checkpoint before merging")
        return {
            **self.lora_lists,
            "state_dict_unet": trained_unet_state(self.unet), "state_dict_vae": trained_vae_state(self.vae),
        }

    def save_checkpoint(self, path: str | os.PathLike) -> None:
        """Write `<path>.safetensors` + `<path>.json`: the released format without a pickle."""
        from safetensors.torch import save_file

        from ...atomic import atomic_path, atomic_write_text

        path = Path(path).with_suffix(".safetensors")
        ckpt = self.checkpoint_dict()
        tensors = {f"unet.{k}": v.float().contiguous().cpu() for k, v in ckpt.pop("state_dict_unet").items()}
        tensors |= {f"vae.{k}": v.float().contiguous().cpu() for k, v in ckpt.pop("state_dict_vae").items()}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp))
        atomic_write_text(path.with_suffix(".json"), json.dumps(ckpt, indent=1) + "\n")
