"""Every pass mark the export checks apply, defined here once.

`ExportConfig` takes its defaults from `DEFAULTS` (an export config may change any of them), each
export manifest records the values its checks applied (`thresholds`), and `adcsr export verify`
reads them back from that manifest: an artifact is re-checked against the marks it was exported
under, never against numbers written a second time somewhere else.
"""

from __future__ import annotations

import math

FP16_MAX = 65504.0  # the largest finite float16

DEFAULTS: dict[str, float] = {
    # fp32 artifacts (fp32 ONNX on onnxruntime's CPU provider, XNNPACK .pte) vs PyTorch, dB
    "min_fp32_psnr": 60.0,
    # W8A16 vs PyTorch, dB: the QDQ model / QNN context binary on the HTP emulator of the export's
    # SoC, and the QNN .pte's pt2e 16a8w graph run in PyTorch
    "min_w8a16_psnr": 40.0,
    # Core ML's fp16 compute vs fp32, dB: the Core ML program run in fp16 in PyTorch with the ops
    # the package keeps in fp32 run in fp32 (coreml_fp16.py), on the held-out tiles. Set at the
    # W8A16 mark: fp16 compute may cost no more than the whole W8A16 budget; an overflow gives NaN
    # or −inf and fails any mark (the tiny student measures 57–61 dB)
    "min_fp16_psnr": 40.0,
    # a layer stays fp32 in the Core ML W8A16 package when its activation peak on the calibration
    # tiles times this factor exceeds FP16_MAX (4: two binades of room for other photos)
    "fp16_headroom": 4.0,
    # deploy form vs training form in fp32: max|Δ| / max|y|
    "max_equivalence": 1e-4,
}

# what a QNN context binary (all its `.bin` files) may weigh on the phone: the AdcSR paper's W8A16
# model is about 0.4 GB; 470 × 10⁶ bytes leaves room for the two-graph split's shared weights
CONTEXT_BUDGET_BYTES = 470_000_000

# which threshold an artifact kind's parity must meet
KIND_THRESHOLD = {
    "fp32": "min_fp32_psnr",
    "xnnpack_fp32": "min_fp32_psnr",
    "w8a16_qdq": "min_w8a16_psnr",
    "qnn_context": "min_w8a16_psnr",
}


def meets_minimum(value: float, minimum: float) -> bool:
    """`value >= minimum`, with NaN failing: `value < minimum` is False for NaN, so a check
    written as "fail if below" would let a NaN parity (fp16 overflow, say) pass."""
    return bool(value >= minimum)


def json_number(value: float) -> float | str:
    """A figure for a JSON manifest: the number when finite, else "nan" / "inf" / "-inf"."""
    return float(value) if math.isfinite(value) else str(float(value))
