"""Start a randomly initialised network with every residual branch at zero.

Without SD weights the embedded default compresses a randomly initialised UNet, so the UNet of
its student carries nothing learned. Zeroing the last layer of each residual branch (the
"zero-init residual" of Goyal et al. 2017, as ControlNet and DiT do for their new blocks) makes
each resnet and attention block start as the identity: signals and gradients reach every level
unscaled, which in short CPU runs measured faster and steadier training than diffusers' default
initialisation. Written here because diffusers offers no such initialiser.
"""

from __future__ import annotations

from diffusers.models.attention_processor import Attention
from diffusers.models.resnet import ResnetBlock2D
from torch import nn


def zero_residual_branches(model: nn.Module) -> int:
    """Zero the output layer of every resnet, attention and transformer branch; returns how many."""
    count = 0
    for module in model.modules():
        if isinstance(module, ResnetBlock2D):
            layer = module.conv2
        elif isinstance(module, Attention):
            layer = module.to_out[0]
        elif hasattr(module, "transformer_blocks") and isinstance(getattr(module, "proj_out", None), nn.Linear):
            layer = module.proj_out
        else:
            continue
        nn.init.zeros_(layer.weight)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
        count += 1
    return count
