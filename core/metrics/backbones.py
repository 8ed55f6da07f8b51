"""ImageNet classifier trunks used by LPIPS and DISTS, laid out like torchvision's `features`.

Written here because torchvision cannot be installed (it pulls a CUDA torch). Layer indices match
torchvision's, so its published `vgg16-397923af.pth` / `alexnet-owt-7be5be79.pth` files load
as they are (their `classifier.*` keys are ignored by the metrics).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

# VGG16 configuration "D": channels per conv, "M" for a pooling layer.
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
TORCHVISION_VGG16 = "https://download.pytorch.org/models/vgg16-397923af.pth"
TORCHVISION_ALEXNET = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"


def vgg16_features(pool: Callable[[int], nn.Module] | None = None) -> nn.Sequential:
    """torchvision's `vgg16().features`; `pool(channels)` replaces each max-pool when given."""
    layers: list[nn.Module] = []
    c = 3
    for v in _VGG16:
        if v == "M":
            layers.append(pool(c) if pool else nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=False)]
            c = v
    return nn.Sequential(*layers)


def alexnet_features() -> nn.Sequential:
    """torchvision's `alexnet().features`."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(3, 2),
    )
