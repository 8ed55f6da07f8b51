"""`adcsr export android RUN_OR_EXPORT_DIR --app android_demo`: stage verified artifacts into the
Android demo app's assets, with the model contract the app checks at start.

What is staged, when the export folder has it: the QNN context model (`qnn-<SoC>/`: the EPContext
`student_ctx.onnx` and its `.bin` files) for the Hexagon NPU through ONNX Runtime's QNN execution
provider, and the ExecuTorch XNNPACK `.pte` for the CPU. `models/contract.json` records the LR
tile, the I/O names, shapes and dtypes, the value range, the scale, the tiling overlap, the
colour-fix policy and every file's size and sha256 (`:sr-core`'s `ModelContract` reads it). The
models folder is replaced as a whole, the contract written inside it before it is renamed into place.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from adcsr.core.atomic import atomic_dir
from adcsr.core.errors import UserError
from adcsr.core.manifest import read_manifest, sha256_tree

FORMAT = "adcsr-android-model/1"
ASSETS = Path("app/src/main/assets/models")
SCALE = 4


def _export_root(path: Path) -> Path:
    """The folder holding the export's target folders: given directly, or a run's `export/artifacts`."""
    for candidate in (path, path / "export" / "artifacts", path / "artifacts"):
        if candidate.is_dir() and any((candidate / d / "manifest.json").is_file() for d in _target_dirs(candidate)):
            return candidate
    raise UserError(f"{path}: no exported artifacts (expected qnn-<SoC>/ or executorch/ folders with a manifest.json, "
                    "or a run folder holding export/artifacts)")


def _target_dirs(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p.name.startswith("qnn-") or p.name == "executorch"))


def _backends(root: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    backends, manifests = [], {}
    for name in _target_dirs(root):
        manifest = read_manifest(root / name / "manifest.json")
        manifests[name] = manifest
        files = manifest.get("artifacts", [])
        if name.startswith("qnn-"):
            ctx = [a for a in files if a["kind"] == "qnn_context"]
            if not ctx:
                continue
            bins = [a for a in files if a["kind"] == "qnn_context_bin"]
            backends.append({"id": f"qnn-htp-{manifest['soc']}", "kind": "onnxruntime-qnn",
                             "label": f"QNN on the Hexagon NPU ({manifest['soc']})", "precision": "W8A16",
                             "soc": manifest["soc"], "folder": name, "files": ctx + bins})
        else:
            pte = [a for a in files if a["kind"] == "xnnpack_fp32"]
            if pte:
                backends.append({"id": "xnnpack-cpu", "kind": "executorch-xnnpack",
                                 "label": "ExecuTorch XNNPACK (CPU)", "precision": "fp32", "folder": name,
                                 "files": pte})
            qnn = [a for a in files if a["kind"] == "qnn_16a8w"]  # lowered only where a QNN SDK was installed
            if qnn:
                soc = (manifest.get("qnn_pte_quantization") or {}).get("soc", "")
                backends.insert(0, {"id": f"qnn-pte-{soc}", "kind": "executorch-qnn",
                                    "label": f"ExecuTorch QNN on the Hexagon NPU ({soc})", "precision": "W8A16 (16a8w)",
                                    "folder": name, "files": qnn})
    if not backends:
        raise UserError(f"{root}: neither a QNN context model nor an ExecuTorch XNNPACK .pte to stage")
    return backends, manifests


def stage_for_android(source: str | Path, app: str | Path) -> Path:
    """Copy the artifacts of `source` (a run or export folder) into `app`'s assets; returns the
    contract's path. Each file's sha256 is checked against its export manifest first."""
    from adcsr.core.models.student import AdcSRStudent

    app = Path(app)
    if not (app / "settings.gradle.kts").is_file():
        raise UserError(f"{app}: not the Android demo app (no settings.gradle.kts)")
    root = _export_root(Path(source))
    backends, manifests = _backends(root)
    tiles = {int(m["lr_tile"]) for m in manifests.values()}
    if len(tiles) != 1:
        raise UserError(f"{root}: the artifacts were exported at different LR tiles {sorted(tiles)}: stage one tile")
    tile = tiles.pop()
    first = next(iter(manifests.values()))
    with atomic_dir(app / ASSETS, overwrite=True) as tmp:
        for backend in backends:
            entries = []
            for a in backend.pop("files"):
                src = root / backend["folder"] / a["file"]
                if not src.is_file() or sha256_tree(src) != a["sha256"]:
                    raise UserError(f"{src}: missing or not the file its manifest records: export again")
                dst = tmp / backend["folder"] / a["file"]
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
                entries.append({"path": f"{backend['folder']}/{a['file']}", "sha256": a["sha256"],
                                "bytes": src.stat().st_size})
            backend["files"] = entries
            del backend["folder"]
        contract = {
            "format": FORMAT,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "scale": SCALE,
            "lr_tile": tile,
            "multiple": tile,  # a fixed-tile artifact: images are padded to whole tiles
            "overlap": min(32, tile // 4),  # as `adcsr upscale --artifact`
            "color_fix": AdcSRStudent.default_color_fix,
            "input": {**first["input"], "range": [0, 1]},
            "output": first["output"],
            "student": first.get("student", {}),
            "backends": backends,
        }
        (tmp / "contract.json").write_text(json.dumps(contract, indent=1))
    return app / ASSETS / "contract.json"
