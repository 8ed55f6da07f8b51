"""Core ML `.mlpackage` (mlprogram, iOS 17) from `torch.export`, fp32 and W8A16, checked by spec.

W8A16 on Core ML = int8 per-channel symmetric weights (`linear_quantize_weights`) with fp16
compute. Prediction needs macOS, so on Linux the checks are the spec's I/O names, shapes, dtypes
and op list.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import torch
from torch import nn

from .deploy import exported_program
from .onnx_export import INPUT_NAME, OUTPUT_NAME


def coreml_program(model: nn.Module, tile: int) -> "torch.export.ExportedProgram":
    """The program both packages are converted from (export once, convert twice)."""
    with torch.no_grad():
        return exported_program(model, tile).run_decompositions({})


def export_coreml(program: "torch.export.ExportedProgram", tile: int, path: str | os.PathLike, w8a16: bool) -> Path:
    """Convert a deploy-form (backend "coreml") program; `w8a16` quantizes weights to int8."""
    import coremltools as ct
    import coremltools.optimize.coreml as cto

    mlmodel = ct.convert(
        program,
        inputs=[ct.TensorType(name=INPUT_NAME, shape=(1, 3, tile, tile), dtype=ct.converters.mil.mil.types.fp32)],
        outputs=[ct.TensorType(name=OUTPUT_NAME, dtype=ct.converters.mil.mil.types.fp32)],
        convert_to="mlprogram",
        minimum_deployment_target=ct.target.iOS17,
        compute_precision=ct.precision.FLOAT16 if w8a16 else ct.precision.FLOAT32,
        skip_model_load=True,
    )
    if w8a16:
        op_cfg = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel")
        mlmodel = cto.linear_quantize_weights(mlmodel, cto.OptimizationConfig(global_config=op_cfg))
    mlmodel.save(str(path))
    return Path(path)


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

    return {
        "spec_version": int(spec.specificationVersion),
        "model_type": spec.WhichOneof("Type"),
        "inputs": [io(d) for d in spec.description.input],
        "outputs": [io(d) for d in spec.description.output],
        "ops": dict(sorted(ops.items())),
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
    if problems:
        raise RuntimeError("Core ML spec check failed: " + "; ".join(problems))
