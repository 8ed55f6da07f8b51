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


def cuda_variants(model: nn.Module, lr: torch.Tensor) -> dict[str, Callable[[], Any]]:
    """fp32 / fp16 / bf16 / channels-last / torch.compile variants on the GPU."""
    variants: dict[str, Callable[[], Any]] = {}
    x = lr.cuda()
    for name, dtype, channels_last, compiled in (
        ("fp32", torch.float32, False, False),
        ("fp16", torch.float16, False, False),
        ("bf16", torch.bfloat16, False, False),
        ("fp16 channels-last", torch.float16, True, False),
        ("fp16 torch.compile", torch.float16, False, True),
    ):
        m = copy.deepcopy(model).to("cuda", dtype)  # a teacher places its prompt embeddings too
        xi = x.to(dtype)
        if channels_last:
            m, xi = m.to(memory_format=torch.channels_last), xi.to(memory_format=torch.channels_last)
        fn = torch.compile(m) if compiled else m

        def run(fn=fn, xi=xi):
            with torch.inference_mode():
                return fn(xi)

        variants[name] = run
    return variants
