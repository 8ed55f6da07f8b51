"""One held-out set: the report and the export's parity tiles (and verify) take their crops from
`core.heldout.heldout_set`."""

from __future__ import annotations

import pytest
import torch

from adcsr.core.degradations import DegradationConfig
from adcsr.core.errors import UserError
from adcsr.core.heldout import heldout_set
from adcsr.core.photos import HELDOUT_PHOTOS, shared_photo
from adcsr.export.calibration import lr_tiles


def test_centre_of_each_photo_first_then_seeded_random_crops():
    names, lr, hr = heldout_set(64, 5, seed=3)
    assert names == [*HELDOUT_PHOTOS, *HELDOUT_PHOTOS][:5]
    assert lr.shape == (5, 3, 16, 16) and hr.shape == (5, 3, 64, 64)
    img = shared_photo(HELDOUT_PHOTOS[0])
    top, left = (img.shape[1] - 64) // 2, (img.shape[2] - 64) // 2
    assert torch.equal(hr[0], img[:, top:top + 64, left:left + 64])
    again = heldout_set(64, 5, seed=3)
    assert all(torch.equal(a, b) for a, b in zip((lr, hr), again[1:]))  # same arguments, same tensors
    assert not torch.equal(heldout_set(64, 5, seed=4)[2][3:], hr[3:])  # the seed moves the random rounds only
    assert torch.equal(heldout_set(64, 5, seed=4)[2][:3], hr[:3])


def test_the_export_reads_the_same_set_as_the_report():
    _, lr, hr = heldout_set(64, 4, seed=0)
    assert torch.equal(lr_tiles("heldout", 16, 4, seed=0), lr)  # the export's parity tiles and verify


def test_a_stage_with_its_own_degradation_degrades_the_same_crops_its_way():
    cfg = DegradationConfig(scale=2)
    _, lr, hr = heldout_set(64, 2, degradation=cfg)
    assert torch.equal(hr, heldout_set(64, 2)[2]) and lr.shape == (2, 3, 32, 32)


def test_bad_sizes_are_one_line():
    with pytest.raises(UserError, match="not a multiple of the scale"):
        heldout_set(30, 1)
    with pytest.raises(UserError, match="no held-out photo is at least"):
        heldout_set(4096, 1)
