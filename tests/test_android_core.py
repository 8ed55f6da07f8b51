"""The Android demo's pure-Kotlin core (`android_demo/sr-core`), compiled with kotlinc and tested
on the JVM here: its own JUnit tests, a golden test against `adcsr.core.tiling` (byte-identical
8-bit output for the same toy model), the model contract `adcsr export android` writes checked
by the app's own code, and offline checks of what only an Android SDK could build."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "android_demo"
CORE = APP / "sr-core" / "src"
KOTLIN_CACHE = Path.home() / ".cache" / "adcsr-mobile" / "kotlin" / "package" / "bin" / "kotlinc"
JAVA_SHARE = Path("/usr/share/java")


def _toolchain() -> dict[str, Path] | None:
    kotlinc = os.environ.get("ADCSR_KOTLINC") or shutil.which("kotlinc") or (KOTLIN_CACHE if KOTLIN_CACHE.exists() else None)
    if not kotlinc or not shutil.which("java"):
        return None
    lib = Path(kotlinc).resolve().parent.parent / "lib"
    jars = {"stdlib": lib / "kotlin-stdlib.jar", "test": lib / "kotlin-test.jar", "test_junit": lib / "kotlin-test-junit.jar",
            "junit": JAVA_SHARE / "junit4.jar", "hamcrest": JAVA_SHARE / "hamcrest-core.jar"}
    if not all(p.is_file() for p in jars.values()):
        return None
    return {"kotlinc": Path(kotlinc), **jars}


@pytest.fixture(scope="module")
def jvm(tmp_path_factory):
    """(classpath, run(main class, *args)) with sr-core's main and test sources compiled."""
    tools = _toolchain()
    if tools is None:
        why = ("kotlinc (npm kotlin-compiler) or JUnit 4 (Debian junit4) not found; .ci/run installs them")
        if os.environ.get("ADCSR_REQUIRE_KOTLIN") or os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    out = tmp_path_factory.mktemp("srcore")
    compile_cp = os.pathsep.join(str(tools[k]) for k in ("test", "test_junit", "junit"))
    done = subprocess.run([str(tools["kotlinc"]), str(CORE / "main" / "kotlin"), str(CORE / "test" / "kotlin"),
                           "-cp", compile_cp, "-d", str(out), "-nowarn"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    cp = os.pathsep.join([str(out), *(str(tools[k]) for k in ("stdlib", "test", "test_junit", "junit", "hamcrest"))])

    def run(main: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["java", "-cp", cp, main, *map(str, args)], capture_output=True, text=True, timeout=300)

    return out, run


def test_sr_core_unit_tests_pass(jvm):
    out, run = jvm
    classes = sorted(p.relative_to(out).with_suffix("").as_posix().replace("/", ".")
                     for p in out.rglob("*Test.class"))
    assert len(classes) >= 5, classes
    done = run("org.junit.runner.JUnitCore", *classes)
    assert done.returncode == 0, done.stdout[-3000:]
    assert re.search(r"OK \((\d+) tests\)", done.stdout)


# ---- the golden test: Python's core.tiling and Kotlin's Tiler, same toy model ------------------------
def _toy_model() -> torch.nn.Module:
    """ToyConvModel in ToyModels.kt: 3×3 conv (3 → 48, zero padding) with dyadic weights, pixel shuffle ×4."""
    conv = torch.nn.Conv2d(3, 48, 3, padding=1)
    o, c, ky, kx = torch.meshgrid(*(torch.arange(n) for n in (48, 3, 3, 3)), indexing="ij")
    with torch.no_grad():
        conv.weight.copy_((((o * 7 + c * 3 + ky * 5 + kx * 11) % 3) - 1).float() / 64)
        conv.bias.copy_(0.5 + ((torch.arange(48) % 5) - 2).float() / 64)
    return torch.nn.Sequential(conv, torch.nn.PixelShuffle(4)).eval()


def _golden(jvm, tmp_path, lr: torch.Tensor, tile: int, overlap: int, blend: str, fix: str):
    from adcsr.core.imaging import to_uint8
    from adcsr.core.tiling import tiled_upscale

    _, run = jvm
    src = tmp_path / "lr.f32"
    src.write_bytes(lr.numpy().astype("<f4").tobytes())
    dst = tmp_path / "sr.u8"
    done = run("org.adcsr.srcore.GoldenTilingKt", src, lr.shape[1], lr.shape[2], tile, overlap, blend,
               fix, dst)
    assert done.returncode == 0, done.stderr[-3000:]
    kotlin = np.frombuffer(dst.read_bytes(), dtype=np.uint8).reshape(3, lr.shape[1] * 4, lr.shape[2] * 4)
    with torch.no_grad():
        sr = tiled_upscale(_toy_model(), lr[None], scale=4, tile=tile, overlap=overlap, multiple=4,
                           color_fix=None if fix == "none" else fix, blend=blend)
    python = to_uint8(sr[0]).transpose(2, 0, 1)
    return python, kotlin


def _golden_input(h: int, w: int) -> torch.Tensor:
    """Multiples of 1/64 (as the toy weights are of 1/64): every sum exact in float32, in any order."""
    c, y, x = torch.meshgrid(torch.arange(3), torch.arange(h), torch.arange(w), indexing="ij")
    return (((y * 13 + x * 7 + c * 29) % 65).float() / 64).contiguous()


def test_kotlin_tiling_gives_the_same_bytes_as_python(jvm, tmp_path):
    # 37 rows: reflect-padded to 40; tile 16, overlap 8: ramps of 32 SR pixels, window sums exactly 1
    python, kotlin = _golden(jvm, tmp_path, _golden_input(37, 40), tile=16, overlap=8, blend="linear", fix="none")
    assert python.shape == kotlin.shape == (3, 148, 160)
    assert np.array_equal(python, kotlin), f"{int((python != kotlin).sum())} bytes differ"
    assert len(np.unique(python)) > 25  # not a constant image (the toy model keeps values near mid-grey)


def test_cosine_blend_and_adain_agree_to_one_level(jvm, tmp_path):
    python, kotlin = _golden(jvm, tmp_path, _golden_input(45, 38), tile=16, overlap=6, blend="cosine", fix="adain")
    diff = np.abs(python.astype(int) - kotlin.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99


def test_bicubic_in_the_wavelet_fix_matches_torch(jvm, tmp_path):
    python, kotlin = _golden(jvm, tmp_path, _golden_input(20, 24), tile=16, overlap=4, blend="linear", fix="wavelet")
    diff = np.abs(python.astype(int) - kotlin.astype(int))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.99


# ---- the model contract `adcsr export android` stages, checked by the app's code ------------------------
def _app_copy(tmp_path: Path) -> Path:
    app = tmp_path / "app_copy"
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("assets", "build", ".gradle"))
    return app


def test_staged_models_pass_the_apps_contract_check(jvm, exported, tmp_path, capsys):
    from adcsr.cli import main

    _, run = jvm
    app = _app_copy(tmp_path)
    root = Path(exported["onnx"]).parent
    assert main(["export", "android", str(root), "--app", str(app)]) == 0
    assert "adcsr export android: staged" in capsys.readouterr().out
    models = app / "app" / "src" / "main" / "assets" / "models"
    done = run("org.adcsr.srcore.ContractCheckKt", models)
    assert done.returncode == 0 and done.stdout.startswith("ok: "), done.stdout + done.stderr
    assert "qnn-htp-SM8750" in done.stdout and "xnnpack-cpu" in done.stdout
    import json

    contract = json.loads((models / "contract.json").read_text())
    tile = contract["lr_tile"]
    assert contract["input"] == {"name": "lr", "shape": [1, 3, tile, tile], "dtype": "float32", "range": [0, 1]}
    assert contract["color_fix"] == "adain" and contract["multiple"] == tile
    # a changed model file is refused with one clear message
    pte = next(models.rglob("*.pte"))
    data = bytearray(pte.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pte.write_bytes(bytes(data))
    done = run("org.adcsr.srcore.ContractCheckKt", models)
    assert done.returncode == 1 and "does not match the contract" in done.stdout


def test_staging_refuses_what_is_not_an_app_or_an_export(tmp_path, capsys):
    from adcsr.cli import main

    (tmp_path / "empty").mkdir()
    assert main(["export", "android", str(tmp_path / "empty"), "--app", str(APP)]) == 2
    assert "no exported artifacts" in capsys.readouterr().err
    assert main(["export", "android", str(tmp_path / "empty"), "--app", str(tmp_path)]) == 2
    assert "not the Android demo app" in capsys.readouterr().err


# ---- what only the Android SDK could build, checked offline ---------------------------------------------
def test_manifest_declares_no_internet_and_the_dsp_library_as_optional():
    ns = "{http://schemas.android.com/apk/res/android}"
    root = ET.parse(APP / "app" / "src" / "main" / "AndroidManifest.xml").getroot()
    assert not root.findall("uses-permission"), "the app needs no permission at all"
    libs = root.findall("application/uses-native-library")
    assert [(lib.get(f"{ns}name"), lib.get(f"{ns}required")) for lib in libs] == [("libcdsprpc.so", "false")]
    assert root.find("application/activity").get(f"{ns}name") == ".MainActivity"


def test_resources_parse_and_every_string_the_code_uses_exists():
    strings = {s.get("name") for s in ET.parse(APP / "app/src/main/res/values/strings.xml").getroot()}
    ET.parse(APP / "app/src/main/res/values/themes.xml")
    used = set()
    for kt in (APP / "app" / "src").rglob("*.kt"):
        used |= set(re.findall(r"R\.string\.(\w+)", kt.read_text()))
    assert used and used <= strings, used - strings


def test_versions_are_named_once_in_the_catalog():
    import tomllib

    catalog = tomllib.loads((APP / "gradle" / "libs.versions.toml").read_text())
    assert {"agp", "kotlin", "onnxruntime-qnn", "executorch"} <= set(catalog["versions"])
    for gradle in APP.rglob("*.gradle.kts"):
        text = gradle.read_text()
        literal = re.findall(r'"[\w.-]+:[\w.-]+:[\d.]+"|version\s*=?\s*"[\d.]+"|id\("[^"]+"\)\s*version', text)
        assert not literal, f"{gradle.relative_to(APP)} names a version outside the catalog: {literal}"
    kotlin_sources = [p for p in (APP / "sr-core" / "src" / "main").rglob("*.kt")]
    assert kotlin_sources and not any("import android" in p.read_text() for p in kotlin_sources)


def test_a_qnn_pte_built_with_an_sdk_is_staged_as_its_own_backend(exported, tmp_path):
    """Where `adcsr export` found a QNN SDK it also lowers `student_qnn_<SoC>.pte` (kind qnn_16a8w);
    none can be built here, so a stand-in file is listed in a copy of the executorch folder's
    manifest to check only the staging."""
    import hashlib
    import json

    from adcsr.export import stage_for_android

    root = tmp_path / "artifacts"
    shutil.copytree(Path(exported["executorch"]), root / "executorch")
    q = root / "executorch" / "student_qnn_SM8750.pte"
    q.write_bytes(b"stand-in for a QNN-lowered program")
    manifest = json.loads((root / "executorch" / "manifest.json").read_text())
    manifest["artifacts"].append({"file": q.name, "kind": "qnn_16a8w", "bytes": q.stat().st_size,
                                  "sha256": hashlib.sha256(q.read_bytes()).hexdigest()})
    (root / "executorch" / "manifest.json").write_text(json.dumps(manifest))
    contract = json.loads(stage_for_android(root, _app_copy(tmp_path)).read_text())
    kinds = [b["kind"] for b in contract["backends"]]
    assert kinds == ["executorch-qnn", "executorch-xnnpack"]
    assert contract["backends"][0]["files"][0]["path"] == f"executorch/{q.name}"
