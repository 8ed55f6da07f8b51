"""Parameter and MAC counting that works on the meta device (no weights needed).

MACs come from `torch.utils.flop_counter.FlopCounterMode`, which counts convolutions, linear
layers / matmuls, bmm and the attention kernels; MACs = FLOPs / 2. Norms and activations are
not counted (as in the papers' figures).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode


def count_params(module: nn.Module) -> int:
    """Number of parameters (shared parameters counted once)."""
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


_ATTENTION_OPS = ("bmm", "baddbmm", "scaled_dot_product")


def macs_breakdown(module: nn.Module | Callable[..., Any], *inputs: Any, **kwargs: Any) -> dict[str, int]:
    """MACs of one call, split into `conv`, `linear` (mm/addmm) and `attention` (bmm / SDPA)."""
    # the math backend decomposes attention into bmm everywhere; fused CPU kernels are not counted
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        module(*inputs, **kwargs)
    out = {"conv": 0, "linear": 0, "attention": 0}
    for op, flops in counter.get_flop_counts().get("Global", {}).items():
        name = str(op)
        kind = "conv" if "convolution" in name else "attention" if any(a in name for a in _ATTENTION_OPS) else "linear"
        out[kind] += flops // 2
    return out


def count_macs(module: nn.Module | Callable[..., Any], *inputs: Any, attention: bool = True) -> int:
    """Multiply-accumulates of one call `module(*inputs)`.

    `attention=False` leaves out the attention matmuls (QK^T, AV), as module-hook counters such
    as thop do: that is the convention behind AdcSR's published ≈495 GMACs.
    """
    b = macs_breakdown(module, *inputs)
    return b["conv"] + b["linear"] + (b["attention"] if attention else 0)
