"""What an AI Hub profile says, in the units the report uses.

`summarize_profile` reads the dict `InferenceJob.download_profile()` returns (qai-hub 0.56: an
`execution_summary` in µs and bytes, and an `execution_detail` row per layer with its compute
unit) and keeps the figures people compare devices by.
"""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from adcsr.core.errors import UserError

_MB = 2**20


def _ms(us: Any) -> float | None:
    return None if us is None else us / 1000


def _mb_range(pair: Any) -> list[float] | None:
    return None if not pair else [pair[0] / _MB, pair[1] / _MB]


def summarize_profile(payload: dict[str, Any]) -> dict[str, Any]:
    """Estimated inference time, peak memory range, load times and where the layers ran."""
    try:
        summary = payload["execution_summary"]
        layers = payload["execution_detail"]
        estimated = summary["estimated_inference_time"]
    except (KeyError, TypeError):
        raise UserError("not an AI Hub profile: it needs execution_summary.estimated_inference_time "
                        "and execution_detail") from None
    runs = summary.get("all_inference_times") or []
    units = Counter(layer["compute_unit"] for layer in layers)
    time_by_unit: Counter[str] = Counter()
    for layer in layers:
        time_by_unit[layer["compute_unit"]] += layer.get("execution_time", 0)
    total_time = sum(time_by_unit.values())
    off_npu = [f"{layer['name']} ({layer['type']}, {layer['compute_unit']})" for layer in layers
               if layer["compute_unit"] != "NPU"]
    return {
        "inference_ms": _ms(estimated),
        "inference_ms_median": _ms(statistics.median(runs)) if runs else None,
        "inference_runs": len(runs),
        "peak_memory_mb": _mb_range(summary.get("inference_memory_peak_range")),
        "first_load_ms": _ms(summary.get("first_load_time")),
        "warm_load_ms": _ms(summary.get("warm_load_time")),
        "layers": dict(units),
        "npu_layer_share": units["NPU"] / len(layers) if layers else None,
        "npu_time_share": time_by_unit["NPU"] / total_time if total_time else None,
        "off_npu_layers": off_npu,
        "per_layer": [{"name": layer["name"], "type": layer["type"], "compute_unit": layer["compute_unit"],
                       "execution_time_us": layer.get("execution_time")} for layer in layers],
    }
