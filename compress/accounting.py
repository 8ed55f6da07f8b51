"""Parameters and MACs per part of the teacher (OSEDiff side) and the student, on the meta device.

Counts depend only on configs, so both models are rebuilt on the meta device: no weights, no
memory, seconds even at full size. MACs are given with and without the attention matmuls
(QK^T, AV); AdcSR's published ≈495 GMACs is the latter convention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, UNet2DConditionModel

from adcsr.core.models.macs import count_params, macs_breakdown
from adcsr.core.models.student import AdcSRStudent
from adcsr.core.models.vae_decoder import decode_up_path


def _public(cfg: dict) -> dict:
    """A diffusers config without its bookkeeping keys (`_class_name`, `_diffusers_version` …)."""
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


def _row(model: str, part: str, params: int, fn, *inputs) -> dict:
    b = macs_breakdown(fn, *inputs)
    return {"model": model, "part": part, "params": params, "in_total": True,
            "macs": b["conv"] + b["linear"] + b["attention"], "macs_no_attention": b["conv"] + b["linear"]}


def teacher_rows(unet_cfg: dict, vae_cfg: dict, text_cfg: dict | None, lr_size: int) -> list[dict]:
    """OSEDiff's inference path: LR ×4 (bicubic) → VAE encoder → UNet (t=999, text) → VAE decoder."""
    unet_cfg, vae_cfg = _public(unet_cfg), _public(vae_cfg)
    with torch.device("meta"):
        unet = UNet2DConditionModel(**unet_cfg)
        vae = AutoencoderKL(**vae_cfg)
        img = torch.empty(1, 3, lr_size * 4, lr_size * 4)
        down = 2 ** (len(vae_cfg["block_out_channels"]) - 1)
        z = torch.empty(1, vae_cfg["latent_channels"], lr_size * 4 // down, lr_size * 4 // down)
        ctx = torch.empty(1, 77, unet_cfg["cross_attention_dim"])
        t = torch.full((1,), 999)
        enc_params = count_params(vae.encoder) + count_params(vae.quant_conv)
        dec_params = count_params(vae.decoder) + count_params(vae.post_quant_conv)
        rows = [
            _row("teacher", "VAE encoder", enc_params, lambda: vae.quant_conv(vae.encoder(img))),
            _row("teacher", "UNet", count_params(unet), lambda: unet(z, t, encoder_hidden_states=ctx)),
            _row("teacher", "VAE decoder", dec_params, lambda: vae.decoder(vae.post_quant_conv(z))),
        ]
    if text_cfg is not None:
        from transformers import CLIPTextConfig, CLIPTextModel

        with torch.device("meta"):
            text = CLIPTextModel(CLIPTextConfig(**text_cfg))
        rows.append({"model": "teacher", "part": "text encoder (listed separately)", "params": count_params(text),
                     "in_total": False, "macs": None, "macs_no_attention": None})
    return rows


def student_rows(student_cfg: dict, lr_size: int) -> list[dict]:
    """The student's parts at an LR size that is a multiple of its `size_multiple`."""
    with torch.device("meta"):
        s = AdcSRStudent(**_public(student_cfg))
        x = F.pixel_unshuffle(torch.empty(1, 3, lr_size, lr_size), 2)
        feat = torch.empty(1, student_cfg["block_out_channels"][0], lr_size // 2, lr_size // 2)
        mid = torch.empty(1, s.feature_channels, lr_size // 2, lr_size // 2)
        dec = s.decoder
        up_params = count_params(dec) - count_params(dec.mid_block)
        return [
            _row("student", "UNet", count_params(s.unet), s.unet, x),
            _row("student", "link", count_params(s.link), s.link, feat),
            _row("student", "decoder mid-block", count_params(dec.mid_block), lambda: dec.mid_block(mid, None)),
            _row("student", "decoder up path", up_params, lambda: decode_up_path(dec, mid)),
        ]


def _total(rows: list[dict], model: str, key: str) -> int:
    return sum(r[key] for r in rows if r["model"] == model and r["in_total"])


def compression_report(unet_cfg: dict, vae_cfg: dict, text_cfg: dict | None, student_cfg: dict,
                       ratios: dict, criterion: str, lr_size: int = 128) -> dict:
    rows = teacher_rows(unet_cfg, vae_cfg, text_cfg, lr_size) + student_rows(student_cfg, lr_size)
    totals = {m: {k: _total(rows, m, k) for k in ("params", "macs", "macs_no_attention")} for m in ("teacher", "student")}
    change = {k: totals["student"][k] / totals["teacher"][k] - 1 for k in totals["teacher"]}
    text = sum(r["params"] for r in rows if not r["in_total"])
    if text:
        totals["teacher"]["params_with_text"] = totals["teacher"]["params"] + text
        change["params_with_text"] = totals["student"]["params"] / totals["teacher"]["params_with_text"] - 1
    return {"lr_size": lr_size, "sr_size": lr_size * 4, "ratios": ratios, "criterion": criterion,
            "rows": rows, "totals": totals, "change": change}


def _fmt(v, div: float) -> str:
    return "—" if v is None else f"{v / div:,.2f}"


def report_markdown(rep: dict) -> str:
    """The report as a Markdown table (params in M, MACs in G)."""
    head = (f"Compression at {rep['lr_size']}² → {rep['sr_size']}² (ratios: "
            + ", ".join(f"{k} {v:.0%}" for k, v in rep["ratios"].items()) + f"; criterion `{rep['criterion']}`)\n\n")
    lines = ["| model | part | params (M) | GMACs | GMACs w/o attention matmuls |", "| --- | --- | ---: | ---: | ---: |"]
    for r in rep["rows"]:
        lines.append(f"| {r['model']} | {r['part']} | {_fmt(r['params'], 1e6)} | {_fmt(r['macs'], 1e9)} | {_fmt(r['macs_no_attention'], 1e9)} |")
    for m in ("teacher", "student"):
        t = rep["totals"][m]
        lines.append(f"| **{m}** | **total** | **{_fmt(t['params'], 1e6)}** | **{_fmt(t['macs'], 1e9)}** | **{_fmt(t['macs_no_attention'], 1e9)}** |")
    c = rep["change"]
    lines.append(f"| student vs teacher | change | {c['params']:+.1%} | {c['macs']:+.1%} | {c['macs_no_attention']:+.1%} |")
    tail = ""
    if "params_with_text" in c:
        tail = (f"\nWith the text encoder the teacher has {rep['totals']['teacher']['params_with_text'] / 1e6:,.2f} M "
                f"parameters: the student has {c['params_with_text']:+.1%}.\n")
    return head + "\n".join(lines) + "\n" + tail
