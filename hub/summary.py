"""The report's view of AI Hub results: a row per profiled graph, from the JSON files
`run_on_hub` wrote into a folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adcsr.core.errors import UserError


def read_results(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
        data["parts"], data["device"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{path}: not an AI Hub results file (written by `adcsr hub`)") from None
    return data


def hub_rows(folder: Path) -> list[dict[str, Any]]:
    """One row per (results file, graph), profiled graphs only, the split's end-to-end row after
    its halves; empty when the folder holds no results."""
    rows = []
    for path in sorted(Path(folder).glob("hub-*.json")):
        data = read_results(path)
        device = data["device"]["name"] or ",".join(data["device"]["attributes"])
        for name, part in data["parts"].items():
            if "profile" not in part:
                continue
            p = part["profile"]
            rows.append({
                "device": device, "runtime": data["runtime"], "graph": name, "quantize": part["quantize"],
                "inference_ms": p["inference_ms"], "inference_ms_median": p["inference_ms_median"],
                "peak_memory_mb": p["peak_memory_mb"], "first_load_ms": p["first_load_ms"],
                "warm_load_ms": p["warm_load_ms"], "npu_layer_share": p["npu_layer_share"],
                "off_npu_layers": len(p["off_npu_layers"]), "psnr_vs_pytorch_db": part.get("psnr_vs_pytorch_db"),
                "tool_versions": part.get("tool_versions", {}), "file": path.name,
            })
        if "split" in data:
            rows.append({"device": device, "runtime": data["runtime"], "graph": "features → decode (split)",
                         "quantize": data["parts"]["decode"]["quantize"],
                         "inference_ms": data["split"]["inference_ms"],
                         "psnr_vs_pytorch_db": data["split"]["psnr_vs_pytorch_db"], "file": path.name})
    return rows
