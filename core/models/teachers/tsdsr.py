"""TSD-SR (target score distillation, Dong et al.) at inference, as its authors released it.

SD3-medium's `SD3Transformer2DModel` with peft LoRA (rank = alpha = 64, gaussian init) on the
released target list (attention projections, the `add_*_proj`s, `proj`, `linear`, `proj_out`),
and the SD3 VAE with a rank-64 LoRA on its encoder (the released list). One step: LR bicubic ×4 →
[-1, 1] → encode × the scaling factor (the release applies no shift factor) → v = transformer(z_L,
t = 1000, fixed prompt embeddings) → ẑ = z_L − v → decode. We encode the latent mean, not a sample,
so the teacher is deterministic; the release's default colour fix (wavelet) is this teacher's.

Weights: an SD3-medium diffusers folder (`transformer/`, `vae/`) plus the release's LoRA folder
(`transformer.safetensors`, `vae.safetensors`: peft state dicts without the adapter name, saved
through `StableDiffusion3Pipeline.save_lora_weights`, so every key starts `transformer.`, the VAE's
too) and its prompt embeddings (`prompt_embeds.pt` (1, 333, 4096) and `pool_embeds.pt` (1, 2048),
tensors read with `torch.load(weights_only=True)`, or `.safetensors`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from ...errors import UserError
from ..sd3_configs import PRESETS, PROMPT_SHAPES, transformer_config, vae_config
from .base import Teacher
from .sd_one_step import DTYPES, check_precision, merge_lora_adapters, place_networks, randomize_lora, require_subfolders

if TYPE_CHECKING:
    from ..feature_space import FeatureSpace

RANK = ALPHA = 64
TIMESTEP = 1000.0
TRANSFORMER_TARGETS = ("to_k", "to_q", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "proj", "linear",
                       "proj_out")
# The release's VAE list: the encoder's convolutions and mid-block attention, its conv_out, and
# quant_conv (absent from SD3's VAE, which has no quant_conv: skipped).
VAE_TARGETS = tuple(
    ["encoder.conv_in"]
    + [f"encoder.down_blocks.{b}.resnets.{r}.conv{k}" for b in range(4) for r in range(2) for k in (1, 2)]
    + [f"encoder.down_blocks.{b}.resnets.0.conv_shortcut" for b in (1, 2)]
    + [f"encoder.down_blocks.{b}.downsamplers.0.conv" for b in range(3)]
    + [f"encoder.mid_block.attentions.0.{p}" for p in ("to_q", "to_k", "to_v", "to_out.0")]
    + [f"encoder.mid_block.resnets.{r}.conv{k}" for r in range(2) for k in (1, 2)]
    + ["encoder.conv_out", "quant_conv"])
RELEASE_PREFIX = "transformer."  # StableDiffusion3Pipeline.save_lora_weights's, on both files


def add_adapters(transformer: torch.nn.Module, vae: torch.nn.Module, rank: int = RANK) -> None:
    from peft import LoraConfig

    transformer.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                       target_modules=list(TRANSFORMER_TARGETS)))
    present = {n for n, _ in vae.named_modules()}
    vae.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                               target_modules=[t for t in VAE_TARGETS if t in present]))


def lora_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A model's LoRA weights in the release's layout: `transformer.<module>.lora_A.weight`."""
    from peft.utils import get_peft_model_state_dict

    return {RELEASE_PREFIX + k: v.detach().float().contiguous().cpu()
            for k, v in get_peft_model_state_dict(model, adapter_name="default").items()}


def load_lora_file(model: torch.nn.Module, path: Path) -> None:
    """Copy a released-layout LoRA file into `model`'s adapter; every key must fit."""
    from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
    from safetensors.torch import load_file

    if not path.is_file():
        raise UserError(f"TSD-SR LoRA file not found: {path}")
    try:
        raw = load_file(str(path))
    except Exception as e:  # noqa: BLE001 - any parse failure is a bad file
        raise UserError(f"cannot read TSD-SR LoRA file {path}: {str(e).splitlines()[0]}") from None
    state = {k.removeprefix(RELEASE_PREFIX): v for k, v in raw.items()}
    expected = get_peft_model_state_dict(model, adapter_name="default")
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or extra:
        raise UserError(f"{path} does not fit the model: {len(missing)} missing key(s) (e.g. {missing[:1]}), "
                        f"{len(extra)} unexpected (e.g. {extra[:1]})")
    bad = [k for k in expected if tuple(state[k].shape) != tuple(expected[k].shape)]
    if bad:
        raise UserError(f"{path}: {bad[0]} has shape {tuple(state[bad[0]].shape)}, the model expects "
                        f"{tuple(expected[bad[0]].shape)} (wrong base model or rank?)")
    set_peft_model_state_dict(model, state, adapter_name="default")


def read_embedding(path: str | Path, shape: tuple[int, ...], what: str) -> torch.Tensor:
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            tensors = load_file(str(path))
            if len(tensors) != 1:
                raise ValueError(f"holds {len(tensors)} tensors, not one")
            t = next(iter(tensors.values()))
        else:
            t = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"cannot read the {what} {path}: {str(e).splitlines()[0]}") from None
    if not isinstance(t, torch.Tensor) or t.dim() != len(shape) or any(e not in (-1, g) for e, g in zip(shape, t.shape)):
        got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        want = "×".join("L" if e == -1 else str(e) for e in shape)
        raise UserError(f"the {what} {path} is {got}, expected {want}")
    return t.float()


def count_full_size() -> dict[str, int]:
    from diffusers import AutoencoderKL, SD3Transformer2DModel

    with torch.device("meta"):
        transformer = SD3Transformer2DModel(**transformer_config("sd3"))
        vae = AutoencoderKL(**vae_config("sd3"))
        base = (sum(p.numel() for p in transformer.parameters()), sum(p.numel() for p in vae.parameters()))
        add_adapters(transformer, vae)
    lora = sum(p.numel() for m in (transformer, vae) for n, p in m.named_parameters() if "lora" in n)
    return {"transformer": base[0], "vae": base[1], "lora": lora}


class TSDSRTeacher(Teacher):
    name = "tsdsr"
    size_multiple = 4  # LR ×4, VAE ÷8, patches of 2: LR % 4
    default_color_fix = "wavelet"

    def __init__(self, transformer, vae, prompt_embeds: torch.Tensor, pooled_embeds: torch.Tensor,
                 info: dict[str, Any], dtype: str = "fp32", device: str | torch.device = "cpu"):
        super().__init__()
        check_precision(dtype, device)
        self.transformer = transformer.eval().requires_grad_(False)
        self.vae = vae.eval().requires_grad_(False)
        self.prompt_embeds, self.pooled_embeds = prompt_embeds, pooled_embeds
        self.info = {**info, "dtype": dtype, "merged": False, "latent": "mean", "timestep": TIMESTEP}
        self.to(device, DTYPES[dtype])

    def place(self, device: torch.device, dtype: torch.dtype) -> None:
        name = place_networks((self.transformer, self.vae), device, dtype)
        self.device, self.dtype = torch.device(device), dtype
        self.prompt_embeds = self.prompt_embeds.to(self.device, dtype)
        self.pooled_embeds = self.pooled_embeds.to(self.device, dtype)
        self.info["dtype"] = name

    @classmethod
    def load(cls, sd3_folder: str | None = None, lora_dir: str | None = None, prompt_embeds: str | None = None,
             pooled_embeds: str | None = None, preset: str | None = None, dtype: str = "fp32", device: str = "cpu",
             merge: bool | str = True, seed: int | str = 0, rank: int | str = RANK) -> TSDSRTeacher:
        """An SD3-medium diffusers folder + the release's LoRA folder and prompt embeddings, or
        `preset="tiny"` (random weights)."""
        check_precision(dtype, device)
        if preset is not None:
            if sd3_folder or lora_dir:
                raise UserError("give either preset or sd3_folder + lora_dir for tsdsr, not both")
            teacher = cls.from_preset(preset, seed=int(seed), dtype=dtype, device=device)
        else:
            if not sd3_folder or not lora_dir:
                raise UserError("tsdsr needs sd3_folder=<SD3-medium diffusers folder> and lora_dir=<folder with "
                                "transformer.safetensors and vae.safetensors> (or preset=tiny)")
            from diffusers import AutoencoderKL, SD3Transformer2DModel

            folder, loras = Path(sd3_folder), Path(lora_dir)
            require_subfolders(folder, ("transformer", "vae"), "SD3")
            transformer = SD3Transformer2DModel.from_pretrained(folder, subfolder="transformer")
            vae = AutoencoderKL.from_pretrained(folder, subfolder="vae")
            add_adapters(transformer, vae, int(rank))
            load_lora_file(transformer, loras / "transformer.safetensors")
            load_lora_file(vae, loras / "vae.safetensors")
            shapes = ((1, 333, transformer.config.joint_attention_dim), (1, transformer.config.pooled_projection_dim))
            if bool(prompt_embeds) != bool(pooled_embeds):
                raise UserError("give both prompt_embeds and pooled_embeds (the release's prompt_embeds.pt and "
                                "pool_embeds.pt), or neither")
            if prompt_embeds:
                pe = read_embedding(prompt_embeds, (1, -1, shapes[0][2]), "prompt embedding")
                pooled = read_embedding(pooled_embeds, shapes[1], "pooled prompt embedding")
                source = f"embedding files {prompt_embeds}, {pooled_embeds}"
            else:
                pe, pooled = torch.zeros(shapes[0]), torch.zeros(shapes[1])
                source = "zeros (no prompt embedding files given)"
            info = {"sd3_folder": str(folder), "lora_dir": str(loras), "prompt": source, "rank": int(rank)}
            teacher = cls(transformer, vae, pe, pooled, info, dtype, device)
        if merge in (True, "1", "true", "True", "yes"):
            teacher.merge_lora()
        return teacher

    @classmethod
    def from_preset(cls, preset: str = "tiny", seed: int = 0, dtype: str = "fp32", device: str = "cpu") -> TSDSRTeacher:
        """SD3-shaped random weights with non-zero LoRA; `sd3` is the full-size architecture (benchmarks)."""
        from diffusers import AutoencoderKL, SD3Transformer2DModel

        if preset not in PRESETS:
            raise UserError(f"unknown tsdsr preset {preset!r} (known: {', '.join(PRESETS)})")
        torch.manual_seed(seed)
        transformer = SD3Transformer2DModel(**transformer_config(preset))
        vae = AutoencoderKL(**vae_config(preset))
        add_adapters(transformer, vae, RANK if preset == "sd3" else 4)
        gen = torch.Generator().manual_seed(seed)
        randomize_lora((transformer, vae), gen, 0.02)
        shapes = PROMPT_SHAPES[preset]
        pe = torch.randn(shapes[0], generator=gen) * 0.1
        pooled = torch.randn(shapes[1], generator=gen) * 0.1
        return cls(transformer, vae, pe, pooled, {"preset": preset, "seed": seed, "prompt": "random (preset)"},
                   dtype, device)

    def save_lora(self, folder: str | Path) -> Path:
        """`transformer.safetensors` + `vae.safetensors` in the release's layout (LoRA unmerged)."""
        from safetensors.torch import save_file

        from ...atomic import atomic_path

        if self.info["merged"]:
            raise UserError("LoRA is merged into the weights; save before merging")
        folder = Path(folder)
        for name, model in (("transformer", self.transformer), ("vae", self.vae)):
            with atomic_path(folder / f"{name}.safetensors") as tmp:
                save_file(lora_state(model), str(tmp))
        return folder

    def merge_lora(self) -> None:
        if self.info["merged"]:
            return
        merge_lora_adapters((self.transformer, self.vae))
        self.info["merged"] = True

    @torch.no_grad()
    def lr_latent(self, lr: torch.Tensor) -> torch.Tensor:
        p = next(self.vae.parameters())
        hq = F.interpolate(lr.to(p.device, torch.float32), scale_factor=4, mode="bicubic", align_corners=False)
        hq = hq.clamp(0, 1) * 2 - 1
        return self.vae.encode(hq.to(p.dtype)).latent_dist.mean * self.vae.config.scaling_factor

    def predict_latent(self, z: torch.Tensor, prompt_embeds: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """ẑ = z_L − v(z_L; t = 1000): the one step (σ = 1), differentiable."""
        t = torch.full((z.shape[0],), TIMESTEP, device=z.device, dtype=z.dtype)
        v = self.transformer(hidden_states=z, timestep=t, encoder_hidden_states=prompt_embeds.expand(z.shape[0], -1, -1),
                             pooled_projections=pooled.expand(z.shape[0], -1)).sample
        return z.float() - v.float()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        img = self.vae.decode((z / self.vae.config.scaling_factor).to(next(self.vae.parameters()).dtype)).sample
        return (img.float().clamp(-1, 1) + 1) / 2

    @torch.no_grad()
    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        z = self.predict_latent(self.lr_latent(lr), self.prompt_embeds, self.pooled_embeds)
        return self.decode(z).to(lr.device)

    @torch.no_grad()
    def features(self, lr: torch.Tensor, space: FeatureSpace, multiple: int = 16) -> torch.Tensor:
        """SD3's latent is not the student's (16 channels against SD2.1's 4): the target is the
        student's feature space of this teacher's SR, as for the pixel-space teachers."""
        from ..padding import pad_to_multiple

        padded, _ = pad_to_multiple(lr, multiple)
        p = next(space.parameters())
        return space.from_image(self(padded).to(p.device, p.dtype))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **self.info}
