"""`adcsr export qnn|executorch|coreml|all STUDENT --out DIR` and `adcsr export verify ARTIFACT`."""

from __future__ import annotations

import argparse
import json
import sys

TARGET_CHOICES = ("qnn", "executorch", "coreml", "all")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("export", help="W8A16 + export to QNN / ExecuTorch / Core ML, and verification")
    sub = p.add_subparsers(dest="export_command", metavar="TARGET", required=True)
    for target in TARGET_CHOICES:
        t = sub.add_parser(target, help=f"export the student to {target}")
        t.add_argument("student", help="student folder (save_pretrained) or preset:tiny / preset:sd21")
        t.add_argument("--out", required=True, help="output folder (one subfolder per target)")
        t.add_argument("--soc", default=None, help="QNN target SoC: SM8750 (default) or SM8650")
        t.add_argument("--tile", type=int, default=None, help="static LR tile side (default 128)")
        t.add_argument("--config", default=None, help="export config YAML, or a shipped config's name (default: export-default)")
        t.add_argument("--jobs", type=int, default=None, help="targets exported at once, each in its own process")
        t.add_argument("--force", action="store_true", help="replace existing output folders")
        t.add_argument("--resume", action="store_true",
                       help="after an interrupted export: keep the targets it finished (same student and settings, "
                            "files intact), remove what it left half-written, export the rest")
        t.set_defaults(func=_run_export, target=target)
    v = sub.add_parser("verify", help="re-run an exported folder's artifacts against the PyTorch student, "
                                      "applying the thresholds its manifest records")
    v.add_argument("artifact", help="an export folder (onnx/, qnn-SM8750/, executorch/, coreml/) or a file in it")
    v.set_defaults(func=_run_verify)
    a = sub.add_parser("android", help="stage verified artifacts and their model contract into the Android demo app")
    a.add_argument("source", help="a run folder (runs/default) or an export folder holding qnn-<SoC>/ and executorch/")
    a.add_argument("--app", default="android_demo", help="the Android demo app's folder")
    a.set_defaults(func=_run_android)


def _run_export(args: argparse.Namespace) -> int:
    from .config import load_export_config
    from .targets import TARGETS, export

    overrides = {k: v for k, v in (("soc", args.soc), ("tile", args.tile), ("jobs", args.jobs)) if v is not None}
    cfg = load_export_config(args.config, **overrides)
    targets = list(TARGETS) if args.target == "all" else [args.target]
    results = export(args.student, args.out, targets, cfg, force=args.force, resume=args.resume,
                     log=lambda m: print(f"adcsr export: {m}", file=sys.stderr))
    print(json.dumps(results, indent=2, default=str))
    return 0


def _run_verify(args: argparse.Namespace) -> int:
    from .verify import verify

    result = verify(args.artifact)
    for line in result["warnings"]:
        print(f"adcsr export verify: warning: {line}", file=sys.stderr)
    print(json.dumps(result, indent=2))
    return 0


def _run_android(args: argparse.Namespace) -> int:
    from .android import stage_for_android

    contract = stage_for_android(args.source, args.app)
    print(f"adcsr export android: staged {contract.parent} (contract: {contract})")
    return 0
