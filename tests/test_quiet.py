"""Known harmless third-party messages are dropped, anything else those libraries log is kept."""

from __future__ import annotations

import logging
import sys
import types

import adcsr.core  # noqa: F401 - installs the filters, as every command does
from adcsr.core.quiet import library_bars_off


def test_known_messages_are_dropped_and_others_kept(caplog):
    caplog.set_level(logging.WARNING)
    ct = logging.getLogger("coremltools")
    ct.warning("Failed to load _MLModelProxy: No module named 'coremltools.libcoremlpython'")
    ct.warning("Torch version 2.13.0+cpu has not been tested with coremltools. You may run into unexpected errors.")
    ct.warning("a real coremltools warning")
    logging.warning("The backend_opinfo module couldn't be imported, so the abstract implementation will be used")
    logging.warning("a real root warning")
    assert [r.getMessage() for r in caplog.records] == ["a real coremltools warning", "a real root warning"]


def test_library_bars_are_off_inside_and_restored_after(monkeypatch):
    calls = []

    def bar(*a, **k):
        calls.append(k.get("disable"))

    lib = types.ModuleType("fake_lib_with_bars")
    lib.tqdm = bar
    monkeypatch.setitem(sys.modules, "fake_lib_with_bars", lib)
    with library_bars_off("fake_lib_with_bars:tqdm", "no_such_module:tqdm"):
        lib.tqdm(range(3))
    lib.tqdm(range(3))
    assert calls == [True, None] and lib.tqdm is bar
