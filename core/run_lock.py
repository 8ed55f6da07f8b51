"""One process per run folder: a second `adcsr pipeline` or training run started on a folder
another process is using is refused at once, naming that process.

The lock is `flock` on `<folder>/.lock`, held for the life of the run; the kernel drops it when
its process ends in any way (kill -9 included), so a killed run never leaves its folder stuck.
The file records who holds it (pid, host, command, start time) for the refusal message only: the
lock itself, not the file's existence, decides.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from .errors import UserError

LOCK_NAME = ".lock"


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike, what: str = "run") -> Iterator[Path]:
    """Hold the folder's lock for the `with` block; a UserError if another process holds it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{folder} is in use by {_holder(path)} "
                            "(wait for it to finish, or use another run folder)") from None
        holder = {"what": what, "pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)[:300],
                  "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the flock


def _holder(path: Path) -> str:
    try:
        h = json.loads(path.read_text())
        return f"a {h['what']}, process {h['pid']} on {h['host']} ({h['command']}, since {h['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (it recorded no details)"


def is_main_process() -> bool:
    """Rank 0 (or no launcher): the process of a multi-process run that takes its folder's lock."""
    return os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) in ("0", "")
