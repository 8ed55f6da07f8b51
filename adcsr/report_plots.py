"""The report's figures: latency vs quality (bubble area ∝ parameters) and the training curves,
each a PNG written atomically; matplotlib on its file-only backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from adcsr.core.atomic import atomic_path


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


def bubble_plot(models: list[dict[str, Any]], published: list[dict[str, Any]], path: Path,
                lr_size: int) -> bool:
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
    ax.set_xlabel(f"latency per {lr_size}² → {4 * lr_size}² image on this CPU (ms, log scale)")
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
