"""Core ML's fp16 compute, checked where it can run here: in PyTorch (Core ML prediction needs macOS).

Third-party Core ML ports of the released AdcSR report NaNs in attention and GroupNorm at fp16
(one stays fp32 for that reason, another keeps late decoder blocks in fp32). The W8A16 package
computes in fp16, so before it is converted the program coremltools converts — the Core ML deploy
form's `torch.export` graph, one node per ATen op — is run here, node by node (`torch.fx`):

1. **Peaks.** In fp32, on the calibration tiles and on the held-out tiles, each op ("node")
   records the largest |value| Core ML's fp16 program would hold for it: its output, and for
   GroupNorm / LayerNorm also the squared deviation from the mean (coremltools lowers GroupNorm
   to reshape → reduce_mean → sub → square → reduce_mean → sqrt → real_div, so (x − mean)² is an
   fp16 tensor: |x − mean| > 256 already overflows). Attention's scores QKᵀ·scale are the output
   of their own matmul node. Weights count as the outputs of their parameter nodes.
   The peaks are measured in fp32 and compared with fp16's range, rather than read from an fp16
   run: in an fp16 run the first overflow turns into inf and every later op reads inf or NaN, so
   it cannot say which op overflowed; PyTorch's CPU fp16 GroupNorm computes its statistics in
   fp32 (a 380 000 squared deviation stays finite there), so it never shows the intermediates
   Core ML keeps in fp16; and a number tells how close an op that did not overflow came.
2. **Which ops stay fp32**, from the calibration tiles only: every op whose own peak, or the peak
   of one of its inputs, times `headroom` exceeds 65504 (`thresholds.DEFAULTS["fp16_headroom"]`;
   an input counts because a large fp32 value cast to an fp16 op's input overflows there). The
   package keeps exactly these ops fp32 with coremltools' per-op compute precision
   (`coreml_export.export_coreml`); `layer` in the report is each op's innermost module.
3. **Parity.** The same graph runs in fp16 in PyTorch — every op with its inputs cast to its
   precision, as the package's casts do — against fp32, on both sets: all ops fp16, and as
   packaged (the fp32 ops in fp32). The held-out figure as packaged must meet `min_fp16_psnr`,
   and no op left in fp16 may reach 65504 on the held-out tiles.

Not checked here: accumulators inside an op (a conv's or reduce_mean's running sum), which depend
on how Apple's hardware accumulates, and whatever the Neural Engine does beyond IEEE fp16 (PyTorch's
CPU fp16 kernels may accumulate in fp32, so the parity is an upper bound on the device's).

Written by hand: coremltools converts with a per-op precision but cannot say which ops need it
without running the model on a Mac.
"""

from __future__ import annotations

from typing import Callable

import torch

from .thresholds import FP16_MAX, json_number

NORMS = {"aten.group_norm.default": "group", "aten.native_group_norm.default": "native_group",
         "aten.layer_norm.default": "layer", "aten.native_layer_norm.default": "layer"}
SQUARED = "squared deviation from the mean"


def _peak(value) -> float:
    if isinstance(value, torch.Tensor):
        if not value.is_floating_point() or not value.numel():
            return 0.0
        return float(value.detach().abs().amax().float())
    if isinstance(value, (tuple, list)):
        return max((_peak(v) for v in value), default=0.0)
    return 0.0


def _squared_deviation(kind: str, args: tuple) -> float:
    """max (x − mean)² of a norm node's input: over each group (GroupNorm), the normalised last
    dims (LayerNorm)."""
    x = args[0].detach().float()
    if kind == "group":
        g = x.reshape(x.shape[0], int(args[1]), -1)
    elif kind == "native_group":
        g = x.reshape(x.shape[0], int(args[6]), -1)
    else:
        g = x.reshape(-1, int(torch.tensor(args[1]).prod()))
    return float(((g - g.mean(dim=-1, keepdim=True)) ** 2).amax())


def _cast(value, dtype: torch.dtype):
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, tuple):
        return tuple(_cast(v, dtype) for v in value)
    if isinstance(value, list):
        return [_cast(v, dtype) for v in value]
    if isinstance(value, dict):
        return {k: _cast(v, dtype) for k, v in value.items()}
    return value


def layer_of(node) -> str:
    """The innermost module an FX node was traced in, without the deploy form's `student.` prefix."""
    stack = list((node.meta.get("nn_module_stack") or {}).values())
    path = stack[-1][0] if stack else ""
    return path.removeprefix("student.") or "student"


class _Runner(torch.fx.Interpreter):
    """The exported graph run node by node: `precision` (node name → dtype; default fp16) casts
    each call's inputs and outputs; `peaks` (dict) collects {node: [output peak, internal peak]}
    in place (internal: a norm's squared deviation from the mean, else 0)."""

    def __init__(self, graph_module, precision: dict[str, torch.dtype] | None = None,
                 peaks: dict[str, list[float]] | None = None):
        super().__init__(graph_module)
        self.precision, self.peaks = precision, peaks

    def run_node(self, n):
        if n.op == "call_function" and self.precision is not None:
            dtype = self.precision.get(n.name, torch.float16)
            args, kwargs = self.fetch_args_kwargs_from_env(n)
            out = _cast(self.call_function(n.target, _cast(args, dtype), _cast(kwargs, dtype)), dtype)
        else:
            out = super().run_node(n)
        if self.peaks is not None and n.op in ("call_function", "placeholder"):
            kind = NORMS.get(str(n.target))
            output = _peak(out[0] if kind and isinstance(out, (tuple, list)) else out)
            internal = 0.0
            if kind:
                args, _ = self.fetch_args_kwargs_from_env(n)
                internal = _squared_deviation(kind, args)
            old = self.peaks.setdefault(n.name, [0.0, 0.0])
            for i, value in enumerate((output, internal)):
                if not value <= old[i]:  # a NaN replaces anything
                    old[i] = value
        return out


def _program_args(program) -> Callable[[torch.Tensor], list]:
    """The flat inputs of `program.graph_module` (parameters, buffers, constants, then the LR tile)."""
    from torch.export.graph_signature import InputKind

    fixed = []
    for spec in program.graph_signature.input_specs:
        if spec.kind == InputKind.USER_INPUT:
            fixed.append(None)
        elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
            fixed.append(program.state_dict[spec.target] if spec.target in program.state_dict
                         else program.constants[spec.target])
        else:
            fixed.append(program.constants[spec.target])
    return lambda x: [x if v is None else v for v in fixed]


def run_program(program, tiles: torch.Tensor, precision: dict[str, torch.dtype] | None = None,
                peaks: dict | None = None) -> torch.Tensor:
    """The exported (batch-1) program over `tiles`, one at a time, as float32."""
    args = _program_args(program)
    outs = []
    with torch.no_grad():
        for x in tiles:
            out = _Runner(program.graph_module, precision, peaks).run(*args(x[None].float()))
            outs.append((out[0] if isinstance(out, (tuple, list)) else out).float())
    return torch.cat(outs)


def _own(peak: list[float]) -> tuple[float, str]:
    """An op's own peak and what it was: its output, or the internal value when larger (or NaN)."""
    return (peak[1], SQUARED) if not peak[1] <= peak[0] else (peak[0], "output")


def fp32_ops(program, peaks: dict[str, list[float]], limit: float) -> dict[str, str]:
    """{node name: why} for every op to keep fp32: its own peak (output or internal) or an
    input's output peak is over `limit` (NaN counts as over)."""
    keep = {}
    for n in program.graph.nodes:
        if n.op != "call_function":
            continue
        value, quantity = _own(peaks.get(n.name, [0.0, 0.0]))
        if not value <= limit:
            keep[n.name] = quantity
            continue
        for arg in n.all_input_nodes:
            if not peaks.get(arg.name, [0.0, 0.0])[0] <= limit:
                keep[n.name] = f"input {arg.name}"
                break
    return keep


def check_fp16(program, calibration: torch.Tensor, heldout: torch.Tensor, headroom: float) -> dict:
    """Peaks, the fp32 ops and the fp16-vs-fp32 parity of the Core ML program (the deploy form's
    `coreml_export.coreml_program`); the report the Core ML manifest records as `fp16_compute`."""
    from adcsr.core.metrics.fidelity import parity_psnr

    limit = FP16_MAX / headroom
    sets = {"calibration": calibration, "heldout": heldout}
    peaks: dict[str, dict] = {k: {} for k in sets}
    reference = {k: run_program(program, v, peaks=peaks[k]) for k, v in sets.items()}
    keep = fp32_ops(program, peaks["calibration"], limit)  # the decision reads calibration tiles only
    nodes = {n.name: n for n in program.graph.nodes}
    # ops left in fp16 whose held-out values (own, or an input's) reach fp16's range
    held = fp32_ops(program, peaks["heldout"], FP16_MAX * (1 - 1e-9))
    overflow = sorted(name for name in held if name not in keep)
    all16 = {n.name: torch.float16 for n in program.graph.nodes}
    figures = {"all_fp16": {k: parity_psnr(reference[k], run_program(program, v, all16)) for k, v in sets.items()}}
    if keep:
        packaged = {**all16, **{name: torch.float32 for name in keep}}
        figures["as_packaged"] = {k: parity_psnr(reference[k], run_program(program, v, packaged)) for k, v in sets.items()}
    else:
        figures["as_packaged"] = dict(figures["all_fp16"])
    layers: dict[str, dict] = {}
    for n in program.graph.nodes:
        if n.op != "call_function":
            continue
        row = layers.setdefault(layer_of(n), {"layer": layer_of(n), "ops": 0, "fp32_ops": 0,
                                              "peak_calibration": 0.0, "peak_heldout": 0.0})
        row["ops"] += 1
        row["fp32_ops"] += n.name in keep
        for k in sets:
            p = _own(peaks[k].get(n.name, [0.0, 0.0]))[0]
            if not p <= row[f"peak_{k}"]:
                row[f"peak_{k}"] = p
    order = sorted(layers.values(), key=lambda r: -r["peak_calibration"] if r["peak_calibration"] == r["peak_calibration"]
                   else float("-inf"))
    return {
        "method": "the Core ML program (torch.export graph of the deploy form) run op by op in PyTorch: fp32 "
                  "activation peaks (outputs; norms' squared deviations) against fp16's range; fp16 vs fp32 parity",
        "fp16_max": FP16_MAX, "headroom": headroom, "limit": limit,
        "fp32_ops": [{"op": name, "aten": str(nodes[name].target), "layer": layer_of(nodes[name]), "why": why,
                      "peak_calibration": json_number(_own(peaks["calibration"][name])[0]),
                      "peak_heldout": json_number(_own(peaks["heldout"].get(name, [float("nan")] * 2))[0])}
                     for name, why in keep.items()],
        "fp32_layers": sorted({layer_of(nodes[name]) for name in keep}),
        "overflow_on_heldout": overflow,
        "psnr_db": {kind: {k: json_number(v) for k, v in f.items()} for kind, f in figures.items()},
        "layers": [{**r, "peak_calibration": json_number(r["peak_calibration"]),
                    "peak_heldout": json_number(r["peak_heldout"])} for r in order],
    }
