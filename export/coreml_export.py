"""Core ML `.mlpackage` (mlprogram, iOS 17) from `torch.export`, fp32 and W8A16, checked by spec.

W8A16 on Core ML = int8 per-channel symmetric weights (`linear_quantize_weights`) with fp16
compute, except the ops `coreml_fp16.check_fp16` found too close to fp16's range, which stay fp32
(coremltools' per-op compute precision). Prediction needs macOS, so on Linux the checks are the
spec's I/O names, shapes, dtypes and op list, and each op's compute dtype.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from adcsr.core.quiet import library_bars_off

from .deploy import exported_program
from .onnx_export import INPUT_NAME, OUTPUT_NAME

DEPLOYMENT_TARGET = "iOS17"  # Core ML's minimum_deployment_target: iOS 17 / macOS 14 and later
# coremltools' per-op and per-pass progress bars, drawn under the export's own
_CONVERTER_BARS = ("coremltools.converters.mil.frontend.torch.ops:_tqdm",
                   "coremltools.converters.mil.mil.passes.pass_pipeline:tqdm")


def coreml_program(model: nn.Module, tile: int) -> "torch.export.ExportedProgram":
    """The program both packages are converted from (export once, convert twice), which
    `coreml_fp16.check_fp16` also runs. Every op node gets a debug handle (its index), which
    coremltools copies onto each MIL op it makes from that node (`ScopeSource.EXIR_DEBUG_HANDLE`):
    that is how per-op precision finds the MIL ops of an FX node."""
    with torch.no_grad():
        program = exported_program(model, tile).run_decompositions({})
    for i, node in enumerate(program.graph.nodes):
        if node.op == "call_function":
            node.meta["debug_handle"] = i
    return program


def export_coreml(program: "torch.export.ExportedProgram", tile: int, path: str | os.PathLike, w8a16: bool,
                  fp32_ops: Iterable[str] = ()) -> tuple[Path, dict[str, list[str]]]:
    """Convert a deploy-form (backend "coreml") program; `w8a16` quantizes weights to int8 and
    computes in fp16, except the FX nodes named in `fp32_ops`, whose MIL ops stay fp32.
    Returns the package and {FX node: [its MIL compute ops kept fp32]}."""
    import coremltools as ct
    import coremltools.optimize.coreml as cto
    from coremltools.converters.mil.mil.scope import ScopeSource

    handles = {node.meta["debug_handle"]: node.name for node in program.graph.nodes if "debug_handle" in node.meta}
    keep = set(fp32_ops)
    unknown = keep - set(handles.values())
    if unknown:
        raise ValueError(f"fp32 ops not in the program: {', '.join(sorted(unknown))}")
    kept: dict[str, list[str]] = {}

    def fp16(op) -> bool:  # coremltools asks this once per MIL op while adding its fp16 casts
        nodes = [handles.get(h) for h in op.scopes.get(ScopeSource.EXIR_DEBUG_HANDLE, []) if h is not None]
        hit = [n for n in nodes if n in keep]
        if hit and op.op_type != "const":
            kept.setdefault(hit[0], []).append(op.name)
        return not hit

    if not w8a16:
        precision = ct.precision.FLOAT32
    elif keep:
        precision = ct.transform.FP16ComputePrecision(op_selector=fp16)
    else:
        precision = ct.precision.FLOAT16
    with library_bars_off(*_CONVERTER_BARS):
        mlmodel = _convert(ct, cto, program, tile, precision, w8a16)
    mlmodel.save(str(path))
    # ops a later pass removed are not in the package: record the ones that are
    present = set(op_dtypes(path))
    return Path(path), {node: [n for n in names if n in present] for node, names in kept.items()}


def _convert(ct, cto, program, tile: int, precision, w8a16: bool):
    mlmodel = ct.convert(
        program,
        inputs=[ct.TensorType(name=INPUT_NAME, shape=(1, 3, tile, tile), dtype=ct.converters.mil.mil.types.fp32)],
        outputs=[ct.TensorType(name=OUTPUT_NAME, dtype=ct.converters.mil.mil.types.fp32)],
        convert_to="mlprogram",
        minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET),
        compute_precision=precision,
        skip_model_load=True,
    )
    if w8a16:
        op_cfg = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel")
        mlmodel = cto.linear_quantize_weights(mlmodel, cto.OptimizationConfig(global_config=op_cfg))
    return mlmodel


def op_dtypes(path: str | os.PathLike) -> dict[str, list[str]]:
    """{MIL op name: its float outputs' dtypes} for every compute op (no const / constexpr) of a package."""
    import coremltools as ct
    from coremltools.proto import MIL_pb2

    spec = ct.utils.load_spec(str(path))
    out: dict[str, list[str]] = {}

    def walk(block):
        for op in block.operations:
            if op.type != "const" and not op.type.startswith("constexpr"):
                name = op.attributes["name"].immediateValue.tensor.strings.values[0] if "name" in op.attributes else ""
                out[name] = [MIL_pb2.DataType.Name(o.type.tensorType.dataType) for o in op.outputs
                             if o.type.WhichOneof("type") == "tensorType"
                             and MIL_pb2.DataType.Name(o.type.tensorType.dataType).startswith("FLOAT")]
            for b in op.blocks:
                walk(b)

    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            walk(block)
    return out


def check_fp32_ops(path: str | os.PathLike, kept: dict[str, list[str]]) -> None:
    """Raise unless every FX node the fp16 check kept fp32 has MIL ops in the package and all of
    them compute in fp32 (read from the saved spec, not from what the converter was asked)."""
    dtypes = op_dtypes(path)
    problems = []
    for node, names in kept.items():
        if not names:
            problems.append(f"{node} has no op left in the package")
        for name in names:
            if name not in dtypes:
                problems.append(f"{node}: op {name} is not in the package")
            elif any(d != "FLOAT32" for d in dtypes[name]):
                problems.append(f"{node}: op {name} computes in {'/'.join(sorted(set(dtypes[name])))}, not FLOAT32")
    if problems:
        raise RuntimeError("Core ML fp32 ops check failed: " + "; ".join(problems))


def spec_report(path: str | os.PathLike) -> dict:
    """I/O names, shapes, dtypes, op counts and weight dtypes read from a saved `.mlpackage`."""
    import coremltools as ct

    spec = ct.utils.load_spec(str(path))
    ops: Counter[str] = Counter()
    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            _count_ops(block, ops)

    def io(desc):
        arr = desc.type.multiArrayType
        return {"name": desc.name, "shape": [int(s) for s in arr.shape],
                "dtype": ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(arr.dataType)}

    compute = Counter(d for dtypes in op_dtypes(path).values() for d in set(dtypes))
    return {
        "spec_version": int(spec.specificationVersion),
        "model_type": spec.WhichOneof("Type"),
        "inputs": [io(d) for d in spec.description.input],
        "outputs": [io(d) for d in spec.description.output],
        "ops": dict(sorted(ops.items())),
        "compute_ops_by_dtype": dict(sorted(compute.items())),  # compute ops with float outputs of each dtype
    }


def _count_ops(block, ops: Counter) -> None:
    for op in block.operations:
        ops[op.type] += 1
        for b in op.blocks:
            _count_ops(b, ops)


def check_spec(spec: dict, tile: int, w8a16: bool) -> None:
    """Raise if a package's spec is not what the app expects (mlprogram, fp32 I/O at the tile size,
    int8 weights when W8A16)."""
    want_in, want_out = [1, 3, tile, tile], [1, 3, 4 * tile, 4 * tile]
    problems = []
    if spec["model_type"] != "mlProgram" or spec["spec_version"] < 8:
        problems.append(f"not an iOS 17 mlprogram ({spec['model_type']}, spec {spec['spec_version']})")
    io = (spec["inputs"], spec["outputs"])
    if [d["name"] for d in io[0]] != [INPUT_NAME] or [d["name"] for d in io[1]] != [OUTPUT_NAME]:
        problems.append("I/O names are not lr → sr")
    elif io[0][0]["shape"] != want_in or io[0][0]["dtype"] != "FLOAT32":
        problems.append(f"input is {io[0][0]}, expected float32 {want_in}")
    elif io[1][0]["dtype"] != "FLOAT32" or (io[1][0]["shape"] and io[1][0]["shape"] != want_out):
        problems.append(f"output is {io[1][0]}, expected float32 {want_out}")
    ops = spec["ops"]
    if not ops.get("conv"):
        problems.append("no conv ops in the program")
    if w8a16 and not (ops.get("constexpr_affine_dequantize") or ops.get("constexpr_blockwise_shift_scale")):
        problems.append("no int8 weight dequantization ops: weights are not quantized")
    compute = spec.get("compute_ops_by_dtype", {})
    if w8a16 and not compute.get("FLOAT16"):
        problems.append("no op computes in fp16")
    if not w8a16 and compute.get("FLOAT16"):
        problems.append(f"{compute['FLOAT16']} op(s) compute in fp16 in the fp32 package")
    if problems:
        raise RuntimeError("Core ML spec check failed: " + "; ".join(problems))
