"""W8A16: QDQ with 16-bit activations and 8-bit per-channel weights, via onnxruntime's QNN helpers.

`quantize_w8a16` runs `qnn_preprocess_model` (which also decomposes GroupNormalization into ops
the quantizer and HTP handle), calibrates min/max on real LR photos, and writes the QDQ model.
Layers named in `keep_16bit` keep 16-bit weights (mixed precision). A *layer* is a Conv / MatMul /
Gemm weight, named after its PyTorch module (see `onnx_export.name_weights_by_module`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from adcsr.core.errors import UserError

from .onnx_export import INPUT_NAME, OUTPUT_NAME
from .ort_quant_tools import is_large, one_pass_input_rewiring, quiet

if TYPE_CHECKING:
    import torch

WEIGHT_OPS = ("Conv", "MatMul", "Gemm")
SCHEME = "W8A16: QUInt16 activations (asymmetric min-max), QUInt8 weights (per-channel for Conv)"


def layer_weights(model: str | os.PathLike) -> dict[str, str]:
    """{layer name: weight initializer name} for every Conv / MatMul / Gemm with a constant weight."""
    import onnx

    proto = onnx.load(str(model), load_external_data=False)
    inits = {i.name for i in proto.graph.initializer}
    out = {}
    for node in proto.graph.node:
        if node.op_type in WEIGHT_OPS and len(node.input) > 1 and node.input[1] in inits:
            w = node.input[1]
            out[w.removesuffix(".weight").removeprefix("student.")] = w
    return out


def resolve_layers(model: str | os.PathLike, names: Iterable[str]) -> list[str]:
    """Check user-given layer names against the model; an unknown name is a `UserError`."""
    known = layer_weights(model)
    names = list(names)
    for n in names:
        if n not in known:
            close = [k for k in known if n in k][:3]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UserError(f"unknown layer {n!r} for mixed precision{hint}")
    return names


def preprocess(fp32_model: str | os.PathLike, out: str | os.PathLike) -> Path:
    """onnxruntime's QNN preprocessing (GroupNorm decomposition, fusions), then its basic graph
    optimizations, which fold the decomposition's shape arithmetic (static shapes): ~40% fewer
    nodes for the quantizer, whose passes grow with the square of the node count."""
    import onnxruntime as ort
    from onnxruntime.quantization.execution_providers.qnn import qnn_preprocess_model

    out = Path(out)
    stage = out.with_name(out.stem + ".qnnprep.onnx")
    large = is_large(fp32_model)
    with quiet():
        if not qnn_preprocess_model(str(fp32_model), str(stage), save_as_external_data=large,
                                    all_tensors_to_one_file=True, external_data_location=stage.name + ".data"):
            stage = Path(fp32_model)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(out)
    if large:
        so.add_session_config_entry("session.optimized_model_external_initializers_file_name", out.name + ".data")
        so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    ort.InferenceSession(str(stage), sess_options=so, providers=["CPUExecutionProvider"])
    if stage != Path(fp32_model):
        stage.unlink()
        Path(str(stage) + ".data").unlink(missing_ok=True)
    return out


def calibrate(pre_model: str | os.PathLike, calibration: np.ndarray, cache: str | os.PathLike,
              margin: float = 1.0, group: int = 400) -> Path:
    """Min/max of every float activation over the calibration images, as an onnxruntime calibration
    cache (JSON) that `quantize_w8a16` reuses for every mixed-precision try.

    Written by hand: onnxruntime's MinMaxCalibrater inserts its ReduceMin/Max nodes with an O(N²)
    Python loop (minutes for the few thousand nodes of a preprocessed student); exposing the
    tensors as graph outputs, `group` at a time, and reducing in numpy gives the same ranges.

    Each range is widened by `margin` × its width on both sides: photos outside the calibration
    set otherwise clip (measured on the tiny student: 25 dB on held-out vs 40 dB on calibration
    photos), and with 16-bit activations a 3× wider range costs under 2 of the 16 bits.
    """
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    if len(calibration) == 0:
        raise UserError("calibration needs at least one image")
    pre_model = Path(pre_model)
    shaped = pre_model.with_name(pre_model.stem + ".shapes.onnx")
    onnx.shape_inference.infer_shapes_path(str(pre_model), str(shaped))
    proto = onnx.load(str(shaped), load_external_data=False)
    shaped.unlink()
    inits = {i.name for i in proto.graph.initializer}
    infos = {v.name: v for v in [*proto.graph.value_info, *proto.graph.output, *proto.graph.input]}
    floats = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
    names = sorted({t for n in proto.graph.node for t in [*n.input, *n.output]
                    if t in infos and t not in inits and infos[t].type.tensor_type.elem_type in floats})
    ranges: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    so = ort.SessionOptions()
    so.log_severity_level = 3
    for start in range(0, len(names), group):
        chunk = names[start:start + group]
        del proto.graph.output[:]
        proto.graph.output.extend(infos[t] for t in chunk)
        model = _serialize(proto, pre_model)
        session = ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])
        if isinstance(model, str):  # the session has read it: no scratch file left in the artifact folder
            Path(model).unlink()
        for image in calibration:
            for t, v in zip(chunk, session.run(chunk, {INPUT_NAME: image[None].astype(np.float32)})):
                lo, hi = np.float32(v.min()), np.float32(v.max())
                old = ranges.get(t)
                ranges[t] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
    widened = {t: (np.float32(lo - margin * (hi - lo)), np.float32(hi + margin * (hi - lo))) for t, (lo, hi) in ranges.items()}
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, widened), cache)
    return Path(cache)


def _serialize(proto, model_path: Path) -> bytes | str:
    """The model for a session: bytes when small, else a file beside its external weights."""
    if not is_large(model_path):
        return proto.SerializeToString()
    import onnx

    out = model_path.with_name(model_path.stem + ".calib.onnx")
    onnx.save_model(proto, str(out))
    return str(out)


def quantize_w8a16(pre_model: str | os.PathLike, out: str | os.PathLike, cache: str | os.PathLike,
                   keep_16bit: Sequence[str] = ()) -> dict:
    """Quantize a preprocessed fp32 model to W8A16 QDQ at `out` with the ranges in `cache`
    (from `calibrate`); layers in `keep_16bit` keep 16-bit weights. Returns what was done."""
    from onnxruntime.quantization import QuantType, quantize_static
    from onnxruntime.quantization.execution_providers.qnn import get_qnn_qdq_config

    keep = resolve_layers(pre_model, keep_16bit)
    weights = layer_weights(pre_model)
    overrides = {weights[n]: [{"quant_type": QuantType.QUInt16, "symmetric": True}] for n in keep}
    # The image range is known by construction; photos outside the calibration set's extremes
    # would otherwise be clipped at the model's boundaries.
    overrides.update({name: [{"rmin": np.float32(0.0), "rmax": np.float32(1.0)}] for name in (INPUT_NAME, OUTPUT_NAME)})
    with quiet(), one_pass_input_rewiring():
        cfg = get_qnn_qdq_config(
            str(pre_model), None, activation_type=QuantType.QUInt16,
            weight_type=QuantType.QUInt8, per_channel=True, init_overrides=overrides,
        )
        quantize_static(
            str(pre_model), str(out), None, calibrate_method=cfg.calibrate_method,
            quant_format=cfg.quant_format, activation_type=cfg.activation_type, weight_type=cfg.weight_type,
            op_types_to_quantize=cfg.op_types_to_quantize, nodes_to_exclude=cfg.nodes_to_exclude,
            per_channel=cfg.per_channel, use_external_data_format=is_large(pre_model),
            extra_options=cfg.extra_options, calibration_cache_path=str(cache),
        )
    return {"scheme": SCHEME, "kept_16bit_weights": keep}


def fake_quant_weight(w: "torch.Tensor", per_channel: bool, bits: int = 8) -> "torch.Tensor":
    """Asymmetric min-max round trip of a weight (per output channel or per tensor), as the QDQ tool does."""
    import torch

    flat = w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1)
    lo = flat.min(dim=1, keepdim=True).values.clamp(max=0)
    hi = flat.max(dim=1, keepdim=True).values.clamp(min=0)
    scale = ((hi - lo) / (2**bits - 1)).clamp_min(1e-12)
    zero = torch.round(-lo / scale)
    q = torch.clamp(torch.round(flat / scale) + zero, 0, 2**bits - 1)
    return ((q - zero) * scale).reshape(w.shape)


def layer_sensitivity(model: "torch.nn.Module", images: "torch.Tensor") -> list[tuple[str, float]]:
    """Each layer's share of the W8 error: output PSNR (dB, vs fp32) with only that layer's weight
    quantized to 8 bits, worst first. Layer names match `layer_weights` of the exported ONNX."""
    from adcsr.core.metrics.fidelity import parity_psnr

    import torch
    from torch import nn

    with torch.no_grad():
        ref = model(images)
        out = []
        for name, module in model.named_modules():
            if not isinstance(module, (nn.Conv2d, nn.Linear)):
                continue
            original = module.weight.detach().clone()
            module.weight.copy_(fake_quant_weight(original, per_channel=isinstance(module, nn.Conv2d)))
            out.append((name.removeprefix("student."), parity_psnr(ref, model(images))))
            module.weight.copy_(original)
    return sorted(out, key=lambda kv: kv[1])
