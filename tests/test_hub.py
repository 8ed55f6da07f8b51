"""`adcsr hub`: the AI Hub chain, with the client's submit functions substituted (tests/hub_fakes.py)
since nothing here reaches the service; one opt-in test runs it for real when a token is configured."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import qai_hub

from adcsr.cli import main
from adcsr.hub import find_credentials, hub_rows, summarize_profile
from hub_fakes import FakeHub, profile_payload

TOKEN = "tok-3f9c2e71d8a4b6057e1f"


@pytest.fixture
def no_config(tmp_path, monkeypatch):
    """No token anywhere: not in the environment, no qai-hub client.ini."""
    monkeypatch.delenv("QAIHUB_API_TOKEN", raising=False)
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(tmp_path / "absent" / "client.ini"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def token(no_config, monkeypatch):
    monkeypatch.setenv("QAIHUB_API_TOKEN", TOKEN)
    return TOKEN


def _ini(path: Path, token: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"[api]\napi_token = {token}\napi_url = https://workbench.aihub.qualcomm.com\n"
                    "web_url = https://workbench.aihub.qualcomm.com\nverbose = True\n")
    return path


# ---- the token ----------------------------------------------------------------------------------
def test_no_token_is_one_line_exit_2_and_nothing_is_attempted(no_config, monkeypatch, tmp_path, capsys):
    def refuse(*a, **k):
        raise AssertionError("a client was built without a token")

    monkeypatch.setattr(qai_hub.Client, "__init__", refuse)
    assert main(["hub", "run", str(tmp_path / "missing-folder")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "qai-hub configure --api_token" in err[0] and "QAIHUB_API_TOKEN" in err[0]


def test_token_sources_in_order(no_config, monkeypatch, tmp_path):
    assert find_credentials() is None
    ini = _ini(tmp_path / "cfg" / "client.ini", "from-ini")
    monkeypatch.setenv("QAIHUB_CLIENT_INI", str(ini))
    assert find_credentials().token == "from-ini" and find_credentials().source == str(ini)
    monkeypatch.setenv("QAIHUB_API_TOKEN", "from-env")
    assert find_credentials().token == "from-env"
    creds = find_credentials("from-flag")
    assert creds.token == "from-flag" and "from-flag" not in repr(creds)


def test_a_service_error_never_shows_the_token(token, monkeypatch, exported, tmp_path, capsys):
    FakeHub(monkeypatch, fail={"compile-error": f"401 Unauthorized: header 'Authorization: token {TOKEN}' refused"})
    out = tmp_path / "out"
    assert main(["hub", "compile", str(exported["onnx"]), "--out", str(out), "--graphs", "whole"]) == 2
    captured = capsys.readouterr()
    assert TOKEN not in captured.out + captured.err
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "AI Hub compile failed: 401 Unauthorized" in err[0] and "***" in err[0]
    assert not list(out.glob("hub-*.json"))  # nothing half-written


def test_a_failed_job_names_its_id_page_and_reason(token, monkeypatch, exported, tmp_path, capsys):
    hub = FakeHub(monkeypatch, fail={"compile": "QNN tool error: op GroupNorm unsupported"})
    out = tmp_path / "out"
    assert main(["hub", "profile", str(exported["onnx"]), "--out", str(out), "--graphs", "whole"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    job = hub.called("submit_compile_job")
    assert len(job) == 1 and len(err) == 1
    assert "jc0001 failed: QNN tool error: op GroupNorm unsupported" in err[0]
    assert "https://workbench.aihub.qualcomm.com/jobs/jc0001/" in err[0]
    assert not hub.called("submit_inference_job") and not list(out.glob("hub-*.json"))


# ---- the chain ------------------------------------------------------------------------------------
def test_run_sends_the_w8a16_graphs_and_compares_the_phone_with_pytorch(token, monkeypatch, exported, tmp_path,
                                                                        capsys):
    hub = FakeHub(monkeypatch)
    out = tmp_path / "out"
    assert main(["hub", "run", str(exported["onnx"]), "--out", str(out)]) == 0
    tile = json.loads((exported["onnx"] / "manifest.json").read_text())["lr_tile"]
    # every call went through a client holding the configured token
    assert {c.config.api_token for c in hub.clients} == {TOKEN}
    assert hub.called("get_devices") == [{"name": "Samsung Galaxy S25 (Family)"}]
    assert not hub.called("submit_quantize_job")  # the export's own QDQ graph is compiled as it is
    compiles = hub.called("submit_compile_job")
    assert [c["name"] for c in compiles] == ["adcsr-whole", "adcsr-features", "adcsr-decode"]
    for c in compiles:
        assert c["options"] == "--target_runtime qnn_context_binary"
        assert c["device"].name == "Samsung Galaxy S25 (Family)"
    whole, features, decode = (c["input_specs"] for c in compiles)
    assert Path(compiles[0]["model"]).name == "student_w8a16.onnx"
    assert whole == {"lr": ((1, 3, tile, tile), "float32")} == features
    names = list(decode)
    assert decode[names[0]][0][:2] == (1, 32) and decode[names[0]][0][2:] == (tile // 2, tile // 2)
    assert decode.get("lr") == ((1, 3, tile, tile), "float32")  # lr_skip: the decode half reads the LR
    runs = hub.called("submit_inference_job")
    assert all(r["profile"] is True for r in runs) and len(runs) == 3
    for r in runs[:2]:
        (arrays,) = r["inputs"].values()
        assert len(arrays) == 4 and all(a.shape == (1, 3, tile, tile) and a.dtype == np.float32 for a in arrays)
    # the decode half was fed the features half's "on-device" output
    assert [a.shape for a in runs[2]["inputs"][names[0]]] == [(1, 32, tile // 2, tile // 2)] * 4

    (path,) = out.glob("hub-*.json")
    assert path.name == "hub-samsung-galaxy-s25-family-qnn_context_binary.json"
    data = json.loads(path.read_text())
    assert TOKEN not in path.read_text()
    # the QDQ graph run on the CPU agrees with PyTorch as the export's W8A16 checks require
    assert data["parts"]["whole"]["psnr_vs_pytorch_db"] > 40
    assert data["split"]["psnr_vs_pytorch_db"] > 40
    assert data["parts"]["whole"]["tool_versions"] == {"qnn_sdk_version": "2.40.0.251030", "hub": "aihub-2026.11.3"}
    assert {p["compiled"] for p in data["parts"].values()} == {"student_whole.bin", "student_features.bin",
                                                               "student_decode.bin"}
    assert all((out / p["compiled"]).is_file() for p in data["parts"].values())
    assert set(data["jobs"]) == {f"{g}.{s}" for g in ("whole", "features", "decode") for s in ("compile", "inference")}
    printed = capsys.readouterr().out
    assert "split (features → decode)" in printed and TOKEN not in printed

    rows = hub_rows(out)
    assert [r["graph"] for r in rows] == ["whole", "features", "decode", "features → decode (split)"]
    assert rows[0]["inference_ms"] == pytest.approx(2.15) and rows[0]["peak_memory_mb"] == [38.0, 52.5]
    assert rows[3]["inference_ms"] == pytest.approx(4.30)


def test_hub_quantizes_the_fp32_graph_with_int8_weights_int16_activations(token, monkeypatch, exported, tmp_path):
    hub = FakeHub(monkeypatch)
    out = tmp_path / "out"
    assert main(["hub", "compile", str(exported["onnx"]), "--out", str(out), "--quantize", "hub",
                 "--device", "SM8650", "--runtime", "qnn_dlc", "--quantize-io"]) == 0
    tile = json.loads((exported["onnx"] / "manifest.json").read_text())["lr_tile"]
    assert hub.called("get_devices") == [{"name": "Samsung Galaxy S24 (Family)"}]
    quantize = hub.called("submit_quantize_job")
    assert [q["name"] for q in quantize] == ["adcsr-whole-w8a16", "adcsr-features-w8a16", "adcsr-decode-w8a16"]
    for q in quantize:
        assert q["weights_dtype"] == qai_hub.QuantizeDtype.INT8
        assert q["activations_dtype"] == qai_hub.QuantizeDtype.INT16
    assert Path(quantize[0]["model"]).name == "student_fp32.onnx"
    (lr,) = quantize[0]["calibration_data"].values()
    assert len(lr) == 8 and all(a.shape == (1, 3, tile, tile) and a.dtype == np.float32 for a in lr)
    decode = quantize[2]["calibration_data"]
    feats = decode[next(iter(decode))]
    assert len(feats) == 8 and feats[0].shape == (1, 32, tile // 2, tile // 2) and feats[0].dtype == np.float32
    assert len(decode["lr"]) == 8
    for c in hub.called("submit_compile_job"):
        assert c["options"] == "--target_runtime qnn_dlc --quantize_io"
        assert c["model"].kind == "quantize"  # the quantize job's output is what gets compiled
    assert not hub.called("submit_inference_job")


def test_device_by_chipset_and_an_unknown_device(token, monkeypatch, exported, tmp_path, capsys):
    hub = FakeHub(monkeypatch)
    assert main(["hub", "compile", str(exported["onnx"]), "--out", str(tmp_path), "--graphs", "whole",
                 "--chipset", "qualcomm-snapdragon-8gen3"]) == 0
    assert hub.called("get_devices") == [{"attributes": "chipset:qualcomm-snapdragon-8gen3"}]
    assert hub.called("submit_compile_job")[0]["device"].attributes == ["chipset:qualcomm-snapdragon-8gen3"]
    assert main(["hub", "compile", str(exported["onnx"]), "--out", str(tmp_path), "--device", "Pixel 3"]) == 2
    assert "AI Hub lists no device for 'Pixel 3'" in capsys.readouterr().err


def test_bad_source_is_one_line(token, tmp_path, capsys):
    (tmp_path / "x").mkdir()
    assert main(["hub", "run", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "neither an export's onnx/ folder" in err[0]


# ---- profiles -------------------------------------------------------------------------------------
def test_profile_summary_from_the_clients_payload():
    layers = [(f"conv_{k}", "Conv2d", "NPU", 100) for k in range(8)] + [
        ("resize_0", "Resize", "CPU", 300), ("softmax_0", "Softmax", "GPU", 100)]
    payload = profile_payload(layers, runs_us=[5400, 5100, 5000, 5300, 5200], peak_mb=(12.0, 20.0),
                              first_load_us=812_000, warm_load_us=41_000, estimated_us=5000)
    s = summarize_profile(payload)
    assert s["inference_ms"] == pytest.approx(5.0) and s["inference_ms_median"] == pytest.approx(5.2)
    assert s["inference_runs"] == 5 and s["peak_memory_mb"] == [12.0, 20.0]
    assert s["first_load_ms"] == pytest.approx(812.0) and s["warm_load_ms"] == pytest.approx(41.0)
    assert s["layers"] == {"NPU": 8, "CPU": 1, "GPU": 1} and s["npu_layer_share"] == pytest.approx(0.8)
    assert s["npu_time_share"] == pytest.approx(800 / 1200)
    assert s["off_npu_layers"] == ["resize_0 (Resize, CPU)", "softmax_0 (Softmax, GPU)"]
    assert s["per_layer"][8] == {"name": "resize_0", "type": "Resize", "compute_unit": "CPU", "execution_time_us": 300}
    assert len(s["per_layer"]) == 10


def test_a_payload_that_is_not_a_profile_is_refused():
    from adcsr.core.errors import UserError

    with pytest.raises(UserError, match="not an AI Hub profile"):
        summarize_profile({"execution_summary": {}})


# ---- the real service (opt-in) ----------------------------------------------------------------------
@pytest.mark.skipif(find_credentials() is None, reason="no AI Hub token configured (qai-hub configure / "
                    "QAIHUB_API_TOKEN): the live chain cannot run")
def test_live_chain_on_the_tiny_student(exported, tmp_path):
    assert main(["hub", "run", str(exported["onnx"]), "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("hub-*.json")
    assert json.loads(path.read_text())["parts"]["whole"]["psnr_vs_pytorch_db"] > 40


# ---- the pipeline's hub stage and the report --------------------------------------------------------
def test_the_pipeline_checks_the_token_before_anything_runs(no_config):
    from adcsr.core.errors import UserError
    from adcsr.pipeline import build_pipeline, load_pipeline_config

    assert "hub" not in [s.name for s in build_pipeline(load_pipeline_config()).stages]  # off by default
    with pytest.raises(UserError, match="hub is enabled but no Qualcomm AI Hub token"):
        load_pipeline_config({"hub": {"enabled": True}})


def test_the_hub_stage_feeds_the_report(token, monkeypatch, exported, tmp_path):
    from adcsr.pipeline import _stage_hub, build_pipeline, load_pipeline_config
    from adcsr.report import write_report
    from adcsr.runner import StageContext

    FakeHub(monkeypatch)
    cfg = load_pipeline_config({"hub": {"enabled": True, "device": "SM8650"}})
    stages = {s.name: s for s in build_pipeline(cfg).stages}
    assert stages["hub"].needs == ("export",) and "hub" in stages["report"].needs
    assert TOKEN not in json.dumps(stages["hub"].settings)  # never part of a fingerprint or manifest
    out = _stage_hub(cfg)(StageContext("hub", tmp_path / "hub", {"export.onnx": exported["onnx"]}))
    from adcsr.report_stage import _phones

    rows = _phones(StageContext("report", tmp_path / "r", {"hub.results": out["results"], "export.qnn": exported["qnn"]}))
    assert {r["device"] for r in rows} == {"Samsung Galaxy S24 (Family)"} and len(rows) == 4
    emulator = next(a["psnr_db_htp_emulator"] for a in json.loads((exported["qnn"] / "manifest.json").read_text())
                    ["artifacts"] if a["kind"] == "qnn_context")
    assert rows[0]["emulator_psnr_db"] == emulator and rows[-1]["emulator_psnr_db"] == emulator  # side by side
    md, _ = write_report({"title": "t", "models": [], "phones": rows}, tmp_path / "report")
    text = md.read_text()
    assert "## On real phones (Qualcomm AI Hub)" in text
    assert "| Samsung Galaxy S24 (Family) | whole | qnn_context_binary | 2.15 ms | 38–52 MB | 412.00 ms | 23.50 ms |" \
        in text and f"| {emulator:.2f} dB |" in text
    assert "features → decode (split)" in text and TOKEN not in text
