"""`adcsr export verify ARTIFACT`: recheck an exported folder against the thresholds its manifest records.

The manifest written at export time says which student, evaluation set and thresholds apply
(`thresholds`, from `thresholds.DEFAULTS` or the export config); verify applies those — there are
no other defaults. Per artifact:

- every file: its sha256 must still match the manifest;
- fp32 ONNX / XNNPACK `.pte`: rerun on the held-out tiles, parity ≥ `min_fp32_psnr`;
- W8A16 QDQ / QNN context: rerun on the HTP emulator of the manifest's SoC (the session must
  report that SoC), parity ≥ `min_w8a16_psnr`; a QNN context is checked as a whole too: nothing
  but its EPContext nodes (one per compiled graph) and the float I/O conversions outside HTP;
- Core ML packages: the spec (I/O, op list, int8 weights, fp16 compute), the ops the fp16 check
  kept fp32 still computing in fp32, and the recorded fp16-vs-fp32 parity ≥ `min_fp16_psnr`
  (recorded, not rerun: prediction needs macOS);
- the QNN `.pte`'s 16a8w graph: its recorded parity ≥ `min_w8a16_psnr` (recorded, not rerun:
  the quantized graph is not stored, and the `.pte` runs only on a phone).

Everything that fails is listed in one `UserError` line (the CLI exits 2).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from adcsr.core.errors import UserError
from adcsr.core.manifest import read_manifest, sha256_tree

from . import calibration
from .deploy_notes import version_drift
from .runtime import MANIFEST, load_artifact
from .student_io import StudentRef
from .thresholds import DEFAULTS, KIND_THRESHOLD, meets_minimum
from adcsr.core.metrics.fidelity import parity_psnr


def manifest_thresholds(manifest: dict, where: Path) -> dict[str, float]:
    """The thresholds an export recorded; a manifest without them is a one-line error."""
    recorded = manifest.get("thresholds")
    if not isinstance(recorded, dict):
        raise UserError(f"{where}: records no thresholds (written before exports recorded them): export it again")
    missing = [k for k in DEFAULTS if k not in recorded]
    if missing:
        raise UserError(f"{where}: thresholds lack {', '.join(missing)}: export it again")
    return {k: float(recorded[k]) for k in DEFAULTS}


def _below(name: str, value: float, thresholds: dict, key: str) -> str | None:
    need = thresholds[key]
    return None if meets_minimum(value, need) else f"{name}: {value:.2f} dB < {need:.1f} dB ({key} in the manifest)"


def verify(artifact: str | os.PathLike) -> dict:
    """Check every artifact listed in the folder's manifest; `UserError` listing what failed."""
    folder = Path(artifact)
    folder = folder if folder.is_dir() and folder.suffix != ".mlpackage" else folder.parent
    manifest = read_manifest(folder / MANIFEST)
    thresholds = manifest_thresholds(manifest, folder / MANIFEST)
    ev = manifest.get("evaluation_set", {})
    lr = calibration.lr_tiles(ev.get("split", "heldout"), int(manifest["lr_tile"]), int(ev.get("count", 4)),
                              int(ev.get("seed", 0)))
    with torch.no_grad():
        reference = StudentRef.from_manifest(manifest).load()(lr).numpy()
    check = _Check(folder, manifest, thresholds, lr, reference)
    results = [row for row in map(check.artifact, manifest.get("artifacts", [])) if row is not None]
    pte = manifest.get("qnn_pte_quantization")
    if pte is not None:
        recorded = float(pte.get("psnr_db_pytorch", "nan"))
        results.append({"check": "QNN .pte 16a8w graph (recorded, not rerun)", "psnr_db": recorded,
                        "threshold": "min_w8a16_psnr"})
        check.failures.append(_below("QNN .pte's 16a8w graph (recorded)", recorded, thresholds, "min_w8a16_psnr"))
    failures = [f for f in check.failures if f]
    if failures:
        raise UserError(f"verification of {folder} failed: " + "; ".join(failures))
    return {"folder": str(folder), "target": manifest.get("target"), "thresholds": thresholds, "results": results,
            "warnings": version_drift(manifest)}


@dataclass
class _Check:
    """One folder's verification: its manifest and thresholds, the held-out LR tiles and the PyTorch
    student's SR of them; `failures` collects what fails (None for a check that passed)."""

    folder: Path
    manifest: dict
    thresholds: dict[str, float]
    lr: torch.Tensor
    reference: np.ndarray
    failures: list[str | None] = field(default_factory=list)

    def artifact(self, entry: dict) -> dict | None:
        """Check one manifest entry; its results row, or None when it could not be run at all."""
        path = self.folder / entry["file"]
        kind = entry["kind"]
        row = {"file": entry["file"], "kind": kind}
        if not path.exists():
            self.failures.append(f"{entry['file']}: missing")
            return None
        if sha256_tree(path) != entry.get("sha256"):
            self.failures.append(f"{entry['file']}: sha256 differs from the manifest")
        if path.suffix != ".mlpackage" and kind in KIND_THRESHOLD:
            if kind == "qnn_context":
                self.qnn_coverage(path, entry, row)
            if not self.rerun(path, entry, row):
                return None
        elif path.suffix == ".mlpackage":
            self.coreml(path, entry, row)
        return row

    def qnn_coverage(self, path: Path, entry: dict, row: dict) -> None:
        """A QNN context checked as a whole: nothing but its EPContext nodes and I/O conversions outside HTP."""
        from .qnn import get_soc, graph_count
        from .qnn_coverage import check_coverage

        try:
            row["htp_coverage"] = check_coverage(path, None, get_soc(self.manifest["soc"]),
                                                 graph_count(self.manifest.get("htp_optimization_mode")))["htp_fraction"]
        except UserError as e:
            self.failures.append(f"{entry['file']}: {e}")

    def rerun(self, path: Path, entry: dict, row: dict) -> bool:
        """Run the artifact on the held-out tiles and check its parity; False when it cannot be opened."""
        kind = entry["kind"]
        try:  # verify reports a changed file itself and still measures what it now does
            run = load_artifact(path, check_manifest=False)
        except UserError as e:  # e.g. a context binary it needs was removed
            self.failures.append(str(e))
            return False
        except RuntimeError as e:  # a runtime that cannot open a changed file (a truncated .bin, say)
            self.failures.append(f"{entry['file']}: the runtime cannot open it ({str(e).strip().splitlines()[0][:200]})")
            return False
        row["psnr_db"] = parity_psnr(self.reference, run(self.lr).numpy())
        if run.session is not None:
            row["session"] = run.session
        run.close()
        row["threshold"] = KIND_THRESHOLD[kind]
        self.failures.append(_below(entry["file"], row["psnr_db"], self.thresholds, KIND_THRESHOLD[kind]))
        return True

    def coreml(self, path: Path, entry: dict, row: dict) -> None:
        """A Core ML package: its spec, its fp32 ops, and (W8A16) the recorded fp16-compute parity."""
        from .coreml_export import check_fp32_ops, check_spec, spec_report

        kind = entry["kind"]
        try:
            check_spec(spec_report(path), int(self.manifest["lr_tile"]), kind == "w8a16")
            if kind == "w8a16":
                check_fp32_ops(path, entry.get("fp32_ops", {}))
            row["spec"] = "ok"
        except RuntimeError as e:
            self.failures.append(f"{entry['file']}: {e}")
        if kind == "w8a16":
            recorded = float((self.manifest.get("fp16_compute") or {}).get("psnr_db", {}).get("as_packaged", {})
                             .get("heldout", "nan"))
            row.update(fp16_psnr_db_recorded=recorded, threshold="min_fp16_psnr")
            self.failures.append(_below(f"{entry['file']} fp16 compute (recorded)", recorded, self.thresholds,
                                        "min_fp16_psnr"))
