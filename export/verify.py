"""`adcsr export verify ARTIFACT`: rerun an exported folder's artifacts against the PyTorch student.

The manifest written at export time says which student, evaluation set and thresholds apply; the
files' sha256 must still match it. Runnable artifacts (ONNX fp32, W8A16 on the HTP emulator, QNN
context binaries, XNNPACK `.pte`) are run on held-out photos; Core ML packages are checked by spec.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from adcsr.core.errors import UserError
from adcsr.core.manifest import read_manifest, sha256_tree

from . import calibration
from .runtime import MANIFEST, load_artifact
from .student_io import StudentRef
from .w8a16 import psnr

FP32_KINDS = ("fp32", "xnnpack_fp32")
W8A16_KINDS = ("w8a16_qdq", "qnn_context")


def verify(artifact: str | os.PathLike, min_fp32_psnr: float = 60.0, min_w8a16_psnr: float = 40.0) -> dict:
    """Check every artifact listed in the folder's manifest; `UserError` listing what failed."""
    folder = Path(artifact)
    folder = folder if folder.is_dir() and folder.suffix != ".mlpackage" else folder.parent
    manifest = read_manifest(folder / MANIFEST)
    ev = manifest.get("evaluation_set", {})
    lr = calibration.lr_tiles(ev.get("split", "heldout"), int(manifest["lr_tile"]), int(ev.get("count", 4)),
                              int(ev.get("seed", 0)))
    with torch.no_grad():
        reference = StudentRef.from_manifest(manifest).load()(lr).numpy()
    results, failures = [], []
    for entry in manifest.get("artifacts", []):
        path = folder / entry["file"]
        row = {"file": entry["file"], "kind": entry["kind"]}
        if not path.exists():
            failures.append(f"{entry['file']}: missing")
            continue
        if sha256_tree(path) != entry.get("sha256"):
            failures.append(f"{entry['file']}: sha256 differs from the manifest")
        if path.suffix != ".mlpackage" and entry["kind"] in FP32_KINDS + W8A16_KINDS:
            row["psnr_db"] = psnr(reference, load_artifact(path)(lr).numpy())
            need = min_fp32_psnr if entry["kind"] in FP32_KINDS else min_w8a16_psnr
            if row["psnr_db"] < need:
                failures.append(f"{entry['file']}: {row['psnr_db']:.2f} dB < {need:.1f} dB")
        elif path.suffix == ".mlpackage":
            from .coreml_export import check_spec, spec_report

            try:
                check_spec(spec_report(path), int(manifest["lr_tile"]), entry["kind"] == "w8a16")
                row["spec"] = "ok"
            except RuntimeError as e:
                failures.append(f"{entry['file']}: {e}")
        results.append(row)
    if failures:
        raise UserError(f"verification of {folder} failed: " + "; ".join(failures))
    return {"folder": str(folder), "target": manifest.get("target"), "results": results}
