"""Streamed tiling: the same pixels as the in-memory tiler, memory that does not grow with the
output, and a PNG written row by row that reads back exactly."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from adcsr.core.colorfix import adain_color_fix
from adcsr.core.errors import UserError
from adcsr.core.imaging import read_image, to_uint8
from adcsr.core.photos import load_photo
from adcsr.core.tiling import tiled_upscale, upscale_bands
from adcsr.core.imaging import write_png_bands

torch.set_num_threads(1)


class CastSR(nn.Module):
    """Bicubic ×4 plus a fixed random conv branch and a colour cast (so AdaIN has work to do)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 48, 3, padding=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)

    def forward(self, x):
        up = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
        cast = torch.tensor([0.8, 1.0, 1.15]).view(1, 3, 1, 1)
        return up * cast + 0.2 * F.pixel_shuffle(self.c2(torch.relu(self.c1(x))), 4)


@pytest.mark.parametrize("photo,crop,tiling,fix", [
    ("chelsea", (slice(37, 114), slice(91, 184)), dict(tile=32, overlap=8), None),  # 77×93
    ("flower", (slice(101, 160), slice(9, 112)), dict(tile=24, overlap=6, multiple=8), "adain"),  # 59×103
    ("grace_hopper", (slice(0, 45), slice(0, 31)), dict(tile=16, overlap=4, blend="linear", batch_size=3), "adain"),
])
def test_streamed_equals_in_memory_and_png_round_trips(tmp_path, photo, crop, tiling, fix):
    lr = load_photo(photo)[:, crop[0], crop[1]]
    model = CastSR().eval()
    whole = tiled_upscale(model, lr[None], color_fix=fix, **tiling)[0]
    bands = list(upscale_bands(model, lr, color_fix=fix, **tiling))
    assert len(bands) > 1  # really streamed: several bands, each a whole number of rows
    streamed = torch.cat(bands, 1)
    assert streamed.shape == whole.shape == (3, lr.shape[1] * 4, lr.shape[2] * 4)
    assert (streamed - whole).abs().max() < 1e-5
    if fix == "adain":  # the streamed statistics are those of the whole unclamped SR image
        seen = []
        tiled_upscale(model, lr[None], color_fix=lambda sr, low: seen.append(sr.clone()) or sr, **tiling)
        assert (seen[0][0].clamp(0, 1) - whole).abs().mean() > 0.02  # the fix had work to do
        assert torch.allclose(streamed, adain_color_fix(seen[0], lr[None])[0].clamp(0, 1), atol=1e-5)
    out = tmp_path / "sr.png"
    write_png_bands(iter(upscale_bands(model, lr, color_fix=fix, **tiling)), out, *whole.shape[1:])
    back = (read_image(out) * 255).round()
    assert torch.equal(back, torch.from_numpy(to_uint8(streamed)).permute(2, 0, 1).float())  # lossless rows
    in_memory = torch.from_numpy(to_uint8(whole)).permute(2, 0, 1).float()
    assert (back - in_memory).abs().max() <= 1 and (back != in_memory).float().mean() < 1e-3  # rounding ties only


def test_what_streaming_refuses():
    up = lambda x: F.interpolate(x, scale_factor=4)  # noqa: E731
    lr = torch.rand(1, 3, 20, 20)
    with pytest.raises(UserError, match="wavelet.*adain or none"):
        next(upscale_bands(up, lr, tile=16, overlap=4, color_fix="wavelet"))
    with pytest.raises(UserError, match="unknown colour fix"):
        next(upscale_bands(up, lr, tile=16, overlap=4, color_fix="magic"))
    with pytest.raises(UserError, match="one image at a time"):
        next(upscale_bands(up, torch.rand(2, 3, 20, 20), tile=16, overlap=4))
    with pytest.raises(UserError, match="expected ×4"):
        next(upscale_bands(lambda x: x, lr, tile=16, overlap=4))


PEAKS = textwrap.dedent("""
    import json, sys, tempfile, torch
    sys.path.insert(0, sys.argv[1])
    from test_tiling_stream import CastSR
    from adcsr.core.tiling import tiled_upscale, upscale_bands
    from adcsr.core.imaging import write_png_bands
    torch.set_num_threads(1)

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith(key))

    def growth(fn):
        base = status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # peak (VmHWM) back to the current RSS
        fn()
        return status("VmHWM") - base

    model, out = CastSR().eval(), tempfile.mkdtemp()
    images = {h: torch.rand(3, h, 256, generator=torch.Generator().manual_seed(h)) for h in (64, 2048)}
    def stream(h):
        bands = upscale_bands(model, images[h], tile=64, overlap=16, color_fix="adain")
        write_png_bands(bands, f"{out}/{h}.png", h * 4, 1024)
    stream(2048)  # warm-up: thread pools, allocator arenas
    result = {f"stream_{h}": growth(lambda: stream(h)) for h in (64, 2048)}
    result.update({f"memory_{h}": growth(lambda: tiled_upscale(model, images[h][None], tile=64, overlap=16))
                   for h in (64, 2048)})
    print(json.dumps(result))
""")


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux /proc peak-RSS reset")
def test_streamed_peak_memory_does_not_grow_with_the_output():
    """32× the output rows: the in-memory tiler's peak grows by (at least) the extra SR buffers,
    the streamed one (PNG written as it goes, AdaIN on) by a fraction of that (allocator noise
    is a few tens of MB)."""
    run = subprocess.run([sys.executable, "-c", PEAKS, os.path.dirname(__file__)], capture_output=True,
                         text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    peaks = json.loads(run.stdout.strip().splitlines()[-1])
    extra_output = 3 * 4 * (2048 - 64) * 4 * 1024  # float32 SR pixels added by the taller image (97 MB)
    assert peaks["memory_2048"] - peaks["memory_64"] > extra_output  # the measure sees whole buffers
    assert peaks["stream_2048"] - peaks["stream_64"] < 0.3 * extra_output
    assert peaks["stream_2048"] < 0.2 * peaks["memory_2048"]
