"""NIQE: MATLAB resize, the shipped pristine model, and the behaviour NIQE must show on real photos."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adcsr.core.errors import UserError
from adcsr.core.metrics import niqe
from adcsr.core.metrics.niqe import matlab_imresize_half, pristine_params
from adcsr.core.photos import load_photo


def _blur(x: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    r = int(3 * sigma)
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    x = F.pad(x[None], (r, r, r, r), mode="reflect")
    x = F.conv2d(x, g.view(1, 1, 1, -1).repeat(3, 1, 1, 1), groups=3)
    return F.conv2d(x, g.view(1, 1, -1, 1).repeat(3, 1, 1, 1), groups=3)[0]


def test_pristine_parameters_are_the_shipped_model():
    mu, cov, window = pristine_params()
    assert mu.shape == (36,) and cov.shape == (36, 36) and window.shape == (7, 7)
    assert np.allclose(cov, cov.T) and np.linalg.eigvalsh(cov).min() > 0
    assert window.sum() == pytest.approx(1.0, abs=1e-9)


def test_matlab_half_resize_keeps_constants_and_linear_ramps():
    assert np.allclose(matlab_imresize_half(np.full((40, 30), 7.0)), 7.0)
    # The antialiased cubic kernel reproduces linear functions: away from the mirrored edges,
    # output sample j (1-based) sits at source coordinate 2j - 0.5.
    ramp = np.tile(np.arange(1, 65, dtype=np.float64), (8, 1))
    out = matlab_imresize_half(ramp)
    j = np.arange(1, 33)
    assert out.shape == (4, 32)
    assert np.allclose(out[:, 3:-3], (2 * j - 0.5)[3:-3], atol=1e-9)


def test_value_matches_the_reference_implementation():
    # basicsr 1.4.2's NIQE gives 2.625524 on this photo (its float32 resize differs in the 7th
    # digit); with a float64 resize, as MATLAB does, both give 2.625527.
    assert niqe(load_photo("chelsea")) == pytest.approx(2.625527, abs=1e-4)


@pytest.mark.parametrize("photo", ["chelsea", "astronaut"])
def test_sharp_photo_scores_better_than_blurred_or_noised(photo):
    sharp = load_photo(photo)[:, :288, :384]
    noisy = (sharp + 0.08 * torch.randn(sharp.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    scores = niqe(torch.stack([sharp, _blur(sharp), noisy]))
    assert scores.shape == (3,)
    assert 2 < scores[0] < 10
    assert scores[0] < scores[1] and scores[0] < scores[2]


def test_deterministic_and_batch_agrees_with_single():
    x = load_photo("coffee")[:, :192, :288]
    assert niqe(x) == niqe(x)
    assert niqe(x[None])[0].item() == pytest.approx(niqe(x), abs=1e-12)


def test_too_small_or_bad_input_is_a_user_error():
    with pytest.raises(UserError, match="96"):
        niqe(torch.rand(3, 100, 100))
    with pytest.raises(UserError):
        niqe(torch.rand(1, 4, 200, 200))
    with pytest.raises(UserError):
        niqe(torch.rand(3, 300, 300), crop_border=-2)
