"""Nested training state (optimizer/scheduler/scaler/RNG state dicts) as safetensors + JSON.

Optimizer state dicts mix tensors with ints, floats, tuples and int-keyed dicts. The tensors go
to one safetensors file; the structure goes to JSON with each tensor replaced by a reference, so a
checkpoint never needs pickle (written by hand: safetensors only stores flat tensor dicts).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

_TENSOR, _TUPLE, _DICT = "__tensor__", "__tuple__", "__dict__"


def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = obj.detach().cpu().clone().contiguous()
        return {_TENSOR: key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _encode(v, tensors) for k, v in obj.items()}
        return {_DICT: [[_encode(k, tensors), _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {_TUPLE: [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "tolist"):  # numpy arrays/scalars inside numpy's RNG state
        return obj.tolist()
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if _TENSOR in obj:
            return tensors[obj[_TENSOR]]
        if _TUPLE in obj:
            return tuple(_decode(v, tensors) for v in obj[_TUPLE])
        if _DICT in obj:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in obj[_DICT]}
        return {k: _decode(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    return obj


def save_state(state: Any, folder: Path, name: str) -> list[Path]:
    """Write `state` as `<name>.json` + `<name>.safetensors` in `folder`; return the paths."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _encode(state, tensors)
    js, st = folder / f"{name}.json", folder / f"{name}.safetensors"
    js.write_text(json.dumps(skeleton))
    save_file(tensors, str(st))
    return [js, st]


def load_state(folder: Path, name: str) -> Any:
    tensors = load_file(str(folder / f"{name}.safetensors"))
    return _decode(json.loads((folder / f"{name}.json").read_text()), tensors)
