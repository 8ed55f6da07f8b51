"""`adcsr hub compile|profile|infer|run SOURCE`: the exported student on real Snapdragon phones
through Qualcomm AI Hub; the results go to a JSON file next to the artifact and into the report.

SOURCE is the export's `onnx/` folder (or the export folder holding it), whose W8A16 QDQ ONNX is
compiled as it is (`--quantize local`) or whose fp32 ONNX AI Hub quantizes (`--quantize hub`:
INT8 weights, INT16 activations, calibrated on tiles of the training photos); or a trained
student folder, exported to fp32 ONNX here first. The whole student and the two halves of the
QNN export's split are sent by default (`--graphs`), so the phone latency of the split can be
set beside one graph's. Inference runs on the held-out tiles the export verifies with, and the
phone's SR is compared with the PyTorch student's.

The token comes from `--api-token`, QAIHUB_API_TOKEN or qai-hub's own configuration (`qai-hub
configure`, ~/.qai_hub/client.ini, QAIHUB_CLIENT_INI); it is never printed or written.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from adcsr.core.errors import UserError

GRAPHS = ("whole", "features", "decode")
EVAL_COUNT = 4  # held-out tiles, as the export's own verification (ExportConfig.eval_count)
CALIBRATION_COUNT = 8  # training-photo tiles for a quantize job (ExportConfig.calibration_count)


@dataclass
class HubInputs:
    """What `adcsr hub` sends: an export folder's fp32 and W8A16 ONNX, or a student folder to export first."""

    fp32: Path | None
    qdq: Path | None
    student: Path | None  # the PyTorch student, the reference for on-device outputs
    tile: int
    out: Path  # where results go by default


def add_parser(sub: argparse._SubParsersAction) -> None:
    from adcsr.hub import DEFAULT_DEVICE, RUNTIMES, STEPS

    p = sub.add_parser("hub", help="compile, profile and run the exported student on phones via Qualcomm AI Hub",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = p.add_subparsers(dest="hub_step", metavar="STEP", required=True)
    helps = {"compile": "quantize (optional) and compile for the device; download the compiled models",
             "profile": "compile, then profile on the device (inputs drawn by the service)",
             "infer": "compile, then run held-out tiles on the device (profiled) and compare with PyTorch",
             "run": "the whole chain: compile, download, profile on held-out tiles, compare"}
    for step in STEPS:
        s = steps.add_parser(step, help=helps[step], description=helps[step])
        s.add_argument("source", type=Path, metavar="SOURCE",
                       help="the export's onnx/ folder (or the folder holding it), or a student folder")
        where = s.add_mutually_exclusive_group()
        where.add_argument("--device", default=DEFAULT_DEVICE,
                           help="AI Hub device name, or a SoC name (SM8750, SM8650)")
        where.add_argument("--chipset", help="a chipset attribute instead, e.g. qualcomm-snapdragon-8gen3")
        s.add_argument("--runtime", choices=RUNTIMES, default="qnn_context_binary", help="AI Hub target runtime")
        s.add_argument("--quantize", choices=("auto", "hub", "local", "none"), default="auto",
                       help="auto: the export's W8A16 QDQ ONNX when there is one (local), else an AI Hub "
                            "quantize job (hub); none: fp32")
        s.add_argument("--quantize-io", action="store_true",
                       help="compile a quantized graph with 16-bit integer inputs and outputs")
        s.add_argument("--graphs", nargs="+", choices=GRAPHS, default=list(GRAPHS),
                       help="which graphs to send: the whole student and/or the split's halves")
        s.add_argument("--tile", type=int, default=None,
                       help="LR tile for a student folder (an export's own tile is used otherwise; default 128)")
        s.add_argument("--out", type=Path, default=None,
                       help="results folder (default: the onnx/ folder, or <student>/../hub)")
        s.add_argument("--api-token", default=None, help="AI Hub API token (else QAIHUB_API_TOKEN or qai-hub's "
                       "configuration)")
        s.set_defaults(func=_main)


def _onnx_folder(path: Path) -> Path | None:
    for folder in (path, path / "onnx"):
        manifest = folder / "manifest.json"
        if manifest.is_file():
            try:
                if json.loads(manifest.read_text()).get("target") == "onnx":
                    return folder
            except ValueError:
                raise UserError(f"{manifest}: not valid JSON") from None
    return None


def resolve_source(path: Path, tile: int | None) -> HubInputs:
    """What SOURCE holds: an export's ONNX folder or a student folder."""
    if not path.exists():
        raise UserError(f"{path}: not found")
    folder = _onnx_folder(path)
    if folder is not None:
        manifest = json.loads((folder / "manifest.json").read_text())
        files = {a["kind"]: folder / a["file"] for a in manifest.get("artifacts", [])}
        student = (manifest.get("student") or {}).get("path")
        return HubInputs(fp32=files.get("fp32"), qdq=files.get("w8a16_qdq"), student=Path(student) if student else None,
                      tile=int(manifest["lr_tile"]), out=folder)
    if (path / "config.json").is_file():
        return HubInputs(fp32=None, qdq=None, student=path, tile=tile or 128, out=path.resolve().parent / "hub")
    raise UserError(f"{path}: neither an export's onnx/ folder (manifest.json, target onnx) nor a student "
                    "folder (config.json)")


def _as_model_dir(onnx_file: Path, folder: Path) -> Path:
    """AI Hub's form of an ONNX model: the file itself, or with external weights a folder of
    exactly the .onnx and its .data file."""
    data = [p for p in onnx_file.parent.glob(onnx_file.name + "*.data")]
    if not data:
        return onnx_file
    target = folder / onnx_file.stem
    target.mkdir(parents=True, exist_ok=True)
    for f in (onnx_file, *data):
        shutil.copy2(f, target / f.name)
    return target


def _input_specs(onnx_file: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    import onnx

    graph = onnx.load(str(onnx_file), load_external_data=False).graph
    dtype = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16"}
    return {i.name: (tuple(d.dim_value for d in i.type.tensor_type.shape.dim), dtype.get(i.type.tensor_type.elem_type,
                                                                                        "float32"))
            for i in graph.input if i.name not in {t.name for t in graph.initializer}}


def _features_of(features_onnx: Path, lr: list[np.ndarray]) -> list[np.ndarray]:
    """The fp32 features half run on the CPU: the decode half's calibration inputs."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(features_onnx), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return [session.run(None, {name: x})[0] for x in lr]


def build_parts(source: HubInputs, quantize: str, graphs: list[str], work: Path):
    """The `Part`s to send, with calibration data for a quantize job."""
    from adcsr.export import lr_tiles, shipped_onnx, split_onnx
    from adcsr.hub import Part

    if quantize == "auto":
        quantize = "local" if source.qdq else "hub"
    if quantize == "local" and not source.qdq:
        raise UserError("--quantize local needs the export's W8A16 QDQ ONNX (student_w8a16.onnx): export with "
                        "the qnn target first, or use --quantize hub")
    model = source.qdq if quantize == "local" else source.fp32
    if model is None:  # a student folder: its fp32 ONNX as the export ships it
        from adcsr.core.models.student import AdcSRStudent

        model = shipped_onnx(AdcSRStudent.from_pretrained(source.student).eval(), source.tile,
                             work / "student_fp32.onnx")
    files = {"whole": model}
    if {"features", "decode"} & set(graphs):
        halves = work / "halves"
        halves.mkdir()
        files.update(split_onnx(model, halves))
    calibration_lr = None
    if quantize == "hub":
        calibration_lr = [t[None].numpy() for t in lr_tiles("train", source.tile, CALIBRATION_COUNT)]
    parts = []
    for name in GRAPHS:
        if name not in graphs:
            continue
        specs = _input_specs(files[name])
        calibration = None
        if calibration_lr is not None:
            first = next(iter(specs))
            calibration = {first: _features_of(files["features"], calibration_lr) if name == "decode"
                           else calibration_lr}
            if len(specs) > 1:  # the decode half also reads the LR (lr_skip)
                calibration[list(specs)[1]] = calibration_lr
        parts.append(Part(name, _as_model_dir(files[name], work / "models"), specs, quantize, calibration))
    return parts


def _heldout(source: HubInputs) -> tuple[np.ndarray, np.ndarray]:
    """The export's verification tiles and the PyTorch student's SR of them."""
    import torch

    from adcsr.core.models.student import AdcSRStudent
    from adcsr.export import lr_tiles

    if source.student is None or not source.student.is_dir():
        raise UserError(f"the PyTorch student ({source.student}) is needed to compare the phone's output with")
    lr = lr_tiles("heldout", source.tile, EVAL_COUNT)
    with torch.no_grad():
        reference = AdcSRStudent.from_pretrained(source.student).eval()(lr)
    return lr.numpy(), reference.numpy()


def send_to_hub(creds, source_path: Path, out: Path | None = None, *, step: str = "run",
                device: str | None = None, chipset: str | None = None, runtime: str = "qnn_context_binary",
                quantize: str = "auto", quantize_io: bool = False, graphs: tuple[str, ...] | list[str] = GRAPHS,
                tile: int | None = None, log=print) -> Path:
    """The student at `source_path` through AI Hub up to `step`; returns the results JSON."""
    from adcsr.hub import open_session, run_on_hub

    source = resolve_source(source_path, tile)
    out = out or source.out
    out.mkdir(parents=True, exist_ok=True)
    heldout = reference = None
    if step in ("infer", "run"):
        heldout, reference = _heldout(source)
    with tempfile.TemporaryDirectory(dir=out, prefix=".hub-") as tmp:
        parts = build_parts(source, quantize, graphs, Path(tmp))
        return run_on_hub(open_session(creds, log), parts, out, step=step, device=device, chipset=chipset,
                          runtime=runtime, quantize_io=quantize_io, heldout=heldout, reference=reference,
                          source={"path": str(source_path), "tile": source.tile})


def _main(args: argparse.Namespace) -> int:
    from adcsr.hub import require_credentials

    creds = require_credentials(args.api_token)  # no token: one line, nothing else attempted
    path = send_to_hub(creds, args.source, args.out, step=args.hub_step, device=None if args.chipset else args.device,
                       chipset=args.chipset, runtime=args.runtime, quantize=args.quantize,
                       quantize_io=args.quantize_io, graphs=args.graphs, tile=args.tile)
    _print_summary(path)
    return 0


def _print_summary(path: Path) -> None:
    from adcsr.hub import read_results

    data = read_results(path)
    for name, part in data["parts"].items():
        p = part.get("profile")
        if p:
            parity = part.get("psnr_vs_pytorch_db")
            print(f"{name}: {p['inference_ms']:.2f} ms, NPU {100 * (p['npu_layer_share'] or 0):.0f}% of layers"
                  + (f", {parity:.2f} dB vs PyTorch" if parity is not None else ""))
    if "split" in data:
        print(f"split (features → decode): {data['split']['inference_ms']:.2f} ms, "
              f"{data['split']['psnr_vs_pytorch_db']:.2f} dB vs PyTorch")
    print(f"adcsr hub: wrote {path}")
