"""Snapdragon Hexagon through onnxruntime-qnn's HTP emulator: sessions, context binaries, coverage.

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
        _raise_offending(offending, soc)
    check_coverage(ctx, qdq_model, soc, graphs=1)
    return ctx


def _raise_offending(offending: list[tuple[str, str]], soc: Soc) -> None:
    names = ", ".join(f"{n} ({op})" for n, op in offending)
    raise UserError(f"not 100% on HTP for {soc.name}: {len(offending)} node(s) would run on the CPU: {names}")


def clear_context(out_dir: Path, stem: str = "student") -> None:
    """Remove a previous compilation's files (the EP refuses to overwrite them)."""
    for f in out_dir.iterdir():
        if f.suffix == ".bin" or (f.name.startswith(stem) and "_ctx" in f.name):
            f.unlink()


def split_at_features(qdq_model: str | os.PathLike, folder: Path) -> list[tuple[str, Path]]:
    """The QDQ model cut at its quantized features tensor: [("features", LR → features),
    ("decode", features → SR)], written to `folder`. The cut is the QuantizeLinear's 16-bit
    output, so both context binaries keep it quantized and nothing runs between them. A student
    whose SR also reads its LR (`lr_skip`) gets the LR as the decode half's second input; the
    LR's own quantize/dequantize nodes are then the only nodes both halves hold."""
    import onnx
    from onnx.utils import Extractor

    from .onnx_export import FEATURES_NAME, INPUT_NAME, OUTPUT_NAME

    model = onnx.load(str(qdq_model))
    quantize = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and FEATURES_NAME in n.input]
    if len(quantize) != 1:
        raise UserError(f"{Path(qdq_model).name} has no quantized {FEATURES_NAME!r} tensor to split the QNN graph "
                        "at: give htp_optimization_mode one level")
    cut = quantize[0].output[0]
    decode_inputs = [cut] + ([INPUT_NAME] if _reads_past(model.graph, OUTPUT_NAME, cut, INPUT_NAME) else [])
    extractor = Extractor(onnx.shape_inference.infer_shapes(model))
    halves = {"features": extractor.extract_model([INPUT_NAME], [cut]),
              "decode": extractor.extract_model(decode_inputs, [OUTPUT_NAME])}
    # a cut: every node lands in a half, and only constant-only nodes (e.g. the DequantizeLinear of
    # a shared scalar) and the input's own Q/DQ land in both
    constants, conversions = {i.name for i in model.graph.initializer}, _input_conversions(model.graph, INPUT_NAME)
    nodes = [{n.output[0] for n in h.graph.node} for h in halves.values()]
    both = {n.output[0] for n in model.graph.node if n.output[0] in nodes[0] & nodes[1]
            and n.output[0] not in conversions and not set(n.input) <= constants}
    if both or len(nodes[0] | nodes[1]) != len(model.graph.node):
        raise UserError(f"{Path(qdq_model).name}: the {FEATURES_NAME!r} tensor does not cut the graph in two")
    paths = []
    for name, half in halves.items():
        path = folder / f"{name}.onnx"
        onnx.save_model(half, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data")
        paths.append((name, path))
    return paths


def split_onnx(model_path: str | os.PathLike, folder: Path) -> list[tuple[str, Path]]:
    """The student's ONNX, fp32 or W8A16 QDQ, cut into the two halves the QNN export ships:
    [("features", LR → features), ("decode", features (+ LR) → SR)], written to `folder`. A QDQ
    model is cut at its quantized features (`split_at_features`), an fp32 one at the tensor."""
    import onnx
    from onnx.utils import Extractor

    from .onnx_export import FEATURES_NAME, INPUT_NAME, OUTPUT_NAME

    model = onnx.load(str(model_path))
    if any(n.op_type == "QuantizeLinear" and FEATURES_NAME in n.input for n in model.graph.node):
        return split_at_features(model_path, folder)
    if not any(FEATURES_NAME in n.output for n in model.graph.node):
        raise UserError(f"{Path(model_path).name} has no {FEATURES_NAME!r} tensor to cut at: is it a student export?")
    decode_inputs = [FEATURES_NAME] + ([INPUT_NAME] if _reads_past(model.graph, OUTPUT_NAME, FEATURES_NAME,
                                                                    INPUT_NAME) else [])
    extractor = Extractor(onnx.shape_inference.infer_shapes(model))
    paths = []
    for name, (inputs, outputs) in {"features": ([INPUT_NAME], [FEATURES_NAME]),
                                    "decode": (decode_inputs, [OUTPUT_NAME])}.items():
        path = folder / f"{name}.onnx"
        onnx.save_model(extractor.extract_model(inputs, outputs), str(path), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=path.name + ".data")
        paths.append((name, path))
    return paths


def _reads_past(graph, output: str, cut: str, source: str) -> bool:
    """Whether `output` depends on `source` other than through `cut`."""
    producer = {o: n for n in graph.node for o in n.output}
    seen, todo = set(), [output]
    while todo:
        t = todo.pop()
        if t == source:
            return True
        if t == cut or t in seen or t not in producer:
            continue
        seen.add(t)
        todo.extend(producer[t].input)
    return False


def _input_conversions(graph, source: str) -> set[str]:
    """The tensors of `source`'s QuantizeLinear and of the DequantizeLinear nodes reading it."""
    q = {n.output[0] for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == source}
    return q | {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in q}


def chain_contexts(ctx_models: list[Path], out: Path) -> Path:
    """One EPContext model running `ctx_models` in order, each one's inputs the previous one's
    outputs or the first one's inputs (the LR, for a student with `lr_skip`); their `.bin` files
    stay beside it, referenced by name. Nodes the models share (the LR's float → 16-bit
    conversion) appear once. onnxruntime-qnn loads every context of such a model in one session."""
    import onnx
    from onnx import helper

    models = [onnx.load(str(p)) for p in ctx_models]
    first_inputs = {i.name for i in models[0].graph.input}
    for a, b in zip(models, models[1:]):
        if not {i.name for i in b.graph.input} <= {o.name for o in a.graph.output} | first_inputs:
            raise RuntimeError("context models do not chain: one's inputs are not the previous one's outputs")
    nodes, made = [], set()
    for node in (n for m in models for n in m.graph.node):
        if not set(node.output) <= made:
            nodes.append(node)
            made.update(node.output)
    initializers = {i.name: i for m in models for i in m.graph.initializer}  # e.g. an I/O conversion's scale
    graph = helper.make_graph(nodes, "student", list(models[0].graph.input), list(models[-1].graph.output),
                              list(initializers.values()), value_info=[o for m in models[:-1] for o in m.graph.output])
    opsets = {o.domain: o for m in models for o in m.opset_import}
    chained = helper.make_model(graph, opset_imports=list(opsets.values()))
    chained.ir_version = models[0].ir_version
    onnx.save(chained, str(out))
    return out


def coverage(ctx_model: str | os.PathLike, qdq_model: str | os.PathLike | None = None,
             graphs: int | None = None) -> dict:
    """What the EPContext model runs outside QNN, read from the model as a whole.

    Allowed outside an EPContext node are only the float I/O conversions: a QuantizeLinear that
    reads a graph input and a DequantizeLinear that writes a graph output. Anything else — a
    Q/DQ pair, an Identity or a compute node between two chained context binaries included —
    is an offending node, the CPU provider would run it. `graphs` is how many context binaries
    the model must hold (one EPContext node each); every EPContext node's `.bin` must lie beside
    the model. `htp_fraction` is the share of the QDQ model's compute nodes (Q/DQ excluded) that
    is not matched by an offending node (every offending node counts); without `qdq_model` it is
    1.0 or 0.0.
    """
    import onnx

    ctx_model = Path(ctx_model)
    graph = onnx.load(str(ctx_model), load_external_data=False).graph
    inputs, outputs = {i.name for i in graph.input}, {o.name for o in graph.output}
    ep_nodes, io_nodes, offending, missing = 0, 0, [], []
    for node in graph.node:
        if node.op_type == "EPContext":
            ep_nodes += 1
            attrs = {a.name: a for a in node.attribute}
            embedded = attrs["embed_mode"].i if "embed_mode" in attrs else 1
            if not embedded and "ep_cache_context" in attrs:
                binary = attrs["ep_cache_context"].s.decode()
                if not (ctx_model.parent / binary).is_file():
                    missing.append(binary)
        elif (node.op_type == "QuantizeLinear" and node.input[0] in inputs) or (
                node.op_type == "DequantizeLinear" and node.output[0] in outputs):
            io_nodes += 1
        else:
            offending.append((node.name or node.output[0], node.op_type))
    compute = None
    if qdq_model is not None:
        qdq = onnx.load(str(qdq_model), load_external_data=False).graph
        compute = sum(n.op_type not in IO_CONVERSION_OPS for n in qdq.node)
    if compute:
        fraction = max(0.0, 1 - len(offending) / compute) if ep_nodes else 0.0
    else:
        fraction = float(not offending and ep_nodes > 0)
    return {
        "epcontext_nodes": ep_nodes,
        "expected_epcontext_nodes": graphs,
        "io_conversion_nodes": io_nodes,
        "compute_nodes": compute,
        "offending_nodes": offending,
        "missing_context_binaries": missing,
        "htp_fraction": fraction,
    }


def check_coverage(ctx_model: str | os.PathLike, qdq_model: str | os.PathLike | None, soc: Soc,
                   graphs: int) -> dict:
    """`coverage(...)` of the whole EPContext model, or a `UserError` when anything but its
    `graphs` EPContext nodes and the float I/O conversions would run outside HTP."""
    report = coverage(ctx_model, qdq_model, graphs)
    if report["offending_nodes"]:
        _raise_offending(report["offending_nodes"], soc)
    if report["epcontext_nodes"] != graphs:
        raise UserError(f"{Path(ctx_model).name}: {report['epcontext_nodes']} EPContext node(s), expected {graphs} "
                        f"(one per compiled graph)")
    if report["missing_context_binaries"]:
        raise UserError(f"{Path(ctx_model).name}: context binary missing beside it: "
                        + ", ".join(report["missing_context_binaries"]))
    return report


def graph_count(optimization_mode: int | None | dict) -> int:
    """How many context binaries `compile_context` makes for this `htp_optimization_mode`."""
    return len(GRAPH_PARTS) if isinstance(optimization_mode, dict) else 1
