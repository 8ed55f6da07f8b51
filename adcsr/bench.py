"""`adcsr bench`: teacher vs student latency side by side in one run (interleaved, medians, ratios).

Models are named by spec strings so that the same spec can be rebuilt in a fresh process for the
peak-memory probe:

- `student:tiny`, `student:sd21` (random weights: architecture is what latency depends on), or
  `student:PATH` (a `save_pretrained` folder);
- `osediff:tiny`, `osediff:sd21` (the OSEDiff-shaped teacher: VAE encoder + UNet + VAE decoder,
  random weights unless loaded from local folders), `dfosd:tiny`, `dfosd:sd21` (the same SD2.1
  shape with DFOSD's rank-16 LoRA and learnable embedding), `tsdsr:tiny`, `tsdsr:sd3` (SD3-medium's
  transformer and VAE with TSD-SR's rank-64 LoRA), and any registered teacher by name
  (`realesrgan`, `realesrgan-compact`).

CPU backends (`--backends`): `torch` (eager), `torch-channels-last`, `torch-compile` (inductor with
frozen weights) and `onnxruntime`. Each backend runs in a fresh process, one after another; within
it, teacher and student repeats are interleaved, so every backend's speed-up comes from paired
measurements.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import tempfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
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
    if kind in ("osediff", "dfosd", "tsdsr"):
        teacher = get_teacher(kind, preset=arg or "tiny")
        label = {"osediff": "OSEDiff", "dfosd": "DFOSD", "tsdsr": "TSD-SR"}[kind]
        return BenchModel(spec, f"{label}-shaped teacher ({arg or 'tiny'})", _TeacherModule(teacher).eval())
    if arg:
        raise UserError(f"model spec {spec!r}: only student:…, osediff:…, dfosd:… and tsdsr:… take an argument")
    teacher = get_teacher(kind)
    return BenchModel(spec, f"{teacher.name} teacher", _TeacherModule(teacher).eval())


def _onnx_runner(model: nn.Module, lr: torch.Tensor, folder: Path) -> Callable[[], Any]:
    """Export to ONNX (the export stage's exporter) and return a CPU onnxruntime call. A student is
    exported in the deploy form its shipped fp32 ONNX has (`export/onnx/student_fp32.onnx`)."""
    import onnxruntime as ort

    from adcsr.export import shipped_onnx

    path = shipped_onnx(model, lr.shape[-1], folder / f"{id(model)}.onnx")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: lr.numpy()}
    return lambda: session.run(None, feed)


def _torch_runner(model: nn.Module, lr: torch.Tensor) -> Callable[[], Any]:
    def run():
        with torch.inference_mode():
            return model(lr)

    return run


def _channels_last_runner(model: nn.Module, lr: torch.Tensor) -> Callable[[], Any]:
    """Eager PyTorch on NHWC tensors (oneDNN's preferred convolution layout), on a copy of the model."""
    m = copy.deepcopy(model).to(memory_format=torch.channels_last)
    return _torch_runner(m, lr.contiguous(memory_format=torch.channels_last))


def _compiled_runner(model: nn.Module, lr: torch.Tensor) -> Callable[[], Any]:
    """`torch.compile` (inductor) with frozen weights, PyTorch's CPU inference setting: weights are
    folded into the graph as constants and convolutions pre-packed for oneDNN. Compiles here, so the
    compile time is not timed."""
    import torch._inductor.config as inductor_config

    compiled = torch.compile(model)
    try:
        with inductor_config.patch(freezing=True), torch.inference_mode():
            compiled(lr)
    except (torch._dynamo.exc.BackendCompilerFailed, torch._inductor.exc.InductorError) as e:
        raise UserError(f"torch-compile backend: inductor could not compile (it needs a C++ compiler): "
                        f"{str(e).splitlines()[0]}") from None
    return _torch_runner(compiled, lr)


BACKENDS = ("torch", "torch-channels-last", "torch-compile", "onnxruntime")
# the other SD-family methods `--preset` times beside OSEDiff and the student, at the same size
PRESET_BASELINES = {"tiny": ("dfosd:tiny", "tsdsr:tiny"), "sd21": ("dfosd:sd21", "tsdsr:sd3")}


def _runner(backend: str, model: nn.Module, lr: torch.Tensor, folder: Path) -> Callable[[], Any]:
    if backend == "torch":
        return _torch_runner(model, lr)
    if backend == "torch-channels-last":
        return _channels_last_runner(model, lr)
    if backend == "torch-compile":
        return _compiled_runner(model, lr)
    if backend == "onnxruntime":
        return _onnx_runner(model, lr, folder)
    raise UserError(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")


def _vm_hwm() -> int:
    """This process's peak resident set (VmHWM, bytes). Unlike ru_maxrss it restarts at exec, so a
    spawned child does not inherit its parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _in_fresh_process(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` in a newly spawned interpreter; its result, or its exception re-raised here. What
    the call allocated (weights, compiled code, sessions) is gone when it returns."""
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        try:
            return pool.submit(fn, *args).result()
        except BrokenProcessPool:
            raise RuntimeError(f"{fn.__name__}{args} died (out of memory?)") from None


def _probe_peak_rss(spec: str, lr_size: int) -> tuple[int, int]:
    """Fresh process: build one model, run it once; (baseline, peak) resident bytes."""
    base = _vm_hwm()
    model = build(spec).module
    with torch.inference_mode():
        model(torch.rand(1, 3, lr_size, lr_size))
    return base, _vm_hwm()


def peak_rss(spec: str, lr_size: int) -> dict[str, int]:
    """Peak resident memory of building + running one model, measured in a fresh process."""
    base, peak = _in_fresh_process(_probe_peak_rss, spec, lr_size)
    return {"peak_rss_bytes": peak, "model_rss_bytes": peak - base}


def _bench_input(lr_size: int) -> torch.Tensor:
    return torch.rand(1, 3, lr_size, lr_size, generator=torch.Generator().manual_seed(0))


def _time_backend(backend: str, specs: list[str], lr_size: int, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Fresh process: build the models, time them interleaved on one backend; seconds per call by label."""
    from tqdm import tqdm

    models = [build(spec) for spec in specs]
    lr = _bench_input(lr_size)
    with tempfile.TemporaryDirectory() as tmp, tqdm(total=repeats * len(models), desc=f"bench {backend}",
                                                    unit="run") as bar:
        runners = {m.label: _runner(backend, m.module, lr, Path(tmp)) for m in models}
        return interleaved(runners, repeats=repeats, warmup=warmup, progress=bar.update)


def _cuda_variants(model: nn.Module, lr: torch.Tensor) -> dict[str, Callable[[], Any]]:
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


def _time_cuda(specs: list[str], lr_size: int) -> dict[str, dict[str, list[float]]]:
    """Fresh process: CUDA-event timings of every GPU variant of each model, by label and variant."""
    lr = _bench_input(lr_size)
    return {m.label: cuda_interleaved(_cuda_variants(m.module, lr)) for m in map(build, specs)}


def run_bench(teacher_spec: str, student_spec: str, lr_size: int = 128, repeats: int = 5, warmup: int = 1,
              backends: tuple[str, ...] = ("torch", "onnxruntime"), memory: bool = True,
              cuda: bool | None = None, baselines: tuple[str, ...] = ()) -> dict[str, Any]:
    """Time teacher, student and any `baselines` (other methods' specs) side by side, interleaved
    in the same runs; returns rows + the student's speed-up over the teacher (and each baseline)
    per backend."""
    from adcsr.core.models.macs import count_macs, count_params

    models = [build(teacher_spec), build(student_spec), *map(build, baselines)]
    lr = _bench_input(lr_size)
    labels, specs = [m.label for m in models], [m.spec for m in models]
    teacher, student = labels[:2]
    if len(set(labels)) != len(labels):
        raise UserError(f"the same model is given twice ({', '.join(sorted(l for l in labels if labels.count(l) > 1))})")
    info = {m.label: {"params": count_params(m.module), "macs": count_macs(m.module, lr)} for m in models}
    del models
    # Each backend in its own process (teacher and student interleaved there, so its ratio is from
    # paired runs): one backend's memory (a channels-last copy, inductor's frozen constants and
    # loaded code, ONNX sessions) never stays for the next one.
    times = {backend: _in_fresh_process(_time_backend, backend, specs, lr_size, repeats, warmup)
             for backend in backends}
    rows: list[dict[str, Any]] = []
    for label, spec in zip(info, specs):
        if memory:
            info[label].update(peak_rss(spec, lr_size))
        for backend in backends:
            rows.append({"model": label, "spec": spec, "backend": backend, **info[label],
                         **summarize(times[backend][label])})
    if cuda if cuda is not None else torch.cuda.is_available():
        cuda_times = _in_fresh_process(_time_cuda, specs, lr_size)
        for label, spec in zip(info, specs):
            for variant, t in cuda_times[label].items():
                rows.append({"model": label, "spec": spec, "backend": f"cuda {variant}",
                             "params": info[label]["params"], **summarize(t)})
    speedups, versus = {}, {}
    for backend in {r["backend"] for r in rows}:
        by_model = {r["model"]: r["median_ms"] for r in rows if r["backend"] == backend}
        speedups[backend] = by_model[teacher] / by_model[student]
        versus[backend] = {label: ms / by_model[student] for label, ms in by_model.items() if label != student}
    return {
        "lr_size": lr_size, "sr_size": lr_size * 4, "repeats": repeats, "threads": torch.get_num_threads(),
        "teacher": teacher, "student": student, "baselines": labels[2:], "rows": rows, "student_speedup": speedups,
        "student_speedup_vs": versus,
    }


def markdown_table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['lr_size']}² → {result['sr_size']}², median of {result['repeats']} interleaved repeats, "
        f"{result['threads']} CPU threads.",
        "",
        "| model | backend | median | min | params | GMACs | peak RSS | student speed-up over it |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    versus = result.get("student_speedup_vs", {})
    for r in result["rows"]:
        speedup = versus.get(r["backend"], {}).get(r["model"])
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
                   help="the pair timed when no --teacher/--student is given: osediff:PRESET vs "
                        "student:PRESET (random weights)")
    p.add_argument("--teacher", help="teacher spec (overrides --preset's)")
    p.add_argument("--baselines", nargs="*", default=None, metavar="SPEC",
                   help="other methods timed in the same runs (default with --preset: every SD-family method at "
                        "that size: dfosd:PRESET and tsdsr:tiny|sd3; give none to time only the pair)")
    p.add_argument("--student", help="student spec (overrides --preset's)")
    p.add_argument("--lr-size", type=int, default=128, help="LR side in pixels (default 128 → 512)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per model and backend (the median is reported)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs per model before timing")
    p.add_argument("--backends", nargs="+", default=["torch", "onnxruntime"], choices=BACKENDS,
                   help="CPU backends, each timed teacher-vs-student interleaved (default: torch onnxruntime); "
                        "torch-channels-last and torch-compile (inductor, frozen weights) are PyTorch's "
                        "CPU inference variants")
    p.add_argument("--no-memory", action="store_true", help="skip the per-model peak-memory probe")
    p.add_argument("--out", default=None, help="folder for bench.json and bench.md (default runs/bench-PRESET)")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    if args.lr_size < 16 or args.repeats < 1:
        raise UserError("--lr-size must be ≥ 16 and --repeats ≥ 1")
    baselines = args.baselines
    if baselines is None:
        baselines = [] if args.teacher or args.student else list(PRESET_BASELINES[args.preset])
    result = run_bench(args.teacher or f"osediff:{args.preset}", args.student or f"student:{args.preset}",
                       lr_size=args.lr_size, repeats=args.repeats, warmup=args.warmup,
                       backends=tuple(args.backends), memory=not args.no_memory, baselines=tuple(baselines))
    _, md = write_results(result, args.out or f"runs/bench-{args.preset}")
    print(markdown_table(result))
    print(f"wrote {md}")
    return 0
