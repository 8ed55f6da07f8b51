"""Snapdragon Hexagon through onnxruntime-qnn's HTP emulator: SoCs, sessions, context binaries
(their coverage check: `qnn_coverage`; the split into two graphs: `qnn_split`).

The QNN execution provider is a plug-in library (onnxruntime ≥ 1.24): it is registered once, then
added for its devices with `backend_path` pointing at the HTP library — without that the session
silently runs on the CPU provider, so every session here checks which provider it got.
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from adcsr.core.errors import UserError

from .qnn_coverage import check_coverage, coverage, raise_offending
from .qnn_split import chain_contexts, split_at_features


@dataclass(frozen=True)
class Soc:
    name: str
    soc_model: int
    htp_arch: int


SOCS: dict[str, Soc] = {
    "SM8750": Soc("SM8750", 69, 79),  # Snapdragon 8 Elite
    "SM8650": Soc("SM8650", 57, 75),  # Snapdragon 8 Gen 3
}
_registered = False


def get_soc(name: str) -> Soc:
    key = name.upper()
    if key not in SOCS:
        raise UserError(f"unknown --soc {name!r} (known: {', '.join(SOCS)})")
    return SOCS[key]


def _qnn_devices():
    global _registered
    import onnxruntime as ort
    import onnxruntime_qnn

    if not _registered:
        ort.register_execution_provider_library("QNNExecutionProvider", onnxruntime_qnn.get_library_path())
        _registered = True
    devices = [d for d in ort.get_ep_devices() if d.ep_name == "QNNExecutionProvider"]
    if not devices:
        raise RuntimeError("onnxruntime-qnn is installed but offers no QNN device")
    return devices


OPTIMIZATION_MODES = (1, 2, 3)
# a mapping of modes compiles two graphs, split at the student's features tensor (`split_at_features`)
GRAPH_PARTS = ("features", "decode")


def check_optimization_mode(mode: int | None | dict) -> int | None | dict:
    """`mode` itself if valid: one QNN graph-finalization level (None: the SDK's default) for one
    graph, or `{features: level, decode: level}` for two graphs finalized separately."""
    if isinstance(mode, dict):
        if set(mode) != set(GRAPH_PARTS):
            raise UserError(f"htp_optimization_mode as a mapping needs exactly the keys {', '.join(GRAPH_PARTS)}, "
                            f"got {', '.join(map(str, mode)) or 'none'}")
        for level in mode.values():
            check_optimization_mode(level)
        return mode
    if mode is not None and mode not in OPTIMIZATION_MODES:
        raise UserError(f"htp_optimization_mode must be one of {OPTIMIZATION_MODES} or null, got {mode!r}")
    return mode


def htp_session(model: str | os.PathLike, soc: Soc, *, context_out: str | os.PathLike | None = None,
                cpu_fallback: bool = False, optimization_mode: int | None = None):
    """An onnxruntime session on the HTP emulator for `soc`.

    With `context_out` the session also writes the offline context binary (EPContext model at that
    path, the QNN context as a `.bin` beside it). With `cpu_fallback=False` creation fails if any
    node would not run on HTP. `optimization_mode` is QNN's graph-finalization level (1 prepares
    fastest, 3 optimises most); None leaves the SDK's default.
    """
    import onnxruntime as ort
    import onnxruntime_qnn

    so = ort.SessionOptions()
    # Without CPU fallback a node the HTP cannot take fails the session's creation (an exception,
    # which the export reports), so onnxruntime's own log adds nothing but a false alarm: its
    # first partitioning pass prints "Unsupported nodes in QNN EP" for layout Reshape/Transpose
    # nodes that the layout transformation then hands to the HTP (coverage is still checked whole).
    so.log_severity_level = 3 if cpu_fallback else 4
    if not cpu_fallback:
        so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    if context_out is not None:
        so.add_session_config_entry("ep.context_enable", "1")
        so.add_session_config_entry("ep.context_file_path", str(context_out))
        so.add_session_config_entry("ep.context_embed_mode", "0")
    options = {
        "backend_path": onnxruntime_qnn.get_qnn_htp_path(),
        "soc_model": str(soc.soc_model),
        "htp_arch": str(soc.htp_arch),
        "htp_performance_mode": "burst",
        "enable_htp_fp16_precision": "0",
    }
    if isinstance(check_optimization_mode(optimization_mode), dict):
        raise ValueError("htp_session compiles one graph: give it one optimization level")
    if optimization_mode is not None:
        options["htp_graph_finalization_optimization_mode"] = str(optimization_mode)
    so.add_provider_for_devices(_qnn_devices(), options)
    with _native_stdout_silenced():
        session = ort.InferenceSession(str(model), sess_options=so)
    if "QNNExecutionProvider" not in session.get_providers():
        raise RuntimeError(f"the session for {model} did not get the QNN provider")
    return session


@contextmanager
def _native_stdout_silenced():
    """The QNN libraries print an informational `# LIBNATIVE: ...` line to the process's stdout
    (file descriptor 1, below Python) when the first session is created; keep it out of the
    program's output. Errors still reach stderr through onnxruntime's logger."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def compile_context(qdq_model: str | os.PathLike, out_dir: str | os.PathLike, soc: Soc, stem: str = "student",
                    optimization_mode: int | None | dict = None) -> Path:
    """Compile a QDQ model into `<stem>_ctx.onnx` + QNN context `.bin` file(s) in `out_dir`.

    One level (or None) compiles one graph. A `{features: level, decode: level}` mapping compiles
    the student's two halves as two context binaries, each finalized at its own level, chained in
    one EPContext model. QNN applies one finalization level per context, and no level suits both
    halves: at LR tile 128 the full-size student's 4096-token attentions compile to a 3.6× larger
    program at level 1 than at 2, while its decoder up path compiles to 19.6 MB at 2 against
    10.8 MB at 1.
    On the phone the halves run back to back, the features tensor passing between them.
    """
    out_dir = Path(out_dir)
    if not isinstance(check_optimization_mode(optimization_mode), dict):
        return _compile_graph(qdq_model, out_dir, soc, stem, optimization_mode)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        parts = [_compile_graph(path, out_dir, soc, f"{stem}_{name}", optimization_mode[name])
                 for name, path in split_at_features(qdq_model, Path(tmp))]
    ctx = chain_contexts(parts, out_dir / f"{stem}_ctx.onnx")
    for part in parts:
        part.unlink()
    # each half was checked on its own; the chained model is checked as a whole too, so nothing
    # between the halves (a float round trip of the features, say) can run outside HTP unseen
    try:
        check_coverage(ctx, qdq_model, soc, graphs=len(parts))
    except UserError:
        clear_context(out_dir, stem)
        raise
    return ctx


def _compile_graph(qdq_model: str | os.PathLike, out_dir: Path, soc: Soc, stem: str, optimization_mode: int | None) -> Path:
    """One QDQ graph → `<stem>_ctx.onnx` + one `.bin`.

    The compiling session has CPU fallback disabled, so it only succeeds when every node runs on
    HTP; the written EPContext model is then checked by counting its nodes too. On failure the
    model is compiled once more with fallback allowed, only to name the nodes left outside, and a
    `UserError` lists them.
    """
    ctx = out_dir / f"{stem}_ctx.onnx"
    try:
        htp_session(qdq_model, soc, context_out=ctx, cpu_fallback=False, optimization_mode=optimization_mode)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - the EP reports unsupported graphs as generic failures
        clear_context(out_dir, stem)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        try:
            htp_session(qdq_model, soc, context_out=ctx, cpu_fallback=True, optimization_mode=optimization_mode)
        except Exception:  # noqa: BLE001 - not compilable at all: report the first failure
            raise UserError(f"QNN compilation for {soc.name} failed: {first}") from None
        offending = coverage(ctx, qdq_model)["offending_nodes"]
        clear_context(out_dir, stem)
        if not offending:
            raise UserError(f"QNN compilation for {soc.name} failed with CPU fallback disabled: {first}") from None
        raise_offending(offending, soc)
    check_coverage(ctx, qdq_model, soc, graphs=1)
    return ctx


def clear_context(out_dir: Path, stem: str = "student") -> None:
    """Remove a previous compilation's files (the EP refuses to overwrite them)."""
    for f in out_dir.iterdir():
        if f.suffix == ".bin" or (f.name.startswith(stem) and "_ctx" in f.name):
            f.unlink()


def graph_count(optimization_mode: int | None | dict) -> int:
    """How many context binaries `compile_context` makes for this `htp_optimization_mode`."""
    return len(GRAPH_PARTS) if isinstance(optimization_mode, dict) else 1
