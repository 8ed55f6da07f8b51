"""`adcsr bench` on the tiny and micro presets: side-by-side rows, ratios and the fresh-process memory probe."""

import json

import pytest

import torch

from adcsr.backends import BACKENDS, backend, bf16_kernels
from adcsr.bench import build, markdown_table, peak_rss, run_bench, write_results
from adcsr.core.errors import UserError
from adcsr.core.models.macs import count_params


BENCHED = ("torch", "torch-channels-last", "onnxruntime")


@pytest.fixture(scope="module")
def result():
    return run_bench("realesrgan-compact", "student:micro", lr_size=32, repeats=2, warmup=1,
                     backends=BENCHED, memory=False, cuda=False)


def test_rows_pair_every_model_with_every_backend(result):
    pairs = {(r["model"], r["backend"]) for r in result["rows"]}
    assert pairs == {(m, b) for m in (result["teacher"], result["student"]) for b in BENCHED}
    for name, speedup in result["student_speedup"].items():
        rows = {r["model"]: r["median_ms"] for r in result["rows"] if r["backend"] == name}
        assert speedup == pytest.approx(rows[result["teacher"]] / rows[result["student"]])
    student = next(r for r in result["rows"] if r["model"] == result["student"])
    assert student["params"] == count_params(build("student:micro").module)
    assert student["macs"] > 0 and student["repeats"] == 2


def test_every_row_states_its_form_parity_and_roofline(result):
    """Eager fp32 is the reference; every other backend's parity is measured (finite, and the
    shipped fp32 ONNX agrees to float rounding); the roofline is achieved over a measured peak."""
    for r in result["rows"]:
        assert r["form"] == BACKENDS[r["backend"]].form and r["precision"] == "fp32"
        assert r["peak_gmacs"] > 0
        assert r["achieved_gmacs"] == pytest.approx(r["macs"] / (r["median_ms"] / 1e3) / 1e9)
        if r["backend"] == "torch":
            assert r["parity_db"] is None
        else:
            assert 60 < r["parity_db"] < float("inf")
    eager = result["speedup_over_eager"]
    assert all(v == 1.0 for v in eager["torch"].values())
    table = markdown_table(result)
    assert "| ref |" in table and "of fp32" in table and "`onnxruntime` = the shipped fp32 ONNX" in table


def test_results_written_as_json_and_markdown(result, tmp_path):
    js, md = write_results(result, tmp_path)
    assert json.loads(js.read_text())["student_speedup"] == result["student_speedup"]
    table = md.read_text()
    assert table.count("| realesrgan-compact teacher |") == len(BENCHED) and "×" in table


# the lower-precision backends' PSNR (dB) against eager fp32 on a held-out photo tile of the compact
# teacher (measured: bf16 62, int8 42); fp32 backends agree to float rounding
MIN_PARITY = {"torch-bf16": 50.0, "torch-compile-bf16": 50.0, "onnxruntime-int8": 36.0}


@pytest.mark.parametrize("name", BACKENDS)
def test_every_backend_runs_the_model_it_is_given(name, tmp_path):
    """Each CPU backend computes the image eager PyTorch does (to float rounding in fp32, within
    the precision's error for bf16 and int8, and not merely the fp32 model again), and the
    channels-last copy leaves the benchmarked model as it was."""
    from adcsr.core.metrics.fidelity import parity_psnr
    from adcsr.export import lr_tiles

    model = build("realesrgan-compact").module
    lr = lr_tiles("heldout", 32, 1)
    if backend(name).precision == "bf16" and not bf16_kernels():  # an AVX2-only CPU: refused, not 70× slower
        with pytest.raises(UserError, match="bf16 backends need a CPU with AVX-512 or AMX"):
            backend(name).prepare(model, lr, tmp_path)
        return
    with torch.inference_mode():
        expected = model(lr)
    out = backend(name).prepare(model, lr, tmp_path)(lr)
    assert out.dtype == torch.float32 and out.shape == expected.shape
    if name in MIN_PARITY:
        assert MIN_PARITY[name] < parity_psnr(expected.clamp(0, 1), out.clamp(0, 1)) < 90
    else:
        torch.testing.assert_close(out.contiguous(), expected, atol=1e-4, rtol=1e-4)
    assert all(p.is_contiguous() for p in model.parameters())


def test_memory_probe_sees_the_model_in_a_fresh_process():
    small = peak_rss("realesrgan-compact", 32)
    big = peak_rss("student:tiny", 32)
    # the weights (float32) must be resident at the peak; the probe must not report the parent's peak
    assert big["model_rss_bytes"] >= 4 * count_params(build("student:tiny").module)
    assert 0 < small["model_rss_bytes"] < big["model_rss_bytes"]


def test_bad_spec_is_a_user_error():
    with pytest.raises(UserError, match="unknown teacher"):
        build("nosuchteacher")
    with pytest.raises(UserError, match="only student"):
        build("realesrgan:tiny")
    with pytest.raises(UserError, match="same model"):
        run_bench("student:tiny", "student:tiny", lr_size=16, repeats=1, memory=False, cuda=False)
    with pytest.raises(UserError, match="unknown backend 'tensorrt'"):
        backend("tensorrt")


def test_onnxruntime_times_the_student_in_its_shipped_deploy_form(monkeypatch, tmp_path):
    """The ONNX timed for a student is the one the export ships (its QNN deploy form, with the
    two-step GroupNorm), not the training form."""
    from adcsr.export import onnx_export
    from adcsr.export.deploy import StaticStudent, TwoStepGroupNorm

    exported = []

    class Exported(Exception):
        pass

    def spy(model, tile, path):
        exported.append(model)
        raise Exported

    monkeypatch.setattr(onnx_export, "export_onnx", spy)
    with pytest.raises(Exported):
        backend("onnxruntime").prepare(build("student:tiny").module, torch.rand(1, 3, 32, 32), tmp_path)
    (model,) = exported
    assert isinstance(model, StaticStudent)
    assert any(isinstance(m, TwoStepGroupNorm) for m in model.modules())
    assert not any(isinstance(m, torch.nn.GroupNorm) and not isinstance(m, TwoStepGroupNorm) for m in model.modules())


def test_the_other_methods_are_timed_in_the_same_runs(tmp_path, capsys):
    from adcsr.bench import PRESET_BASELINES
    from adcsr.cli import main

    result = run_bench("osediff:tiny", "student:tiny", lr_size=16, repeats=1, warmup=0, backends=("torch",),
                       memory=False, cuda=False, baselines=PRESET_BASELINES["tiny"])
    labels = [r["model"] for r in result["rows"]]
    assert labels == ["OSEDiff-shaped teacher (tiny)", "AdcSR student (tiny)", "DFOSD-shaped teacher (tiny)",
                      "TSD-SR-shaped teacher (tiny)"]
    by = {r["model"]: r for r in result["rows"]}
    versus = result["student_speedup_vs"]["torch"]
    for label in (labels[0], *labels[2:]):
        assert versus[label] == pytest.approx(by[label]["median_ms"] / by[labels[1]]["median_ms"])
        assert by[label]["params"] > 0 and by[label]["macs"] > 0
    assert versus[labels[0]] == pytest.approx(result["student_speedup"]["torch"])
    # the CLI's --preset times every method present at that size unless told otherwise
    assert main(["bench", "--preset", "tiny", "--lr-size", "16", "--repeats", "1", "--warmup", "0",
                 "--backends", "torch", "--no-memory", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "bench.md").read_text()
    assert "| DFOSD-shaped teacher (tiny) | torch |" in table and "| TSD-SR-shaped teacher (tiny) | torch |" in table
    with pytest.raises(UserError, match="the same model is given twice"):
        run_bench("osediff:tiny", "student:tiny", lr_size=16, repeats=1, memory=False, cuda=False,
                  baselines=("osediff:tiny",))


def test_a_failing_backend_costs_only_its_own_rows(monkeypatch):
    """A backend whose process raises (no C++ compiler, out of memory, an exporter error) is
    reported by name and message; the other backends' rows and ratios stand."""
    import adcsr.bench as bench

    real = bench.in_fresh_process

    def fake(fn, *args):
        if fn is bench._time_backend and args[0] == "onnxruntime":
            raise ValueError("exporter broke\nsecond line")
        return real(fn, *args)

    monkeypatch.setattr(bench, "in_fresh_process", fake)
    result = run_bench("realesrgan-compact", "student:tiny", lr_size=16, repeats=1, warmup=0,
                       backends=("torch", "onnxruntime"), memory=False, cuda=False)
    assert {r["backend"] for r in result["rows"]} == {"torch"}
    assert result["failed_backends"] == {"onnxruntime": "ValueError: exporter broke"}
    assert "**`onnxruntime` failed**: ValueError: exporter broke" in markdown_table(result)


def test_a_graph_inductor_freezing_miscompiles_is_compiled_again_without_it(tmp_path, capsys):
    """torch 2.13's inductor freezing gets Real-ESRGAN x4plus wrong (≈ 4 dB against eager; its
    first two RRDBs with their trained weights already ≈ 23 dB, and compile in a sixth of the
    time); the backend notices on its example tile, says so and compiles without freezing."""
    from adcsr.core.metrics.fidelity import parity_psnr
    from adcsr.export import lr_tiles

    model = build("realesrgan").module
    model.net.body = torch.nn.Sequential(*list(model.net.body)[:2])
    lr = lr_tiles("heldout", 32, 2)
    run = backend("torch-compile").prepare(model, lr[:1], tmp_path)
    with torch.inference_mode():
        expected = model(lr[1:])
    assert parity_psnr(expected.clamp(0, 1), run(lr[1:]).clamp(0, 1)) > 80
    assert "compiling without freezing" in capsys.readouterr().err
