"""What a compiled EPContext model runs outside HTP (`coverage`), and the check that it is nothing
but its context binaries and the float I/O conversions (`check_coverage`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from adcsr.core.errors import UserError

if TYPE_CHECKING:
    from .qnn import Soc

# graph-boundary conversions: float model I/O ↔ the quantized tensors the context binary takes
IO_CONVERSION_OPS = ("QuantizeLinear", "DequantizeLinear")


def raise_offending(offending: list[tuple[str, str]], soc: Soc) -> None:
    """A `UserError` naming the nodes that would run on the CPU."""
    names = ", ".join(f"{n} ({op})" for n, op in offending)
    raise UserError(f"not 100% on HTP for {soc.name}: {len(offending)} node(s) would run on the CPU: {names}")


def coverage(ctx_model: str | os.PathLike, qdq_model: str | os.PathLike | None = None,
             graphs: int | None = None) -> dict:
    """What the EPContext model runs outside QNN, read from the model as a whole.

    Allowed outside an EPContext node are only the float I/O conversions: a QuantizeLinear that
    reads a graph input and a DequantizeLinear that writes a graph output. Anything else — a
    Q/DQ pair, an Identity or a compute node between two chained context binaries included —
    is an offending node, the CPU provider would run it. `graphs` is how many context binaries
    the model must hold (one EPContext node each); every EPContext node's `.bin` must lie beside
    the model. `htp_fraction` is the share of the QDQ model's compute nodes (Q/DQ excluded) that
    is not matched by an offending node (every offending node counts); without `qdq_model` it is
    1.0 or 0.0.
    """
    import onnx

    ctx_model = Path(ctx_model)
    graph = onnx.load(str(ctx_model), load_external_data=False).graph
    inputs, outputs = {i.name for i in graph.input}, {o.name for o in graph.output}
    ep_nodes, io_nodes, offending, missing = 0, 0, [], []
    for node in graph.node:
        if node.op_type == "EPContext":
            ep_nodes += 1
            attrs = {a.name: a for a in node.attribute}
            embedded = attrs["embed_mode"].i if "embed_mode" in attrs else 1
            if not embedded and "ep_cache_context" in attrs:
                binary = attrs["ep_cache_context"].s.decode()
                if not (ctx_model.parent / binary).is_file():
                    missing.append(binary)
        elif (node.op_type == "QuantizeLinear" and node.input[0] in inputs) or (
                node.op_type == "DequantizeLinear" and node.output[0] in outputs):
            io_nodes += 1
        else:
            offending.append((node.name or node.output[0], node.op_type))
    compute = None
    if qdq_model is not None:
        qdq = onnx.load(str(qdq_model), load_external_data=False).graph
        compute = sum(n.op_type not in IO_CONVERSION_OPS for n in qdq.node)
    if compute:
        fraction = max(0.0, 1 - len(offending) / compute) if ep_nodes else 0.0
    else:
        fraction = float(not offending and ep_nodes > 0)
    return {
        "epcontext_nodes": ep_nodes,
        "expected_epcontext_nodes": graphs,
        "io_conversion_nodes": io_nodes,
        "compute_nodes": compute,
        "offending_nodes": offending,
        "missing_context_binaries": missing,
        "htp_fraction": fraction,
    }


def check_coverage(ctx_model: str | os.PathLike, qdq_model: str | os.PathLike | None, soc: Soc,
                   graphs: int) -> dict:
    """`coverage(...)` of the whole EPContext model, or a `UserError` when anything but its
    `graphs` EPContext nodes and the float I/O conversions would run outside HTP."""
    report = coverage(ctx_model, qdq_model, graphs)
    if report["offending_nodes"]:
        raise_offending(report["offending_nodes"], soc)
    if report["epcontext_nodes"] != graphs:
        raise UserError(f"{Path(ctx_model).name}: {report['epcontext_nodes']} EPContext node(s), expected {graphs} "
                        f"(one per compiled graph)")
    if report["missing_context_binaries"]:
        raise UserError(f"{Path(ctx_model).name}: context binary missing beside it: "
                        + ", ".join(report["missing_context_binaries"]))
    return report
