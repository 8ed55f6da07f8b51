"""Learned metrics: random weights saved to a file, loaded through the real path, run on real photos."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from adcsr.core.errors import UserError
from adcsr.core.metrics import build_metric, evaluate, load_metric, save_weights
from adcsr.core.metrics.dists import sobel
from adcsr.core.metrics.fid import fid_from_features
from adcsr.core.photos import load_photo


def _photos(size: int, names=("chelsea", "coffee")) -> torch.Tensor:
    return torch.stack([load_photo(n)[:, :size, :size] for n in names])


def _degrade(x: torch.Tensor) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return (x + 0.1 * torch.randn(x.shape, generator=g)).clamp(0, 1)


def _saved(name: str, tmp_path) -> tuple[torch.nn.Module, str]:
    torch.manual_seed(0)
    model = build_metric(name)
    return model, str(save_weights(model, tmp_path / f"{name}.safetensors"))


@pytest.mark.parametrize(
    "name, weights_of, size",
    # EA-DISTS is DISTS applied twice: it loads the very same weights file.
    [("lpips", "lpips", 64), ("lpips-alex", "lpips-alex", 128), ("dists", "dists", 64), ("ea-dists", "dists", 64)],
)
def test_pairwise_metric_properties(name, weights_of, size, tmp_path):
    built, path = _saved(weights_of, tmp_path)
    model = load_metric(name, path)
    for k, v in built.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    x = _photos(size, ("chelsea",))
    y = _degrade(x)
    with torch.no_grad():  # one batched pass: (x, x), (x, y), (y, x)
        d = model(torch.cat([x, x, y]), torch.cat([x, y, x]), reduction="none")
    assert abs(d[0]) < 1e-5
    assert d[1] > 1e-3
    assert d[2] == pytest.approx(d[1].item(), rel=1e-4)
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


def test_lpips_is_differentiable_and_loads_from_the_published_two_file_layout(tmp_path):
    built, _ = _saved("lpips-alex", tmp_path)
    state = built.state_dict()
    backbone = {k: v for k, v in state.items() if k.startswith("features.")}
    backbone["classifier.1.weight"] = torch.zeros(4, 4)  # torchvision's file carries a classifier
    torch.save(backbone, tmp_path / "alexnet.pth")
    torch.save({k: v for k, v in state.items() if k.startswith("lin")}, tmp_path / "alex.pth")
    model = load_metric("lpips-alex", [tmp_path / "alexnet.pth", tmp_path / "alex.pth"])
    for k, v in state.items():
        assert torch.equal(model.state_dict()[k], v), k
    x = _photos(64, ("coffee",))
    y = _degrade(x).requires_grad_(True)
    model(y, x).backward()
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_fid_properties(tmp_path):
    _, path = _saved("fid", tmp_path)
    model = load_metric("fid", path)
    x = _photos(96)
    feats = model.features(torch.cat([x, _degrade(x)])).double().numpy()
    assert feats.shape == (4, 2048) and np.isfinite(feats).all() and feats.std(0).mean() > 1e-3
    fa, fb = feats[:2], feats[2:]
    same, ab, ba = fid_from_features(fa, fa), fid_from_features(fa, fb), fid_from_features(fb, fa)
    assert abs(same) < 1e-6 * ab
    assert ab > 0 and ba == pytest.approx(ab, rel=1e-6)
    with pytest.raises(UserError, match="two images"):
        model(x[:1], x)


def test_fid_low_rank_trace_equals_full_sqrtm():
    import scipy.linalg

    rng = np.random.default_rng(0)
    for n in (5, 40):  # fewer and more images than the 16 feature dimensions
        a, b = rng.standard_normal((n, 16)), 1.5 * rng.standard_normal((n + 3, 16)) + 0.2
        sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
        d = a.mean(0) - b.mean(0)
        ref = d @ d + np.trace(sa + sb - 2 * np.real(scipy.linalg.sqrtm(sa @ sb)))
        assert fid_from_features(a, b) == pytest.approx(ref, rel=1e-6)


def test_sobel_is_the_gradient_magnitude():
    ramp = torch.arange(8.0).repeat(8, 1)[None, None].repeat(1, 3, 1, 1)  # slope 1 along x
    edges = sobel(ramp)
    assert torch.allclose(edges[..., 1:-1, 1:-1], torch.full_like(edges[..., 1:-1, 1:-1], 8.0))
    assert torch.allclose(sobel(torch.full((1, 3, 5, 5), 0.3)), torch.zeros(1, 3, 5, 5), atol=1e-5)


def test_missing_weights_name_what_to_fetch(tmp_path):
    with pytest.raises(UserError, match="download.pytorch.org/models/vgg16"):
        load_metric("dists", tmp_path / "nope.pth")
    with pytest.raises(UserError, match="pt_inception"):
        load_metric("fid")
    with pytest.raises(UserError, match="unknown learned metric"):
        load_metric("brisque", tmp_path / "x.safetensors")


def test_mismatched_or_corrupt_weights_are_one_line_errors(tmp_path):
    _, alex = _saved("lpips-alex", tmp_path)
    with pytest.raises(UserError, match="does not match") as e:
        load_metric("lpips", alex)  # AlexNet file into the VGG metric
    assert "\n" not in str(e.value)
    built = build_metric("lpips-alex")
    state = built.state_dict()
    state["lin0.model.1.weight"] = torch.zeros(1, 3, 1, 1)
    save_file(state, str(tmp_path / "bad_shape.safetensors"))
    with pytest.raises(UserError, match="lin0.model.1.weight"):
        load_metric("lpips-alex", tmp_path / "bad_shape.safetensors")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read") as e:
        load_metric("lpips-alex", tmp_path / "garbage.pth")
    assert "\n" not in str(e.value)


def test_evaluate_combines_fixed_and_learned_metrics(tmp_path):
    _, path = _saved("lpips-alex", tmp_path)
    hr = _photos(96)
    sr = _degrade(hr)
    out = evaluate(sr, hr, ["psnr_y", "ssim_y", "lpips-alex"], weights={"lpips-alex": path})
    assert set(out) == {"psnr_y", "ssim_y", "lpips-alex"}
    assert 10 < out["psnr_y"] < 40 and 0 < out["ssim_y"] < 1 and out["lpips-alex"] > 0
    assert evaluate(hr, hr, ["lpips-alex"], weights={"lpips-alex": path})["lpips-alex"] == pytest.approx(0, abs=1e-6)
    with pytest.raises(UserError, match="weights"):
        evaluate(sr, hr, ["dists"])
    with pytest.raises(UserError, match="unknown metric"):
        evaluate(sr, hr, ["nope"])


@pytest.mark.parametrize(
    "name, params, key, shape",
    [
        # torchvision VGG16 features: 14,714,688 parameters; LPIPS heads add 64+128+256+512+512.
        ("lpips", 14_714_688 + 1472, "lin4.model.1.weight", (1, 512, 1, 1)),
        # torchvision AlexNet features: 2,469,696; heads add 64+192+384+256+256.
        ("lpips-alex", 2_469_696 + 1152, "features.10.weight", (256, 256, 3, 3)),
        ("dists", 14_714_688 + 2 * 1475, "alpha", (1, 1475, 1, 1)),
        # torchvision inception_v3: 27,161,264 minus the 1000-way fc and AuxLogits = 21,785,568.
        ("fid", 21_785_568, "Mixed_7c.branch_pool.conv.weight", (192, 2048, 1, 1)),
    ],
)
def test_architectures_match_the_published_networks(name, params, key, shape):
    model = build_metric(name)
    assert sum(p.numel() for p in model.parameters()) == params
    assert tuple(model.state_dict()[key].shape) == shape
