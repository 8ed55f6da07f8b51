"""Tiled upscaling: same result as one pass, no seam grid, any size, bounded work per call."""

import math
import os

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from adcsr.core.colorfix import adain_color_fix
from adcsr.core.errors import UserError
from adcsr.core.photos import load_photo
from adcsr.core.tiling import axis_window, tile_starts, tiled_upscale


class SmallSR(nn.Module):
    """A fixed random conv net on top of bicubic ×4: non-trivial, with a 5×5 LR receptive field."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 48, 3, padding=1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)

    def forward(self, x):
        up = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
        return up + 0.2 * F.pixel_shuffle(self.c2(torch.relu(self.c1(x))), 4)


def psnr(a, b):
    return 10 * math.log10(1.0 / F.mse_loss(a.clamp(0, 1), b.clamp(0, 1)).item())


@pytest.fixture(scope="module")
def photo():
    return load_photo("chelsea")[None, :, :96, :128]  # a real photo, small enough to run whole


def test_tiled_matches_whole_image(photo):
    model = SmallSR().eval()
    with torch.no_grad():
        whole = model(photo).clamp(0, 1)
    tiled = tiled_upscale(model, photo, tile=48, overlap=16)
    assert tiled.shape == whole.shape
    assert psnr(tiled, whole) > 40.0  # far stricter than the 0.5 dB the design allows
    assert not torch.allclose(whole, F.interpolate(photo, scale_factor=4, mode="bicubic"), atol=1e-2)


def tile_dependent(x):
    """A model whose colour drifts with each tile's content, as diffusion tiles do."""
    up = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
    return up + 0.3 * (x.mean(dim=(2, 3), keepdim=True) - 0.5)


def cut_and_mean_gradient(x, starts, tile, scale=4):
    """Mean |horizontal gradient| across the SR columns where tiles start or end, and everywhere."""
    grad = (x[..., 1:] - x[..., :-1]).abs().mean(dim=(0, 1, 2))
    cuts = sorted({s * scale - 1 for s in starts[1:]} | {(s + tile) * scale - 1 for s in starts[:-1]})
    return grad[cuts].mean().item(), grad.mean().item()


@pytest.mark.parametrize("overlap,seams", [(16, False), (0, True)])
def test_no_seam_grid(photo, overlap, seams):
    """Across tile borders the result is no steeper than the untiled result there, and the part
    tiling adds (tiled − whole) is no steeper at the borders than elsewhere. Hard cuts (no
    overlap) must fail both, so the measure can see seams."""
    whole = tile_dependent(photo).clamp(0, 1)
    for t in (photo, photo.transpose(-1, -2)):  # columns, then rows
        sr = tiled_upscale(tile_dependent, t, tile=32, overlap=overlap)
        ref = whole if t is photo else whole.transpose(-1, -2)
        starts = tile_starts(t.shape[-1], 32, overlap)
        sr_cut, _ = cut_and_mean_gradient(sr, starts, 32)
        ref_cut, _ = cut_and_mean_gradient(ref, starts, 32)
        res_cut, res_mean = cut_and_mean_gradient(sr - ref, starts, 32)
        if seams:
            assert sr_cut > 1.2 * ref_cut and res_cut > 3 * res_mean
        else:
            assert sr_cut <= 1.01 * ref_cut and res_cut <= res_mean


@pytest.mark.parametrize("size", [(37, 53), (5, 7), (1, 1), (64, 130)])
def test_any_size_and_stride(size):
    lr = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1))
    seen = []

    def model(x):
        seen.append(tuple(x.shape))
        assert x.shape[-1] % 8 == 0 and x.shape[-2] % 8 == 0  # the stride is respected
        return F.interpolate(x, scale_factor=4, mode="nearest")

    sr = tiled_upscale(model, lr, tile=32, overlap=8, multiple=8, batch_size=2)
    assert sr.shape == (1, 3, size[0] * 4, size[1] * 4)
    # nearest ×4 is exact under tiling: every SR pixel is its LR pixel
    assert torch.allclose(sr, F.interpolate(lr, scale_factor=4, mode="nearest"), atol=1e-6)
    # bounded work per call: at most batch_size tiles of at most tile×tile, whatever the image
    assert all(s[0] <= 2 and s[2] <= 32 and s[3] <= 32 for s in seen)


def test_colour_fix_once_per_image(photo):
    calls = []

    def fix(sr, lr):
        calls.append((tuple(sr.shape), tuple(lr.shape)))
        return adain_color_fix(sr, lr)

    def cast(x):  # a global colour cast the fix must undo
        up = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
        return up * torch.tensor([0.7, 1.0, 1.1]).view(1, 3, 1, 1) + 0.05

    batch = torch.cat([photo, photo.flip(-1)])
    sr = tiled_upscale(cast, batch, tile=32, overlap=8, color_fix=fix)
    assert calls == [((1, 3, 384, 512), (1, 3, 96, 128))] * 2
    unfixed = tiled_upscale(cast, batch, tile=32, overlap=8)
    assert torch.allclose(sr, adain_color_fix(unfixed, batch).clamp(0, 1), atol=1e-5)
    named = tiled_upscale(cast, batch, tile=32, overlap=8, color_fix="adain")
    assert torch.equal(named, sr)
    ref = F.interpolate(batch, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    assert psnr(sr, ref) > psnr(unfixed, ref) + 5


def test_windows_sum_to_one():
    starts = tile_starts(100, 32, 12)
    total = torch.zeros(400)
    for i, s in enumerate(starts):
        total[s * 4:(s + 32) * 4] += axis_window(starts, i, 32, 4, "cosine")
    assert torch.allclose(total, torch.ones(400), atol=1e-5)
    assert starts[0] == 0 and starts[-1] == 100 - 32
    overlaps = [a + 32 - b for a, b in zip(starts, starts[1:])]
    assert min(overlaps) >= 12 and max(overlaps) - min(overlaps) <= 1


def test_bad_arguments():
    lr = torch.rand(1, 3, 16, 16)
    up = lambda x: F.interpolate(x, scale_factor=4)  # noqa: E731
    with pytest.raises(UserError, match="multiple"):
        tiled_upscale(up, lr, tile=30, multiple=8)
    with pytest.raises(UserError, match="overlap"):
        tiled_upscale(up, lr, tile=32, overlap=32)
    with pytest.raises(UserError, match="expected ×2"):
        tiled_upscale(up, lr, scale=2)
    with pytest.raises(UserError, match="N×3×H×W"):
        tiled_upscale(up, lr[0])
    with pytest.raises(UserError, match="colour fix"):
        tiled_upscale(up, lr, color_fix="magic")


def _status_bytes(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))


def peak_growth(fn):
    """How far the process's peak resident memory rises above its current size while fn runs."""
    base = _status_bytes("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS
    out = fn()
    grown = _status_bytes("VmHWM") - base
    del out
    return grown


def _measure_peaks() -> tuple[int, int, int]:
    """(tiled peak growth, whole-image peak growth, output buffer bytes), in a fresh process."""
    net = nn.Sequential(nn.Conv2d(3, 16, 1), nn.ReLU(), nn.Conv2d(16, 3, 1))

    @torch.no_grad()
    def wide(x):  # 16 channels at SR resolution: whole-image activations dwarf the output
        return net(F.interpolate(x, scale_factor=4, mode="nearest"))

    lr = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    tiled_upscale(wide, lr[..., :64, :64], tile=32, overlap=8)  # warm-up: thread pools, allocator
    buffers = 7 * 4 * (256 * 4) ** 2  # result (3) + accumulator (3) + weights (1), float32
    # the smaller of two passes: a first-touch page or an allocator arena of the first pass is not
    # the tiler's memory (one pass once measured 22 MB over under a busy 2-core machine)
    grown = min(peak_growth(lambda: tiled_upscale(wide, lr, tile=32, overlap=8)) for _ in range(2))
    return grown, peak_growth(lambda: wide(lr)), buffers


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux /proc peak-RSS reset")
def test_peak_memory_is_the_output_buffers_plus_one_batch():
    # a fresh process: in a long test session the allocator reuses freed memory and hides peaks
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        grown, whole, buffers = pool.apply(_measure_peaks)
    assert grown < buffers + 20e6
    assert whole > buffers + 40e6  # the measure would see a whole-image pass
