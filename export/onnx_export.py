"""fp32 ONNX of a deploy-form student at a static tile size (torch.onnx, dynamo exporter)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn

from .deploy import example_input

OPSET = 21  # 16-bit QDQ needs ≥ 21; exporting there avoids a version conversion later
INPUT_NAME, OUTPUT_NAME = "lr", "sr"
# the student's `features(lr)` (decoder mid-block output): where the QNN graph may be split
FEATURES_NAME = "features"
FEATURES_SCOPE = "decoder.mid_block"
# protobuf cannot hold more than 2 GiB: bigger models keep their weights in one side file
_EXTERNAL_ABOVE_BYTES = 1 << 30


def export_onnx(model: nn.Module, tile: int, path: str | os.PathLike) -> Path:
    """Write `model` (LR tile² → SR) as ONNX to `path`; weights go to `path.data` when large."""
    import onnx

    path = Path(path)
    x = example_input(tile)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model, (x,), dynamo=True, opset_version=OPSET, input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME], optimize=False, verbose=False,
        )
    optimize(program)
    proto = program.model_proto
    name_weights_by_module(proto)
    name_features(proto)
    unshare_initializers(proto)
    big = sum(p.numel() * 4 for p in model.parameters()) > _EXTERNAL_ABOVE_BYTES
    onnx.save_model(proto, str(path), save_as_external_data=big, all_tensors_to_one_file=True,
                    location=path.name + ".data" if big else None)
    return path


def shipped_onnx(model: nn.Module, tile: int, path: str | os.PathLike) -> Path:
    """fp32 ONNX of `model` as the export ships it (`onnx/student_fp32.onnx`): a student in its
    QNN deploy form, any other model as it is."""
    from adcsr.core.models.student import AdcSRStudent

    from .deploy import deploy_form

    if isinstance(model, AdcSRStudent):
        model = deploy_form(model, "qnn", tile)
    return export_onnx(model, tile, path)


def optimize(program) -> None:
    """What `torch.onnx.export(optimize=True)` does (onnxscript's optimizer, then its fusions),
    with the nodes constant folding leaves dead pruned first: the optimizer's rewrite pass would
    otherwise match its rules against all of them (8 500 nodes, not 3 000, for the tiny student;
    half the export's time). The graph written is the same (tested)."""
    import onnx_ir.passes.common as common_passes
    import onnxscript

    onnxscript.optimizer.fold_constants(program.model)
    common_passes.RemoveUnusedNodesPass()(program.model)
    program.optimize()


def name_weights_by_module(proto) -> None:
    """Rename each Conv/MatMul/Gemm weight initializer to `<module path>.weight`.

    The exporter folds Linear's transpose into a fresh constant (`val_35`); naming it after the
    PyTorch module lets configs and reports refer to layers by the names users know.
    """
    inits = {i.name: i for i in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type not in ("Conv", "MatMul", "Gemm") or len(node.input) < 2:
            continue
        weight = node.input[1]
        scopes = node_scopes(node)
        if weight not in inits or weight.endswith(".weight") or len(scopes) < 2:
            continue
        module = scopes[-2]  # the last entry is the op itself
        new = f"{module}.weight"
        if not module or new in inits:
            continue
        inits[weight].name = new
        inits[new] = inits.pop(weight)
        _rename_uses(proto, weight, new)


def name_features(proto) -> None:
    """Rename the decoder mid-block's output tensor to `FEATURES_NAME` (if the graph has one).

    It is the output of the last node in that module's scope; the exporter's own name (`add_253`)
    changes with the model, a fixed one lets later steps find the boundary after QNN
    preprocessing and quantization, which drop the scope metadata but keep tensor names.
    """
    last = None
    for node in proto.graph.node:
        if any(s.endswith(FEATURES_SCOPE) for s in node_scopes(node)):
            last = node
    if last is None:
        return
    old = last.output[0]
    last.output[0] = FEATURES_NAME
    _rename_uses(proto, old, FEATURES_NAME)
    for info in proto.graph.value_info:
        if info.name == old:
            info.name = FEATURES_NAME


def node_scopes(node) -> list[str]:
    """The exporter's module scopes of a node, outermost first: ['', 'a', 'a.b', 'linear']."""
    import ast

    scopes = {p.key: p.value for p in node.metadata_props}.get("pkg.torch.onnx.name_scopes")
    return ast.literal_eval(scopes) if scopes else []


def _rename_uses(proto, old: str, new: str) -> None:
    for node in proto.graph.node:
        for k, name in enumerate(node.input):
            if name == old:
                node.input[k] = new


def unshare_initializers(proto) -> None:
    """Give every consumer of a shared initializer its own copy.

    The exporter's optimizer merges equal constants (e.g. all-zero GroupNorm and LayerNorm biases
    of an untrained model); a constant feeding several op types then becomes a DequantizeLinear
    the QNN EP leaves on the CPU.
    """
    import onnx

    inits = {i.name: i for i in proto.graph.initializer}
    seen: dict[str, int] = {}
    for node in proto.graph.node:
        for k, name in enumerate(node.input):
            if name not in inits:
                continue
            uses = seen.get(name, 0)
            seen[name] = uses + 1
            if uses:
                copy = onnx.TensorProto()
                copy.CopyFrom(inits[name])
                copy.name = f"{name}__{uses}"
                proto.graph.initializer.append(copy)
                node.input[k] = copy.name
