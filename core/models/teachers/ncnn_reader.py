"""Read an ncnn model (`.param` text graph + `.bin` weights) into layers and torch tensors.

Written by hand: no maintained Python library reads ncnn files into PyTorch (the `ncnn` wheel
only runs them). It covers what the Real-ESRGAN files use — Convolution (fp16-tagged or fp32
weights, fp32 bias) and PReLU (fp32 slopes) carry weights; every other layer is structure.
Format: https://github.com/Tencent/ncnn/wiki/param-and-model-file-structure
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...errors import UserError

_MAGIC = 7767517
_TAG_FP16 = 0x01306B47
_TAG_FP32 = 0x00000000


@dataclass
class NcnnLayer:
    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, int | float | list[float]]
    weights: dict[str, torch.Tensor] = field(default_factory=dict)


def _number(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def _parse_params(tokens: list[str], where: str) -> dict[int, int | float | list[float]]:
    params: dict[int, int | float | list[float]] = {}
    for tok in tokens:
        key, sep, value = tok.partition("=")
        if not sep:
            raise UserError(f"{where}: malformed parameter {tok!r}")
        k = int(key)
        if k <= -23300:  # array parameter: id -23300-i, value "count,v1,v2,..."
            items = value.split(",")
            params[-23300 - k] = [float(v) for v in items[1:]]
        else:
            params[k] = _number(value)
    return params


def read_param(path: str | os.PathLike) -> list[NcnnLayer]:
    """Parse an ncnn `.param` file into its layers, in file order."""
    path = Path(path)
    try:
        lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read ncnn param file {path}: {e}") from None
    if len(lines) < 2 or lines[0] != [str(_MAGIC)]:
        raise UserError(f"{path} is not an ncnn param file (magic {_MAGIC} missing)")
    layer_count = int(lines[1][0])
    layers = []
    for i, tok in enumerate(lines[2:], start=3):
        where = f"{path}:{i}"
        try:
            n_in, n_out = int(tok[2]), int(tok[3])
            names = tok[4 : 4 + n_in + n_out]
            if len(names) != n_in + n_out:
                raise ValueError
        except (IndexError, ValueError):
            raise UserError(f"{where}: malformed layer line") from None
        layers.append(
            NcnnLayer(tok[0], tok[1], names[:n_in], names[n_in:], _parse_params(tok[4 + n_in + n_out :], where))
        )
    if len(layers) != layer_count:
        raise UserError(f"{path}: header says {layer_count} layers, found {len(layers)}")
    return layers


class _BinReader:
    def __init__(self, path: Path):
        self.path = path
        self.data = path.read_bytes()
        self.pos = 0

    def _take(self, nbytes: int) -> bytes:
        if self.pos + nbytes > len(self.data):
            raise UserError(f"{self.path} is truncated (needs more weights than it holds)")
        chunk = self.data[self.pos : self.pos + nbytes]
        self.pos += nbytes
        return chunk

    def raw_fp32(self, count: int) -> np.ndarray:
        return np.frombuffer(self._take(4 * count), dtype="<f4").copy()

    def tagged(self, count: int) -> np.ndarray:
        """Weights preceded by a 4-byte type tag (fp16 or fp32; 4-byte aligned)."""
        (tag,) = struct.unpack("<I", self._take(4))
        if tag == _TAG_FP16:
            out = np.frombuffer(self._take(2 * count), dtype="<f2").astype(np.float32)
            self._take((-2 * count) % 4)
            return out
        if tag == _TAG_FP32:
            return self.raw_fp32(count)
        raise UserError(f"{self.path}: unsupported weight storage tag 0x{tag:08x} (quantized ncnn models are not read)")


def read_ncnn(param_path: str | os.PathLike, bin_path: str | os.PathLike) -> list[NcnnLayer]:
    """Parse the graph and attach each weighted layer's tensors (`weight`, `bias`, `slope`)."""
    layers = read_param(param_path)
    bin_path = Path(bin_path)
    if not bin_path.is_file():
        raise UserError(f"ncnn weights not found: {bin_path}")
    reader = _BinReader(bin_path)
    for layer in layers:
        if layer.type == "Convolution":
            out_ch = int(layer.params[0])
            k = int(layer.params[1])
            size = int(layer.params[6])
            in_ch = size // (out_ch * k * k)
            if in_ch * out_ch * k * k != size:
                raise UserError(f"{layer.name}: weight size {size} does not fit {out_ch}x?x{k}x{k}")
            layer.weights["weight"] = torch.from_numpy(reader.tagged(size)).reshape(out_ch, in_ch, k, k)
            if int(layer.params.get(5, 0)):
                layer.weights["bias"] = torch.from_numpy(reader.raw_fp32(out_ch))
        elif layer.type == "PReLU":
            layer.weights["slope"] = torch.from_numpy(reader.raw_fp32(int(layer.params.get(0, 1))))
        elif layer.type not in _STRUCTURAL:
            raise UserError(f"{param_path}: layer type {layer.type} is not supported by this reader")
    if reader.pos != len(reader.data):
        raise UserError(f"{bin_path}: {len(reader.data) - reader.pos} bytes left over (weights do not match the graph)")
    return layers


_STRUCTURAL = {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "PixelShuffle"}
