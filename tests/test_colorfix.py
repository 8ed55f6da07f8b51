"""Colour fixes: statistics matched (AdaIN), bands swapped (wavelet), on a real photo."""

import torch
import torch.nn.functional as F

from adcsr.core.colorfix import adain_color_fix, wavelet_color_fix, wavelet_split
from adcsr.core.photos import load_photo


def lr_sr():
    hr = load_photo("coffee")[None, :, :128, :128]
    lr = F.interpolate(hr, scale_factor=0.25, mode="area")
    cast = hr * torch.tensor([0.8, 1.0, 1.15]).view(1, 3, 1, 1) + torch.tensor([0.08, -0.05, 0.06]).view(1, 3, 1, 1)
    return hr, lr, cast


def test_adain_matches_lr_statistics():
    hr, lr, sr = lr_sr()
    out = adain_color_fix(sr, lr)
    assert torch.allclose(out.mean((2, 3)), lr.mean((2, 3)), atol=1e-5)
    assert torch.allclose(out.std((2, 3)), lr.std((2, 3)), atol=1e-3)
    # structure is kept: per channel it is an increasing affine map of sr
    corr = torch.corrcoef(torch.stack([out[0, 0].flatten(), sr[0, 0].flatten()]))[0, 1]
    assert corr > 0.9999
    assert (out - hr).abs().mean() < 0.5 * (sr - hr).abs().mean()


def test_wavelet_split_is_exact_and_low_is_smooth():
    hr, _, _ = lr_sr()
    high, low = wavelet_split(hr, levels=5)
    assert torch.allclose(high + low, hr, atol=1e-6)
    def tv(x):
        return (x[..., 1:] - x[..., :-1]).abs().mean()
    assert tv(low) < 0.2 * tv(hr)
    assert torch.allclose(high.mean((2, 3)), torch.zeros(1, 3), atol=0.02)  # detail bands carry no colour


def test_wavelet_fix_takes_colour_from_lr_and_detail_from_sr():
    hr, lr, sr = lr_sr()
    out = wavelet_color_fix(sr, lr)
    assert out.shape == sr.shape
    colour_error = (out.mean((2, 3)) - hr.mean((2, 3))).abs().max()
    assert colour_error < 0.01
    assert colour_error < 0.2 * (sr.mean((2, 3)) - hr.mean((2, 3))).abs().max()
    # the fine detail is sr's, not the blurry upsampled lr's
    high_out, _ = wavelet_split(out, levels=1)
    high_sr, _ = wavelet_split(sr, levels=1)
    up = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False)
    high_up, _ = wavelet_split(up, levels=1)
    assert (high_out - high_sr).abs().mean() < 0.5 * (high_out - high_up).abs().mean()
    # 3-D input gives 3-D output
    assert wavelet_color_fix(sr[0], lr[0]).shape == sr[0].shape


def test_upscale_applies_the_models_default_fix_unless_told_none():
    """`Upscaler.upscale` gives what a user gets: the student's default (AdaIN toward the LR) when
    no fix is named, its network's own output with "none"."""
    from adcsr.core.upscaler import load_upscaler

    student = load_upscaler("student:tiny")
    assert student.default_color_fix == "adain"
    lr = F.interpolate(load_photo("coffee")[None], size=(32, 32), mode="area")
    raw = student.upscale(lr, color_fix="none")
    torch.testing.assert_close(student.upscale(lr), adain_color_fix(raw, lr).clamp(0, 1), atol=1e-5, rtol=0)
    assert not torch.allclose(raw, student.upscale(lr), atol=1e-3)
