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

from adcsr.core.atomic import atomic_path, atomic_write_text


@dataclass
class ReportSettings:
    photos: int = 3  # held-out photos evaluated and shown
    lr_size: int = 64  # side of the held-out LR crops the metrics and pictures use
    bench_repeats: int = 3
    metric_weights: dict[str, str] = field(default_factory=dict)  # learned metric name → local weights file
    # other methods timed beside teacher and student (bench specs, e.g. dfosd:tiny, tsdsr:tiny):
    # their size, MACs and CPU latency join the table (no quality: they are not trained in the run)
    baselines: list[str] = field(default_factory=list)


MODEL_COLUMNS = [
    ("name", "model"),
    ("params", "params"),
    ("macs", "MACs (128²→512²)"),
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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    _pyplot().close(fig)


def bubble_plot(models: list[dict[str, Any]], published: list[dict[str, Any]], path: Path) -> bool:
    """Latency vs quality with bubble area ∝ params (the AdcSR paper's Fig. 4 layout).

    Measured models are filled; published figures (different hardware) are hollow and labelled.
    Returns False when fewer than one model has both a latency and a quality figure.
    """
    plt = _pyplot()
    measured = [m for m in models if m.get("latency_ms") and m.get("psnr") is not None]
    if not measured:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    biggest = max(m.get("params") or 1 for m in measured)
    for m in measured:
        area = 150 + 2500 * (m.get("params") or 0) / biggest
        ax.scatter(m["latency_ms"], m["psnr"], s=area, alpha=0.55)
        ax.annotate(m["name"], (m["latency_ms"], m["psnr"]), fontsize=8, ha="center", va="bottom",
                    xytext=(0, 9), textcoords="offset points")
    ax.set_xscale("log")
    ax.margins(x=0.35, y=0.3)  # room for the bubbles and their labels
    ax.set_xlabel("latency per 128² → 512² image on this CPU (ms, log scale)")
    ax.set_ylabel("PSNR on held-out photos (dB)")
    ax.set_title("Latency vs quality (bubble area ∝ parameters), measured in this run", fontsize=9)
    ax.grid(alpha=0.3)
    _save(fig, path)
    return True


def curves_plot(curves: dict[str, dict[str, list[float]]], path: Path) -> bool:
    """One panel per training stage: its PSNR series (dB, left axis) and its losses (right axis)
    against the training step, on linear axes."""
    plt = _pyplot()
    stages = {k: v for k, v in curves.items() if v.get("step")}
    if not stages:
        return False
    fig, axes = plt.subplots(1, len(stages), figsize=(4.4 * len(stages), 3.4), dpi=110, squeeze=False)
    for ax, (stage, series) in zip(axes[0], stages.items()):
        steps = series["step"]
        named = {k: v for k, v in series.items() if k != "step" and len(v) == len(steps)}
        db = {k: v for k, v in named.items() if "psnr" in k}
        other = {k: v for k, v in named.items() if k not in db}
        for key, values in db.items():
            ax.plot(steps, values, marker="o", ms=3, label=key)
        ax.set_title(_STAGE_TITLES.get(stage, stage), fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel("PSNR-Y on validation crops (dB)" if db else "")
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if other:
            twin = ax.twinx()
            for key, values in other.items():
                twin.plot(steps, values, ls="--", color="0.4", label=key)
            twin.set_ylabel("loss")
            h2, l2 = twin.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
        ax.legend(handles, labels, fontsize=7, loc="best")
    _save(fig, path)
    return True


_STAGE_TITLES = {"autoencoder": "stage 0: stand-in VAE (reconstruction)", "stage1": "stage 1: pruned decoder",
                 "stage2": "stage 2: distillation"}


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
    CHECK_COLUMNS keys: the student's pass/fail gates), `artifacts`
    (rows of ARTIFACT_COLUMNS keys), `phones` (rows of PHONE_COLUMNS keys, from AI Hub), `published` (paper figures, shown apart), `crops`
    (list of {"photo", "panels": [(label, relative png path), ...]}), `curves`
    ({stage: {"step": [...], series: [...]}}), `notes` (list of plain sentences).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    models = results.get("models", [])
    artifacts = results.get("artifacts", [])
    phones = results.get("phones", [])
    published = results.get("published", [])
    has_bubble = bubble_plot(models, published, out / "bubble.png")
    has_curves = curves_plot(results.get("curves", {}), out / "curves.png")

    run, run_gates = results.get("run"), results.get("gates", [])
    md = [f"# {results.get('title', 'adcsr-mobile report')}", "", results.get("subtitle", ""), ""]
    if run or run_gates:
        md += ["## Verdict", ""]
        if run:
            md += [_run_line(run) + (f" · config [{run['config']}]({run['config']})" if run.get("config") else ""), ""]
        md += [_markdown_table(run_gates, GATE_COLUMNS), ""]
    md += ["## Teacher vs student (measured in this run)", "", _markdown_table(models, MODEL_COLUMNS), ""]
    checks = results.get("checks", [])
    if checks:
        md += ["## Does the student work?", "", _markdown_table(checks, CHECK_COLUMNS), ""]
    if artifacts:
        md += ["## Phone artifacts", "", _markdown_table(artifacts, ARTIFACT_COLUMNS), ""]
    if phones:
        md += ["## On real phones (Qualcomm AI Hub)", "", _markdown_table(phones, PHONE_COLUMNS), ""]
    for crop in results.get("crops", []):
        md += [f"### {crop['photo']}", "", " ".join(f"![{label}]({p})" for label, p in crop["panels"]), "",
               " · ".join(label for label, _ in crop["panels"]), ""]
    if has_bubble:
        md += ["## Latency vs quality", "", "![bubble plot](bubble.png)", ""]
    if has_curves:
        md += ["## Training curves", "", "![training curves](curves.png)", ""]
    if published:
        md += ["## Published figures (from the papers, other hardware; not measured here)", "",
               _markdown_table(published, [("name", "system"), ("params", "params"), ("macs", "MACs"),
                                           ("source", "source")]), ""]
    for note in results.get("notes", []):
        md.append(f"- {note}")
    if results.get("definitions"):
        md += ["", "## Terms", ""] + [f"- **{term}**: {meaning}" for term, meaning in results["definitions"]]
    md_path = out / "report.md"
    atomic_write_text(md_path, "\n".join(md).rstrip() + "\n")

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
        cols = len(crop["panels"])
        figs = "".join(
            f"<figure><img src='{html.escape(p)}' alt='{html.escape(label)}'>"
            f"<figcaption>{html.escape(label)}</figcaption></figure>"
            for label, p in crop["panels"]
        )
        parts.append(f"<h3>{html.escape(crop['photo'])}</h3>"
                     f"<div class='crops' style='grid-template-columns:repeat({cols},1fr)'>{figs}</div>")
    parts += ["<h2>Teacher vs student</h2>", _html_table(models, MODEL_COLUMNS)]
    if checks:
        parts += ["<h2>Does the student work?</h2>", _html_table(checks, CHECK_COLUMNS)]
    if artifacts:
        parts += ["<h2>Phone artifacts</h2>", _html_table(artifacts, ARTIFACT_COLUMNS)]
    if phones:
        parts += ["<h2>On real phones (Qualcomm AI Hub)</h2>", _html_table(phones, PHONE_COLUMNS)]
    if has_bubble:
        parts += ["<h2>Latency vs quality</h2>", "<img src='bubble.png' alt='bubble plot' style='max-width:100%'>"]
    if has_curves:
        parts += ["<h2>Training curves</h2>", "<img src='curves.png' alt='training curves' style='max-width:100%'>"]
    if published:
        parts += ["<h2>Published figures</h2><p class='note'>Quoted from the papers (other hardware); "
                  "not measured in this run.</p>",
                  _html_table(published, [("name", "system"), ("params", "params"), ("macs", "MACs"),
                                          ("source", "source")])]
    if results.get("notes"):
        parts.append("<ul>" + "".join(f"<li>{_html_text(n)}</li>" for n in results["notes"]) + "</ul>")
    if results.get("definitions"):
        parts.append("<h2>Terms</h2><dl>" + "".join(f"<dt>{html.escape(t)}</dt><dd>{_html_text(d)}</dd>"
                                                   for t, d in results["definitions"]) + "</dl>")
    parts.append("</body></html>")
    html_path = out / "report.html"
    atomic_write_text(html_path, "\n".join(parts))
    return md_path, html_path
