"""Speed-ups of the QNN export and its runs must not change a result: export_onnx's optimisation
order and the W8A16 quantizer's input rewiring leave what those libraries write unchanged, byte
for byte; an HTP-emulator pool returns every tile, in order, as one emulator process does."""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

from adcsr.export import w8a16
from adcsr.export.deploy import example_input
from adcsr.export.onnx_export import OPSET, export_onnx, optimize
from adcsr.export.runtime import htp_artifact

TILE = 16


class BranchNet(nn.Module):
    """A tensor read by two nodes, a GroupNorm and an attention-like matmul: the shapes the
    quantizer rewires and the optimizer folds in the student."""

    def __init__(self):
        super().__init__()
        self.conv_in = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.GroupNorm(2, 8)
        self.a, self.b = nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 3, padding=1)
        self.conv_out = nn.Conv2d(8, 48, 3, padding=1)

    def forward(self, x):
        h = torch.nn.functional.silu(self.norm(self.conv_in(x)))
        t = h.flatten(2)
        h = h + (t @ t.transpose(1, 2) / 64).softmax(-1).matmul(t).view_as(h) + self.a(h) * self.b(h)
        return torch.nn.functional.pixel_shuffle(self.conv_out(h), 4).sigmoid()


def _net() -> BranchNet:
    torch.manual_seed(0)
    return BranchNet().eval()


def _export(net, optimize_flag: bool):
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        return torch.onnx.export(net, (example_input(TILE),), dynamo=True, opset_version=OPSET,
                                 input_names=["lr"], output_names=["sr"], optimize=optimize_flag, verbose=False)


def test_optimize_writes_the_graph_torch_onnx_optimize_writes():
    net = _net()
    ours = _export(net, False)
    optimize(ours)
    theirs = _export(net, True)
    a, b = ours.model_proto.graph, theirs.model_proto.graph
    assert len(a.node) > 10
    assert str(a.node) == str(b.node)
    assert sorted(i.SerializeToString() for i in a.initializer) == sorted(i.SerializeToString() for i in b.initializer)


def test_quantizer_rewiring_writes_the_same_bytes_and_an_htp_pool_the_same_tiles(tmp_path, monkeypatch):
    from onnxruntime.quantization.onnx_model import ONNXModel

    original = ONNXModel.replace_input_of_all_nodes
    fp32 = export_onnx(_net(), TILE, tmp_path / "net.onnx")
    pre = w8a16.preprocess(fp32, tmp_path / "pre.onnx")
    calib = torch.rand(2, 3, TILE, TILE, generator=torch.Generator().manual_seed(1)).numpy()
    cache = w8a16.calibrate(pre, calib, tmp_path / "ranges.json")
    w8a16.quantize_w8a16(pre, tmp_path / "fast.onnx", cache)
    assert ONNXModel.replace_input_of_all_nodes is original
    monkeypatch.setattr(w8a16, "one_pass_input_rewiring", contextlib.nullcontext)
    w8a16.quantize_w8a16(pre, tmp_path / "library.onnx", cache)
    assert (tmp_path / "fast.onnx").read_bytes() == (tmp_path / "library.onnx").read_bytes()

    lr = torch.rand(5, 3, TILE, TILE, generator=torch.Generator().manual_seed(2))
    outs = []
    for workers in (1, 2):
        art = htp_artifact(tmp_path / "fast.onnx", "SM8750", "w8a16_qdq", TILE, cpu_fallback=False, workers=workers)
        outs.append(art(lr))
        art.close()
    assert outs[0].shape == (5, 3, 4 * TILE, 4 * TILE)
    assert torch.equal(outs[0], outs[1])
