"""Weights of learned metrics come only from explicit local files: safetensors, or a .pth/.pt read
with `torch.load(weights_only=True)`. Nothing is downloaded; a missing or mismatched file is a
one-line `UserError` that says what to fetch.

A metric may need several published files (e.g. LPIPS = torchvision's VGG16 backbone + the LPIPS
linear heads); their state dicts are merged. `save_weights` writes one safetensors file holding
everything, which loads back on its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import nn

from ..atomic import atomic_path
from ..errors import UserError

WeightsArg = str | os.PathLike | Sequence[str | os.PathLike]


def weight_paths(weights: WeightsArg | None) -> list[Path]:
    if weights is None:
        return []
    if isinstance(weights, (str, os.PathLike)):
        return [Path(weights)]
    return [Path(p) for p in weights]


def require_file(path: Path, fetch: str) -> None:
    if not path.is_file():
        raise UserError(f"weights file {path} not found: {fetch}")


def read_state_dict(path: str | os.PathLike, fetch: str) -> dict[str, torch.Tensor]:
    """Tensors of one weights file (safetensors or a tensors-only torch pickle)."""
    path = Path(path)
    require_file(path, fetch)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any reader failure means an unusable file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"cannot read weights file {path}: {first}") from None
    if isinstance(state, dict) and set(state) == {"state_dict"}:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"weights file {path} does not hold a flat dict of tensors")
    return state


def load_weights(
    module: nn.Module,
    weights: WeightsArg | None,
    *,
    fetch: str,
    ignore: Iterable[str] = (),
) -> nn.Module:
    """Fill `module` from the merged state dicts of `weights`; every parameter and buffer must be covered.

    `ignore`: key prefixes of published files that this module does not use (e.g. a classifier).
    """
    paths = weight_paths(weights)
    if not paths:
        raise UserError(f"{type(module).__name__} needs weights from a local file: {fetch}")
    state: dict[str, torch.Tensor] = {}
    for p in paths:
        state.update(read_state_dict(p, fetch))
    ignore = tuple(ignore)
    state = {k: v for k, v in state.items() if not k.startswith(ignore)}
    own = module.state_dict()
    names = ", ".join(str(p) for p in paths)
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        n = len(missing) + len(unexpected)
        raise UserError(f"{names} does not match {type(module).__name__} ({what}, {n} key(s) off): {fetch}")
    for k, v in state.items():
        if v.shape != own[k].shape:
            raise UserError(
                f"{names} does not match {type(module).__name__}: {k} is {tuple(v.shape)}, "
                f"expected {tuple(own[k].shape)}"
            )
    module.load_state_dict(state, strict=False)
    return module


def save_weights(module: nn.Module, path: str | os.PathLike) -> Path:
    """Write the module's full state dict as one safetensors file (atomically)."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise UserError(f"weights are saved as .safetensors, got {path.name}")
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))
    return path
