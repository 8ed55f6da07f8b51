"""Checkpoint folders: written atomically, verified by sha256 on load, the last K kept.

Each checkpoint is `step-XXXXXXXX/` holding the files a trainer writes plus `SHA256SUMS.json`
(written last, inside the same atomic folder). A folder whose digests file is missing or does
not match its files (truncated, corrupted) is reported and skipped, so `latest_good` falls back
to the previous good checkpoint.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Callable

from adcsr.core.atomic import atomic_dir
from adcsr.core.manifest import sha256_file

DIGESTS = "SHA256SUMS.json"


def _step_of(path: Path) -> int:
    return int(path.name.split("-", 1)[1])


class CheckpointStore:
    def __init__(self, root: str | Path, keep_last: int = 3):
        self.root = Path(root)
        self.keep_last = max(1, keep_last)

    def folders(self) -> list[Path]:
        """Checkpoint folders, oldest first (by step)."""
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.glob("step-*") if p.is_dir() and p.name[5:].isdigit()]
        return sorted(found, key=_step_of)

    def write(self, step: int, fill: Callable[[Path], None]) -> Path:
        """Create `step-N/` by calling `fill(tmp_folder)`, add digests, rename into place, prune."""
        dest = self.root / f"step-{step:08d}"
        with atomic_dir(dest, overwrite=True) as tmp:
            fill(tmp)
            digests = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
            (tmp / DIGESTS).write_text(json.dumps(digests, indent=1))
        for old in self.folders()[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        return dest

    @staticmethod
    def problem(folder: Path) -> str | None:
        """Why `folder` is not a usable checkpoint, or None when every digest matches."""
        try:
            digests = json.loads((folder / DIGESTS).read_text())
        except (OSError, json.JSONDecodeError):
            return f"{DIGESTS} missing or unreadable"
        for name, want in digests.items():
            f = folder / name
            if not f.is_file():
                return f"{name} missing"
            if sha256_file(f) != want:
                return f"{name} does not match its sha256 (truncated or corrupted)"
        return None

    def latest_good(self) -> Path | None:
        """The newest verified checkpoint; bad newer ones are reported on stderr and skipped."""
        for folder in reversed(self.folders()):
            why = self.problem(folder)
            if why is None:
                return folder
            print(f"warning: checkpoint {folder} is unusable ({why}); trying the previous one",
                  file=sys.stderr)
        return None
