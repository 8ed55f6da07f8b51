"""The one exception type that means "the user gave us something we cannot use", and how a full
disk is recognised.

The CLI turns a `UserError` into one line on stderr and exit code 2; a full disk into one line and
exit code 1 (every output is written under a temporary name and renamed when complete, so what
was being written is discarded and earlier outputs are untouched); anything else is an internal
failure (exit code 1).
"""

from __future__ import annotations

import errno

# ENOSPC: the file system is full; EDQUOT: the user's quota is; EFBIG: a file-size limit (ulimit -f)
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
# what libraries that do their own I/O (safetensors in Rust, the QNN SDK in C++) put in their messages
_FULL_TEXT = ("No space left on device", "os error 28", "Disk quota exceeded", "File too large")


class UserError(Exception):
    """Bad input: a missing or corrupt file, an invalid config value, a refused overwrite."""


def disk_full(e: BaseException) -> bool:
    """Whether `e` (or what it was raised from) is a write that failed because no space was left."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _FULL:
            return True
        if any(t in str(e) for t in _FULL_TEXT):
            return True
        e = e.__cause__ or e.__context__
    return False


def disk_full_message(e: BaseException) -> str:
    """One line for a full disk: where, and that nothing earlier was lost."""
    where = f" writing {e.filename}" if isinstance(e, OSError) and e.filename else ""
    return (f"no space left on the device{where}: what was being written was discarded and earlier outputs "
            "are untouched; free some space and run again (with --resume where the command has it)")
