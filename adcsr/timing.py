"""Side-by-side timing: interleaved repeats, medians and ratios, peak memory in a fresh process.

Timing several models one after another lets the machine's state (turbo, other load, caches)
favour one of them; interleaving the repeats round-robin (rotating the order every round) and
comparing medians from the same run keeps the ratios honest.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable


def interleaved(runners: dict[str, Callable[[], Any]], repeats: int = 5, warmup: int = 1,
                timer: Callable[[], float] = time.perf_counter,
                progress: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Run every runner `warmup` times, then `repeats` rounds of all of them; seconds per call."""
    names = list(runners)
    for _ in range(warmup):
        for name in names:
            runners[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            start = timer()
            runners[name]()
            times[name].append(timer() - start)
            if progress:
                progress()
    return times


def summarize(times: list[float]) -> dict[str, float]:
    return {
        "median_ms": 1e3 * statistics.median(times),
        "min_ms": 1e3 * min(times),
        "max_ms": 1e3 * max(times),
        "repeats": len(times),
    }


def cuda_interleaved(runners: dict[str, Callable[[], Any]], repeats: int = 20,
                     warmup: int = 5) -> dict[str, list[float]]:
    """Like `interleaved`, timed with CUDA events (seconds), synchronising around each call."""
    import torch

    names = list(runners)
    for _ in range(warmup):
        for name in names:
            runners[name]()
    torch.cuda.synchronize()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            runners[name]()
            end.record()
            end.synchronize()
            times[name].append(start.elapsed_time(end) / 1e3)
    return times


def matmul_peak_gmacs(precision: str, n: int = 2048, repeats: int = 10) -> float:
    """This process's dense matmul rate (GMAC/s, the best of `repeats` after two warm-up calls) at
    `precision` (fp32, bf16, int8): the roofline a backend's achieved rate is compared with. The
    best, not the median: a peak is what the machine can do, and on shared cores a median of a
    tenth-of-a-second call is as noisy as the load beside it."""
    import torch

    g = torch.Generator().manual_seed(0)
    if precision == "int8":
        a = torch.randint(-128, 128, (n, n), dtype=torch.int8, generator=g)
        mm = lambda: torch._int_mm(a, a)  # noqa: E731 (int8 × int8 → int32, oneDNN's VNNI path)
    else:
        a = torch.rand(n, n, generator=g).to({"fp32": torch.float32, "bf16": torch.bfloat16}[precision])
        mm = lambda: a @ a  # noqa: E731
    mm(), mm()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        mm()
        times.append(time.perf_counter() - start)
    return n**3 / min(times) / 1e9


# the x86 features a low-precision CPU path depends on (oneDNN/onnxruntime pick kernels by them)
LOW_PRECISION_FLAGS = ("avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8")


def cpu_description() -> dict[str, object]:
    """What a CPU timing depends on: the model name, the SIMD level PyTorch dispatches to, and which
    bf16/int8 instructions exist (without AVX-512 BF16 or AMX, bf16 convolutions leave oneDNN for
    PyTorch's im2col path and run slower than fp32)."""
    import torch

    info: dict[str, object] = {"capability": torch.backends.cpu.get_cpu_capability(), "model": "?", "flags": []}
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and info["model"] == "?":
            info["model"] = value.strip()
        elif key.strip() == "flags":
            have = set(value.split())
            info["flags"] = [f for f in LOW_PRECISION_FLAGS if f in have]
            break
    return info
