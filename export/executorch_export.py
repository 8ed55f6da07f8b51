"""ExecuTorch programs: XNNPACK `.pte` (fp32, runs here) and QNN `.pte` (W8A16, needs the QNN SDK).

XNNPACK has no 16-bit activations, so its program is fp32. The QNN program is quantized with
pt2e and `QnnQuantizer` (16-bit activations, 8-bit weights); lowering it needs `QNN_SDK_ROOT`.
"""

from __future__ import annotations

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


def export_qnn_pte(model: nn.Module, tile: int, path: str | os.PathLike, soc: str,
                   calibration: torch.Tensor) -> Path:
    """W8A16 (16a8w) QNN `.pte` for `soc`; `UserError` when no QNN SDK is available."""
    if qnn_sdk_root() is None:
        raise UserError("the ExecuTorch QNN .pte needs the Qualcomm QNN SDK: set QNN_SDK_ROOT to its folder "
                        "(it must match the app's executorch-android-qnn version)")
    from executorch.backends.qualcomm.quantizer.quantizer import QnnQuantizer, QuantDtype
    from executorch.backends.qualcomm.serialization.qc_schema import QcomChipset
    from executorch.backends.qualcomm.utils.utils import (
        generate_htp_compiler_spec,
        generate_qnn_executorch_compiler_spec,
        to_edge_transform_and_lower_to_qnn,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = QnnQuantizer()
    quantizer.set_default_quant_config(QuantDtype.use_16a8w)
    with torch.no_grad():
        graph = torch.export.export(model, (example_input(tile),)).module()
        prepared = prepare_pt2e(graph, quantizer)
        for x in calibration:
            prepared(x[None])
        quantized = convert_pt2e(prepared)
        chip = getattr(QcomChipset, soc.upper())
        spec = generate_qnn_executorch_compiler_spec(chip, generate_htp_compiler_spec(use_fp16=False))
        edge = to_edge_transform_and_lower_to_qnn(quantized, (example_input(tile),), spec)
        Path(path).write_bytes(edge.to_executorch().buffer)
    return Path(path)
