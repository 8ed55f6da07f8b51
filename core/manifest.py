"""Manifests: what a stage or an export read and wrote, with sha256 digests, as JSON."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_tree(path: str | os.PathLike) -> str:
    """Digest of a file, or of every file under a folder (relative names and contents, sorted)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(path)).encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def size_on_disk(path: str | os.PathLike) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def environment() -> dict[str, str]:
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "system": platform.system(),
    }


def write_manifest(path: str | os.PathLike, **fields: Any) -> dict[str, Any]:
    """Write `fields` plus a timestamp and the software environment as pretty JSON, atomically."""
    data = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "environment": environment(), **fields}
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    return data


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    from .errors import UserError

    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"manifest not found: {path}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"manifest {path} is not valid JSON: {e}") from None
