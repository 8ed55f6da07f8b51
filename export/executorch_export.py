"""ExecuTorch programs: XNNPACK `.pte` (fp32, runs here) and QNN `.pte` (W8A16, needs the QNN SDK).

XNNPACK has no 16-bit activations, so its program is fp32. The QNN program is quantized with
pt2e and `QnnQuantizer` (16-bit activations, 8-bit weights) — that runs and is measured here —
and lowering it needs `QNN_SDK_ROOT`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import nn

from adcsr.core.errors import UserError

from .deploy import example_input, exported_program


def export_xnnpack(model: nn.Module, tile: int, path: str | os.PathLike) -> Path:
    """Lower a deploy-form (backend "xnnpack") model to an XNNPACK `.pte` at `path`."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    with torch.no_grad():
        lowered = to_edge_transform_and_lower(exported_program(model, tile), partitioner=[XnnpackPartitioner()]).to_executorch()
    Path(path).write_bytes(lowered.buffer)
    return Path(path)


def delegated_partitions(path: str | os.PathLike) -> int:
    """How many XNNPACK delegate blobs a `.pte` holds (few = the graph stayed on XNNPACK)."""
    from executorch.exir._serialize import _deserialize_pte_binary

    program = _deserialize_pte_binary(Path(path).read_bytes())
    program = getattr(program, "program", program)
    return sum(len(plan.delegates) for plan in program.execution_plan)


def qnn_sdk_root() -> str | None:
    """The QNN SDK folder if `QNN_SDK_ROOT` points at one; forces the variable to "" otherwise.

    executorch's QNN backend downloads an SDK when the variable is unset; this project never does.
    """
    root = os.environ.get("QNN_SDK_ROOT", "")
    if root and Path(root).is_dir():
        return root
    os.environ["QNN_SDK_ROOT"] = ""
    return None


PT2E_SCHEME = ("pt2e, executorch's QnnQuantizer 16a8w: 16-bit activations (min-max), "
               "8-bit per-channel Conv/Linear weights")


def quantize_16a8w(model: nn.Module, tile: int, calibration: torch.Tensor, soc: str) -> torch.fx.GraphModule:
    """The QNN `.pte`'s quantization (pt2e with `QnnQuantizer` at 16a8w): needs no QNN SDK, and
    the result runs in PyTorch (quantize/dequantize ops), so its parity is measured here.

    Activation ranges use `MinMaxObserver`, like the ONNX path's calibration: with the quantizer's
    default moving-average observer the ranges came out narrower than the calibration tiles' and
    held-out tiles clipped (trained tiny student at tile 32: 20.5 dB against 57.6 dB vs PyTorch).
    """
    qnn_sdk_root()  # keeps executorch from fetching an SDK when the variable is unset
    from executorch.backends.qualcomm.quantizer.quantizer import QnnQuantizer, QuantDtype
    from executorch.backends.qualcomm.serialization.qc_schema import QcomChipset
    from torchao.quantization.pt2e import MinMaxObserver
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = QnnQuantizer(soc_model=getattr(QcomChipset, soc.upper()))
    quantizer.set_default_quant_config(QuantDtype.use_16a8w, is_conv_per_channel=True, is_linear_per_channel=True,
                                       act_observer=MinMaxObserver)
    logging.disable(logging.WARNING)  # a warning per norm weight the annotator leaves to the GroupNorm's own spec
    try:
        prepared = prepare_pt2e(exported_program(model, tile).module(), quantizer)
    finally:
        logging.disable(logging.NOTSET)
    with torch.no_grad():
        for x in calibration:
            prepared(x[None])
        return convert_pt2e(prepared)


def run_tiles(graph: torch.fx.GraphModule, lr: torch.Tensor) -> torch.Tensor:
    """A static batch-1 program over a batch of tiles."""
    with torch.no_grad():
        return torch.cat([graph(x[None]) for x in lr])


def lower_qnn_pte(quantized: torch.fx.GraphModule, tile: int, path: str | os.PathLike, soc: str) -> Path:
    """The QNN `.pte` for `soc` from `quantize_16a8w`'s graph; `UserError` when no QNN SDK is available."""
    if qnn_sdk_root() is None:
        raise UserError("the ExecuTorch QNN .pte needs the Qualcomm QNN SDK: set QNN_SDK_ROOT to its folder "
                        "(it must match the app's executorch-android-qnn version)")
    from executorch.backends.qualcomm.serialization.qc_schema import QcomChipset
    from executorch.backends.qualcomm.utils.utils import (
        generate_htp_compiler_spec,
        generate_qnn_executorch_compiler_spec,
        to_edge_transform_and_lower_to_qnn,
    )

    spec = generate_qnn_executorch_compiler_spec(getattr(QcomChipset, soc.upper()),
                                                 generate_htp_compiler_spec(use_fp16=False))
    with torch.no_grad():
        edge = to_edge_transform_and_lower_to_qnn(quantized, (example_input(tile),), spec)
        Path(path).write_bytes(edge.to_executorch().buffer)
    return Path(path)
