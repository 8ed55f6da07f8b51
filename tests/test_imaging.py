"""Image I/O: every mode and format decodes to the right RGB values; writes are atomic."""

import os

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from adcsr.core import imaging
from adcsr.core.errors import UserError
from adcsr.core.imaging import image_size, read_image, write_image
from adcsr.core.photos import load_photo


@pytest.fixture(scope="module")
def photo():
    return load_photo("astronaut")[:, :96, :128]


def u8(t):
    return (t.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def psnr(a, b):
    return 10 * np.log10(1.0 / float(((a - b) ** 2).mean()))


def test_png_round_trip_is_exact(tmp_path, photo):
    write_image(photo, tmp_path / "a.png")
    back = read_image(tmp_path / "a.png")
    assert back.dtype == torch.float32 and back.shape == photo.shape
    assert torch.equal(back, torch.from_numpy(u8(photo)).permute(2, 0, 1).float() / 255)


@pytest.mark.parametrize("ext,min_psnr", [(".jpg", 30), (".webp", 30), (".jpeg", 30)])
def test_lossy_round_trip(tmp_path, photo, ext, min_psnr):
    path = write_image(photo, tmp_path / f"a{ext}", quality=95)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}[ext]
    with Image.open(path) as img:
        assert img.format == fmt
    back = read_image(path)
    assert psnr(back, photo) > min_psnr


def test_tiff_and_grayscale(tmp_path, photo):
    Image.fromarray(u8(photo)).save(tmp_path / "a.tif")
    assert torch.allclose(read_image(tmp_path / "a.tif"), photo, atol=1 / 255)
    gray = Image.fromarray(u8(photo)).convert("L")
    gray.save(tmp_path / "g.png")
    g = read_image(tmp_path / "g.png")
    assert g.shape == photo.shape
    assert torch.equal(g[0], g[1]) and torch.equal(g[1], g[2])
    assert torch.equal(g[0], torch.from_numpy(np.array(gray)).float() / 255)


def test_sixteen_bit_keeps_precision(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    g = read_image(tmp_path / "g16.png")
    assert torch.allclose(g[0], torch.from_numpy(ramp.astype(np.float32) / 65535), atol=1e-6)
    assert len(torch.unique(g[0])) > 256  # more levels than 8 bits could hold
    rgb = np.stack([ramp, ramp[::-1], 65535 - ramp], axis=-1)
    tifffile.imwrite(tmp_path / "rgb16.tif", rgb)
    c = read_image(tmp_path / "rgb16.tif")
    assert torch.allclose(c.permute(1, 2, 0), torch.from_numpy(rgb.astype(np.float32) / 65535), atol=1e-6)


def test_alpha_composited_or_kept(tmp_path):
    a = np.zeros((8, 8, 4), np.uint8)
    a[..., 0] = 200  # red
    a[:, :4, 3] = 255  # left half opaque
    a[:, 4:, 3] = 0  # right half transparent
    a[0, 0, 3] = 51  # one pixel 20% opaque
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    on_white = read_image(tmp_path / "a.png")
    assert on_white.shape == (3, 8, 8)
    assert torch.allclose(on_white[:, 1, 1], torch.tensor([200 / 255, 0, 0]))
    assert torch.allclose(on_white[:, 1, 6], torch.ones(3))
    assert torch.allclose(on_white[:, 0, 0], torch.tensor([0.2 * 200 / 255 + 0.8, 0.8, 0.8]), atol=1e-6)
    on_black = read_image(tmp_path / "a.png", background=(0, 0, 0))
    assert torch.allclose(on_black[:, 1, 6], torch.zeros(3))
    rgba = read_image(tmp_path / "a.png", keep_alpha=True)
    assert rgba.shape == (4, 8, 8)
    assert torch.allclose(rgba[3, :, 4:], torch.zeros(8, 4)) and torch.allclose(rgba[3, 1:, :4], torch.ones(7, 4))
    write_image(rgba, tmp_path / "b.png")  # alpha carried through to the written file
    assert torch.equal(read_image(tmp_path / "b.png", keep_alpha=True), rgba)


def test_palette_and_cmyk(tmp_path, photo):
    pal = Image.fromarray(u8(photo)).quantize(colors=16)
    pal.save(tmp_path / "p.png")
    expected = torch.from_numpy(np.array(pal.convert("RGB"))).permute(2, 0, 1).float() / 255
    assert torch.equal(read_image(tmp_path / "p.png"), expected)
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pt.png", transparency=0)
    pt = read_image(tmp_path / "pt.png", keep_alpha=True)
    assert torch.equal(pt[3] == 0, torch.from_numpy(np.asarray(pal) == 0))
    cmyk = Image.fromarray(u8(photo)).convert("CMYK")
    cmyk.save(tmp_path / "c.jpg", quality=98)
    with Image.open(tmp_path / "c.jpg") as img:
        assert img.mode == "CMYK"
    assert psnr(read_image(tmp_path / "c.jpg"), photo) > 30


@pytest.mark.parametrize("orientation,corner", [(1, (0, 0)), (3, (-1, -1)), (6, (0, -1)), (8, (-1, 0)), (2, (0, -1))])
def test_exif_orientation(tmp_path, orientation, corner):
    """A red marker in the stored top-left corner ends up where the camera meant it."""
    a = np.zeros((20, 30, 3), np.uint8)
    a[:4, :4] = (255, 0, 0)
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(tmp_path / "o.jpg", exif=exif.tobytes(), quality=100)
    x = read_image(tmp_path / "o.jpg")
    swapped = orientation in (5, 6, 7, 8)
    assert x.shape[1:] == ((30, 20) if swapped else (20, 30))
    assert image_size(tmp_path / "o.jpg") == tuple(x.shape[1:])
    r, c = corner
    assert x[0, r, c] > 0.9 and x[1, r, c] < 0.1
    assert x[0].sum() < 40  # only the marker is red


@pytest.mark.parametrize("code, raised", [(28, OSError), (5, UserError)])  # ENOSPC, EIO
def test_write_failure_leaves_nothing_behind(tmp_path, photo, monkeypatch, code, raised):
    """A full disk stays an OSError naming the file (the CLI says so and stops); any other write
    failure is a UserError; either way the earlier file is untouched and no temporary is left."""
    dest = tmp_path / "keep.png"
    dest.write_bytes(b"old contents")

    def failing_save(self, fp, *a, **k):
        with open(fp, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(raised, match=os.strerror(code)) as e:
        write_image(photo, dest, force=True)
    assert str(dest) in str(e.value)
    assert dest.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]


def test_pixel_limit_is_checked_before_decoding(tmp_path, photo, monkeypatch):
    write_image(photo, tmp_path / "a.png")
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(1))
    with pytest.raises(UserError, match="exceeds the limit of 1000"):
        read_image(tmp_path / "a.png", max_pixels=1000)
    assert decoded == []
    assert imaging.DEFAULT_MAX_PIXELS >= 50_000_000
