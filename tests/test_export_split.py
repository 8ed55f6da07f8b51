"""The QNN graph's cut at the student's features tensor (`qnn_split.split_at_features`) and the chained
model (`qnn_split.chain_contexts`), on small hand-built QDQ graphs: with and without the LR skip, and a
graph the features tensor does not cut."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from adcsr.core.errors import UserError
from adcsr.export import qnn_split
from adcsr.export.onnx_export import FEATURES_NAME, INPUT_NAME, OPSET, OUTPUT_NAME


def _qdq_model(path, tail: str):
    """lr → Q/DQ → ·2 → ReLU = features → Q/DQ → SR, where SR is −features ("plain"),
    features + LR ("skip": the LR's DQ read past the cut) or features + 2·LR ("bad": a features-half
    tensor read past the cut)."""
    init = [numpy_helper.from_array(np.array(1 / 4096, np.float32), "s"),
            numpy_helper.from_array(np.array(32768, np.uint16), "zp"),
            numpy_helper.from_array(np.array(2.0, np.float32), "two")]
    nodes = [helper.make_node("QuantizeLinear", [INPUT_NAME, "s", "zp"], ["lr_q"]),
             helper.make_node("DequantizeLinear", ["lr_q", "s", "zp"], ["lr_dq"]),
             helper.make_node("Mul", ["lr_dq", "two"], ["doubled"]),
             helper.make_node("Relu", ["doubled"], [FEATURES_NAME]),
             helper.make_node("QuantizeLinear", [FEATURES_NAME, "s", "zp"], ["features_q"]),
             helper.make_node("DequantizeLinear", ["features_q", "s", "zp"], ["features_dq"])]
    nodes.append({"plain": helper.make_node("Neg", ["features_dq"], [OUTPUT_NAME]),
                  "skip": helper.make_node("Add", ["features_dq", "lr_dq"], [OUTPUT_NAME]),
                  "bad": helper.make_node("Add", ["features_dq", "doubled"], [OUTPUT_NAME])}[tail])
    shape = [1, 3, 4, 4]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, shape)], init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    onnx.save(model, str(path))
    return path


def _run(path, lr):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: lr})[0]


@pytest.mark.parametrize("tail, decode_inputs", [("plain", ["features_q"]), ("skip", ["features_q", INPUT_NAME])])
def test_split_halves_chain_back_into_the_whole_model(tmp_path, tail, decode_inputs):
    model = _qdq_model(tmp_path / "qdq.onnx", tail)
    halves = dict(qnn_split.split_at_features(model, tmp_path))
    graphs = {k: onnx.load(str(p)).graph for k, p in halves.items()}
    assert [i.name for i in graphs["features"].input] == [INPUT_NAME]
    assert [o.name for o in graphs["features"].output] == ["features_q"]
    assert [i.name for i in graphs["decode"].input] == decode_inputs
    shared = {n.output[0] for n in graphs["features"].node} & {n.output[0] for n in graphs["decode"].node}
    assert shared == ({"lr_q", "lr_dq"} if tail == "skip" else set())
    chained = qnn_split.chain_contexts([halves["features"], halves["decode"]], tmp_path / "chained.onnx")
    nodes = [n.output[0] for n in onnx.load(str(chained)).graph.node]
    assert len(nodes) == len(set(nodes)) == 7  # each node once, the LR's Q/DQ included
    lr = np.random.default_rng(0).uniform(0, 1, (1, 3, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(_run(chained, lr), _run(model, lr))


def test_a_tensor_read_past_the_features_is_not_a_cut(tmp_path):
    with pytest.raises(UserError, match="does not cut the graph in two"):
        qnn_split.split_at_features(_qdq_model(tmp_path / "qdq.onnx", "bad"), tmp_path)


def test_chaining_refuses_an_input_no_earlier_model_makes(tmp_path):
    halves = dict(qnn_split.split_at_features(_qdq_model(tmp_path / "qdq.onnx", "skip"), tmp_path))
    decode = onnx.load(str(halves["decode"]))
    for t in [decode.graph.input[0], *(n for n in decode.graph.node if "features_q" in n.input)]:
        if hasattr(t, "type"):
            t.name = "elsewhere"
        else:
            t.input[list(t.input).index("features_q")] = "elsewhere"
    onnx.save(decode, str(tmp_path / "orphan.onnx"))
    with pytest.raises(RuntimeError, match="do not chain"):
        qnn_split.chain_contexts([halves["features"], tmp_path / "orphan.onnx"], tmp_path / "chained.onnx")
