"""Real-ESRGAN degradation operators and pipeline (adcsr.core.degradations), on a real photo."""

import dataclasses
import math
from importlib import resources

import pytest
import torch
import torch.nn.functional as F
import yaml
from skimage import data

from adcsr.core.config import load_config
from adcsr.core.degradations import (
    DegradationConfig,
    RealESRGANDegradation,
    StageConfig,
    filter2d,
    gaussian_noise,
    jpeg,
    poisson_levels,
    poisson_noise,
    quantize,
    sample_resize_factor,
    to_gray,
)
from adcsr.core.errors import UserError
from adcsr.core.kernels import BlurConfig, gaussian_kernel

YAML_PATH = resources.files("adcsr") / "configs" / "degradation.yaml"


@pytest.fixture(scope="module")
def photo() -> torch.Tensor:
    """The astronaut photo's 256x256 face crop, (1, 3, 256, 256) on 8-bit levels."""
    img = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float() / 255
    return img[:, 0:256, 128:384].unsqueeze(0).contiguous()


@pytest.fixture(scope="module")
def small(photo) -> torch.Tensor:
    return photo[..., 64:192, 64:192].contiguous()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / F.mse_loss(a, b).item())


# ----------------------------------------------------------------------------- config


def _as_lists(x):
    if isinstance(x, dict):
        return {k: _as_lists(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_as_lists(v) for v in x]
    return x


def test_yaml_defaults_equal_dataclass_defaults():
    assert load_config(DegradationConfig, YAML_PATH) == DegradationConfig()
    # every field is spelled out in the YAML, nothing more
    assert yaml.safe_load(YAML_PATH.read_text()) == _as_lists(dataclasses.asdict(DegradationConfig()))


def test_defaults_follow_adcsr_and_x4plus():
    cfg = DegradationConfig()
    assert cfg.stage1.resize_range == (0.3, 1.5) and cfg.stage1.noise_range == (1, 15)
    assert cfg.stage1.jpeg_range == (60, 95) and cfg.final_sinc_prob == 0.8
    assert cfg.stage2.blur_prob == 0.8 and cfg.stage2.blur.sigma_range == (0.2, 1.5)
    assert cfg.stage1.blur.kernel_prob == (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)


def test_unknown_yaml_key_is_one_line_user_error(tmp_path):
    path = tmp_path / "deg.yaml"
    path.write_text("stage2:\n  jpeg_rnage: [30, 95]\n")
    with pytest.raises(UserError) as e:
        load_config(DegradationConfig, path)
    assert "jpeg_rnage" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "data, where",
    [
        ({"stage1": {"resize_prob": [0.5, 0.5, 0.5]}}, "stage1.resize_prob"),
        ({"stage1": {"resize_range": [1.2, 1.5]}}, "stage1.resize_range"),
        ({"stage2": {"jpeg_range": [30, 101]}}, "stage2.jpeg_range"),
        ({"stage2": {"blur": {"kernel_sizes": [8]}}}, "stage2.blur.kernel_sizes"),
        ({"stage1": {"blur": {"kernel_prob": [1.0]}}}, "stage1.blur.kernel_list"),
        ({"stage2": {"noise_range": [5, 1]}}, "stage2.noise_range"),
        ({"final_sinc_prob": 1.5}, "final_sinc_prob"),
        ({"resize_modes": ["nearest"]}, "resize_modes"),
        ({"scale": 0}, "scale"),
    ],
)
def test_invalid_values_are_one_line_user_errors_naming_the_field(data, where):
    with pytest.raises(UserError) as e:
        load_config(DegradationConfig, data)
    assert str(e.value).startswith(where) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------- operators


def test_filter2d_is_a_convolution_with_per_image_kernels(photo):
    x = photo.repeat(2, 1, 1, 1)
    shift = torch.zeros(3, 3)
    shift[1, 0] = 1.0  # h at offset x = -1: convolution gives y[j] = x[j + 1]
    out = filter2d(x, torch.stack([_delta(3), shift]))
    assert _max_diff(out[0], x[0]) < 1e-6  # a delta kernel is the identity
    assert _max_diff(out[1, :, :, :-1], x[1, :, :, 1:]) < 1e-6
    blurred = filter2d(photo, gaussian_kernel(9, 2.0))
    assert abs(blurred.mean().item() - photo.mean().item()) < 2e-3  # normalized kernel keeps the mean
    assert blurred.diff(dim=-1).abs().mean() < 0.7 * photo.diff(dim=-1).abs().mean()


def _delta(size: int) -> torch.Tensor:
    k = torch.zeros(size, size)
    k[size // 2, size // 2] = 1.0
    return k


def test_gaussian_noise_has_requested_std_per_image(photo):
    x = photo.repeat(2, 1, 1, 1)
    sigma = torch.tensor([5.0, 20.0])
    noise = gaussian_noise(x, sigma, torch.tensor([False, False]), _gen(0))
    for i in range(2):
        assert abs(noise[i].std().item() / (sigma[i].item() / 255) - 1) < 0.02
        assert abs(noise[i].mean().item()) < 3 * sigma[i].item() / 255 / math.sqrt(noise[i].numel())
    corr = torch.corrcoef(noise[0].flatten(1))
    assert corr[0, 1].abs() < 0.02 and corr[1, 2].abs() < 0.02  # colour noise: independent channels


def test_gray_noise_is_identical_across_channels(photo):
    x = photo.repeat(2, 1, 1, 1)
    noise = gaussian_noise(x, torch.tensor([10.0, 10.0]), torch.tensor([True, False]), _gen(1))
    assert torch.equal(noise[0, 0], noise[0, 1]) and torch.equal(noise[0, 0], noise[0, 2])
    assert not torch.equal(noise[1, 0], noise[1, 1])
    assert abs(noise[0].std().item() * 255 / 10 - 1) < 0.03
    p = poisson_noise(x, torch.tensor([1.0, 1.0]), torch.tensor([True, False]), _gen(1))
    assert torch.equal(p[0, 0], p[0, 2]) and not torch.equal(p[1, 0], p[1, 2])


def test_noise_is_seeded(photo):
    a = gaussian_noise(photo, torch.tensor([10.0]), torch.tensor([False]), _gen(3))
    b = gaussian_noise(photo, torch.tensor([10.0]), torch.tensor([False]), _gen(3))
    c = gaussian_noise(photo, torch.tensor([10.0]), torch.tensor([False]), _gen(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("level", [51, 102, 204])
def test_poisson_noise_variance_on_flat_image_is_scale_squared_times_intensity(level):
    # a flat image has one 8-bit level, so L = 1: noise = scale * (Poisson(v) - v), Var = scale² v
    v, scale = level / 255, 0.2
    x = torch.full((1, 3, 128, 128), v)
    assert poisson_levels(quantize(x)).item() == 1
    noise = poisson_noise(x, torch.tensor([scale]), torch.tensor([False]), _gen(level))
    assert abs(noise.var().item() / (scale**2 * v) - 1) < 0.05
    assert abs(noise.mean().item()) < 4 * scale * math.sqrt(v / noise.numel())


def test_poisson_noise_variance_grows_with_intensity_on_a_photo(photo):
    levels = poisson_levels(photo).item()
    assert levels == 256  # the photo uses more than 128 of the 256 levels
    scale = 3.0
    x = photo.repeat(2, 1, 1, 1)
    noise = poisson_noise(x, torch.full((2,), scale), torch.zeros(2, dtype=torch.bool), _gen(7))
    v = x.flatten()
    n = noise.flatten()
    for lo, hi in [(0.05, 0.15), (0.3, 0.4), (0.6, 0.7)]:
        sel = (v >= lo) & (v < hi)
        expected = scale**2 * v[sel].mean().item() / levels
        assert abs(n[sel].var().item() / expected - 1) < 0.1, (lo, hi)


def test_jpeg_round_trip_changes_image_and_higher_quality_is_closer(photo):
    errors = [F.mse_loss(jpeg(photo, [q]), photo).item() for q in (20, 60, 95)]
    assert errors[0] > errors[1] > errors[2] > 0
    assert _psnr(jpeg(photo, [95]), photo) > 35  # a real codec at high quality is close
    out = jpeg(photo.repeat(2, 1, 1, 1), [10, 95])  # each image its own quality
    assert F.mse_loss(out[0], photo[0]) > 4 * F.mse_loss(out[1], photo[0])
    assert torch.equal(out, quantize(out))


def test_jpeg_rounds_to_the_nearest_8bit_level_and_keeps_flat_levels():
    # A flat block is pure DC, so JPEG-100 returns its 8-bit level: the nearest one to the input.
    levels = torch.arange(1, 255, dtype=torch.float32)
    expected = (levels / 255).view(-1, 1, 1, 1).expand(-1, 3, 16, 16)
    for offset in (-0.4, 0.4):
        x = ((levels + offset) / 255).view(-1, 1, 1, 1).expand(-1, 3, 16, 16).contiguous()
        assert torch.equal(jpeg(x, [100] * len(levels)), expected)


def test_to_gray_uses_luma_weights():
    x = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert abs(to_gray(x).item() - 0.2989) < 1e-6
    assert abs(to_gray(torch.ones(1, 3, 2, 2)).mean().item() - 1.0) < 1e-3


# ----------------------------------------------------------------------------- pipeline


def test_resize_factors_follow_direction_probabilities_and_ranges():
    st = DegradationConfig().stage1  # up 0.2 in [1, 1.5], down 0.7 in [0.3, 1], keep 0.1
    g = _gen(0)
    factors = torch.tensor([sample_resize_factor(st, g) for _ in range(2000)])
    up, down, keep = (factors > 1).float().mean(), (factors < 1).float().mean(), (factors == 1).float().mean()
    for got, p in ((up, 0.2), (down, 0.7), (keep, 0.1)):
        assert abs(got.item() - p) < 4 * math.sqrt(p * (1 - p) / 2000)
    assert factors.min() >= 0.3 and factors.max() <= 1.5
    assert abs(factors[factors < 1].mean().item() - 0.65) < 0.03  # uniform on [0.3, 1]


def test_output_size_range_and_8bit_levels(small):
    hr = small.repeat(3, 1, 1, 1)
    lr = RealESRGANDegradation()(hr, _gen(0))
    assert lr.shape == (3, 3, 32, 32) and lr.dtype == torch.float32
    assert lr.min() >= 0 and lr.max() <= 1
    assert _max_diff(lr * 255, (lr * 255).round()) < 1e-4
    assert len(torch.unique(lr)) > 50  # a real image, not a constant


def test_same_seed_same_output_different_seed_different_and_per_image_parameters(small):
    deg = RealESRGANDegradation()
    hr = small.repeat(2, 1, 1, 1)
    a, b, c = deg(hr, _gen(11)), deg(hr, _gen(11)), deg(hr, _gen(12))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert (a[0] - a[1]).abs().mean() > 1e-3  # identical inputs, own random parameters


def test_scale_is_configurable(small):
    lr = RealESRGANDegradation(DegradationConfig(scale=2))(small, _gen(0))
    assert lr.shape == (1, 3, 64, 64)


def _near_identity() -> DegradationConfig:
    """Every random step pinned to (almost) nothing: tiny blur, keep size, no noise, JPEG 100."""
    stage = dict(
        blur=BlurConfig(kernel_list=("iso",), kernel_prob=(1.0,), sinc_prob=0.0, sigma_range=(0.1, 0.1)),
        resize_prob=(0.0, 0.0, 1.0),
        noise_range=(0.0, 0.0),
        gaussian_noise_prob=1.0,
        jpeg_range=(100.0, 100.0),
    )
    return DegradationConfig(
        stage1=StageConfig(**stage), stage2=StageConfig(**stage), final_sinc_prob=0.0, resize_modes=("area",)
    )


@pytest.fixture(scope="module")
def clean(photo) -> torch.Tensor:
    return RealESRGANDegradation(_near_identity())(photo, _gen(0))


def test_pipeline_composition_against_a_plain_downsample(photo, clean):
    # With every degradation pinned off, the pipeline is an area downsample up to JPEG-100 and
    # 8-bit rounding; the defaults must be far from that.
    reference = F.interpolate(photo, size=(64, 64), mode="area")
    assert _psnr(clean, reference) > 38
    defaults = RealESRGANDegradation()(photo.repeat(4, 1, 1, 1), _gen(0))
    assert all(_psnr(d, reference[0]) < _psnr(clean, reference) - 5 for d in defaults)


def _switch_on(stage: str, **kw) -> DegradationConfig:
    base = _near_identity()
    if stage == "final":
        return dataclasses.replace(base, **kw)
    if "blur_sigma" in kw:
        sigma = kw.pop("blur_sigma")
        kw["blur"] = dataclasses.replace(getattr(base, stage).blur, sigma_range=(sigma, sigma))
    return dataclasses.replace(base, **{stage: dataclasses.replace(getattr(base, stage), **kw)})


@pytest.mark.parametrize(
    "cfg",
    [
        _switch_on("stage1", noise_range=(30.0, 30.0)),
        _switch_on("stage1", jpeg_range=(10.0, 10.0)),
        _switch_on("stage1", blur_sigma=3.0),
        _switch_on("stage2", noise_range=(10.0, 10.0)),
        _switch_on("stage2", jpeg_range=(10.0, 10.0)),
        _switch_on("stage2", blur_sigma=2.0),
        _switch_on("final", final_sinc_prob=1.0),
    ],
    ids=["noise1", "jpeg1", "blur1", "noise2", "jpeg2", "blur2", "sinc"],
)
def test_each_degradation_step_is_applied(photo, clean, cfg):
    out = RealESRGANDegradation(cfg)(photo, _gen(0))
    assert _psnr(out, clean) < 35


def test_second_stage_gray_noise_reaches_the_output_with_its_std(photo, clean):
    # Gray noise has no chroma, so the final JPEG's 4:2:0 subsampling leaves it intact.
    out = RealESRGANDegradation(_switch_on("stage2", noise_range=(10.0, 10.0), gray_noise_prob=1.0))(photo, _gen(0))
    assert abs((out - clean).std().item() * 255 / 10 - 1) < 0.1


@pytest.mark.parametrize(
    "hr",
    [
        torch.rand(3, 64, 64),
        torch.rand(0, 3, 64, 64),
        torch.rand(1, 1, 64, 64),
        torch.rand(1, 3, 62, 64),
        torch.rand(1, 3, 64, 64) * 2,
        torch.randint(0, 255, (1, 3, 64, 64)),
    ],
)
def test_bad_input_is_one_line_user_error(hr):
    with pytest.raises(UserError) as e:
        RealESRGANDegradation()(hr, _gen(0))
    assert "\n" not in str(e.value)


def test_generator_is_required(photo):
    with pytest.raises(UserError):
        RealESRGANDegradation()(photo, 0)
