"""The CPU backends a model can run on, one definition for `adcsr bench` and `adcsr upscale --student`.

Each backend turns a PyTorch model (LR batch → SR batch) into a callable at a static LR tile and
says which form it runs and at which precision:

- `torch`: eager fp32, the reference every parity figure is measured against;
- `torch-channels-last`: eager fp32 on NHWC tensors (oneDNN's preferred convolution layout);
- `torch-compile`: inductor with frozen weights (PyTorch's CPU inference setting);
- `torch-bf16`: eager under CPU bf16 autocast (oneDNN's AVX-512 BF16 convolutions and matmuls);
- `torch-compile-bf16`: the same autocast region compiled by inductor with frozen weights: the
  weight casts fold into bf16 constants and the pointwise work around the convolutions (GroupNorm,
  SiLU, residual adds, the casts themselves) fuses into generated kernels;
- `onnxruntime`: the fp32 ONNX `adcsr export` ships (a student in its deploy form);
- `onnxruntime-int8`: that ONNX quantized to int8 QDQ for the CPU (`export.quantize_int8_cpu`),
  calibrated on training-photo tiles.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from adcsr.core.errors import UserError

Run = Callable[[torch.Tensor], torch.Tensor]
CALIBRATION_TILES = 8
MIN_COMPILED_DB = 35.0  # a compiled graph agrees with its own eager run at least this well (bf16 ≈ 40–50 dB)


@dataclass(frozen=True)
class Backend:
    name: str
    precision: str  # fp32 | bf16 | int8: the compute precision (the roofline's peak)
    form: str  # what runs, as the bench table states it
    prepare: Callable[[nn.Module, torch.Tensor, Path], Run]  # (model, example LR tile, scratch folder)


def _eager(model: nn.Module) -> Run:
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x).float()

    return run


def _torch(model: nn.Module, example: torch.Tensor, folder: Path) -> Run:
    return _eager(model)


def _channels_last(model: nn.Module, example: torch.Tensor, folder: Path) -> Run:
    """On a copy of the model: the benchmarked one keeps its layout."""
    run = _eager(copy.deepcopy(model).to(memory_format=torch.channels_last))
    return lambda x: run(x.contiguous(memory_format=torch.channels_last)).contiguous()


def _compiled(model: nn.Module, example: torch.Tensor, folder: Path) -> Run:
    """Weights folded into the graph as constants, convolutions pre-packed for oneDNN; compiled
    here on `example`, so the compile time is never timed."""
    return _compile(model, example)


def bf16_kernels() -> bool:
    """Whether oneDNN has bf16 kernels on this CPU (it needs AVX-512 or AMX). Without them PyTorch
    runs bf16 convolutions and matmuls in reference code, tens of times slower than fp32 (an AVX2
    EPYC: a 320-channel 3×3 convolution 70×, a 1024² matmul 44×), so the bf16 backends refuse."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _require_bf16_kernels() -> None:
    if not bf16_kernels():
        raise UserError(f"the bf16 backends need a CPU with AVX-512 or AMX (this one dispatches to "
                        f"{torch.backends.cpu.get_cpu_capability()}: bf16 would run tens of times slower than fp32); "
                        "use torch, torch-compile or onnxruntime")


def _compiled_bf16(model: nn.Module, example: torch.Tensor, folder: Path) -> Run:
    _require_bf16_kernels()

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return model(x)

    return _compile(forward, example)


def _compile(fn: Callable[[torch.Tensor], torch.Tensor], example: torch.Tensor) -> Run:
    """`fn` through inductor, checked against itself in eager on `example`. Freezing miscompiles
    some graphs (torch 2.13: Real-ESRGAN x4plus's RRDB net comes out at 5 dB); such a graph is
    compiled again without it, and the fallback is said on stderr. (Freezing must be patched into
    inductor's config around the first call: `torch.compile(options={"freezing": True})` leaves
    the weights live. The retry resets dynamo's cache, so a model compiled earlier in the process
    recompiles, unfrozen, at its next call.)"""
    import sys

    import torch._inductor.config as inductor_config

    from adcsr.core.metrics.fidelity import parity_psnr

    with torch.inference_mode():
        expected = fn(example).float().clamp(0, 1)
    for freezing in (True, False):
        if not freezing:
            torch._dynamo.reset()
        compiled = torch.compile(fn)
        try:
            with inductor_config.patch(freezing=freezing), torch.inference_mode():
                db = parity_psnr(expected, compiled(example).float().clamp(0, 1))
        except (torch._dynamo.exc.BackendCompilerFailed, torch._inductor.exc.InductorError) as e:
            raise UserError(f"torch-compile backend: inductor could not compile (it needs a C++ compiler): "
                            f"{str(e).splitlines()[0]}") from None
        if db >= MIN_COMPILED_DB:
            return _eager(compiled)
        print(f"adcsr: inductor's {'frozen-weight ' if freezing else ''}graph differs from eager ({db:.1f} dB)"
              + ("; compiling without freezing" if freezing else ""), file=sys.stderr)
    raise UserError(f"torch-compile backend: inductor's output differs from eager ({db:.1f} dB) with and without freezing")


def _bf16(model: nn.Module, example: torch.Tensor, folder: Path) -> Run:
    """Autocast keeps the fp32 weights and casts per op (norms and softmax stay fp32, as PyTorch's
    CPU autocast lists them): any model runs, teachers with their own dtype logic included."""
    _require_bf16_kernels()

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model(x).float()

    return run


def _session(path: Path) -> Run:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:  # the ONNX has a static batch of one tile
        return torch.cat([torch.from_numpy(session.run(None, {name: t[None].numpy()})[0]) for t in x])

    return run


def _static_tile(example: torch.Tensor) -> int:
    if example.shape[-1] != example.shape[-2]:
        raise UserError(f"the onnxruntime backends run a square static tile, got {tuple(example.shape[-2:])}")
    return example.shape[-1]


def _onnxruntime(model: nn.Module, example: torch.Tensor, folder: Path) -> Run:
    from adcsr.export import shipped_onnx

    return _session(shipped_onnx(model, _static_tile(example), folder / f"{id(model)}_fp32.onnx"))


def _onnxruntime_int8(model: nn.Module, example: torch.Tensor, folder: Path) -> Run:
    from adcsr.export import lr_tiles, quantize_int8_cpu, shipped_onnx

    tile = _static_tile(example)
    fp32 = shipped_onnx(model, tile, folder / f"{id(model)}_fp32.onnx")
    int8 = folder / f"{id(model)}_int8.onnx"
    quantize_int8_cpu(fp32, int8, lr_tiles("train", tile, CALIBRATION_TILES).numpy())
    return _session(int8)


BACKENDS = {b.name: b for b in (
    Backend("torch", "fp32", "PyTorch eager fp32 (the reference)", _torch),
    Backend("torch-channels-last", "fp32", "PyTorch eager fp32, NHWC", _channels_last),
    Backend("torch-compile", "fp32", "inductor, frozen weights, fp32", _compiled),
    Backend("torch-bf16", "bf16", "PyTorch eager, CPU bf16 autocast", _bf16),
    Backend("torch-compile-bf16", "bf16", "inductor, frozen weights, CPU bf16 autocast", _compiled_bf16),
    Backend("onnxruntime", "fp32", "the shipped fp32 ONNX (deploy form, static tile)", _onnxruntime),
    Backend("onnxruntime-int8", "int8", "the shipped ONNX as int8 QDQ (calibrated on training tiles)",
            _onnxruntime_int8),
)}


def backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")
    return BACKENDS[name]
