"""One summary row per shipped file of an export folder, read from the manifest the export wrote
(the schema is this stage's: readers such as the pipeline's report take these rows, not keys)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adcsr.core.manifest import size_on_disk

from .runtime import MANIFEST
from .thresholds import KIND_THRESHOLD

_W8A16_KINDS = ("qnn_context", "qnn_16a8w")


def artifact_rows(folder: str | Path) -> list[dict[str, Any]]:
    """{name, target, scheme, size_bytes, parity_psnr_db, min_psnr_db, htp_coverage, folder,
    runtime} for each runnable or shippable file of `folder` (a QNN context model's size includes
    its context binaries; `min_psnr_db` is the mark its export checked the parity against); the
    QNN `.pte`'s 16a8w graph gets a row of its own when no SDK lowered it (parity in PyTorch)."""
    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    marks = manifest.get("thresholds", {})
    common = {"target": manifest.get("target"), "folder": str(folder), "runtime": manifest.get("runtime", {})}
    files = manifest.get("artifacts", [])
    coverage = (manifest.get("htp_coverage") or {}).get("htp_fraction")
    bins = sum(size_on_disk(folder / b["file"]) for b in files if b.get("kind") == "qnn_context_bin")
    rows = []
    for a in files:
        kind = a.get("kind", "")
        if kind.endswith(("_bin", "_weights")):
            continue
        mark = "min_w8a16_psnr" if kind == "qnn_16a8w" else KIND_THRESHOLD.get(kind)
        rows.append({
            "name": a["file"], **common, "min_psnr_db": marks.get(mark),
            "scheme": "W8A16" if "w8a16" in a["file"] or kind in _W8A16_KINDS else "fp32",
            "size_bytes": size_on_disk(folder / a["file"]) + (bins if kind == "qnn_context" else 0),
            "parity_psnr_db": a.get("psnr_db", a.get("psnr_db_htp_emulator", a.get("psnr_db_pytorch"))),
            "htp_coverage": coverage if kind == "qnn_context" else None,
        })
    pte_quant = manifest.get("qnn_pte_quantization")
    if pte_quant and not any(a.get("kind") == "qnn_16a8w" for a in files):
        rows.append({"name": "QNN .pte's 16a8w graph (run in PyTorch; not lowered: no QNN SDK)",
                     **common, "min_psnr_db": marks.get("min_w8a16_psnr"), "scheme": "W8A16", "size_bytes": None,
                     "parity_psnr_db": pte_quant["psnr_db_pytorch"], "htp_coverage": None})
    return rows
