"""Export checks that cannot mislead (issue 17), each against a case built to fail:

- an SM8650 export measures its parity on an SM8650 emulator session (read back from the session);
- a chained two-graph QNN context is checked as a whole: a node between the halves is reported;
- the mixed-precision search ranks layers on calibration tiles, never on the held-out ones;
- `adcsr export verify` applies the thresholds its manifest records;
- the QNN `.pte`'s 16a8w parity must meet `min_w8a16_psnr`;
- Core ML's fp16 compute: ops whose activations leave fp16's range stay fp32 in the package.

The student is the CI pipeline's trained one and the reference artifacts are its export stage's
(`exported` in tests/conftest.py), as in test_export_targets.py; the tests that export a student
again check mechanics (which session, which tiles, which gate), so they export the `micro` student
preset (`small_student`), in seconds, and need not share the pipeline's worker.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from torch import nn

from adcsr.core.errors import UserError
from adcsr.export import coreml_export as cm
from adcsr.export import qnn, qnn_coverage, w8a16
from adcsr.export.config import ExportConfig
from adcsr.export.runtime import load_artifact
from adcsr.export.student_io import StudentRef
from adcsr.export.qnn_target import export_qnn
from adcsr.export.target_context import Context
from adcsr.export.targets import export_coreml, export_executorch
from adcsr.export.thresholds import DEFAULTS, FP16_MAX, meets_minimum
from adcsr.export.verify import verify

TILE = 16  # the CI pipeline's export tile


def _manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


def _write_manifest(folder, data):
    (folder / "manifest.json").write_text(json.dumps(data, indent=2))


@pytest.fixture(scope="module")
def sm8650(small_student, tmp_path_factory):
    """(context, qnn folder) of an SM8650 export of the `micro` student (random weights: these are
    mechanics, so the W8A16 mark is off) with a mixed-precision
    search (`target_psnr` met at the first try, so the search ranks layers and measures once).
    One tile for the search and one held out, two calibration tiles: each layer of the ranking is
    a forward pass per search tile, each HTP-emulator parity a run per tile, and what these tests
    check (the session's SoC, which tiles the search read) needs no more."""
    cfg = ExportConfig(tile=TILE, soc="SM8650", calibration_count=2, eval_count=1, target_psnr=0.0,
                       min_w8a16_psnr=0.0)
    ctx = Context(StudentRef.parse(str(small_student)), cfg, progress=False)
    out = tmp_path_factory.mktemp("sm8650")
    export_qnn(ctx, out)
    return ctx, out / "qnn-SM8650"


def test_sm8650_export_measures_its_parity_on_an_sm8650_session(sm8650, tmp_path):
    """The parity runs before the manifest exists; it used to fall back to an SM8750 session."""
    _, folder = sm8650
    m = _manifest(folder)
    assert m["soc"] == "SM8650" and (m["soc_model"], m["htp_arch"]) == (57, 75)
    # what the emulator session itself reported, not what was asked of it
    assert m["parity_session"] == {"provider": "QNNExecutionProvider", "soc_model": "57", "htp_arch": "75",
                                   "soc": "SM8650"}
    assert _manifest(folder.parent / "onnx")["parity_session"]["soc_model"] == "57"
    report = verify(folder)
    assert report["results"][0]["session"]["soc_model"] == "57"
    # without a manifest and without a SoC there is no default SoC to fall back to
    bare = tmp_path / "bare"
    shutil.copytree(folder, bare)
    (bare / "manifest.json").unlink()
    with pytest.raises(UserError, match="records the SoC"):
        load_artifact(bare / "student_ctx.onnx")
    art = load_artifact(bare / "student_ctx.onnx", soc="SM8650")
    assert art.session["soc_model"] == "57"
    art.close()


def test_mixed_precision_ranking_reads_only_calibration_tiles(sm8650):
    """The recorded ranking is the one the calibration tiles give, and the held-out tiles would
    have given a different one (so a ranking on them would be caught)."""
    ctx, folder = sm8650
    search = _manifest(folder)["quantization"]["mixed_precision_search"]
    assert search["tiles"]["split"] == "train" and search["tiles"]["count"] == ctx.cfg.eval_count
    model = ctx.deploy("qnn")
    on_calibration = w8a16.layer_sensitivity(model, ctx.calibration[: ctx.cfg.eval_count])[:20]
    on_heldout = w8a16.layer_sensitivity(model, ctx.eval_lr)[:20]
    assert on_heldout != on_calibration
    assert [n for n, _ in search["sensitivity_db"]] == [n for n, _ in on_calibration]
    assert [v for _, v in search["sensitivity_db"]] == pytest.approx([v for _, v in on_calibration], abs=1e-6)
    # each try is judged on calibration tiles; the held-out parity is reported once, at the end
    assert list(search["tries"][0]) == ["kept_16bit", "psnr_db_calibration"]
    ctx_entry = next(a for a in _manifest(folder)["artifacts"] if a["kind"] == "qnn_context")
    assert ctx_entry["psnr_db_htp_emulator"] != search["tries"][-1]["psnr_db_calibration"]


def _tampered_context(exported, tmp_path, between: str):
    """A copy of the pipeline's two-graph QNN folder with `between` nodes inserted between the
    two EPContext nodes ("identity": an Identity; "float": a DequantizeLinear → QuantizeLinear
    round trip of the features, what a cut at a float tensor would leave on the CPU)."""
    folder = tmp_path / "qnn"
    shutil.copytree(exported["qnn"], folder)
    path = folder / "student_ctx.onnx"
    model = onnx.load(str(path), load_external_data=False)
    nodes = list(model.graph.node)
    first, second = [n for n in nodes if n.op_type == "EPContext"]
    cut = first.output[0]
    assert list(second.input) == [cut, "lr"]  # the CI student has lr_skip: its decode half reads the LR too
    if between == "identity":
        new = [helper.make_node("Identity", [cut], ["moved"], name="between_halves")]
    else:
        model.graph.initializer.extend([onnx.numpy_helper.from_array(np.array(0.01, "float32"), "s"),
                                        onnx.numpy_helper.from_array(np.array(0, "uint16"), "z")])
        new = [helper.make_node("DequantizeLinear", [cut, "s", "z"], ["as_float"], name="dq_between"),
               helper.make_node("QuantizeLinear", ["as_float", "s", "z"], ["moved"], name="q_between")]
    second.input[0] = "moved"
    del model.graph.node[:]
    model.graph.node.extend([first, *new, second])
    onnx.save(model, str(path))
    return folder, path, [n.name for n in new]


@pytest.mark.parametrize("between", ["identity", "float"])
def test_a_node_between_the_chained_halves_is_reported(exported, tmp_path, between):
    """Each half compiled 100% on HTP is not enough: the chained model is checked as a whole."""
    soc = qnn.get_soc("SM8750")
    ok = qnn_coverage.check_coverage(exported["qnn"] / "student_ctx.onnx", exported["onnx"] / "student_w8a16.onnx", soc, 2)
    assert ok["epcontext_nodes"] == 2 and ok["offending_nodes"] == [] and ok["htp_fraction"] == 1.0
    folder, path, names = _tampered_context(exported, tmp_path, between)
    report = qnn_coverage.coverage(path, exported["onnx"] / "student_w8a16.onnx", graphs=2)
    assert [n for n, _ in report["offending_nodes"]] == names and report["htp_fraction"] < 1.0
    with pytest.raises(UserError, match="would run on the CPU") as e:
        qnn_coverage.check_coverage(path, None, soc, graphs=2)
    assert all(n in str(e.value) for n in names)
    with pytest.raises(UserError, match="would run on the CPU"):
        verify(folder)


def test_a_context_missing_a_graph_or_its_binary_is_reported(exported, tmp_path):
    folder = tmp_path / "qnn"
    shutil.copytree(exported["qnn"], folder)
    with pytest.raises(UserError, match="2 EPContext node.*expected 1"):
        qnn_coverage.check_coverage(folder / "student_ctx.onnx", None, qnn.get_soc("SM8750"), graphs=1)
    (folder / "student_decode_ctx_qnn.bin").unlink()
    with pytest.raises(UserError, match="context binary missing.*student_decode_ctx_qnn.bin"):
        qnn_coverage.check_coverage(folder / "student_ctx.onnx", None, qnn.get_soc("SM8750"), graphs=2)


def test_verify_applies_the_thresholds_recorded_in_the_manifest(exported, tmp_path):
    folder = tmp_path / "executorch"
    shutil.copytree(exported["executorch"], folder)
    m = _manifest(folder)
    assert m["thresholds"] == {k: float(v) for k, v in DEFAULTS.items()}  # recorded at export
    measured = m["artifacts"][0]["psnr_db"]
    pte = m["qnn_pte_quantization"]["psnr_db_pytorch"]
    # a recorded threshold the parity misses: one line, exit 2 (the old defaults would pass it)
    _write_manifest(folder, {**m, "thresholds": {**m["thresholds"], "min_fp32_psnr": measured + 1.0}})
    r = subprocess.run([sys.executable, "-m", "adcsr", "export", "verify", str(folder)], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "student_xnnpack.pte" in r.stderr and "min_fp32_psnr in the manifest" in r.stderr
    # just below the measured figure it passes, whatever the defaults say
    _write_manifest(folder, {**m, "thresholds": {**m["thresholds"], "min_fp32_psnr": measured - 1.0}})
    assert verify(folder)["thresholds"]["min_fp32_psnr"] == measured - 1.0
    # the QNN .pte's recorded 16a8w parity meets the manifest's W8A16 threshold, or verify fails
    _write_manifest(folder, {**m, "thresholds": {**m["thresholds"], "min_w8a16_psnr": pte + 1.0}})
    with pytest.raises(UserError, match=r"QNN \.pte's 16a8w graph \(recorded\).*min_w8a16_psnr"):
        verify(folder)
    # a manifest that records no thresholds is refused, not checked against defaults
    _write_manifest(folder, {k: v for k, v in m.items() if k != "thresholds"})
    with pytest.raises(UserError, match="records no thresholds"):
        verify(folder)


def test_qnn_pte_16a8w_parity_must_meet_the_threshold(small_student, tmp_path):
    """Without a QNN SDK nothing is lowered, and the quantized graph's parity is still a gate."""
    cfg = ExportConfig(tile=TILE, calibration_count=4, eval_count=2, min_w8a16_psnr=200.0)
    ctx = Context(StudentRef.parse(str(small_student)), cfg, progress=False)
    with pytest.raises(UserError, match=r"QNN \.pte's 16a8w graph.*below the required 200\.0 dB \(min_w8a16_psnr\)"):
        export_executorch(ctx, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_nan_never_meets_a_threshold():
    assert not meets_minimum(float("nan"), 40.0) and meets_minimum(float("inf"), 40.0)
    assert not meets_minimum(float("-inf"), 0.0)


class HotNet(nn.Module):
    """A ×4 net whose first conv outputs exceed fp16's range on real photos (constant weights of
    4000 over 27 inputs in [0, 1]); its GroupNorm brings them back, so the output is fine in fp32."""

    def __init__(self):
        super().__init__()
        self.conv_in = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.GroupNorm(2, 8)
        self.conv_out = nn.Conv2d(8, 48, 3, padding=1)
        self.shuffle = nn.PixelShuffle(4)
        with torch.no_grad():
            self.conv_in.weight.fill_(4000.0)
            self.conv_in.bias.zero_()

    def forward(self, x):
        return torch.sigmoid(self.shuffle(self.conv_out(nn.functional.silu(self.norm(self.conv_in(x))))))


def test_coreml_keeps_ops_beyond_the_fp16_range_in_fp32(tmp_path):
    torch.manual_seed(0)
    cfg = ExportConfig(tile=TILE, calibration_count=4, eval_count=2)
    ctx = Context(None, cfg, progress=False, student=HotNet())
    export_coreml(ctx, tmp_path)
    folder = tmp_path / "coreml"
    m = _manifest(folder)
    fp16 = m["fp16_compute"]
    kept = {op["op"]: op for op in fp16["fp32_ops"]}
    # the conv whose outputs leave fp16's range, and the GroupNorm whose squared deviations do
    assert set(kept) == {"conv2d", "group_norm"}
    assert kept["conv2d"]["layer"] == "conv_in" and kept["conv2d"]["why"] == "output"
    assert kept["conv2d"]["peak_calibration"] > FP16_MAX
    assert kept["group_norm"]["layer"] == "norm" and kept["group_norm"]["why"] == "squared deviation from the mean"
    assert fp16["fp32_layers"] == ["conv_in", "norm"]
    layers = {r["layer"]: r for r in fp16["layers"]}
    assert layers["conv_out"]["fp32_ops"] == 0 and layers["conv_out"]["peak_calibration"] < fp16["limit"]
    # all fp16 the output is NaN; as packaged it meets the threshold (and both are recorded)
    assert fp16["psnr_db"]["all_fp16"]["heldout"] == "nan"
    assert fp16["psnr_db"]["as_packaged"]["heldout"] >= m["thresholds"]["min_fp16_psnr"]
    # the saved package computes exactly those ops in fp32 and the rest in fp16
    w8 = next(a for a in m["artifacts"] if a["kind"] == "w8a16")
    dtypes = cm.op_dtypes(folder / w8["file"])
    assert w8["fp32_ops"]["conv2d"] == ["conv2d"] and dtypes["conv2d"] == ["FLOAT32"]
    assert "square_0" in w8["fp32_ops"]["group_norm"] and dtypes["square_0"] == ["FLOAT32"]
    assert dtypes["conv2d_1_cast_fp16"] == ["FLOAT16"]  # conv_out stays fp16
    cm.check_fp32_ops(folder / w8["file"], w8["fp32_ops"])
    fp32 = next(a for a in m["artifacts"] if a["kind"] == "fp32")
    assert "FLOAT16" not in fp32["spec"]["compute_ops_by_dtype"]
    # converted without the per-op precision, the same check fails: it reads the package
    program = cm.coreml_program(ctx.deploy("coreml"), TILE)
    plain, _ = cm.export_coreml(program, TILE, tmp_path / "plain.mlpackage", w8a16=True)
    assert cm.op_dtypes(plain)["conv2d_cast_fp16"] == ["FLOAT16"]
    with pytest.raises(RuntimeError, match="fp32 ops check failed: conv2d: op conv2d is not in the package"):
        cm.check_fp32_ops(plain, {"conv2d": ["conv2d"]})


def test_coreml_fp16_gate_fails_the_export_when_the_parity_misses(tmp_path):
    """An fp16 parity below the threshold (here: a threshold no fp16 run meets) fails the export
    and leaves no package behind."""
    cfg = ExportConfig(tile=TILE, calibration_count=4, eval_count=2, min_fp16_psnr=150.0)
    ctx = Context(None, cfg, progress=False, student=HotNet())
    with pytest.raises(UserError, match=r"Core ML fp16 compute.*below the required 150\.0 dB \(min_fp16_psnr\)"):
        export_coreml(ctx, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_trained_student_coreml_fp16_record(exported):
    """The pipeline's Core ML manifest records every layer's peak against fp16's range and the
    fp16-vs-fp32 parity, and keeps in fp32 exactly what the rule says."""
    m = _manifest(exported["coreml"])
    fp16 = m["fp16_compute"]
    assert fp16["fp16_max"] == FP16_MAX and fp16["limit"] == FP16_MAX / m["thresholds"]["fp16_headroom"]
    assert fp16["calibration_set"]["split"] == "train" and fp16["evaluation_set"]["split"] == "heldout"
    assert len(fp16["layers"]) > 50 and all(math.isfinite(r["peak_calibration"]) for r in fp16["layers"])
    over = {r["layer"] for r in fp16["layers"] if r["peak_calibration"] > fp16["limit"]}
    assert over <= set(fp16["fp32_layers"])
    assert float(fp16["psnr_db"]["as_packaged"]["heldout"]) >= m["thresholds"]["min_fp16_psnr"]
    assert verify(exported["coreml"])["results"][1]["threshold"] == "min_fp16_psnr"
