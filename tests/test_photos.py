"""The bundled photos: real, loadable offline, split without overlap, crops deterministic."""

import pytest
import torch

from adcsr.core.errors import UserError
from adcsr.core.photos import HELDOUT_PHOTOS, TRAIN_PHOTOS, hr_crops, load_photo

ALL = TRAIN_PHOTOS + HELDOUT_PHOTOS


def occurs_in(crop, image):
    """Whether `crop` is an exact window of `image` (candidates: where its first pixel matches)."""
    s = crop.shape[-1]
    match = (image[:, : image.shape[1] - s + 1, : image.shape[2] - s + 1] == crop[:, :1, :1]).all(0)
    return any(torch.equal(image[:, y:y + s, x:x + s], crop) for y, x in match.nonzero().tolist())


def test_split_is_fixed_and_disjoint():
    assert set(TRAIN_PHOTOS).isdisjoint(HELDOUT_PHOTOS)
    assert len(set(ALL)) == 10
    assert {"astronaut", "coffee", "china"} <= set(TRAIN_PHOTOS)  # natural photos on each side
    assert {"chelsea", "flower", "grace_hopper"} == set(HELDOUT_PHOTOS)


@pytest.mark.parametrize("name", ALL)
def test_photos_are_real_rgb_images(name):
    x = load_photo(name)
    assert x.dtype == torch.float32 and x.ndim == 3 and x.shape[0] == 3
    assert min(x.shape[1:]) >= 300
    assert 0.0 <= x.min() and x.max() <= 1.0
    # a photograph: many distinct levels, real texture (neighbouring pixels correlated but not equal)
    assert len(torch.unique((x[1] * 255).round())) > 64
    dx = (x[..., 1:] - x[..., :-1]).abs().mean()
    assert 0.002 < dx < 0.2


def test_same_pixels_as_the_package_loader():
    import numpy as np
    import skimage.data

    expected = torch.from_numpy(np.array(skimage.data.astronaut())).permute(2, 0, 1).float() / 255
    assert torch.equal(load_photo("astronaut"), expected)


def test_known_content():
    cat, astronaut = load_photo("chelsea"), load_photo("astronaut")
    assert cat.shape == (3, 300, 451) and astronaut.shape == (3, 512, 512)
    load_photo("chelsea")[0].zero_()  # a copy: the cache is not modified
    assert torch.equal(load_photo("chelsea"), cat)


def test_crops_are_deterministic_and_come_from_the_split():
    a = hr_crops("heldout", 64, 6, seed=1)
    assert a.shape == (6, 3, 64, 64)
    assert torch.equal(a, hr_crops("heldout", 64, 6, seed=1))
    assert not torch.equal(a, hr_crops("heldout", 64, 6, seed=2))
    # crop i comes from photo i mod 3 of the split: find it there
    for i, crop in enumerate(a):
        assert occurs_in(crop, load_photo(HELDOUT_PHOTOS[i % 3]))


def test_bad_requests():
    with pytest.raises(UserError, match="unknown photo"):
        load_photo("lena")
    with pytest.raises(UserError, match="split"):
        hr_crops("test", 64, 1)
    with pytest.raises(UserError, match="at least 5000"):
        hr_crops("train", 5000, 1)
