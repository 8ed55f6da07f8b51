"""The student's ONNX cut at its features tensor into the two halves QNN ships, and their
compiled context models chained back into one EPContext model."""

from __future__ import annotations

import os
from pathlib import Path

from adcsr.core.errors import UserError


def split_at_features(qdq_model: str | os.PathLike, folder: Path) -> list[tuple[str, Path]]:
    """The QDQ model cut at its quantized features tensor: [("features", LR → features),
    ("decode", features → SR)], written to `folder`. The cut is the QuantizeLinear's 16-bit
    output, so both context binaries keep it quantized and nothing runs between them. A student
    whose SR also reads its LR (`lr_skip`) gets the LR as the decode half's second input; the
    LR's own quantize/dequantize nodes are then the only nodes both halves hold."""
    import onnx
    from onnx.utils import Extractor

    from .onnx_export import FEATURES_NAME, INPUT_NAME, OUTPUT_NAME

    model = onnx.load(str(qdq_model))
    quantize = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and FEATURES_NAME in n.input]
    if len(quantize) != 1:
        raise UserError(f"{Path(qdq_model).name} has no quantized {FEATURES_NAME!r} tensor to split the QNN graph "
                        "at: give htp_optimization_mode one level")
    cut = quantize[0].output[0]
    decode_inputs = [cut] + ([INPUT_NAME] if _reads_past(model.graph, OUTPUT_NAME, cut, INPUT_NAME) else [])
    extractor = Extractor(onnx.shape_inference.infer_shapes(model))
    halves = {"features": extractor.extract_model([INPUT_NAME], [cut]),
              "decode": extractor.extract_model(decode_inputs, [OUTPUT_NAME])}
    # a cut: every node lands in a half, and only constant-only nodes (e.g. the DequantizeLinear of
    # a shared scalar) and the input's own Q/DQ land in both
    constants, conversions = {i.name for i in model.graph.initializer}, _input_conversions(model.graph, INPUT_NAME)
    nodes = [{n.output[0] for n in h.graph.node} for h in halves.values()]
    both = {n.output[0] for n in model.graph.node if n.output[0] in nodes[0] & nodes[1]
            and n.output[0] not in conversions and not set(n.input) <= constants}
    if both or len(nodes[0] | nodes[1]) != len(model.graph.node):
        raise UserError(f"{Path(qdq_model).name}: the {FEATURES_NAME!r} tensor does not cut the graph in two")
    return [(name, _save_half(half, folder, name)) for name, half in halves.items()]


def split_onnx(model_path: str | os.PathLike, folder: Path) -> list[tuple[str, Path]]:
    """The student's ONNX, fp32 or W8A16 QDQ, cut into the two halves the QNN export ships:
    [("features", LR → features), ("decode", features (+ LR) → SR)], written to `folder`. A QDQ
    model is cut at its quantized features (`split_at_features`), an fp32 one at the tensor."""
    import onnx
    from onnx.utils import Extractor

    from .onnx_export import FEATURES_NAME, INPUT_NAME, OUTPUT_NAME

    model = onnx.load(str(model_path))
    if any(n.op_type == "QuantizeLinear" and FEATURES_NAME in n.input for n in model.graph.node):
        return split_at_features(model_path, folder)
    if not any(FEATURES_NAME in n.output for n in model.graph.node):
        raise UserError(f"{Path(model_path).name} has no {FEATURES_NAME!r} tensor to cut at: is it a student export?")
    decode_inputs = [FEATURES_NAME] + ([INPUT_NAME] if _reads_past(model.graph, OUTPUT_NAME, FEATURES_NAME,
                                                                    INPUT_NAME) else [])
    extractor = Extractor(onnx.shape_inference.infer_shapes(model))
    return [(name, _save_half(extractor.extract_model(inputs, outputs), folder, name))
            for name, (inputs, outputs) in {"features": ([INPUT_NAME], [FEATURES_NAME]),
                                            "decode": (decode_inputs, [OUTPUT_NAME])}.items()]


def _save_half(half, folder: Path, name: str) -> Path:
    """`half` as `<name>.onnx` in `folder`, its weights in one `.data` file beside it."""
    import onnx

    path = folder / f"{name}.onnx"
    onnx.save_model(half, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=path.name + ".data")
    return path


def _reads_past(graph, output: str, cut: str, source: str) -> bool:
    """Whether `output` depends on `source` other than through `cut`."""
    producer = {o: n for n in graph.node for o in n.output}
    seen, todo = set(), [output]
    while todo:
        t = todo.pop()
        if t == source:
            return True
        if t == cut or t in seen or t not in producer:
            continue
        seen.add(t)
        todo.extend(producer[t].input)
    return False


def _input_conversions(graph, source: str) -> set[str]:
    """The tensors of `source`'s QuantizeLinear and of the DequantizeLinear nodes reading it."""
    q = {n.output[0] for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == source}
    return q | {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in q}


def chain_contexts(ctx_models: list[Path], out: Path) -> Path:
    """One EPContext model running `ctx_models` in order, each one's inputs the previous one's
    outputs or the first one's inputs (the LR, for a student with `lr_skip`); their `.bin` files
    stay beside it, referenced by name. Nodes the models share (the LR's float → 16-bit
    conversion) appear once. onnxruntime-qnn loads every context of such a model in one session."""
    import onnx
    from onnx import helper

    models = [onnx.load(str(p)) for p in ctx_models]
    first_inputs = {i.name for i in models[0].graph.input}
    for a, b in zip(models, models[1:]):
        if not {i.name for i in b.graph.input} <= {o.name for o in a.graph.output} | first_inputs:
            raise RuntimeError("context models do not chain: one's inputs are not the previous one's outputs")
    nodes, made = [], set()
    for node in (n for m in models for n in m.graph.node):
        if not set(node.output) <= made:
            nodes.append(node)
            made.update(node.output)
    initializers = {i.name: i for m in models for i in m.graph.initializer}  # e.g. an I/O conversion's scale
    graph = helper.make_graph(nodes, "student", list(models[0].graph.input), list(models[-1].graph.output),
                              list(initializers.values()), value_info=[o for m in models[:-1] for o in m.graph.output])
    opsets = {o.domain: o for m in models for o in m.opset_import}
    chained = helper.make_model(graph, opset_imports=list(opsets.values()))
    chained.ir_version = models[0].ir_version
    onnx.save(chained, str(out))
    return out
