"""Datasets: crops come from the right images, LR stays aligned, folders are checked up front."""

import pytest
import torch
from torch.utils.data import DataLoader

from adcsr.core.datasets import PairedFolderDataset, SamplePhotoDataset
from adcsr.core.degradations import RealESRGANDegradation
from adcsr.core.errors import UserError
from adcsr.core.imaging import write_image
from adcsr.core.photos import load_photo
import torch.nn.functional as F


def occurs_in(crop, image):
    """Whether `crop` is an exact window of `image` (candidates: where its first pixel matches)."""
    s = crop.shape[-1]
    match = (image[:, : image.shape[1] - s + 1, : image.shape[2] - s + 1] == crop[:, :1, :1]).all(0)
    return any(torch.equal(image[:, y:y + s, x:x + s], crop) for y, x in match.nonzero().tolist())


def test_sample_photo_dataset_crops_flips_and_seeds():
    ds = SamplePhotoDataset("heldout", crop_size=48, length=12, seed=5)
    items = [ds[i] for i in range(len(ds))]
    flips = 0
    for it in items:
        assert it["hr"].shape == (3, 48, 48)
        photo = load_photo(it["name"])
        plain, flipped = occurs_in(it["hr"], photo), occurs_in(it["hr"].flip(-1), photo)
        assert plain or flipped
        flips += flipped and not plain
    assert 0 < flips < 12  # both orientations occur
    assert torch.equal(ds[3]["hr"], SamplePhotoDataset("heldout", 48, 12, seed=5)[3]["hr"])
    ds.set_epoch(1)
    assert not torch.equal(ds[3]["hr"], items[3]["hr"])
    # DataLoader batches, then the trainer's batch-wise degradation
    batch = next(iter(DataLoader(ds, batch_size=4)))
    lr = RealESRGANDegradation()(batch["hr"], torch.Generator().manual_seed(0))
    assert lr.shape == (4, 3, 12, 12)


@pytest.fixture()
def folders(tmp_path):
    hr, lr = tmp_path / "hr", tmp_path / "lr"
    for rel, name in [("b.png", "coffee"), ("sub/a.jpg", "rocket"), ("c.webp", "astronaut")]:
        img = load_photo(name)[:, :96, :128]
        write_image(img, hr / rel)
        down = F.interpolate(img[None], scale_factor=0.25, mode="area")[0]
        write_image(down, (lr / rel).with_suffix(".png"))
    return hr, lr


def test_paired_folder_sorted_recursive_and_aligned(folders):
    hr, lr = folders
    ds = PairedFolderDataset(hr, lr, crop_size=32, scale=4, seed=0)
    assert [p.relative_to(hr).as_posix() for p in ds.hr_files] == ["b.png", "c.webp", "sub/a.jpg"]
    for i in range(len(ds)):
        it = ds[i]
        assert it["hr"].shape == (3, 32, 32) and it["lr"].shape == (3, 8, 8)
        # the LR crop is the same region: area-downsampling the HR crop gives it back (8-bit files)
        down = F.interpolate(it["hr"][None], scale_factor=0.25, mode="area")[0]
        tol = 0.06 if ds.hr_files[i].suffix in (".jpg", ".webp") else 1 / 255 + 1e-6
        assert (down - it["lr"]).abs().mean() < tol
    hr_only = PairedFolderDataset(hr, crop_size=40)
    assert "lr" not in hr_only[0] and hr_only[0]["hr"].shape == (3, 40, 40)


def test_folder_errors(folders, tmp_path):
    hr, lr = folders
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no images"):
        PairedFolderDataset(tmp_path / "empty")
    with pytest.raises(UserError, match="no such folder"):
        PairedFolderDataset(tmp_path / "missing")
    (lr / "c.png").unlink()
    write_image(torch.rand(3, 8, 8), lr / "extra.png")
    with pytest.raises(UserError, match=r"no LR image for c.*no HR image for extra"):
        PairedFolderDataset(hr, lr, crop_size=32)
    (lr / "extra.png").unlink()
    write_image(torch.rand(3, 20, 32), lr / "c.png")
    with pytest.raises(UserError, match=r"LR is 32×20 but HR c.webp is 128×96; expected 32×24"):
        PairedFolderDataset(hr, lr, crop_size=32)
    with pytest.raises(UserError, match="smaller than the crop size"):
        PairedFolderDataset(hr, crop_size=100)
    with pytest.raises(UserError, match="multiple of scale"):
        PairedFolderDataset(hr, lr, crop_size=30)
