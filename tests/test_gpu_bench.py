"""benchmarks/gpu_bench.py, the script a lent GPU runs, dry-run on the CPU at the tiny preset:
every code path but the CUDA events, memory counters and reduced precision (CUDA-only for the
teachers: the dry run's variants compute in fp32) runs, and its table
pairs each variant with its model's fp32."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import gpu_bench  # noqa: E402


def test_dry_run_on_the_cpu_writes_every_row_and_the_tiled_throughput(tmp_path, capsys):
    torch.set_num_threads(1)
    assert gpu_bench.main(["--presets", "tiny", "--lr-size", "16", "--variants", "fp32", "bf16", "fp16 channels-last",
                           "--repeats", "1", "--warmup", "0", "--big", "48", "--device", "cpu",
                           "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "gpu_bench.json").read_text())
    pairs = {(r["spec"], r["variant"]) for r in result["rows"]}
    assert pairs == {(s, v) for s in ("student:tiny", "osediff:tiny") for v in ("fp32", "bf16", "fp16 channels-last")}
    assert result["tiled"]["sr"] == 192 and result["tiled"]["seconds"] > 0
    table = (tmp_path / "gpu_bench.md").read_text()
    assert table.count("| 1.00× |") == 2 and "Tiled:" in table


def test_without_cuda_it_says_so(capsys):
    if torch.cuda.is_available():
        return
    assert gpu_bench.main(["--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
