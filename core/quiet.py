"""Known harmless third-party messages, silenced once when the project is imported, so a command
that worked prints only what matters. Each entry is a message every run would print on this stack
and that says nothing about the run; anything else a library logs or warns is left alone.

- torchao (pulled in by executorch) logs load failures of its CUDA-only kernels; diffusers cannot
  register torchao tensor types; torch's pytree notes an enum type it now handles natively; the
  ONNX exporter notes that torchvision (deliberately absent) is missing.
- coremltools, on a machine that is not a Mac, cannot load its prediction proxies (prediction
  needs macOS; the export checks each package by spec instead), disables its scikit-learn
  converter (unused) and notes that it was not tested with the torch that executorch pins (each
  package's spec and fp16 arithmetic are checked by the export itself).
- torch.export's spec pickling warns about its own deprecated `LeafSpec` check.
- executorch's QNN quantizer, without a QNN SDK, says it falls back to its abstract op info (the
  export lowers no QNN `.pte` then, and its manifest says so in `notes`).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import re
import warnings
from typing import Iterator

_SILENT_LOGGERS = ("torchao", "torch.utils._pytree", "diffusers.quantizers",
                   "torch.onnx._internal.exporter._registration")
_KNOWN_RECORDS = {
    "coremltools": (r"Failed to load _ML\w+Proxy", r"scikit-learn version \S+ is not supported",
                    r"Torch version \S+ has not been tested with coremltools"),
    "": (r"The backend_opinfo module couldn't be imported",),  # the root logger
}
_KNOWN_WARNINGS = ((FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),)


class _DropKnown(logging.Filter):
    def __init__(self, patterns: tuple[str, ...]):
        super().__init__()
        self.pattern = re.compile("|".join(f"(?:{p})" for p in patterns))

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


def install() -> None:
    for name in _SILENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for name, patterns in _KNOWN_RECORDS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnown) for f in logger.filters):
            logger.addFilter(_DropKnown(patterns))
    for category, message in _KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


@contextlib.contextmanager
def library_bars_off(*names: str) -> Iterator[None]:
    """Turn off the progress bars a library draws from module-level `tqdm` names ("module:attr"),
    e.g. coremltools' per-op and per-pass bars under the export's own one. A name that a newer
    version no longer has is skipped."""
    from functools import partial

    saved = []
    for name in names:
        module_name, attr = name.split(":")
        try:
            module = importlib.import_module(module_name)
            original = getattr(module, attr)
        except (ImportError, AttributeError):
            continue
        saved.append((module, attr, original))
        setattr(module, attr, partial(original, disable=True))
    try:
        yield
    finally:
        for module, attr, original in saved:
            setattr(module, attr, original)
