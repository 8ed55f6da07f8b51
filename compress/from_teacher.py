"""Teacher (SD UNet + VAE) → AdcSR student and pruned VAE decoder (FACTS §1, issue 3).

1. The VAE decoder (with post_quant_conv) is pruned at the decoder ratio → `PrunedVAEDecoder`.
2. A full-width student is filled from the teacher: time embedding, `time_emb_proj`, cross-attention
   (`attn2`/`norm2`) and the text side dropped; `conv_in` takes 12 channels (PixelUnshuffle(2)) with
   the 4-channel weights repeated; the link conv repeats the teacher's `conv_out` over the
   decoder's mid-block channels (then keeps the channels the decoder kept).
3. Its UNet is pruned at the UNet ratio; the result is rebuilt from its config alone and loaded
   strictly, which proves the config and the pruned weights agree.

With the `release` criterion steps 1 and 3 are the release's plain slicing (`leading_block`) and the
link keeps the decoder's leading mid channels; the other criteria prune coupled groups (groups.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from adcsr.core.errors import UserError
from adcsr.core.models.student import AdcSRStudent
from adcsr.core.models.vae_decoder import PrunedVAEDecoder

from .config import CRITERIA, CompressConfig
from .groups import decoder_groups, kept, unet_groups
from .prune import leading_block, prune

_DROPPED = ("time_embedding.", "time_proj.", "conv_out.", "conv_in.", "add_embedding.", "encoder_hid_proj.")


@dataclass(frozen=True)
class Ratios:
    """Fractions of channels removed."""

    unet: float = CompressConfig.unet_ratio
    decoder: float = CompressConfig.decoder_ratio

    def __post_init__(self):
        for name in ("unet", "decoder"):
            r = getattr(self, name)
            if not 0.0 <= r < 1.0:
                raise UserError(f"{name} pruning ratio must be in [0, 1), got {r}")


class Compressed(NamedTuple):
    student: AdcSRStudent
    decoder: PrunedVAEDecoder


def _heads(cfg: dict) -> list[int]:
    h = cfg.get("num_attention_heads") or cfg["attention_head_dim"]
    return list(h) if isinstance(h, (list, tuple)) else [h] * len(cfg["block_out_channels"])


def _group_candidates(g: int) -> tuple[int, ...]:
    """The teacher's group count, 3/4 of it, then halvings down to 1 (the release's 32, 24, 16 …)."""
    out, h = [g, g * 3 // 4], g // 2
    while h >= 1:
        out.append(h)
        h //= 2
    return tuple(dict.fromkeys(c for c in out + [1] if c >= 1))


def student_config(unet_cfg: dict, dec_cfg: dict, ratio: float) -> dict:
    """The student's config for a teacher UNet config (diffusers dict) with `ratio` of its channels
    pruned and the given `PrunedVAEDecoder` config."""
    C = list(unet_cfg["block_out_channels"])
    heads = _heads(unet_cfg)
    if unet_cfg.get("attention_type", "default") != "default" or any(c % h for c, h in zip(C, heads)):
        raise UserError("teacher UNet: widths must split evenly over the attention heads")
    for t in unet_cfg["down_block_types"]:
        if t not in ("CrossAttnDownBlock2D", "DownBlock2D"):
            raise UserError(f"teacher UNet block {t} is not an SD-style block")
    if not unet_cfg.get("use_linear_projection") or not isinstance(unet_cfg.get("layers_per_block", 2), int):
        raise UserError("teacher UNet must use linear projections and one layers_per_block (SD 2.x style)")
    return dict(
        in_channels=3,
        out_channels=3,
        block_out_channels=[kept(c, ratio) for c in C],
        attention_levels=[t.startswith("CrossAttn") for t in unet_cfg["down_block_types"]],
        num_attention_heads=heads,
        attention_head_dim=[kept(c // h, ratio) for c, h in zip(C, heads)],
        ff_inner_dim=[kept(4 * c, ratio) for c in C],
        layers_per_block=unet_cfg.get("layers_per_block", 2),
        norm_group_candidates=list(_group_candidates(unet_cfg.get("norm_num_groups", 32))),
        norm_eps=unet_cfg.get("norm_eps", 1e-5),
        upcast_attention=bool(unet_cfg.get("upcast_attention", False)),
        decoder_block_out_channels=list(dec_cfg["block_out_channels"]),
        decoder_layers_per_block=dec_cfg["layers_per_block"],
        decoder_norm_num_groups=dec_cfg["norm_num_groups"],
    )


def _lr_of(hr: torch.Tensor) -> torch.Tensor:
    return F.interpolate(hr, scale_factor=0.25, mode="bicubic", antialias=True).clamp(0, 1)


def _full_decoder(vae) -> PrunedVAEDecoder:
    dec = PrunedVAEDecoder(**PrunedVAEDecoder.config_from_vae(vae.config, 0.0))
    dec.post_quant_conv.load_state_dict(vae.post_quant_conv.state_dict())
    dec.decoder.load_state_dict(vae.decoder.state_dict())
    return dec


def _fill_from_teacher(stu: AdcSRStudent, unet, mid_keep: torch.Tensor, mid_full: int) -> None:
    src = unet.state_dict()
    mapped = {
        k: v for k, v in src.items()
        if not k.startswith(_DROPPED) and "time_emb_proj" not in k
        and not (".transformer_blocks." in k and (".attn2." in k or ".norm2." in k))
    }
    w = src["conv_in.weight"]
    mapped["conv_in.weight"] = w.repeat(1, stu.config.in_channels * 4 // w.shape[1] + 1, 1, 1)[:, : stu.config.in_channels * 4]
    mapped["conv_in.bias"] = src["conv_in.bias"]
    missing = set(stu.unet.state_dict()) ^ set(mapped)
    if missing:
        raise UserError(f"teacher UNet does not fit the student layout (e.g. {sorted(missing)[0]})")
    stu.unet.load_state_dict(mapped)
    # link: the teacher's conv_out repeated over the full mid width, then the decoder's kept channels
    rep = torch.arange(mid_full) % src["conv_out.weight"].shape[0]
    stu.link.weight.data.copy_(src["conv_out.weight"][rep][mid_keep])
    stu.link.bias.data.copy_(src["conv_out.bias"][rep][mid_keep])


def _taylor_grads(model, loss_fn, batches: torch.Tensor, batch_size: int = 2) -> None:
    model.zero_grad(set_to_none=True)
    for i in range(0, len(batches), batch_size):
        loss_fn(batches[i:i + batch_size]).backward()


def from_teacher(unet, vae, ratios: Ratios = Ratios(), criterion: str = CompressConfig.criterion,
                 calibration: torch.Tensor | None = None) -> Compressed:
    """Compress an SD teacher into (student, pruned decoder). `calibration`: HR photos (N,3,H,W) in
    [0, 1] for the `taylor` criterion (H, W multiples of 64); default: bundled training photos."""
    if criterion not in CRITERIA:
        raise UserError(f"unknown pruning criterion {criterion!r} (choose {', '.join(CRITERIA)})")
    if criterion == "taylor" and calibration is None:
        from adcsr.core.photos import hr_crops

        calibration = hr_crops("train", 128, 4, seed=0)
    if calibration is not None and (calibration.dim() != 4 or calibration.shape[1] != 3
                                    or calibration.shape[-1] % 64 or calibration.shape[-2] % 64):
        raise UserError(f"calibration photos must be (N, 3, H, W) with H, W multiples of 64, got {tuple(calibration.shape)}")
    vcfg = vae.config
    groups_n = vcfg.norm_num_groups

    device = torch.device(next(unet.parameters()).device)  # "meta": shapes only, for counting
    with device:
        dec_full = _full_decoder(vae)
    if criterion == "taylor":
        sf = vcfg.scaling_factor

        def dec_loss(hr):
            with torch.no_grad():
                z = vae.encode(hr * 2 - 1).latent_dist.mean * sf
            return (dec_full.train()(z) - hr).abs().mean()

        _taylor_grads(dec_full, dec_loss, calibration)
    with device:
        dec = PrunedVAEDecoder(**PrunedVAEDecoder.config_from_vae(vcfg, ratios.decoder))
    mid_full = dec_full.decoder.conv_in.out_channels
    if criterion == "release":
        leading_block(dec_full.state_dict(), dec)
        mid_keep = torch.arange(dec.decoder.conv_in.out_channels)
    else:
        dgroups, mid = decoder_groups(dec_full.decoder, ratios.decoder, groups_n)
        mid_keep = prune(dgroups, criterion)[mid.name]
        dec.load_state_dict(dec_full.state_dict())
    with device:
        full = AdcSRStudent(**student_config(unet.config, dec.config, 0.0))
        student = AdcSRStudent(**student_config(unet.config, dec.config, ratios.unet))
    _fill_from_teacher(full, unet, mid_keep, mid_full)
    full.init_decoder_from(dec)
    if criterion == "release":
        leading_block(full.state_dict(), student)
        return Compressed(student.eval(), dec.eval())
    if criterion == "taylor":
        _taylor_grads(full, lambda hr: (full.train()(_lr_of(hr)) - hr).abs().mean(), calibration)
    ugroups = unet_groups(full.unet, full.link, ratios.unet, lambda c: kept(c, ratios.unet))
    prune(ugroups, criterion)
    student.load_state_dict(full.state_dict())
    return Compressed(student.eval(), dec.eval())
