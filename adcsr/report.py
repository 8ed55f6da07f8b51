"""The pipeline's report: one results dict in, `report.md` + `report.html` + figures out.

Rendering only: every number comes from the results the pipeline computed in the same run.
Figures quoted from the papers go only into the `published` list and are labelled as such.
"""

from __future__ import annotations

import html
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adcsr.core.atomic import atomic_write_text
from adcsr.core.errors import UserError


BENCH_LR_SIZE = 128  # the README's figures: 128² → 512²


@dataclass
class ReportSettings:
    photos: int = 3  # held-out photos evaluated and shown
    lr_size: int = 64  # side of the held-out LR crops the metrics and pictures use
    bench_repeats: int = 3
    bench_lr_size: int = BENCH_LR_SIZE  # LR side the MACs and CPU latency are measured at (the SR is 4× that)
    metric_weights: dict[str, str] = field(default_factory=dict)  # learned metric name → local weights file
    # other methods timed beside teacher and student (bench specs, e.g. dfosd:tiny, tsdsr:tiny):
    # their size, MACs and CPU latency join the table (no quality: they are not trained in the run)
    baselines: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.bench_lr_size <= 0 or self.bench_lr_size % 16:
            raise UserError(f"report.bench_lr_size must be a positive multiple of 16, got {self.bench_lr_size}")


MODEL_COLUMNS = [
    ("name", "model"),
    ("params", "params"),
    ("macs", "MACs ({side}²→{sr}²)"),
    ("size_bytes", "file size"),
    ("latency_ms", "CPU latency"),
    ("psnr", "PSNR-Y vs HR ↑"),
    ("psnr_vs_teacher", "PSNR-Y vs teacher ↑"),
    ("ssim", "SSIM ↑"),
    ("niqe", "NIQE ↓"),
    ("color_error", "colour error ↓"),
]

CHECK_COLUMNS = [("check", "check"), ("measured", "measured"), ("target", "target"), ("passed", "")]

ARTIFACT_COLUMNS = [
    ("name", "artifact"),
    ("target", "target"),
    ("scheme", "precision"),
    ("size_bytes", "size"),
    ("parity_psnr_db", "PSNR vs PyTorch"),
    ("min_psnr_db", "mark"),
    ("htp_coverage", "HTP coverage"),
    ("runtime", "built with"),
    ("links", "files"),
]

GATE_COLUMNS = [("gate", "gate"), ("measured", "measured"), ("target", "target"), ("passed", "")]


# AI Hub rows (adcsr.hub.hub_rows): measured on a real phone by the service, when the run had a hub stage
PHONE_COLUMNS = [
    ("device", "device"),
    ("graph", "graph"),
    ("runtime", "runtime"),
    ("inference_ms", "inference (estimated)"),
    ("peak_memory_mb", "peak memory"),
    ("first_load_ms", "first load"),
    ("warm_load_ms", "warm load"),
    ("npu_layer_share", "layers on the NPU"),
    ("psnr_vs_pytorch_db", "PSNR vs PyTorch"),
    ("emulator_psnr_db", "same, HTP emulator"),
]


# the sections after the model table that show only when the run has rows for them
TABLES = [("checks", "Does the student work?", CHECK_COLUMNS), ("artifacts", "Phone artifacts", ARTIFACT_COLUMNS),
          ("phones", "On real phones (Qualcomm AI Hub)", PHONE_COLUMNS)]


def _fmt(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if key in ("params", "macs"):
        return _si(value)
    if key == "size_bytes":
        return _bytes(value)
    if key == "latency_ms":
        return f"{value:.1f} ms"
    if key in ("inference_ms", "first_load_ms", "warm_load_ms"):
        return f"{value:.2f} ms"
    if key == "peak_memory_mb":
        return f"{value[0]:.0f}–{value[1]:.0f} MB"
    if key == "passed":
        return "pass" if value else "FAIL"
    if key == "runtime" and isinstance(value, dict):  # an artifact's build versions (a phone row's is a name)
        return ", ".join(f"{k} {v}" for k, v in value.items() if v) or "—"
    if key == "min_psnr_db":
        return f"≥ {value:.0f} dB"
    if key in ("psnr", "psnr_vs_teacher", "parity_psnr_db", "psnr_vs_pytorch_db", "emulator_psnr_db"):
        return "∞ dB" if math.isinf(value) else f"{value:.2f} dB"
    if key in ("htp_coverage", "npu_layer_share"):
        return f"{100 * value:.0f}%"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def _si(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f}"


def _bytes(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} B"


def _model_columns(results: dict[str, Any]) -> list[tuple[str, str]]:
    """MODEL_COLUMNS with the bench's LR size in the MACs header."""
    side = _bench_lr_size(results)
    return [(key, title.format(side=side, sr=4 * side)) for key, title in MODEL_COLUMNS]


def _bench_lr_size(results: dict[str, Any]) -> int:
    return results.get("bench_lr_size", BENCH_LR_SIZE)


def _markdown_table(items: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    header = "| " + " | ".join(title for _, title in columns) + " |"
    sep = "| " + " | ".join("---" for _ in columns) + " |"

    def cell(key: str, item: dict[str, Any]) -> str:
        if key == "links":
            return " · ".join(f"[{name}]({path})" for name, path in (item.get(key) or {}).items()) or "—"
        return _fmt(key, item.get(key))

    body = ["| " + " | ".join(cell(key, item) for key, _ in columns) + " |" for item in items]
    return "\n".join([header, sep, *body])


def _html_table(items: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title in columns)

    def cell(key: str, item: dict[str, Any]) -> str:
        if key == "links":
            return " · ".join(f"<a href='{html.escape(path)}'>{html.escape(name)}</a>"
                              for name, path in (item.get(key) or {}).items()) or "—"
        text = html.escape(_fmt(key, item.get(key)))
        return f"<b class='{'pass' if item[key] else 'fail'}'>{text}</b>" if key == "passed" and item.get(key) is not None else text

    body = "".join("<tr>" + "".join(f"<td>{cell(key, item)}</td>" for key, _ in columns) + "</tr>" for item in items)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _html_text(text: str) -> str:
    """Escape `text` for HTML, turning `code` spans into <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _run_line(run: dict[str, Any]) -> str:
    seconds = run.get("stage_seconds", {})
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items())
    return (f"{run.get('date', '?')} · adcsr-mobile {run.get('version', '?')} · "
            f"{sum(seconds.values()) / 60:.1f} min before this report ({stages})")


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#1d2330;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}.sub{color:#5b6475;margin-top:0}
table{border-collapse:collapse;margin:1em 0;font-size:.92em}
th,td{border-bottom:1px solid #dde1e8;padding:.35em .8em;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f3f5f9}
.crops{display:grid;gap:.4em;margin:1em 0}.crops figure{margin:0}
.crops img{width:100%;image-rendering:pixelated;border-radius:3px}
figcaption{font-size:.8em;color:#5b6475;text-align:center}
.note{background:#f7f7f0;border-left:4px solid #c9b458;padding:.5em 1em;font-size:.9em}
.verdict{border:2px solid #8a94a6;border-radius:6px;padding:.3em 1.2em;margin:1em 0}
.pass{color:#1a7f37}.fail{color:#c62828}code{background:#f3f5f9;padding:0 .2em;border-radius:3px}
dl{font-size:.9em}dt{font-weight:600;margin-top:.4em}dd{margin-left:1.2em}
"""


def write_report(results: dict[str, Any], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Render `results` into `out_dir/report.md` and `out_dir/report.html` (plus PNG figures).

    `results` keys: `title`, `subtitle`, `models` (rows of MODEL_COLUMNS keys), `checks` (rows of
    CHECK_COLUMNS keys: the student's pass/fail gates), `artifacts` (rows of ARTIFACT_COLUMNS
    keys), `phones` (rows of PHONE_COLUMNS keys, from AI Hub), `published` (paper figures, shown
    apart), `crops` (list of {"photo", "panels": [(label, relative png path), ...]}), `curves`
    ({stage: {"step": [...], series: [...]}}), `notes` (list of plain sentences).
    """
    from adcsr.report_plots import bubble_plot, curves_plot

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures = {"bubble": bubble_plot(results.get("models", []), results.get("published", []), out / "bubble.png",
                                     _bench_lr_size(results)),
               "curves": curves_plot(results.get("curves", {}), out / "curves.png")}
    md_path, html_path = out / "report.md", out / "report.html"
    atomic_write_text(md_path, _markdown(results, figures))
    atomic_write_text(html_path, _html(results, figures))
    return md_path, html_path


PUBLISHED_COLUMNS = [("name", "system"), ("params", "params"), ("macs", "MACs"), ("source", "source")]


def _markdown(results: dict[str, Any], figures: dict[str, bool]) -> str:
    run, run_gates = results.get("run"), results.get("gates", [])
    md = [f"# {results.get('title', 'adcsr-mobile report')}", "", results.get("subtitle", ""), ""]
    if run or run_gates:
        md += ["## Verdict", ""]
        if run:
            md += [_run_line(run) + (f" · config [{run['config']}]({run['config']})" if run.get("config") else ""), ""]
        md += [_markdown_table(run_gates, GATE_COLUMNS), ""]
    md += ["## Teacher vs student (measured in this run)", "", _markdown_table(results.get("models", []), _model_columns(results)), ""]
    for key, title, columns in TABLES:
        if results.get(key):
            md += [f"## {title}", "", _markdown_table(results[key], columns), ""]
    for crop in results.get("crops", []):
        md += [f"### {crop['photo']}", "", " ".join(f"![{label}]({p})" for label, p in crop["panels"]), "",
               " · ".join(label for label, _ in crop["panels"]), ""]
    if figures["bubble"]:
        md += ["## Latency vs quality", "", "![bubble plot](bubble.png)", ""]
    if figures["curves"]:
        md += ["## Training curves", "", "![training curves](curves.png)", ""]
    if results.get("published"):
        md += ["## Published figures (from the papers, other hardware; not measured here)", "",
               _markdown_table(results["published"], PUBLISHED_COLUMNS), ""]
    md += [f"- {note}" for note in results.get("notes", [])]
    if results.get("definitions"):
        md += ["", "## Terms", ""] + [f"- **{term}**: {meaning}" for term, meaning in results["definitions"]]
    return "\n".join(md).rstrip() + "\n"


def _html(results: dict[str, Any], figures: dict[str, bool]) -> str:
    run, run_gates = results.get("run"), results.get("gates", [])
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(results.get('title', ''))}"
             f"</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(results.get('title', 'adcsr-mobile report'))}</h1>",
             f"<p class='sub'>{html.escape(results.get('subtitle', ''))}</p>"]
    if run or run_gates:
        config = (f" · config <a href='{html.escape(run['config'])}'>{html.escape(run['config'])}</a>"
                  if run and run.get("config") else "")
        parts.append("<div class='verdict'><h2>Verdict</h2>"
                     + (f"<p>{html.escape(_run_line(run))}{config}</p>" if run else "")
                     + _html_table(run_gates, GATE_COLUMNS) + "</div>")
    for crop in results.get("crops", []):
        figs = "".join(f"<figure><img src='{html.escape(p)}' alt='{html.escape(label)}'>"
                       f"<figcaption>{html.escape(label)}</figcaption></figure>" for label, p in crop["panels"])
        parts.append(f"<h3>{html.escape(crop['photo'])}</h3><div class='crops' "
                     f"style='grid-template-columns:repeat({len(crop['panels'])},1fr)'>{figs}</div>")
    parts += ["<h2>Teacher vs student</h2>", _html_table(results.get("models", []), _model_columns(results))]
    for key, title, columns in TABLES:
        if results.get(key):
            parts += [f"<h2>{html.escape(title)}</h2>", _html_table(results[key], columns)]
    for name, title in (("bubble", "Latency vs quality"), ("curves", "Training curves")):
        if figures[name]:
            parts += [f"<h2>{title}</h2>", f"<img src='{name}.png' alt='{title.lower()}' style='max-width:100%'>"]
    if results.get("published"):
        parts += ["<h2>Published figures</h2><p class='note'>Quoted from the papers (other hardware); "
                  "not measured in this run.</p>", _html_table(results["published"], PUBLISHED_COLUMNS)]
    if results.get("notes"):
        parts.append("<ul>" + "".join(f"<li>{_html_text(n)}</li>" for n in results["notes"]) + "</ul>")
    if results.get("definitions"):
        parts.append("<h2>Terms</h2><dl>" + "".join(f"<dt>{html.escape(t)}</dt><dd>{_html_text(d)}</dd>"
                                                   for t, d in results["definitions"]) + "</dl>")
    parts.append("</body></html>")
    return "\n".join(parts)
