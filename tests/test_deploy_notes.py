"""Each exported folder says how to deploy it: a README rendered from its own manifest (device and
runtime, the runtime versions it was built with, the I/O and tiling contract, a loading snippet),
the versions recorded in the manifest, and `export verify` warning when the installed runtime
differs from the recorded one."""

from __future__ import annotations

import json
import shutil
from importlib import metadata

from adcsr.cli import main
from adcsr.export.deploy_notes import README, RUNTIME_PACKAGES, version_drift


def _manifest(folder):
    return json.loads((folder / "manifest.json").read_text())


def test_every_export_folder_has_a_readme_from_its_own_manifest(exported):
    for key in ("onnx", "qnn", "executorch", "coreml"):
        folder = exported[key]
        m, text = _manifest(folder), (exported[key] / README).read_text()
        tile = m["lr_tile"]
        assert f"one {tile}×{tile} LR tile in, one {4 * tile}×{4 * tile} SR tile out" in text
        assert f"shape {m['input']['shape']}" in text and "values in [0, 1]" in text
        for entry in m["artifacts"]:
            assert f"`{entry['file']}`" in text  # every file listed, with its parity where measured
        for package, version in m["runtime"].items():
            assert f"{package} {version}" in text
        assert "## Load it" in text and "```" in text
    qnn = _manifest(exported["qnn"])
    assert qnn["soc"] in (exported["qnn"] / README).read_text()
    assert qnn["runtime"]["qnn_sdk"].startswith("v2.")  # read from the context model's EPContext nodes


def test_manifests_record_the_installed_runtime_versions(exported):
    for key in ("onnx", "qnn", "executorch", "coreml"):
        m = _manifest(exported[key])
        for package in RUNTIME_PACKAGES[m["target"]]:
            assert m["runtime"][package] == metadata.version(package)
        assert version_drift(m) == []


def test_version_drift_names_each_package_that_differs():
    m = {"target": "qnn_context_binary", "runtime": {"onnxruntime": "0.0.1", "onnxruntime-qnn": "0.0.2",
                                                     "qnn_sdk": "v0"}}
    lines = version_drift(m)
    assert len(lines) == 2 and lines[0].startswith("built with onnxruntime 0.0.1, installed ")
    assert "loads only on the QNN runtime it was built for" in lines[1]


def test_verify_warns_when_the_installed_runtime_differs(exported, tmp_path, capsys):
    folder = tmp_path / "executorch"
    shutil.copytree(exported["executorch"], folder)
    m = _manifest(folder)
    m["runtime"]["executorch"] = "0.9.0"
    (folder / "manifest.json").write_text(json.dumps(m))
    assert main(["export", "verify", str(folder)]) == 0  # a warning, not a failure: it still ran and passed
    err = capsys.readouterr().err
    assert f"adcsr export verify: warning: built with executorch 0.9.0, installed {metadata.version('executorch')}" in err
