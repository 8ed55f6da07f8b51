"""The offline perceptual loss: a pretrained EfficientNet-Lite0 distance, never called LPIPS."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from adcsr.core.errors import UserError
from adcsr.core.perceptual import EfficientNetPerceptual, perceptual_loss
from adcsr.core.photos import hr_crops


@pytest.fixture(scope="module")
def loss():
    return perceptual_loss()


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = int(3 * sigma) + 1
    k = torch.exp(-torch.arange(-r, r + 1).float() ** 2 / (2 * sigma**2))
    k = (k / k.sum()).view(1, 1, 1, -1).repeat(3, 1, 1, 1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k, groups=3)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.transpose(-1, -2), groups=3)


def test_is_not_presented_as_lpips(loss):
    assert isinstance(loss, EfficientNetPerceptual)
    assert "not LPIPS" in loss.name and "efficientnet-lite0" in loss.weights_file


def test_distance_orders_degradations_on_real_photos(loss):
    x = hr_crops("heldout", 96, 2, seed=3)
    with torch.no_grad():
        d = [float(loss(x, _blur(x, s))) for s in (0.6, 1.2, 2.4)]
        same = float(loss(x, x.clone()))
        sym = abs(float(loss(x, _blur(x, 1.2))) - float(loss(_blur(x, 1.2), x)))
    assert same < 1e-8 and sym < 1e-6
    assert d[0] < d[1] < d[2], d


def test_pretrained_features_see_structure_a_random_net_does_not(loss):
    # Pretrained filters respond far more to a photo's structure than to a flat colour of the
    # same mean; the distance to that flat image is much larger than to a lightly blurred copy.
    x = hr_crops("heldout", 96, 2, seed=4)
    flat = x.mean((2, 3), keepdim=True).expand_as(x)
    with torch.no_grad():
        assert float(loss(x, flat)) > 3 * float(loss(x, _blur(x, 0.8)))


def test_gradient_reaches_the_image(loss):
    x = hr_crops("heldout", 64, 1, seed=5)
    y = _blur(x, 1.5).requires_grad_(True)
    loss(y, x).backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.parameters()), "the loss network stays frozen"


def test_bad_weights_file_is_one_line_error(tmp_path):
    bad = tmp_path / "w.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError) as e:
        EfficientNetPerceptual(bad)
    assert "\n" not in str(e.value)
