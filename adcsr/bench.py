"""`adcsr bench`: teacher vs student latency side by side in one run (interleaved, medians, ratios).

Models are named by spec strings so that the same spec can be rebuilt in a fresh process for the
peak-memory probe:

- `student:tiny`, `student:sd21` (random weights: architecture is what latency depends on), or
  `student:PATH` (a `save_pretrained` folder);
- `osediff:tiny`, `osediff:sd21` (the OSEDiff-shaped teacher: VAE encoder + UNet + VAE decoder,
  random weights unless loaded from local folders), and any registered teacher by name
  (`realesrgan`, `realesrgan-compact`).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from adcsr.core.atomic import atomic_write_text
from adcsr.core.errors import UserError
from adcsr.timing import cuda_interleaved, interleaved, summarize


class _TeacherModule(nn.Module):
    """A teacher's untiled forward pass as a module, so it can be timed, counted and exported."""

    def __init__(self, teacher: Any):
        super().__init__()
        self.teacher = teacher
        self.parts = nn.ModuleList(m for m in vars(teacher).values() if isinstance(m, nn.Module))

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.teacher.forward_tile(lr)


@dataclass
class BenchModel:
    spec: str
    label: str
    module: nn.Module


def build(spec: str) -> BenchModel:
    """Build the model a spec names (see the module docstring)."""
    from adcsr.core.models.student import AdcSRStudent
    from adcsr.core.models.teachers import get_teacher

    kind, _, arg = spec.partition(":")
    if kind == "student":
        if arg in ("tiny", "sd21"):
            torch.manual_seed(0)
            return BenchModel(spec, f"AdcSR student ({arg})", AdcSRStudent.from_preset(arg).eval())
        return BenchModel(spec, "AdcSR student", AdcSRStudent.from_pretrained(arg).eval())
    if kind == "osediff":
        teacher = get_teacher("osediff", preset=arg or "tiny")
        return BenchModel(spec, f"OSEDiff-shaped teacher ({arg or 'tiny'})", _TeacherModule(teacher).eval())
    if arg:
        raise UserError(f"model spec {spec!r}: only student:… and osediff:… take an argument")
    teacher = get_teacher(kind)
    return BenchModel(spec, f"{teacher.name} teacher", _TeacherModule(teacher).eval())


def _onnx_runner(model: nn.Module, lr: torch.Tensor, folder: Path) -> Callable[[], Any]:
    """Export to ONNX (the export stage's exporter) and return a CPU onnxruntime call."""
    import onnxruntime as ort

    from adcsr.export.onnx_export import INPUT_NAME, export_onnx

    path = export_onnx(model, lr.shape[-1], folder / f"{id(model)}.onnx")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {INPUT_NAME: lr.numpy()}
    return lambda: session.run(None, feed)


def _torch_runner(model: nn.Module, lr: torch.Tensor) -> Callable[[], Any]:
    def run():
        with torch.inference_mode():
            return model(lr)

    return run


def _vm_hwm() -> int:
    """This process's peak resident set (VmHWM, bytes). Unlike ru_maxrss it restarts at exec, so a
    spawned child does not inherit its parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _probe_peak_rss(spec: str, lr_size: int, queue: Any) -> None:
    """Child process: build one model, run it once, report (baseline, peak) RSS in bytes."""
    base = _vm_hwm()
    model = build(spec).module
    with torch.inference_mode():
        model(torch.rand(1, 3, lr_size, lr_size))
    queue.put((base, _vm_hwm()))


def peak_rss(spec: str, lr_size: int) -> dict[str, int]:
    """Peak resident memory of building + running one model, measured in a fresh process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_probe_peak_rss, args=(spec, lr_size, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"memory probe for {spec} exited with code {proc.exitcode}")
    base, peak = queue.get()
    return {"peak_rss_bytes": peak, "model_rss_bytes": peak - base}


def _cuda_variants(model: nn.Module, lr: torch.Tensor) -> dict[str, Callable[[], Any]]:
    """fp32 / fp16 / bf16 / channels-last / torch.compile variants on the GPU."""
    import copy

    variants: dict[str, Callable[[], Any]] = {}
    x = lr.cuda()
    for name, dtype, channels_last, compiled in (
        ("fp32", torch.float32, False, False),
        ("fp16", torch.float16, False, False),
        ("bf16", torch.bfloat16, False, False),
        ("fp16 channels-last", torch.float16, True, False),
        ("fp16 torch.compile", torch.float16, False, True),
    ):
        m = copy.deepcopy(model).cuda().to(dtype)
        xi = x.to(dtype)
        if channels_last:
            m, xi = m.to(memory_format=torch.channels_last), xi.to(memory_format=torch.channels_last)
        fn = torch.compile(m) if compiled else m

        def run(fn=fn, xi=xi):
            with torch.inference_mode():
                return fn(xi)

        variants[name] = run
    return variants


def run_bench(teacher_spec: str, student_spec: str, lr_size: int = 128, repeats: int = 5, warmup: int = 1,
              backends: tuple[str, ...] = ("torch", "onnxruntime"), memory: bool = True,
              cuda: bool | None = None) -> dict[str, Any]:
    """Time teacher and student side by side; returns rows + the student's speed-up per backend."""
    from tqdm import tqdm

    from adcsr.core.models.macs import count_macs, count_params

    models = [build(teacher_spec), build(student_spec)]
    lr = torch.rand(1, 3, lr_size, lr_size, generator=torch.Generator().manual_seed(0))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        runners: dict[tuple[str, str], Callable[[], Any]] = {}
        for backend in backends:
            for m in models:
                if backend == "torch":
                    runners[(m.label, backend)] = _torch_runner(m.module, lr)
                elif backend == "onnxruntime":
                    runners[(m.label, backend)] = _onnx_runner(m.module, lr, Path(tmp))
                else:
                    raise UserError(f"unknown backend {backend!r} (known: torch, onnxruntime)")
        with tqdm(total=repeats * len(runners), desc="bench", unit="run") as bar:
            times = interleaved(runners, repeats=repeats, warmup=warmup, progress=bar.update)
    for m in models:
        info = {"params": count_params(m.module), "macs": count_macs(m.module, lr)}
        if memory:
            info.update(peak_rss(m.spec, lr_size))
        for backend in backends:
            rows.append({"model": m.label, "spec": m.spec, "backend": backend, **info,
                         **summarize(times[(m.label, backend)])})
    if cuda if cuda is not None else torch.cuda.is_available():
        for m in models:
            cuda_times = cuda_interleaved(_cuda_variants(m.module, lr))
            for variant, t in cuda_times.items():
                rows.append({"model": m.label, "spec": m.spec, "backend": f"cuda {variant}",
                             "params": count_params(m.module), **summarize(t)})
    speedups = {}
    for backend in {r["backend"] for r in rows}:
        by_model = {r["model"]: r["median_ms"] for r in rows if r["backend"] == backend}
        speedups[backend] = by_model[models[0].label] / by_model[models[1].label]
    return {
        "lr_size": lr_size, "sr_size": lr_size * 4, "repeats": repeats, "threads": torch.get_num_threads(),
        "teacher": models[0].label, "student": models[1].label, "rows": rows, "student_speedup": speedups,
    }


def markdown_table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['lr_size']}² → {result['sr_size']}², median of {result['repeats']} interleaved repeats, "
        f"{result['threads']} CPU threads.",
        "",
        "| model | backend | median | min | params | GMACs | peak RSS | student speed-up |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        speedup = result["student_speedup"][r["backend"]] if r["model"] == result["student"] else None
        rss = f"{r['peak_rss_bytes'] / 2**20:.0f} MiB" if "peak_rss_bytes" in r else "—"
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['median_ms']:.1f} ms | {r['min_ms']:.1f} ms "
            f"| {r['params'] / 1e6:.2f} M | {r.get('macs', 0) / 1e9:.1f} | {rss} "
            f"| {f'{speedup:.2f}×' if speedup else ''} |"
        )
    return "\n".join(lines) + "\n"


def write_results(result: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    out = Path(out_dir)
    atomic_write_text(out / "bench.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(out / "bench.md", markdown_table(result))
    return out / "bench.json", out / "bench.md"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="teacher vs student latency and memory, side by side",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=("tiny", "sd21"), default="tiny",
                   help="default pair: osediff:PRESET vs student:PRESET (random weights)")
    p.add_argument("--teacher", help="teacher spec (overrides --preset's)")
    p.add_argument("--student", help="student spec (overrides --preset's)")
    p.add_argument("--lr-size", type=int, default=128, help="LR side in pixels (default 128 → 512)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--backends", nargs="+", default=["torch", "onnxruntime"], choices=["torch", "onnxruntime"])
    p.add_argument("--no-memory", action="store_true", help="skip the per-model peak-memory probe")
    p.add_argument("--out", default=None, help="folder for bench.json and bench.md (default runs/bench-PRESET)")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    if args.lr_size < 16 or args.repeats < 1:
        raise UserError("--lr-size must be ≥ 16 and --repeats ≥ 1")
    result = run_bench(args.teacher or f"osediff:{args.preset}", args.student or f"student:{args.preset}",
                       lr_size=args.lr_size, repeats=args.repeats, warmup=args.warmup,
                       backends=tuple(args.backends), memory=not args.no_memory)
    _, md = write_results(result, args.out or f"runs/bench-{args.preset}")
    print(markdown_table(result))
    print(f"wrote {md}")
    return 0
