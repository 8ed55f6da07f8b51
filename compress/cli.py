"""`adcsr compress`: teacher → AdcSR student + pruned VAE decoder + a params/MACs report.

Writes OUT/student/ and OUT/decoder/ (diffusers save_pretrained: config.json + safetensors),
OUT/report.json and OUT/report.md. The whole folder appears at once, or not at all.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from adcsr.core.errors import UserError

from .config import CRITERIA, CompressConfig

D = CompressConfig()


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compress", help="structural compression of an SD teacher into the AdcSR student",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default="tiny",
                   help="preset (tiny, sd21: random weights) or a local diffusers SD folder with unet/ and vae/")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--unet-ratio", type=float, default=D.unet_ratio,
                   help=f"fraction of UNet channels removed (default {D.unet_ratio})")
    p.add_argument("--decoder-ratio", type=float, default=D.decoder_ratio,
                   help=f"fraction of VAE-decoder channels removed (default {D.decoder_ratio})")
    p.add_argument("--criterion", choices=CRITERIA, default=D.criterion,
                   help=f"release: the release's flat slicing; first: the first channels of every coupled group "
                        f"(whole heads, aligned GEGLU halves); magnitude: L2; taylor: |w·grad| on real photos "
                        f"(default {D.criterion})")
    p.add_argument("--calibration", type=int, default=D.calibration,
                   help=f"photo crops used by the taylor criterion (default {D.calibration})")
    p.add_argument("--lr-size", type=int, default=D.lr_size,
                   help=f"LR side the report counts MACs at (default {D.lr_size})")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights of a preset teacher")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=run)


def _text_config(teacher: str) -> dict | None:
    from adcsr.core.models.sd_configs import PRESETS, text_encoder_config

    if teacher in PRESETS:
        return text_encoder_config(teacher)
    cfg = Path(teacher) / "text_encoder" / "config.json"
    if not cfg.is_file():
        return None
    try:
        d = json.loads(cfg.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"cannot read {cfg}: {e}") from None
    keys = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "max_position_embeddings", "hidden_act", "projection_dim")
    return {k: d[k] for k in keys if k in d}


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .accounting import report_markdown
    from .api import compress
    from .sd_teacher import load_teacher

    cfg = CompressConfig(unet_ratio=args.unet_ratio, decoder_ratio=args.decoder_ratio, criterion=args.criterion,
                         calibration=args.calibration, lr_size=args.lr_size)
    out = Path(args.out)
    if out.exists() and not args.force:
        raise UserError(f"{out} already exists (use --force to replace it)")
    with tqdm(total=4, desc="compress", unit="step") as bar:
        bar.set_postfix_str("load teacher")
        unet, vae = load_teacher(args.teacher, seed=args.seed)

        def step(name: str) -> None:
            bar.update()
            bar.set_postfix_str(name)

        compress(unet, vae, out, cfg, teacher=args.teacher, text_config=_text_config(args.teacher),
                 seed=args.seed, overwrite=args.force, on_step=step)
        bar.update()
    print(report_markdown(json.loads((out / "report.json").read_text())))
    print(f"wrote {out}/student, {out}/decoder, {out}/report.json, {out}/report.md")
    return 0
