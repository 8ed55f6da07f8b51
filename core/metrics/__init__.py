"""Image-quality metrics: fidelity on MATLAB luma (PSNR, SSIM), NIQE, and learned metrics.

Learned metrics (LPIPS, DISTS, EA-DISTS, FID; the no-reference CLIPIQA, MUSIQ, MANIQA) are defined
here and load their weights only from explicit local files: `load_metric(name, weights=path_or_paths)`.
`build_metric(name)` gives the randomly initialised network (tests, conversions), `save_weights(model,
path)` writes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import torch

from ..errors import UserError
from .base import LearnedMetric
from .clipiqa import CLIPIQA
from .dists import DISTS, EADISTS
from .fid import FID
from .fidelity import mean_psnr_y, psnr_y, rgb_to_y, ssim_y
from .lpips import LPIPS
from .lpips import fetch_hint as lpips_fetch
from .maniqa import MANIQA
from .musiq import MUSIQ
from .niqe import niqe
from .weights import WeightsArg, load_weights, require_file, save_weights, weight_paths


@dataclass(frozen=True)
class MetricSpec:
    """A learned metric: how to build its (randomly initialised) network and what weights it needs."""

    build: Callable[[], LearnedMetric]
    fetch: str
    needs_ref: bool = True  # False: scores one image batch, `model(sr)`


METRICS: dict[str, MetricSpec] = {
    "lpips": MetricSpec(lambda: LPIPS("vgg"), lpips_fetch("vgg")),
    "lpips-alex": MetricSpec(lambda: LPIPS("alex"), lpips_fetch("alex")),
    "dists": MetricSpec(DISTS, DISTS.fetch),
    "ea-dists": MetricSpec(EADISTS, EADISTS.fetch),
    "fid": MetricSpec(FID, FID.fetch),
    "clipiqa": MetricSpec(CLIPIQA, CLIPIQA.fetch, needs_ref=False),
    "musiq": MetricSpec(MUSIQ, MUSIQ.fetch, needs_ref=False),
    "maniqa": MetricSpec(MANIQA, MANIQA.fetch, needs_ref=False),
}
# Metrics that need no weights: name → (callable, takes a reference image).
FIXED_METRICS: dict[str, tuple[Callable, bool]] = {
    "psnr_y": (psnr_y, True),
    "ssim_y": (ssim_y, True),
    "niqe": (niqe, False),
}


def build_metric(name: str) -> LearnedMetric:
    """The network of a learned metric with random weights (to be filled by `load_weights`)."""
    if name not in METRICS:
        raise UserError(f"unknown learned metric '{name}' (choose from {', '.join(METRICS)})")
    return METRICS[name].build()


def load_metric(name: str, weights: WeightsArg | None = None) -> LearnedMetric:
    """A frozen, eval-mode learned metric with weights from the given local file(s)."""
    if name in METRICS:  # file checks first: building a network takes a while
        if not weights:
            raise UserError(f"{name} needs weights from a local file: {METRICS[name].fetch}")
        for path in weight_paths(weights):
            require_file(path, METRICS[name].fetch)
    model = build_metric(name)
    return load_weights(model, weights, fetch=model.fetch, ignore=model.ignore_keys)


def lpips_model(weights: WeightsArg) -> LearnedMetric:
    """LPIPS (VGG) as a differentiable loss: `model(a, b)` → mean over the batch."""
    return load_metric("lpips", weights)


def evaluate(
    sr: torch.Tensor,
    hr: torch.Tensor | None,
    names: Iterable[str],
    weights: Mapping[str, WeightsArg] | None = None,
    crop_border: int = 4,
) -> dict[str, float]:
    """Mean of each named metric over the NCHW [0, 1] batch `sr` (against `hr` where it needs one)."""
    weights = dict(weights or {})
    out: dict[str, float] = {}
    for name in names:
        if name in FIXED_METRICS:
            fn, needs_ref = FIXED_METRICS[name]
            if needs_ref and hr is None:
                raise UserError(f"{name} needs reference (HR) images")
            val = fn(sr, hr, crop_border=crop_border) if needs_ref else fn(sr)
            out[name] = float(torch.as_tensor(val).double().mean())
        elif name in METRICS:
            needs_ref = METRICS[name].needs_ref
            if needs_ref and hr is None:
                raise UserError(f"{name} needs reference (HR) images")
            model = load_metric(name, weights.get(name))
            with torch.no_grad():
                out[name] = float(model(sr, hr) if needs_ref else model(sr))
        else:
            raise UserError(f"unknown metric '{name}' (choose from {', '.join([*FIXED_METRICS, *METRICS])})")
    return out


__all__ = [
    "METRICS", "MetricSpec", "FIXED_METRICS", "LearnedMetric", "build_metric", "evaluate", "load_metric", "load_weights",
    "lpips_model", "mean_psnr_y", "niqe", "psnr_y", "rgb_to_y", "save_weights", "ssim_y",
]
