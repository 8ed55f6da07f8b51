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

CPU backends (`--backends`, defined in `adcsr.backends`): eager fp32, channels-last, inductor,
bf16 autocast, the shipped fp32 ONNX and its int8 QDQ. Each backend runs in a fresh process, one
after another; within it, teacher and student repeats are interleaved, so every backend's speed-up
comes from paired measurements. Every row also carries its parity (PSNR of held-out tiles against
the same model in eager fp32), its speed over eager fp32 and its roofline (achieved GMAC/s over a
matmul peak at its precision measured in the same process).
"""

from __future__ import annotations

import argparse
from functools import partial
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from adcsr.core.atomic import atomic_write_text
from adcsr.core.errors import UserError
from adcsr.backends import BACKENDS, backend
from adcsr.core.metrics.fidelity import parity_psnr
from adcsr.core.upscaler import Upscaler, load_upscaler
from adcsr.bench_variants import cuda_variants, in_fresh_process, vm_hwm
from adcsr.timing import cpu_description, cuda_interleaved, interleaved, matmul_peak_gmacs, summarize

PARITY_TILES = 2  # held-out LR tiles per model and backend


@dataclass
class BenchModel:
    spec: str
    label: str
    module: Upscaler


SD_SHAPED = {"osediff": "OSEDiff", "dfosd": "DFOSD", "tsdsr": "TSD-SR"}  # random weights at an SD size
SAMPLERS = {"resshift": ("ResShift", "15 steps"), "tadsr": ("TAD-SR", "1 step")}


def build(spec: str) -> BenchModel:
    """Build the model a spec names (see the module docstring; also `resshift:tiny|full` at its 15
    steps and `tadsr:tiny|full` at one, random weights, `full` when no preset is given as for
    `get_teacher`), with its label in the bench's rows."""
    kind, _, arg = spec.partition(":")
    if kind in SD_SHAPED:
        arg = arg or "tiny"
    elif arg and kind != "student" and kind not in SAMPLERS:
        raise UserError(f"model spec {spec!r}: only student:…, osediff:…, dfosd:…, tsdsr:…, resshift:… and tadsr:… "
                        "take an argument")
    model = load_upscaler(f"{kind}:{arg}" if arg else kind)
    if kind == "student":
        from adcsr.core.models.student import PRESETS

        label = f"AdcSR student ({arg})" if arg in PRESETS else "AdcSR student"
    elif kind in SAMPLERS:
        label = f"{SAMPLERS[kind][0]} ({SAMPLERS[kind][1]}, {arg or 'full'})"
    elif kind in SD_SHAPED:
        label = f"{SD_SHAPED[kind]}-shaped teacher ({arg})"
    else:
        label = f"{model.name} teacher"
    return BenchModel(spec, label, model)


# the other SD-family methods `--preset` times beside OSEDiff and the student, at the same size
PRESET_BASELINES = {"tiny": ("dfosd:tiny", "tsdsr:tiny"), "sd21": ("dfosd:sd21", "tsdsr:sd3")}


def _probe_peak_rss(spec: str, lr_size: int) -> tuple[int, int]:
    """Fresh process: build one model, run it once; (baseline, peak) resident bytes."""
    base = vm_hwm()
    model = build(spec).module
    with torch.inference_mode():
        model(torch.rand(1, 3, lr_size, lr_size))
    return base, vm_hwm()


def peak_rss(spec: str, lr_size: int) -> dict[str, int]:
    """Peak resident memory of building + running one model, measured in a fresh process."""
    base, peak = in_fresh_process(_probe_peak_rss, spec, lr_size)
    return {"peak_rss_bytes": peak, "model_rss_bytes": peak - base}


def _bench_input(lr_size: int) -> torch.Tensor:
    return torch.rand(1, 3, lr_size, lr_size, generator=torch.Generator().manual_seed(0))


def _time_backend(name: str, specs: list[str], lr_size: int, repeats: int, warmup: int,
                  references: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Fresh process: build the models, run them on one backend; by label, seconds per call (timed
    interleaved) and the parity (PSNR, dB) of the held-out tiles against the model's eager fp32
    output; and this process's matmul peak at the backend's precision."""
    from tqdm import tqdm

    b = backend(name)
    models = [build(spec) for spec in specs]
    lr, held = _bench_input(lr_size), _parity_tiles(lr_size)
    with tempfile.TemporaryDirectory() as tmp, tqdm(total=repeats * len(models), desc=f"bench {name}",
                                                    unit="run") as bar:
        runs = {m.label: b.prepare(m.module, lr, Path(tmp)) for m in models}
        parity = {label: None if name == "torch" else
                  parity_psnr(references[label], torch.cat([run(t[None]) for t in held]).clamp(0, 1))
                  for label, run in runs.items()}
        times = interleaved({label: partial(run, lr) for label, run in runs.items()}, repeats=repeats, warmup=warmup,
                            progress=bar.update)
    return {"times": times, "parity": parity, "peak_gmacs": matmul_peak_gmacs(b.precision)}


def _parity_tiles(lr_size: int) -> torch.Tensor:
    """The held-out LR tiles (the project's one held-out set) every backend's parity is measured on."""
    from adcsr.core.degradations import DegradationConfig
    from adcsr.core.heldout import heldout_set

    return heldout_set(lr_size * 4, PARITY_TILES, 0, DegradationConfig(scale=4))[1]


def _references(models: list[BenchModel], lr_size: int) -> dict[str, torch.Tensor]:
    """Each model's eager fp32 SR of the parity tiles, tile by tile as the static-tile backends run."""
    held = _parity_tiles(lr_size)
    with torch.inference_mode():
        return {m.label: torch.cat([m.module(t[None]) for t in held]).float().clamp(0, 1) for m in models}


def _time_cuda(specs: list[str], lr_size: int) -> dict[str, dict[str, list[float]]]:
    """Fresh process: CUDA-event timings of every GPU variant of each model, by label and variant."""
    lr = _bench_input(lr_size)
    return {m.label: cuda_interleaved(cuda_variants(m.module, lr)) for m in map(build, specs)}


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
    references = _references(models, lr_size) if set(backends) - {"torch"} else {}
    del models
    # Each backend in its own process (teacher and student interleaved there, so its ratio is from
    # paired runs): one backend's memory (a channels-last copy, inductor's frozen constants and
    # loaded code, ONNX sessions) never stays for the next one.
    measured, failed = {}, {}
    for name in backends:  # a backend that fails (a compiler missing, out of memory) costs only its own rows
        try:
            measured[name] = in_fresh_process(_time_backend, name, specs, lr_size, repeats, warmup, references)
        except Exception as e:  # noqa: BLE001 (whatever the child raised is reported, not a traceback)
            failed[name] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    if not measured:
        raise UserError("every backend failed: " + "; ".join(f"{k}: {v}" for k, v in failed.items()))
    rows: list[dict[str, Any]] = []
    for label, spec in zip(info, specs):
        if memory:
            info[label].update(peak_rss(spec, lr_size))
        for name, m in measured.items():
            row = {"model": label, "spec": spec, "backend": name, "form": backend(name).form,
                   "precision": backend(name).precision, **info[label], **summarize(m["times"][label]),
                   "parity_db": m["parity"][label], "peak_gmacs": m["peak_gmacs"]}
            row["achieved_gmacs"] = row["macs"] / (row["median_ms"] / 1e3) / 1e9
            rows.append(row)
    if cuda if cuda is not None else torch.cuda.is_available():
        cuda_times = in_fresh_process(_time_cuda, specs, lr_size)
        for label, spec in zip(info, specs):
            for variant, t in cuda_times[label].items():
                rows.append({"model": label, "spec": spec, "backend": f"cuda {variant}",
                             "params": info[label]["params"], **summarize(t)})
    speedups, versus, over_eager = {}, {}, {}
    by_backend = {name: {r["model"]: r["median_ms"] for r in rows if r["backend"] == name} for name in {r["backend"] for r in rows}}
    for name, by_model in by_backend.items():
        speedups[name] = by_model[teacher] / by_model[student]
        versus[name] = {label: ms / by_model[student] for label, ms in by_model.items() if label != student}
        if "torch" in by_backend:
            over_eager[name] = {label: by_backend["torch"][label] / ms for label, ms in by_model.items()}
    return {
        "lr_size": lr_size, "sr_size": lr_size * 4, "repeats": repeats, "threads": torch.get_num_threads(),
        "cpu": cpu_description(), "teacher": teacher, "student": student, "baselines": labels[2:], "rows": rows, "student_speedup": speedups,
        "student_speedup_vs": versus, "speedup_over_eager": over_eager, "failed_backends": failed,
    }


def _cell(value: float | None, fmt: str, none: str = "") -> str:
    return none if value is None else format(value, fmt)


def _cpu_line(cpu: dict[str, Any] | None) -> str:
    if not cpu:
        return "an unrecorded CPU"
    flags = ", ".join(cpu["flags"]) or "no AVX-512, VNNI or AMX"
    return f"{cpu['model']} ({cpu['capability']}; {flags})"


def markdown_table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['lr_size']}² → {result['sr_size']}², median of {result['repeats']} interleaved repeats, "
        f"{result['threads']} CPU threads of {_cpu_line(result.get('cpu'))}. Parity: PSNR of {PARITY_TILES} held-out tiles against the same "
        "model in eager fp32. Roofline: achieved GMAC/s over this machine's matmul peak at the backend's precision, "
        "measured in the same process.",
        "",
        "| model | backend | median | min | × its eager fp32 | parity | params | GMACs | GMAC/s (roofline) "
        "| peak RSS | student speed-up over it |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    versus, eager = result.get("student_speedup_vs", {}), result.get("speedup_over_eager", {})
    for r in result["rows"]:
        speedup = versus.get(r["backend"], {}).get(r["model"])
        rss = f"{r['peak_rss_bytes'] / 2**20:.0f} MiB" if "peak_rss_bytes" in r else "—"
        parity = "ref" if r["backend"] == "torch" else _cell(r.get("parity_db"), ".1f", "—") + " dB"
        roof = (f"{r['achieved_gmacs']:.0f} ({r['achieved_gmacs'] / r['peak_gmacs']:.0%} of {r['precision']} "
                f"{r['peak_gmacs']:.0f})" if r.get("peak_gmacs") else "")
        lines.append(
            f"| {r['model']} | {r['backend']} | {r['median_ms']:.1f} ms | {r['min_ms']:.1f} ms "
            f"| {_cell(eager.get(r['backend'], {}).get(r['model']), '.2f')}× | {parity} "
            f"| {r['params'] / 1e6:.2f} M | {r.get('macs', 0) / 1e9:.1f} | {roof} | {rss} "
            f"| {f'{speedup:.2f}×' if speedup else ''} |"
        )
    forms = sorted({(r["backend"], r.get("form", "")) for r in result["rows"]})
    lines += ["", "Backends: " + "; ".join(f"`{b}` = {f}" for b, f in forms if f) + "."]
    lines += [f"**`{b}` failed**: {why}" for b, why in result.get("failed_backends", {}).items()]
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
                   help="CPU backends, each timed teacher-vs-student interleaved, with its parity against eager "
                        "fp32 (default: torch onnxruntime); see adcsr/backends.py for what each runs")
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
