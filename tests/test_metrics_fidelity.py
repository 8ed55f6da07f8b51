"""PSNR/SSIM on MATLAB luma against scikit-image's reference functions on real photos."""

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from adcsr.core.errors import UserError
from adcsr.core.metrics import psnr_y, rgb_to_y, ssim_y
from adcsr.core.photos import load_photo


def _to_pil(x: torch.Tensor) -> Image.Image:
    return Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def _from_pil(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255


def _jpeg(x: torch.Tensor, quality: int = 30) -> torch.Tensor:
    buf = io.BytesIO()
    _to_pil(x).save(buf, "JPEG", quality=quality)
    return _from_pil(Image.open(buf).convert("RGB"))


def _blur(x: torch.Tensor) -> torch.Tensor:
    return _from_pil(_to_pil(x).filter(ImageFilter.GaussianBlur(1.5)))


def _skimage_y(x: torch.Tensor, border: int) -> np.ndarray:
    r, g, b = x.double().numpy()
    y = 16 + 65.481 * r + 128.553 * g + 24.966 * b
    return y[border:-border, border:-border] if border else y


@pytest.mark.parametrize("photo", ["astronaut", "coffee", "chelsea"])
@pytest.mark.parametrize("degrade", [_jpeg, _blur])
@pytest.mark.parametrize("border", [0, 4])
def test_matches_skimage_on_real_photos(photo, degrade, border):
    hr = load_photo(photo)[:, :256, :256]
    sr = degrade(hr)
    ya, yb = _skimage_y(sr, border), _skimage_y(hr, border)
    ref_psnr = peak_signal_noise_ratio(yb, ya, data_range=255)
    ref_ssim = structural_similarity(
        yb, ya, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
    )
    assert 20 < ref_psnr < 45 and 0.5 < ref_ssim < 0.999  # the degradation really changed the image
    assert abs(psnr_y(sr, hr, crop_border=border) - ref_psnr) < 1e-6
    assert abs(ssim_y(sr, hr, crop_border=border) - ref_ssim) < 1e-6


def test_batch_gives_per_image_values_and_numpy_is_accepted():
    hr = torch.stack([load_photo(p)[:, :128, :128] for p in ("chelsea", "coffee")])
    sr = torch.stack([_jpeg(hr[0], 20), _blur(hr[1])])
    batch = psnr_y(sr, hr)
    assert batch.shape == (2,)
    assert batch[0].item() == pytest.approx(psnr_y(sr[0], hr[0]), abs=1e-9)
    assert batch[1].item() == pytest.approx(psnr_y(sr[1], hr[1]), abs=1e-9)
    assert ssim_y(sr[0].numpy(), hr[0].numpy()) == pytest.approx(ssim_y(sr[0], hr[0]), abs=1e-12)


def test_luma_is_matlab_bt601_range():
    black, white = torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)
    assert rgb_to_y(black).unique().tolist() == [16.0]
    assert rgb_to_y(white).flatten()[0].item() == pytest.approx(235.0, abs=1e-4)


def test_crop_border_excludes_the_border():
    hr = load_photo("chelsea")[:, :64, :64]
    sr = hr.clone()
    sr[:, :4, :] = 1 - sr[:, :4, :]  # damage only the top 4 rows
    assert psnr_y(sr, hr, crop_border=4) == float("inf")
    assert ssim_y(sr, hr, crop_border=4) == pytest.approx(1.0, abs=1e-12)
    assert psnr_y(sr, hr, crop_border=3) < 45  # one damaged row left in view


def test_identical_images_and_ordering():
    hr = load_photo("coffee")[:, :128, :128]
    assert ssim_y(hr, hr) == pytest.approx(1.0, abs=1e-12)
    mild, strong = _jpeg(hr, 90), _jpeg(hr, 10)
    assert psnr_y(mild, hr) > psnr_y(strong, hr)
    assert ssim_y(mild, hr) > ssim_y(strong, hr)


@pytest.mark.parametrize(
    "a, b, kw",
    [
        (torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 16), {}),
        (torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), {"crop_border": 16}),
        (torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), {"crop_border": -1}),
        (torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32), {}),
        ("a.png", "b.png", {}),
    ],
)
def test_bad_input_is_a_user_error(a, b, kw):
    for fn in (psnr_y, ssim_y):
        with pytest.raises(UserError):
            fn(a, b, **kw)


def test_uint8_inputs_are_read_as_8_bit_images():
    hr = load_photo("chelsea")[:, :64, :64]
    sr = _jpeg(hr)
    as8 = lambda x: (x * 255).round().to(torch.uint8)  # noqa: E731
    assert psnr_y(as8(sr), as8(hr)) == pytest.approx(psnr_y(sr, hr), abs=1e-4)
    assert ssim_y(as8(sr).numpy(), as8(hr).numpy()) == pytest.approx(ssim_y(sr, hr), abs=1e-6)
    with pytest.raises(UserError, match="float"):
        psnr_y(torch.ones(3, 32, 32, dtype=torch.int32), torch.ones(3, 32, 32, dtype=torch.int32))
