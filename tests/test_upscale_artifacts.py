"""`adcsr upscale --artifact`: every runnable export of the CI pipeline's student upscales a
held-out photo like the PyTorch student does through the same tiling; Core ML is refused."""

from __future__ import annotations

import json
import math

import pytest
import torch

from adcsr.cli import main
from adcsr.core.imaging import read_image, to_uint8, write_image
from adcsr.core.photos import HELDOUT_PHOTOS, load_photo
from adcsr.core.tiling import tiled_upscale

torch.set_num_threads(1)


def _manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


@pytest.fixture(scope="module")
def artifacts(pipeline_run, tmp_path_factory):
    """(artifact path per kind, PyTorch student reference for the artifacts' tiling and default colour
    fix, LR file)."""
    from adcsr.core.models.student import AdcSRStudent

    _, run_dir, _, _ = pipeline_run
    outputs = _manifest(run_dir / "export")["outputs"]
    paths = {}
    for key in ("onnx", "qnn", "executorch", "coreml"):
        folder = run_dir / "export" / outputs[key]["path"]
        for art in _manifest(folder)["artifacts"]:
            paths.setdefault(art["kind"], folder / art["file"])
        paths.setdefault(key, folder)
    tile = _manifest(paths["onnx"])["lr_tile"]
    student_dir = run_dir / "stage2" / _manifest(run_dir / "stage2")["outputs"]["student"]["path"]
    student = AdcSRStudent.from_pretrained(student_dir).eval()
    # 41×55 is padded and cut into overlapping tiles (fast artifacts); the HTP emulator takes
    # tens of seconds per tile here, so the quantized artifacts get a crop of one padded tile
    crops = {"tiled": (slice(141, 182), slice(201, 256)), "one_tile": (slice(141, 141 + tile - 3), slice(201, 201 + tile - 1))}
    folder, refs = tmp_path_factory.mktemp("lr"), {}
    for name, (ys, xs) in crops.items():
        write_image(load_photo(HELDOUT_PHOTOS[1])[:, ys, xs], folder / f"{name}.png")
        lr = read_image(folder / f"{name}.png")
        with torch.no_grad():
            refs[name] = tiled_upscale(lambda x: student(x).clamp(0, 1), lr[None], tile=tile,
                                       overlap=min(32, tile // 4), multiple=tile,
                                       color_fix=AdcSRStudent.default_color_fix)[0]
    return paths, refs, folder, tile


def psnr_uint8(a, b):
    mse = ((a - b) * 255).round().square().mean().item() / 255**2
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


@pytest.mark.parametrize("kind,crop,floor", [("fp32", "tiled", 60.0), ("w8a16_qdq", "one_tile", 40.0),
                                              ("qnn_context", "one_tile", 40.0)])
def test_onnx_artifacts_match_the_student(artifacts, tmp_path, kind, crop, floor):
    paths, refs, folder, _ = artifacts
    ref, src, out = refs[crop], folder / f"{crop}.png", tmp_path / "sr.png"
    assert main(["upscale", str(src), str(out), "--artifact", str(paths[kind])]) == 0
    sr = read_image(out)
    assert sr.shape == ref.shape
    ref8 = torch.from_numpy(to_uint8(ref)).permute(2, 0, 1).float() / 255
    assert psnr_uint8(sr, ref8) >= floor
    assert ref8.std() > 0.05  # a real image, not a flat one that any model would match


def test_xnnpack_pte_in_a_folder_with_a_corrupt_file(artifacts, tmp_path, capsys):
    """The folder source, the skipped corrupt input and the manifest work for artifacts too."""
    paths, refs, folder, tile = artifacts
    ref, src, pte = refs["tiled"], folder / "tiled.png", paths["xnnpack_fp32"]
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "crop.png").write_bytes(src.read_bytes())
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "out"
    assert main(["upscale", str(inputs), str(out), "--artifact", str(pte)]) == 2
    assert "1 of 2 inputs failed" in capsys.readouterr().err
    ref8 = torch.from_numpy(to_uint8(ref)).permute(2, 0, 1).float() / 255
    assert psnr_uint8(read_image(out / "crop.png"), ref8) >= 60.0
    manifest = _manifest(out)
    assert manifest["model"]["kind"] == "xnnpack_pte" and manifest["tile"] == tile
    assert not (out / "broken.png").exists()


def test_coreml_and_bad_artifact_options_are_one_line_exit_2(artifacts, tmp_path, capsys):
    paths, _, folder, tile = artifacts
    src = folder / "tiled.png"
    mlpackage = next(p for p in paths.values() if str(p).endswith(".mlpackage"))
    for extra, message in [([str(mlpackage)], "Core ML"),
                           ([str(paths["fp32"]), "--tile", str(tile * 2)], "fixed LR tile"),
                           ([str(tmp_path / "none.onnx")], "artifact not found")]:
        assert main(["upscale", str(src), str(tmp_path / "o.png"), "--artifact", *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o.png").exists()
