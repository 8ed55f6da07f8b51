"""Lazy package faces (PEP 562): a stage package names what it exports and the submodule that
defines each name; the submodule is imported on first access, so `adcsr --help` and the CLI
parsers do not load torch, diffusers and the export toolchains."""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_face(package: str, exports: dict[str, str], computed: dict[str, Callable[[], Any]] | None = None):
    """`(__getattr__, __all__)` for `package`: `exports` maps a name to its submodule;
    `computed` maps a name to a function building it (called once)."""
    cache: dict[str, Any] = {}
    computed = computed or {}

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        if name in computed:
            if name not in cache:
                cache[name] = computed[name]()
            return cache[name]
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, sorted([*exports, *computed])
