"""Int8 QDQ for onnxruntime's CPU provider: 8-bit activations (asymmetric min-max) and per-channel
8-bit symmetric weights on the convolutions and matmuls, which onnxruntime fuses into QLinearConv /
QLinearMatMul (its MLAS kernels use AVX-512 VNNI where the CPU has it). Everything else (norms,
SiLU, resizes) stays fp32 between dequantize and quantize nodes.

onnxruntime's own tools do the work (the preprocessing W8A16 uses, `quantize_static`; unlike
`quant_pre_process` it keeps a full-size student's external weights); the ranges come from
`w8a16.calibrate` (its fast min/max pass) over the calibration tiles, unwidened: an 8-bit step is
256× coarser than a 16-bit one, so a margin costs more than the clipping it avoids.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from .onnx_export import INPUT_NAME, OUTPUT_NAME
from .ort_quant_tools import is_large, one_pass_input_rewiring, quiet
from .w8a16 import calibrate, preprocess

SCHEME = "int8 CPU: QUInt8 activations (asymmetric min-max), QInt8 per-channel weights on Conv / MatMul"
OPS = ["Conv", "MatMul"]


def quantize_int8_cpu(fp32_model: str | os.PathLike, out: str | os.PathLike, calibration: np.ndarray) -> dict:
    """Write the int8 QDQ model of `fp32_model` to `out`, calibrated on `calibration` (N×3×H×W LR
    tiles in [0, 1]); returns what was done."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    out = Path(out)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        pre = preprocess(fp32_model, Path(tmp) / "pre.onnx")
        cache = calibrate(pre, calibration, Path(tmp) / "ranges.json", margin=0.0)
        overrides = {name: [{"rmin": np.float32(0.0), "rmax": np.float32(1.0)}] for name in (INPUT_NAME, OUTPUT_NAME)}
        with quiet(), one_pass_input_rewiring():
            quantize_static(
                str(pre), str(out), None, quant_format=QuantFormat.QDQ, op_types_to_quantize=OPS,
                use_external_data_format=is_large(pre),
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                calibration_cache_path=str(cache),
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                               "TensorQuantOverrides": overrides},
            )
    return {"scheme": SCHEME, "calibration_tiles": int(len(calibration))}
