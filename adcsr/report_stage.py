"""The pipeline's report stage: measure teacher, student and artifacts on held-out photos, then
hand every figure to `adcsr.report`.

The held-out crops are the project's one held-out set (`core.heldout`: each photo's centre,
degraded with the training degradation, fixed seed), so every model sees exactly the same LR
inputs; all numbers are computed here, in this run.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from adcsr.core.atomic import atomic_write_text
from adcsr.core.manifest import size_on_disk
from adcsr.core.heldout import heldout_set
from adcsr.core.metrics.fidelity import mean_psnr_y
from adcsr.verdict import DEFINITIONS, gates, run_facts

if TYPE_CHECKING:
    from adcsr.report import ReportSettings
    from adcsr.runner import StageContext

# Paper figures, shown only in the report's clearly labelled "published" table.
PUBLISHED = [
    {"name": "AdcSR (paper, A100)", "params": 456e6, "macs": 495e9, "source": "AdcSR paper; 0.03 s on an A100"},
    {"name": "OSEDiff (paper, A100)", "params": 1775e6, "macs": 2.12e12, "source": "OSEDiff/AdcSR papers; 0.105 s"},
    {"name": "AdcSR W8A16 on SM8750 (paper)", "params": 456e6, "macs": None,
     "source": "AdcSR App. D: 25× faster than OSEDiff on the Hexagon DSP, 0.4 GB storage"},
    {"name": "ResShift-15 (TAD-SR paper, A100)", "params": 173.91e6, "macs": None,
     "source": "TAD-SR paper, Table I: 118.59 + 55.32 M (network + VQGAN), 0.682 s for 64→256 on an A100"},
    {"name": "TAD-SR-1 (TAD-SR paper, A100)", "params": 175.91e6, "macs": None,
     "source": "TAD-SR paper, Table I: 118.59 + 57.32 M as printed (the same VQGAN is 55.32 M in the other rows), "
               "0.058 s for 64→256 on an A100"},
]


def quality(sr: torch.Tensor, hr: torch.Tensor, weights: dict[str, str]) -> dict[str, float]:
    from adcsr.core.metrics import evaluate

    scores = evaluate(sr, hr, ["psnr_y", "ssim_y", "niqe"])
    out = {"psnr": scores["psnr_y"], "ssim": scores["ssim_y"], "niqe": scores["niqe"]}
    if weights:
        out["learned"] = evaluate(sr, hr, list(weights), weights=weights)
    return out


def color_error(sr: torch.Tensor, hr: torch.Tensor) -> float:
    """The largest |mean of a channel of SR − the same of HR| over photos and channels, on [0, 1]."""
    return float((sr.float().mean((2, 3)) - hr.float().mean((2, 3))).abs().max())


# What a working student must show on the held-out photos (the working-student issue's gates).
COLOR_LIMIT_UNFIXED, COLOR_LIMIT_FIXED = 0.05, 0.02
MIN_GAIN_OVER_BICUBIC_DB, MAX_LOSS_VS_TEACHER_DB, MAX_W8A16_DROP_DB = 1.5, 1.0, 0.5


def student_checks(bicubic: dict, teacher: dict, student: dict, w8a16: dict | None) -> list[dict[str, Any]]:
    """Pass/fail rows: smaller, faster, closer to the teacher than bicubic, colours right, W8A16 follows."""
    def row(check: str, measured: float | None, target: str, passed: bool | None) -> dict[str, Any]:
        return {"check": check, "measured": measured, "target": target,
                "passed": None if measured is None else bool(passed)}

    ratio = lambda key: teacher[key] / student[key] if teacher.get(key) and student.get(key) else None
    gain = student["psnr_vs_teacher"] - bicubic["psnr_vs_teacher"]
    rows = [
        row("teacher / student parameters", ratio("params"), "> 1", (ratio("params") or 0) > 1),
        row("teacher / student MACs", ratio("macs"), "> 1", (ratio("macs") or 0) > 1),
        row("teacher / student CPU latency", ratio("latency_ms"), "> 1", (ratio("latency_ms") or 0) > 1),
        row("PSNR-Y(student, teacher) − PSNR-Y(bicubic, teacher), dB", gain,
            f"≥ {MIN_GAIN_OVER_BICUBIC_DB}", gain >= MIN_GAIN_OVER_BICUBIC_DB),
        row("PSNR-Y vs HR: student − teacher, dB", student["psnr"] - teacher["psnr"],
            f"≥ −{MAX_LOSS_VS_TEACHER_DB}", student["psnr"] - teacher["psnr"] >= -MAX_LOSS_VS_TEACHER_DB),
        row("NIQE: student − bicubic", student["niqe"] - bicubic["niqe"], "< 0", student["niqe"] < bicubic["niqe"]),
        row("colour error without a fix (max channel mean vs HR)", student["color_error_unfixed"],
            f"≤ {COLOR_LIMIT_UNFIXED}", student["color_error_unfixed"] <= COLOR_LIMIT_UNFIXED),
        row("colour error with the default fix", student["color_error"], f"≤ {COLOR_LIMIT_FIXED}",
            student["color_error"] <= COLOR_LIMIT_FIXED),
    ]
    if w8a16 is not None:
        drop = w8a16["psnr"] - student["psnr"]
        rows.append(row("PSNR-Y vs HR: W8A16 on the HTP emulator − fp32 student, dB", drop,
                        f"≥ −{MAX_W8A16_DROP_DB}", drop >= -MAX_W8A16_DROP_DB))
    return rows


def _save_png(img: torch.Tensor, path: Path) -> str:
    from adcsr.core.imaging import write_image

    write_image(img, path, force=True)
    return path.name


def _curves(ctx: StageContext) -> dict[str, dict[str, list[float]]]:
    """Validation series of each training stage (autoencoder, stage 1, stage 2), from its metrics.json."""
    curves = {}
    for stage in ("autoencoder", "stage1", "stage2"):
        key = f"{stage}.metrics"
        if key not in ctx.inputs or not ctx.input(key).is_file():
            continue
        history = json.loads(ctx.input(key).read_text()).get("eval", [])
        series: dict[str, list[float]] = {"step": [h["step"] for h in history]}
        for name in sorted({k for h in history for k in h if k != "step"}):
            values = [h.get(name) for h in history]
            if all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
                series[name] = values
        curves[stage] = series
    return curves


def _provenance(described: dict[str, Any]) -> str:
    """A teacher's `describe()` as a sentence: name and network, weight files by name, origin, licence."""
    parts = [f"{described.get('name', '?')}" + (f" ({described['network']})" if described.get("network") else "")]
    if described.get("weights"):
        parts.append("weights " + ", ".join(Path(str(w)).name for w in described["weights"]))
    parts += [str(described[k]) for k in ("weights_origin", "weights_licence") if described.get(k)]
    rest = {k: v for k, v in described.items() if k not in ("name", "network", "weights", "weights_origin", "weights_licence")}
    parts += [f"{k} {v}" for k, v in rest.items()]
    return "; ".join(parts)


def _artifacts(ctx: StageContext) -> list[dict[str, Any]]:
    """One row per exported file, as the export stage summarises the folders it verified."""
    from adcsr.export import artifact_rows

    return [row for key, folder in sorted(ctx.inputs.items()) if key.startswith("export.")
            for row in artifact_rows(folder)]


def _phones(ctx: StageContext) -> list[dict[str, Any]]:
    """The hub stage's AI Hub rows, when the run had one, each beside the HTP emulator's parity for
    the same W8A16 graph (the export's QNN context model) when there is one."""
    if "hub.results" not in ctx.inputs:
        return []
    from adcsr.core.manifest import read_manifest
    from adcsr.hub import hub_rows

    emulator = None
    if "export.qnn" in ctx.inputs:
        artifacts = read_manifest(ctx.input("export.qnn") / "manifest.json").get("artifacts", [])
        emulator = next((a.get("psnr_db_htp_emulator") for a in artifacts if a.get("kind") == "qnn_context"), None)
    rows = hub_rows(ctx.input("hub.results"))
    for row in rows:
        if row["graph"] in ("whole", "features → decode (split)") and row.get("quantize") == "local":
            row["emulator_psnr_db"] = emulator
    return rows


def build_report(ctx: StageContext, rc: ReportSettings, *, teacher_name: str, teacher_options: dict[str, Any],
                 seed: int, subtitle: str, run_notes: list[str]) -> tuple[Path, Path]:
    """Measure the teacher (`teacher_name` built with `teacher_options`), the run's student
    (`stage2.student`) and its exports (`export.*`) on the held-out photos; write the report."""
    from adcsr.bench import run_bench
    from adcsr.core.colorfix import get_color_fix
    from adcsr.core.upscaler import Bicubic, load_upscaler
    from adcsr.report import write_report

    out = ctx.dir / "out"
    out.mkdir(parents=True, exist_ok=True)
    names, lr, hr = heldout_set(4 * rc.lr_size, rc.photos, seed)
    teacher = load_upscaler(teacher_name, **teacher_options)
    student_dir = ctx.input("stage2.student")
    student = load_upscaler(f"student:{student_dir}")
    models = {"LR bicubic": Bicubic(), f"teacher ({teacher.name})": teacher, "student fp32": student}
    if "export.qnn" in ctx.inputs:
        from adcsr.export import load_artifact

        models["student W8A16 (HTP emulator)"] = load_artifact(ctx.input("export.qnn"))
    raw = {label: model.upscale(lr, color_fix="none") for label, model in models.items()}
    # the student and its artifacts are shown and measured as a user gets them: colour-fixed
    fix = get_color_fix(student.default_color_fix)
    srs = {label: fix(sr, lr).clamp(0, 1) if label.startswith("student") else sr for label, sr in raw.items()}
    crops = [{"photo": name, "panels": [*((label, _save_png(sr[i], out / f"{name}_{k}.png"))
                                          for k, (label, sr) in enumerate(srs.items())),
                                        ("HR", _save_png(hr[i], out / f"{name}_hr.png"))]}
             for i, name in enumerate(names)]
    # the bench rebuilds models from spec strings, which carry no loader options
    bench = None if teacher_options else run_bench(teacher_name, f"student:{student_dir}", lr_size=rc.bench_lr_size,
                                                   repeats=rc.bench_repeats, backends=("torch",), memory=False,
                                                   cuda=False, baselines=tuple(rc.baselines))
    rows = _model_rows(raw, srs, hr, rc, teacher, student_dir, bench)
    by_name = {m["name"]: m for m in rows}
    checks = student_checks(by_name["LR bicubic"], by_name[f"teacher ({teacher.name})"], by_name["student fp32"],
                            by_name.get("student W8A16 (HTP emulator)"))
    artifacts = _artifacts(ctx)
    for a in artifacts:  # links from the report to each folder's deploy README and manifest
        a["links"] = {"README": os.path.relpath(Path(a["folder"]) / "README.md", out),
                      "manifest": os.path.relpath(Path(a["folder"]) / "manifest.json", out)}
    results = {
        "title": "adcsr-mobile pipeline report",
        "subtitle": f"{subtitle} · student {student_dir}",
        "run": run_facts(ctx.dir.parent, out),
        "gates": gates(artifacts, checks),
        "definitions": DEFINITIONS,
        "models": rows,
        "bench_lr_size": rc.bench_lr_size,
        "checks": checks,
        "artifacts": artifacts,
        "phones": _phones(ctx),
        "published": PUBLISHED,
        "crops": crops,
        "curves": _curves(ctx),
        "notes": _notes(names, rc, seed, teacher, student, bench) + run_notes,
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=2, default=str) + "\n")
    return write_report(results, out)


def _model_rows(raw: dict[str, torch.Tensor], srs: dict[str, torch.Tensor], hr: torch.Tensor, rc: ReportSettings,
                teacher: Any, student_dir: Path, bench: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A row per model: quality on the held-out photos, with size and latency from the bench."""
    teacher_label = f"teacher ({teacher.name})"
    rows_by_role, baselines = {}, []
    for row in (bench or {}).get("rows", []):
        if row["model"] in bench["baselines"]:
            baselines.append(row)
        else:
            rows_by_role["teacher" if row["model"] == bench["teacher"] else "student"] = row
    teacher_files = [Path(p) for p in teacher.describe().get("weights", [])]
    models = []
    for label, sr in srs.items():
        role = "teacher" if label.startswith("teacher") else "student" if label.startswith("student") else None
        row = {"name": label, **quality(sr, hr, rc.metric_weights),
               "psnr_vs_teacher": None if role == "teacher" else mean_psnr_y(sr, srs[teacher_label]),
               "color_error": color_error(sr, hr)}
        if role == "student":
            row["color_error_unfixed"] = color_error(raw[label], hr)
        if role in rows_by_role:
            b = rows_by_role[role]
            row.update(params=b["params"], macs=b["macs"])
            if label in (teacher_label, "student fp32"):
                row["latency_ms"] = b["median_ms"]
        if label == "student fp32":
            row["size_bytes"] = size_on_disk(student_dir)
        elif role == "teacher" and teacher_files and all(p.exists() for p in teacher_files):
            row["size_bytes"] = sum(size_on_disk(p) for p in teacher_files)
        models.append(row)
    unfixed = raw["student fp32"]  # the network's own output, beside the colour-fixed row
    models.insert(next(i for i, m in enumerate(models) if m["name"] == "student fp32") + 1, {
        "name": "student fp32, --color-fix none", **quality(unfixed, hr, rc.metric_weights),
        "psnr_vs_teacher": mean_psnr_y(unfixed, srs[teacher_label]), "color_error": color_error(unfixed, hr)})
    return models + [{"name": f"{b['model']}, untrained (size and speed only)", "params": b["params"],
                      "macs": b["macs"], "latency_ms": b["median_ms"]} for b in baselines]


def _notes(names: list[str], rc: ReportSettings, seed: int, teacher: Any, student: Any,
           bench: dict[str, Any] | None) -> list[str]:
    notes = [
        f"Held-out photos {', '.join(names)}: centre crops {4 * rc.lr_size}² degraded with the training "
        f"degradation (seed {seed}); PSNR/SSIM on Y with a 4-pixel border; NIQE on the SR image.",
        f"Teacher: {_provenance(teacher.describe())}.",
        f"Student rows are colour-fixed as a user gets them ({student.default_color_fix}: each channel's mean "
        "and std matched to the LR image's, as the AdcSR release does); colour error = the largest |channel mean "
        "of SR − that of HR| over photos and channels, on [0, 1]; 'without a fix' is the network's own output.",
    ]
    if bench:
        notes.append(f"Latency: median of {bench['repeats']} interleaved runs, {rc.bench_lr_size}² → "
                     f"{4 * rc.bench_lr_size}², PyTorch on "
                     f"{bench['threads']} CPU threads; student speed-up {bench['student_speedup']['torch']:.2f}×.")
    return notes
