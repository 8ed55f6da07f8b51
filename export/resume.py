"""`adcsr export … --resume`: which targets an interrupted export already finished.

A target is finished when each of its folders was renamed into place (`core.atomic`: it is
complete, or it does not exist) with a manifest that names the same student (its sha256) and the
same export settings, and every file the manifest lists still has its recorded sha256. What a
killed export left under temporary names is removed; every other target is exported again.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from adcsr.core.manifest import sha256_tree

from .config import ExportConfig
from .runtime import MANIFEST


def target_folders(target: str, cfg: ExportConfig) -> dict[str, str]:
    """{result key: folder name under the export's `out`} that `target` writes."""
    return {"qnn": {"onnx": "onnx", "qnn": f"qnn-{cfg.soc}"}}.get(target, {target: target})


def settings(cfg: ExportConfig) -> dict:
    """The settings an artifact depends on, as its manifest records them (not how it was scheduled)."""
    return {k: v for k, v in asdict(cfg).items() if k != "jobs"}


def unfinished(out: Path, target: str, cfg: ExportConfig, student: dict) -> str | None:
    """Why `target` must be exported again under `out`, or None when it is finished."""
    for name in target_folders(target, cfg).values():
        folder = out / name
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
        except FileNotFoundError:
            return f"{name}/ not written"
        except ValueError:
            return f"{name}/{MANIFEST} unreadable"
        if manifest.get("student") != student:
            return f"{name}/ was made from another student"
        if manifest.get("export_settings") != json.loads(json.dumps(settings(cfg))):
            return f"{name}/ was made with other export settings"
        for entry in manifest.get("artifacts", []):
            f = folder / entry["file"]
            if not f.exists() or sha256_tree(f) != entry.get("sha256"):
                return f"{name}/{entry['file']} is missing or changed"
    return None
