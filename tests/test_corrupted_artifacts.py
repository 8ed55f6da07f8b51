"""Corrupted models and artifacts give one line naming the file (exit 2), never a traceback or a
crashed runtime: a truncated student weights file, a config that does not fit its weights, a
truncated QNN context binary, a context model whose binary is missing, a .pte cut short, and a
manifest whose sha256 no longer matches (`adcsr upscale` and `adcsr export verify`)."""

from __future__ import annotations

import json
import shutil

import pytest

from adcsr.cli import main
from adcsr.core.imaging import write_image
from adcsr.core.photos import hr_crops


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "lr.png"
    write_image(hr_crops("heldout", 40, 1)[0], path)
    return path


def _truncate(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _one_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln.startswith("adcsr ")]
    assert len(err) == 1, err
    return err[0]


def test_a_truncated_or_mismatched_student_is_one_line(pipeline_student, photo, tmp_path, capsys):
    student = tmp_path / "student"
    shutil.copytree(pipeline_student, student)
    weights = next(student.glob("*.safetensors"))
    _truncate(weights)
    assert main(["upscale", str(photo), str(tmp_path / "o.png"), "--student", str(student)]) == 2
    assert weights.name in _one_line(capsys)
    shutil.copy(next(pipeline_student.glob("*.safetensors")), weights)
    config = json.loads((student / "config.json").read_text())
    config["block_out_channels"] = [c * 2 for c in config["block_out_channels"]]
    (student / "config.json").write_text(json.dumps(config))
    assert main(["upscale", str(photo), str(tmp_path / "o.png"), "--student", str(student)]) == 2
    assert "cannot load the student" in _one_line(capsys)


@pytest.mark.parametrize("target, victim", [("qnn", "_features_ctx_qnn.bin"), ("executorch", ".pte")])
def test_a_truncated_artifact_is_named_before_any_runtime_opens_it(exported, photo, tmp_path, capsys, target, victim):
    folder = tmp_path / target
    shutil.copytree(exported[target], folder)
    bad = next(p for p in folder.iterdir() if p.name.endswith(victim))
    _truncate(bad, 0.3)
    assert main(["upscale", str(photo), str(tmp_path / "o.png"), "--artifact", str(folder)]) == 2
    line = _one_line(capsys)
    assert str(bad) in line and "does not match its manifest.json" in line
    assert main(["export", "verify", str(folder)]) == 2
    assert bad.name in _one_line(capsys)


def test_a_context_model_whose_binary_is_missing_is_one_line(exported, photo, tmp_path, capsys):
    folder = tmp_path / "qnn"
    shutil.copytree(exported["qnn"], folder)
    gone = next(folder.glob("*_decode_ctx_qnn.bin"))
    gone.unlink()
    assert main(["upscale", str(photo), str(tmp_path / "o.png"), "--artifact", str(folder)]) == 2
    assert f"{gone}: missing" in _one_line(capsys)
    (folder / "manifest.json").unlink()  # without its manifest the context model itself names the binary
    assert main(["upscale", str(photo), str(tmp_path / "o.png"), "--artifact", str(folder / "student_ctx.onnx")]) == 2
    line = _one_line(capsys)
    assert "needs its QNN context binary" in line and gone.name in line
