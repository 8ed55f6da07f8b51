"""Print the teacher-vs-student parameter/MAC table for the full-size presets (meta device, seconds).

The student config is what `compress.from_teacher` derives from the SD2.1-base teacher at the given
ratios; nothing is downloaded and no weights are allocated.

    python benchmarks/compress_table.py [--preset sd21] [--lr-size 128] [--unet-ratio 0.25] [--decoder-ratio 0.5]
"""

from __future__ import annotations

import argparse
import sys

from adcsr.compress.accounting import compression_report, report_markdown
from adcsr.compress.from_teacher import Ratios, student_config
from adcsr.core.errors import UserError
from adcsr.core.models.sd_configs import text_encoder_config, unet_config, vae_config
from adcsr.core.models.vae_decoder import PrunedVAEDecoder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="sd21", choices=("sd21", "tiny"))
    p.add_argument("--lr-size", type=int, default=128)
    p.add_argument("--unet-ratio", type=float, default=0.25)
    p.add_argument("--decoder-ratio", type=float, default=0.5)
    args = p.parse_args(argv)
    try:
        r = Ratios(args.unet_ratio, args.decoder_ratio)
        ucfg, vcfg = unet_config(args.preset), vae_config(args.preset)
        scfg = student_config(ucfg, PrunedVAEDecoder.config_from_vae(vcfg, r.decoder), r.unet)
        rep = compression_report(ucfg, vcfg, text_encoder_config(args.preset), scfg,
                                 {"unet": r.unet, "decoder": r.decoder}, "any", args.lr_size)
    except UserError as e:
        print(f"compress_table: error: {e}", file=sys.stderr)
        return 2
    print(report_markdown(rep).replace("; criterion `any`", ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
