"""Reading the ResShift / TAD-SR releases' `.pth` checkpoints (ResShift's UNet, the VQGAN-f4) and
loading them strictly, with one-line UserErrors for files that are missing, unreadable or do not fit."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from ..errors import UserError


def read_release_state(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    """A state dict from a ResShift / TAD-SR release `.pth` (tensors only, `weights_only=True`).

    The releases save either the bare state dict (EMA weights) or a training checkpoint holding it
    under `state_dict`; trained under DDP or `torch.compile` its keys start `module.` /
    `_orig_mod.`, which the release's `reload_model` strips too."""
    if not os.path.isfile(path):
        raise UserError(f"{what} checkpoint not found: {path}")
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        raise UserError(f"cannot read {what} checkpoint {path}: {str(e).strip().splitlines()[0][:200]}") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path} is not a {what} checkpoint (no state dict of tensors)")
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in obj.items()}


def fit_state(model: nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike, what: str) -> None:
    """Load `state` into `model` with strict=True, or a one-line UserError naming the first misfit."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        first = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        raise UserError(f"{path} does not fit the {what}: {len(missing)} missing key(s), {len(extra)} unexpected; "
                        f"first {first}")
    bad = next((k for k in expected if state[k].shape != expected[k].shape), None)
    if bad is not None:
        raise UserError(f"{path} does not fit the {what}: {bad} has shape {tuple(state[bad].shape)}, "
                        f"the model's is {tuple(expected[bad].shape)} (another preset?)")
    model.load_state_dict(state, strict=True)
