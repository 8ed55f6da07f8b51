"""benchmarks/op_profile.py: every op's self time lands in one class, and the classes add up."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "op_profile.py"


def _module():
    spec = importlib.util.spec_from_file_location("op_profile", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_op_names_fall_in_the_classes_that_explain_the_time():
    op = _module().op_class
    assert op("aten::mkldnn_convolution") == op("aten::_slow_conv2d_forward") == "convolution"
    assert op("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention"
    assert op("aten::native_group_norm") == "normalisation" and op("aten::addmm") == "linear/matmul"
    assert op("aten::silu") == op("aten::add") == "pointwise" and op("aten::copy_") == "layout"
    assert op("cpp_fused_add_native_group_norm_silu_3") == "fused"  # inductor's merged kernel, not a norm


def test_a_profile_of_the_tiny_student_accounts_for_its_time(tmp_path, capsys):
    out = tmp_path / "profile.json"
    assert _module().main(["--preset", "tiny", "--lr", "16", "--runs", "1", "--backends", "torch",
                           "--out", str(out)]) == 0
    result = json.loads(out.read_text())["backends"]["torch"]
    shares = [c["share"] for c in result["classes"].values()]
    assert abs(sum(shares) - 1) < 1e-6 and result["classes"]["convolution"]["ms"] > 0
    assert abs(sum(c["ms"] for c in result["classes"].values()) - result["total_ms"]) < 1e-6
    assert "| convolution |" in capsys.readouterr().out
