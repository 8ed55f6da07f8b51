"""The report's opening box: what was run (config, date, version, time) and whether each gate
passed — every export's parity against the mark it was checked under, the QNN context binary's
HTP coverage and size, and the working-student checks (`report_stage.student_checks`)."""

from __future__ import annotations

import json
import os
import time
from importlib import metadata
from pathlib import Path
from typing import Any


def run_facts(run_dir: Path, report_dir: Path) -> dict[str, Any]:
    """Date, adcsr version, the run's resolved config (a link relative to `report_dir`) and the
    seconds each finished stage took, from the stage manifests."""
    finished = [json.loads(m.read_text()) for m in run_dir.glob("*/manifest.json")]
    seconds = {d["stage"]: float(d["seconds"]) for d in sorted(finished, key=lambda d: d.get("created", ""))
               if "seconds" in d and "stage" in d}
    config = run_dir / "pipeline.yaml"
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "version": metadata.version("adcsr-mobile"),
        "config": os.path.relpath(config, report_dir) if config.is_file() else None,
        "stage_seconds": seconds,
    }


def gates(artifacts: list[dict[str, Any]], checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """[{gate, measured, target, passed}] for the verdict box."""
    from adcsr.export import CONTEXT_BUDGET_BYTES

    out = []
    measured = [a for a in artifacts if a.get("parity_psnr_db") is not None and a.get("min_psnr_db") is not None]
    if measured:
        short = [a["name"] for a in measured if not float(a["parity_psnr_db"]) >= float(a["min_psnr_db"])]
        worst = min(measured, key=lambda a: float(a["parity_psnr_db"]) - float(a["min_psnr_db"]))
        out.append({"gate": "every artifact matches the PyTorch student",
                    "measured": f"{len(measured) - len(short)} of {len(measured)} at their marks (closest: "
                                f"{worst['name']} {float(worst['parity_psnr_db']):.1f} dB)",
                    "target": _marks(measured), "passed": not short})
    for a in artifacts:
        if a.get("htp_coverage") is not None:
            out.append({"gate": f"{a['name']}: share of compute on the Hexagon NPU",
                        "measured": f"{100 * float(a['htp_coverage']):.0f}%", "target": "100%",
                        "passed": float(a["htp_coverage"]) >= 1.0})
            out.append({"gate": f"{a['name']}: size on the phone (with its .bin files)",
                        "measured": f"{a['size_bytes'] / 1e6:.1f} MB", "target": f"≤ {CONTEXT_BUDGET_BYTES / 1e6:.0f} MB",
                        "passed": a["size_bytes"] <= CONTEXT_BUDGET_BYTES})
    judged = [c for c in checks if c.get("passed") is not None]
    if judged:
        failed = [c["check"] for c in judged if not c["passed"]]
        out.append({"gate": "the student works (the checks below)",
                    "measured": f"{len(judged) - len(failed)} of {len(judged)} pass"
                                + (f"; failed: {'; '.join(failed)}" if failed else ""),
                    "target": "all", "passed": not failed})
    return out


def _marks(rows: list[dict[str, Any]]) -> str:
    """The marks the exports checked, by precision, as their manifests record them."""
    by_scheme: dict[str, set[float]] = {}
    for a in rows:
        by_scheme.setdefault(a["scheme"], set()).add(float(a["min_psnr_db"]))
    return ", ".join(f"{scheme} ≥ {'/'.join(f'{m:.0f}' for m in sorted(marks))} dB"
                     for scheme, marks in sorted(by_scheme.items()))


# One line per term the report uses.
DEFINITIONS = [
    ("PSNR-Y", "peak signal-to-noise ratio on the luma channel, 4-pixel border cropped, in dB; higher is closer"),
    ("PSNR vs PyTorch", "an artifact's output against the PyTorch student's on the same held-out LR tiles: how "
                        "faithfully it was exported, not how good the model is"),
    ("HTP emulator", "the HTP (Hexagon NPU) backend of onnxruntime-qnn's x86 build: it runs the same QNN context "
                     "binary a phone loads, on this computer's CPU"),
    ("HTP coverage", "the share of the context model's compute nodes inside QNN graphs on the HTP; anything else "
                     "would fall back to the phone's CPU"),
    ("W8A16", "8-bit integer weights, 16-bit integer activations (QDQ for QNN; fp16 compute for Core ML)"),
    ("MACs", "multiply-accumulates for one upscale at the size the table's header gives"),
    ("NIQE", "a no-reference naturalness score, lower is more natural; on 256² crops it is noisy: differences "
             "under about 1 mean little"),
    ("colour error", "the largest |mean of a channel of SR − the same of HR| over photos and channels, on [0, 1]"),
]
