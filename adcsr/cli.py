"""The `adcsr` command. Each subcommand lives in its own module exposing `add_parser(subparsers)`;
the parser it adds sets `func(args) -> int`.

Exit codes: 0 success, 2 bad input (`UserError`: one line on stderr, no traceback),
1 internal failure (one line; the traceback only with ADCSR_DEBUG=1), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from adcsr import __version__

# (subcommand module) in the order `adcsr --help` lists them.
COMMAND_MODULES: list[str] = [
    "adcsr.pipeline",
    "adcsr.upscale",
    "adcsr.import_release",
    "adcsr.degrade_and_evaluate",
    "adcsr.bench",
    "adcsr.compress.cli",
    "adcsr.distill.cli",
    "adcsr.export.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adcsr",
        description="Compress a one-step diffusion SR teacher into a phone model (AdcSR).",
    )
    parser.add_argument("--version", action="version", version=f"adcsr-mobile {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from adcsr.core.errors import UserError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"adcsr {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"adcsr {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI's last line of defence
        if os.environ.get("ADCSR_DEBUG"):
            traceback.print_exc()
        print(f"adcsr {args.command}: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
