"""ResShift (15 steps) and TAD-SR (one step) as `adcsr bench` specs and report baselines: what the
specs build, their counts, a bench run timing both, and their paper figures in the report's
published table."""

from __future__ import annotations

import pytest
import torch

from adcsr.bench import build, run_bench
from adcsr.core.errors import UserError
from adcsr.core.models.macs import count_macs, count_params

torch.set_num_threads(1)


def test_specs_build_both_at_the_tiny_preset_and_count_their_steps():
    resshift, tadsr = build("resshift:tiny"), build("tadsr:tiny")
    assert resshift.label == "ResShift (15 steps, tiny)" and tadsr.label == "TAD-SR (1 step, tiny)"
    assert count_params(resshift.module) == count_params(tadsr.module) == 1_033_893  # one network, one VQGAN
    lr = torch.rand(1, 3, 16, 16)
    unet = tadsr.module.unet
    one_call = count_macs(lambda: unet(torch.zeros(1, 3, 16, 16), torch.zeros(1, dtype=torch.long), lr * 2 - 1))
    # the same VQ encode and decode around 15 network calls instead of 1
    assert count_macs(resshift.module, lr) - count_macs(tadsr.module, lr) == 14 * one_call > 0


def test_bad_specs_are_one_line_errors():
    with pytest.raises(UserError, match="unknown ResShift UNet preset 'huge'"):
        build("tadsr:huge")
    with pytest.raises(UserError, match=r"resshift:… and tadsr:… take an argument"):
        build("realesrgan:tiny")


def test_bench_times_resshift_beside_tadsr():
    result = run_bench("tadsr:tiny", "student:tiny", lr_size=16, repeats=1, warmup=0, backends=("torch",),
                       memory=False, cuda=False, baselines=("resshift:tiny",))
    rows = {r["model"]: r for r in result["rows"]}
    assert result["teacher"] == "TAD-SR (1 step, tiny)" and result["baselines"] == ["ResShift (15 steps, tiny)"]
    resshift, tadsr = rows["ResShift (15 steps, tiny)"], rows["TAD-SR (1 step, tiny)"]
    assert resshift["spec"] == "resshift:tiny" and resshift["macs"] > 4 * tadsr["macs"]  # 4.57× (VQGAN shared)
    # 15 network calls against 1: measured 5.0–5.7× over four runs (one thread, a loaded machine)
    assert resshift["median_ms"] > 3 * tadsr["median_ms"], (resshift["median_ms"], tadsr["median_ms"])
    assert result["student_speedup_vs"]["torch"]["ResShift (15 steps, tiny)"] > 0


def test_the_report_quotes_their_paper_figures_as_published():
    from adcsr.report_stage import PUBLISHED

    by_name = {p["name"]: p for p in PUBLISHED}
    resshift, tadsr = by_name["ResShift-15 (TAD-SR paper, A100)"], by_name["TAD-SR-1 (TAD-SR paper, A100)"]
    assert resshift["params"] == pytest.approx(173.91e6) and "0.682 s" in resshift["source"]
    assert tadsr["params"] == pytest.approx(175.91e6) and "Table I" in tadsr["source"] and "0.058 s" in tadsr["source"]
