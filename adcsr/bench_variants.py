"""Where and how the bench runs a model besides in this process: in a fresh interpreter (so what a
run allocates is gone after it, and its peak memory is its own) and in the GPU variants."""

from __future__ import annotations

import copy
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

import torch
from torch import nn


def vm_hwm() -> int:
    """This process's peak resident set (VmHWM, bytes). Unlike ru_maxrss it restarts at exec, so a
    spawned child does not inherit its parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def in_fresh_process(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` in a newly spawned interpreter; its result, or its exception re-raised here. What
    the call allocated (weights, compiled code, sessions) is gone when it returns."""
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        try:
            return pool.submit(fn, *args).result()
        except BrokenProcessPool:
            raise RuntimeError(f"{fn.__name__}{args} died (out of memory?)") from None


GPU_VARIANTS = {  # name: (dtype, channels_last, compiled)
    "fp32": (torch.float32, False, False),
    "fp16": (torch.float16, False, False),
    "bf16": (torch.bfloat16, False, False),
    "fp16 channels-last": (torch.float16, True, False),
    "fp16 torch.compile": (torch.float16, False, True),
}


def gpu_variant(model: nn.Module, lr: torch.Tensor, name: str, device: str = "cuda") -> Callable[[], Any]:
    """A call of a copy of `model` as `GPU_VARIANTS[name]` says; on the CPU (a dry run of the
    plumbing) in fp32, since the teachers run fp16/bf16 on CUDA only."""
    dtype, channels_last, compiled = GPU_VARIANTS[name]
    if device == "cpu":
        dtype = torch.float32
    m = copy.deepcopy(model).to(device, dtype)  # a teacher places its prompt embeddings too
    x = lr.to(device, dtype)
    if channels_last:
        m, x = m.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    fn = torch.compile(m) if compiled else m

    def run():
        with torch.inference_mode():
            return fn(x)

    return run


def cuda_variants(model: nn.Module, lr: torch.Tensor) -> dict[str, Callable[[], Any]]:
    """Every GPU variant of `model` on CUDA."""
    return {name: gpu_variant(model, lr, name) for name in GPU_VARIANTS}
