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
import threading
import traceback

from adcsr import __version__

# (subcommand module) in the order `adcsr --help` lists them.
COMMAND_MODULES: list[str] = [
    "adcsr.pipeline",
    "adcsr.upscale",
    "adcsr.import_release",
    "adcsr.degrade_and_evaluate",
    "adcsr.bench",
    "adcsr.compress",  # a stage's face gives its subcommand's `add_parser` (from its cli module)
    "adcsr.distill",
    "adcsr.export",
    "adcsr.hub_command",
    "adcsr.config_command",
]


# Each subcommand's --help ends with these (kept here, beside the command list, so that every
# command has one and a test can check it).
EXAMPLES: dict[str, str] = {
    "pipeline": """\
  adcsr pipeline                                   # the embedded default, into runs/default/
  adcsr pipeline pipeline-quality --run-dir runs/quality   # a shipped config, by name
  adcsr pipeline --run-dir runs/default --from stage2   # retrain stage 2, redo export and report
  adcsr pipeline --only report                     # stages: autoencoder, compress, stage1,
                                                   # stage2, export, report""",
    "upscale": """\
  adcsr upscale photo.jpg photo_x4.png --student runs/default/stage2/train/student
  adcsr upscale photos/ out/ --teacher realesrgan          # a folder, sub-folders kept
  adcsr upscale photos/ out/ --teacher realesrgan --resume # after an interrupted run: do only the rest
  adcsr upscale photo.jpg x4.png --artifact runs/default/export/artifacts/qnn-SM8750""",
    "import-release": """\
  adcsr import-release net_params_200.pkl halfDecoder.ckpt --out students/adcsr-release""",
    "degrade": """\
  adcsr degrade hr/*.png lr/ --seed 0          # ×4 LR images with the Real-ESRGAN degradation""",
    "evaluate": """\
  adcsr evaluate sr/ hr/ --json scores.json    # PSNR/SSIM on Y and NIQE, matched by file name""",
    "bench": """\
  adcsr bench --teacher realesrgan --student student:runs/default/stage2/train/student
  adcsr bench --preset sd21 --lr-size 64 --backends torch onnxruntime""",
    "compress": """\
  adcsr compress --teacher tiny --out runs/compress          # random-weight preset teacher
  adcsr compress --teacher /models/sd21-base --out runs/compress --criterion taylor""",
    "distill stage0": """\
  adcsr distill stage0 stage0-ci""",
    "distill stage1": """\
  adcsr distill stage1 stage1-full
  adcsr distill stage1 stage1-full --resume   # after a kill""",
    "distill stage2": """\
  adcsr distill stage2 stage2-full
  accelerate launch --num_processes 8 -m adcsr distill stage2 stage2-full""",
    "train dfosd": """\
  adcsr train dfosd dfosd-ci          # tiny random SD, on the bundled photos
  adcsr train dfosd dfosd-full --resume""",
    "train tsdsr": """\
  adcsr train tsdsr tsdsr-ci          # tiny random SD3, on the bundled photos
  accelerate launch -m adcsr train tsdsr tsdsr-full""",
    "train tadsr": """\
  adcsr train tadsr tadsr-ci          # tiny random ResShift, on the bundled photos
  adcsr train tadsr tadsr-full --resume""",
    "export qnn": """\
  adcsr export qnn runs/default/stage2/train/student --out exports/ --soc SM8650 --tile 64""",
    "export executorch": """\
  adcsr export executorch runs/default/stage2/train/student --out exports/""",
    "export coreml": """\
  adcsr export coreml runs/default/stage2/train/student --out exports/""",
    "export all": """\
  adcsr export all runs/default/stage2/train/student --out exports/ --jobs 3
  adcsr export all runs/default/stage2/train/student --out exports/ --resume   # after an interrupted one""",
    "export verify": """\
  adcsr export verify exports/qnn-SM8750       # re-run it against the student it records""",
    "export android": """\
  adcsr export android runs/default --app android_demo   # then: cd android_demo && ./gradlew :app:installDebug""",
    "hub compile": """\
  adcsr hub compile runs/default/export/artifacts/onnx --device SM8650""",
    "hub profile": """\
  adcsr hub profile runs/default/export/artifacts/onnx --graphs whole
  adcsr hub profile runs/default/export/artifacts/onnx --chipset qualcomm-snapdragon-8gen3""",
    "hub infer": """\
  adcsr hub infer runs/default/export/artifacts/onnx --quantize hub   # AI Hub quantizes the fp32 ONNX""",
    "hub run": """\
  qai-hub configure --api_token YOUR_TOKEN                  # once: writes ~/.qai_hub/client.ini
  adcsr hub run runs/default/export/artifacts/onnx          # Galaxy S25 (SM8750), QNN context binary
  adcsr hub run runs/default/stage2/train/student --tile 128 --runtime precompiled_qnn_onnx""",
    "config list": """\
  adcsr config list                            # every shipped config, by name""",
    "config show": """\
  adcsr config show pipeline                   # the embedded default""",
    "config dump": """\
  adcsr config dump pipeline-quality           # redirect it into my.yaml, edit, then: adcsr pipeline my.yaml""",
}


def _finish_help(parser: argparse.ArgumentParser, path: str = "") -> None:
    """Give every subcommand its examples epilog and show every option's default."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for action in parser._actions:
        default = action.default
        if (action.help and action.option_strings and "default" not in action.help
                and default is not None and default is not False and default != argparse.SUPPRESS):
            shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
            action.help += f" (default: {shown})"
    if path in EXAMPLES:
        parser.epilog = "examples:\n" + EXAMPLES[path]
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
    for sub in subs:
        for name, child in sub.choices.items():
            _finish_help(child, f"{path} {name}".strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adcsr",
        description="Compress a one-step diffusion SR teacher into a phone model (AdcSR).",
    )
    parser.add_argument("--version", action="version", version=f"adcsr-mobile {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    _finish_help(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    from adcsr.core.errors import UserError, disk_full, disk_full_message

    default_hook = threading.excepthook

    def quiet_disk_full(hook_args) -> None:
        # a writer thread that hits a full disk (TensorBoard's event writer) would print a
        # traceback; the main thread's next write fails the same way and is reported in one line
        if not disk_full(hook_args.exc_value):
            default_hook(hook_args)

    threading.excepthook = quiet_disk_full
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if isinstance(getattr(args, "config", None), str):  # a shipped config's name works for a path
            from adcsr.config_command import resolve

            args.config = resolve(args.config)
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"adcsr {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"adcsr {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI's last line of defence
        if disk_full(e):
            print(f"adcsr {args.command}: error: {disk_full_message(e)}", file=sys.stderr)
            return 1
        if os.environ.get("ADCSR_DEBUG"):
            traceback.print_exc()
        print(f"adcsr {args.command}: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
