"""Write files and folders so that a crash or a failed check never leaves half an output behind.

Everything is written under a temporary name in the destination's own folder (same file system,
so the final `os.replace` is atomic) and renamed only once it is complete. The temporary names
come from `mkstemp` / `mkdtemp`, which are private (0600 / 0700); what is renamed into place gets
the mode a plain `open` / `mkdir` would have given it under the process's umask (0644 / 0755 by
default), so reports, artifacts and checkpoints can be shared.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(path: Path, base: int) -> None:
    """Give `path` the mode `base` (0o666 for files, 0o777 for folders) less the umask."""
    os.chmod(path, base & ~_umask())


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary file path next to `dest`; on success rename it onto `dest`.

    The temporary name keeps `dest`'s extension (or `suffix`) so libraries that pick a format
    from the extension still work. On any exception the temporary file is removed.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    ext = suffix if suffix is not None else dest.suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.stem}.", suffix=f".tmp{ext}", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():
            _publish(tmp_path, 0o666)
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(dest: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(dest, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder next to `dest`; on success it replaces `dest` as a whole.

    With `overwrite=False` an existing `dest` is an error before any work starts. On any
    exception the temporary folder is deleted and `dest` is left exactly as it was.
    """
    from .errors import UserError

    dest = Path(dest)
    if dest.exists() and not overwrite:
        raise UserError(f"{dest} already exists (use --force to replace it)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        _publish(tmp, 0o777)
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            os.replace(dest, old / dest.name)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_leftovers(dests: list[Path]) -> int:
    """Delete what a killed writer left under this module's temporary names for `dests`: files
    `.<stem>.<random>.tmp<ext>` (`atomic_path`) and folders `.<name>.<random>.tmp|.old`
    (`atomic_dir`), the random part being `mkstemp`'s (no dots); returns how many were removed."""
    by_parent: dict[Path, list[re.Pattern]] = {}
    for d in map(Path, dests):
        by_parent.setdefault(d.parent, []).extend([
            re.compile(rf"\.{re.escape(d.stem)}\.[A-Za-z0-9_]+\.tmp[^/]*"),
            re.compile(rf"\.{re.escape(d.name)}\.[A-Za-z0-9_]+\.(tmp|old)"),
        ])
    gone = 0
    for parent, patterns in by_parent.items():
        if not parent.is_dir():
            continue
        for p in parent.iterdir():
            if any(pat.fullmatch(p.name) for pat in patterns):
                if p.is_dir():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                gone += 1
    return gone
