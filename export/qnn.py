"""Snapdragon Hexagon through onnxruntime-qnn's HTP emulator: sessions, context binaries, coverage.

The QNN execution provider is a plug-in library (onnxruntime ≥ 1.24): it is registered once, then
added for its devices with `backend_path` pointing at the HTP library — without that the session
silently runs on the CPU provider, so every session here checks which provider it got.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from adcsr.core.errors import UserError


@dataclass(frozen=True)
class Soc:
    name: str
    soc_model: int
    htp_arch: int


SOCS: dict[str, Soc] = {
    "SM8750": Soc("SM8750", 69, 79),  # Snapdragon 8 Elite
    "SM8650": Soc("SM8650", 57, 75),  # Snapdragon 8 Gen 3
}
# graph-boundary conversions: float model I/O ↔ the quantized tensors the context binary takes
IO_CONVERSION_OPS = ("QuantizeLinear", "DequantizeLinear")
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


def check_optimization_mode(mode: int | None) -> int | None:
    """`mode` itself if it is a QNN graph-finalization level (or None for the SDK's default)."""
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
    so.log_severity_level = 3
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
    if check_optimization_mode(optimization_mode) is not None:
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
                    optimization_mode: int | None = None) -> Path:
    """Compile a QDQ model into `<stem>_ctx.onnx` + QNN context `.bin` in `out_dir`.

    The compiling session has CPU fallback disabled, so it only succeeds when every node runs on
    HTP; the written EPContext model is then checked by counting its nodes too. On failure the
    model is compiled once more with fallback allowed, only to name the nodes left outside, and a
    `UserError` lists them.
    """
    out_dir = Path(out_dir)
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
        _raise_offending(offending, soc)
    report = coverage(ctx, qdq_model)
    if report["offending_nodes"]:
        _raise_offending(report["offending_nodes"], soc)
    return ctx


def _raise_offending(offending: list[tuple[str, str]], soc: Soc) -> None:
    names = ", ".join(f"{n} ({op})" for n, op in offending)
    raise UserError(f"not 100% on HTP for {soc.name}: {len(offending)} node(s) would run on the CPU: {names}")


def clear_context(out_dir: Path, stem: str = "student") -> None:
    """Remove a previous compilation's files (the EP refuses to overwrite them)."""
    for f in out_dir.iterdir():
        if f.name.startswith(f"{stem}_ctx") or f.suffix == ".bin":
            f.unlink()


def coverage(ctx_model: str | os.PathLike, qdq_model: str | os.PathLike | None = None) -> dict:
    """What the EPContext model runs outside QNN (graph-boundary Q/DQ conversions aside).

    `htp_fraction` is the share of the QDQ model's compute nodes (Q/DQ excluded) inside EPContext
    nodes; without `qdq_model` it is 1.0 or 0.0.
    """
    import onnx

    graph = onnx.load(str(ctx_model), load_external_data=False).graph
    boundary = {i.name for i in graph.input} | {o.name for o in graph.output}
    ep_nodes, io_nodes, offending = 0, 0, []
    for node in graph.node:
        if node.op_type == "EPContext":
            ep_nodes += 1
        elif node.op_type in IO_CONVERSION_OPS and boundary & (set(node.input) | set(node.output)):
            io_nodes += 1
        else:
            offending.append((node.name or node.output[0], node.op_type))
    compute = None
    if qdq_model is not None:
        qdq = onnx.load(str(qdq_model), load_external_data=False).graph
        compute = sum(n.op_type not in IO_CONVERSION_OPS for n in qdq.node)
    outside = sum(op not in IO_CONVERSION_OPS for _, op in offending)
    fraction = (1 - outside / compute) if compute else float(not offending and ep_nodes > 0)
    return {
        "epcontext_nodes": ep_nodes,
        "io_conversion_nodes": io_nodes,
        "compute_nodes": compute,
        "offending_nodes": offending,
        "htp_fraction": fraction,
    }
