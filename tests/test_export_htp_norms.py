"""GroupNorm over large groups on the HTP emulator: the QNN deploy form must stay accurate where
onnxruntime's own GroupNormalization decomposition breaks.

The decomposition `qnn_preprocess_model` writes (ReduceMean of x², ReduceMean of x, subtract)
came out wrong on the SM8750 HTP emulator once a group held 65 536 elements or more (the tiny
student's decoder at an LR tile of 64: 29.6 dB for the whole model, against 55 dB for the same
QDQ model on the CPU provider). The deploy form writes GroupNorm as `TwoStepGroupNorm`
(per-channel means over W, then H, then per group; divided by sqrt), which the emulator
computes exactly. The net below, with `nn.GroupNorm` left to the preprocessing, measured 19.3 dB
on the emulator (its ReduceMean of the signed input was wrong, that of x² right; consistent with
a 32-bit sum of 16-bit codes overflowing); with the two-step form's `/ sqrt` written as
`* rsqrt`, 35 dB.
"""

from __future__ import annotations

import torch
from torch import nn

from adcsr.core.metrics.fidelity import parity_psnr
from adcsr.export import w8a16
from adcsr.export.deploy import TwoStepGroupNorm, example_input
from adcsr.export.onnx_export import export_onnx
from adcsr.export.runtime import htp_artifact

TILE = 128  # 8 groups of 4 channels × 128² = 65 536 elements, as in the tiny student's decoder at tile 64


class NormNet(nn.Module):
    def __init__(self, norm: nn.Module):
        super().__init__()
        self.conv_in = nn.Conv2d(3, 32, 3, padding=1)
        self.norm = norm
        self.conv_out = nn.Conv2d(32, 3, 3, padding=1)

    def forward(self, x):
        return torch.sigmoid(self.conv_out(torch.tanh(self.norm(self.conv_in(x)))))


def _net() -> NormNet:
    torch.manual_seed(0)
    gn = nn.GroupNorm(8, 32)
    with torch.no_grad():
        gn.weight.uniform_(0.5, 1.5)
        gn.bias.uniform_(-0.3, 0.3)
    return NormNet(gn).eval()


def test_two_step_group_norm_is_group_norm_on_the_test_net():
    net = _net()
    x = example_input(TILE, batch=2)
    with torch.no_grad():
        ref = net(x)
        net.norm = TwoStepGroupNorm(net.norm)
        assert torch.allclose(net(x), ref, atol=1e-5)


def test_large_group_norm_is_accurate_on_the_htp_emulator(tmp_path):
    net = _net()
    net.norm = TwoStepGroupNorm(net.norm)
    x = example_input(TILE, batch=1)
    calib = torch.rand(4, 3, TILE, TILE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = net(x).numpy()
    fp32 = export_onnx(net, TILE, tmp_path / "net.onnx")
    pre = w8a16.preprocess(fp32, tmp_path / "pre.onnx")
    cache = w8a16.calibrate(pre, calib.numpy(), tmp_path / "ranges.json")
    w8a16.quantize_w8a16(pre, tmp_path / "qdq.onnx", cache)
    htp = htp_artifact(tmp_path / "qdq.onnx", "SM8750", "w8a16_qdq", TILE, cpu_fallback=False)
    assert parity_psnr(ref, htp(x).numpy()) >= 40.0
