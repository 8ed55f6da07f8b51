"""`adcsr import-release NET DECODER --out DIR`: the AdcSR authors' released weights as a student folder.

NET is the release's `net_params_200.pkl` (the trained body), DECODER its `halfDecoder.ckpt` (the
pruned VAE decoder), both linked from github.com/Guaishou74851/AdcSR (Apache-2.0; see the README
for the weights' terms). Both are read with `torch.load(weights_only=True)`. DIR is a `save_pretrained` student folder (config.json +
safetensors) that `adcsr upscale --student DIR` and `adcsr export ... DIR` take, plus a
manifest.json naming the two source files with their sha256. DIR appears whole or not at all.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

SOURCE = {"release": "https://github.com/Guaishou74851/AdcSR", "weights": "https://huggingface.co/Guaishou74851/AdcSR",
          "licence": "Apache-2.0 (the release repository's LICENSE)"}


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("import-release", help="the released AdcSR weights → a student folder",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("net", metavar="NET", type=Path, help="the release's net_params_200.pkl")
    p.add_argument("decoder", metavar="DECODER", type=Path, help="the release's halfDecoder.ckpt")
    p.add_argument("--out", required=True, type=Path, help="output student folder")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from adcsr.core.atomic import atomic_dir
    from adcsr.core.errors import UserError
    from adcsr.core.manifest import sha256_file, write_manifest
    from adcsr.core.models.macs import count_params
    from adcsr.core.models.student import AdcSRStudent

    if args.out.exists() and not args.force:
        raise UserError(f"{args.out} already exists (use --force to replace it)")
    student = AdcSRStudent.from_release(args.net, args.decoder)  # bad files fail here, before any output
    with tqdm(total=3, desc="import-release", unit="file") as bar:
        files = {}
        for role, path in (("net", args.net), ("decoder", args.decoder)):
            bar.set_postfix_str(f"sha256 {path.name}")
            files[role] = {"name": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}
            bar.update()
        bar.set_postfix_str("save")
        with atomic_dir(args.out, overwrite=args.force) as tmp:
            student.save_pretrained(tmp)
            write_manifest(tmp / "manifest.json", kind="adcsr_release_import", source={**SOURCE, "files": files},
                           params=count_params(student))
        bar.update()
    print(f"wrote {args.out} ({count_params(student) / 1e6:.2f} M params): "
          f"adcsr upscale --student {args.out} ... | adcsr export all {args.out} --out ...")
    return 0
