"""What a user needs to deploy an exported folder: the runtime versions it was built with (in its
manifest, and compared with what is installed when it is verified) and a README written next to
its files: which device and runtime, the I/O and tiling contract, a loading snippet.

The README is rendered from the folder's own manifest, so it states the tile, SoC, files and
parity of this export, not of the defaults."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

from adcsr.core.atomic import atomic_write_text

README = "README.md"
# the packages whose version decides whether an artifact loads (a QNN context binary loads only
# on the QNN runtime it was compiled for) and whether a re-run reproduces its parity
RUNTIME_PACKAGES = {
    "onnx": ("onnxruntime", "onnxruntime-qnn"),
    "qnn_context_binary": ("onnxruntime", "onnxruntime-qnn"),
    "executorch": ("executorch",),
    "coreml": ("coremltools",),
}


def installed_versions(target: str) -> dict[str, str | None]:
    found = {}
    for package in RUNTIME_PACKAGES.get(target, ()):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def qnn_sdk_version(context_model: Path) -> str | None:
    """The QNN SDK that compiled a context model (its EPContext nodes' `ep_sdk_version`)."""
    import onnx

    model = onnx.load(str(context_model), load_external_data=False)
    for node in model.graph.node:
        if node.op_type == "EPContext":
            for a in node.attribute:
                if a.name == "ep_sdk_version":
                    return onnx.helper.get_attribute_value(a).decode()
    return None


def version_drift(manifest: dict) -> list[str]:
    """One line per runtime package whose installed version differs from the one recorded."""
    lines = []
    for package, built in (manifest.get("runtime") or {}).items():
        if package not in RUNTIME_PACKAGES.get(manifest.get("target", ""), ()):
            continue
        now = installed_versions(manifest["target"]).get(package)
        if now != built:
            lines.append(f"built with {package} {built}, installed {now or 'none'}"
                         + (": a QNN context binary loads only on the QNN runtime it was built for"
                            if manifest["target"] == "qnn_context_binary" else ""))
    return lines


def write_readme(folder: Path, manifest: dict) -> Path:
    text = _render(manifest)
    atomic_write_text(folder / README, text)
    return folder / README


# ---- rendering ------------------------------------------------------------------------------

_TITLES = {
    "qnn_context_binary": "QNN context binary for the Snapdragon Hexagon NPU",
    "onnx": "ONNX models: fp32 and W8A16 (QDQ)",
    "executorch": "ExecuTorch programs (.pte)",
    "coreml": "Core ML packages (.mlpackage)",
}


def _render(m: dict) -> str:
    tile, target = m["lr_tile"], m["target"]
    rows = "\n".join(f"| `{a['file']}` | {a['kind']} | {_size(a.get('bytes', 0))} | {_parity(a)} |"
                     for a in m.get("artifacts", []))
    built = ", ".join(f"{k} {v}" for k, v in (m.get("runtime") or {}).items()) or "—"
    parts = [
        f"# {_TITLES.get(target, target)}",
        "",
        f"Exported by adcsr-mobile on {m.get('created', '?')} from the student "
        f"{_student(m.get('student') or {})}. Every number below was measured by that export "
        "(`manifest.json` holds them all, with each file's sha256).",
        "",
        "| file | kind | size | parity vs the PyTorch student |",
        "| --- | --- | ---: | --- |",
        rows,
        "",
        "## Runs on",
        "",
        _runs_on(m),
        "",
        f"Built with: {built} (Python {m.get('environment', {}).get('python', '?')}, "
        f"torch {m.get('environment', {}).get('torch', '?')}). `adcsr export verify` on this folder warns when "
        "the installed versions differ.",
        "",
        "## Input and output",
        "",
        f"- input `{m['input']['name']}`: float32, shape {m['input']['shape']} (N, RGB, H, W), values in [0, 1]",
        f"- output `{m['output']['name']}`: float32, shape {m['output']['shape']}, values in [0, 1] (×4)",
        "",
        "## Tiling and colour",
        "",
        f"The graph is static: one {tile}×{tile} LR tile in, one {4 * tile}×{4 * tile} SR tile out. A photo of any "
        f"size is cut into {tile}² tiles that overlap by {min(32, tile // 4)} LR pixels (edges padded by "
        "reflection), each SR tile is weighted by a raised-cosine ramp over the overlap and the weights sum to one "
        "(`adcsr.core.tiling`; the Android demo's `Tiler` does the same step for step). Then the colour fix "
        "the AdcSR release applies: each channel of the stitched SR is shifted and scaled to the mean and "
        "standard deviation of the same channel of the LR image.",
        "",
        "`adcsr upscale --artifact <this folder's model file> photo.png out.png` does all of it on a computer.",
        "",
        "## Load it",
        "",
        _snippet(m),
        "",
    ]
    return "\n".join(parts)


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _student(s: dict) -> str:
    if s.get("preset"):
        return f"preset `{s['preset']}` (random weights, seed {s.get('seed', 0)})"
    if s.get("path"):
        return f"`{s['path']}` (sha256 {s.get('sha256', '?')[:12]}…)"
    return "built in memory"


def _parity(a: dict) -> str:
    for key, what in (("psnr_db", "PSNR"), ("psnr_db_htp_emulator", "PSNR on the HTP emulator"),
                      ("psnr_db_pytorch", "PSNR of its quantized graph run in PyTorch")):
        if a.get(key) is not None:
            return f"{what} {a[key]:.1f} dB"
    return "—"


def _runs_on(m: dict) -> str:
    target = m["target"]
    if target == "qnn_context_binary":
        return (f"A phone with the {m['soc']} SoC (Hexagon HTP v{m['htp_arch']}, soc_model {m['soc_model']}), "
                "through onnxruntime's QNN execution provider with the HTP backend. The `.bin` files are "
                "compiled for this SoC and this QNN version: keep them next to the `_ctx.onnx` file, and ship "
                "the QNN libraries of the same version with the app. Compiled as "
                f"{m.get('htp_coverage', {}).get('epcontext_nodes', '?')} graph(s); "
                f"{100 * m.get('htp_coverage', {}).get('htp_fraction', 0):.0f}% of its compute runs on the HTP.")
    if target == "onnx":
        return ("Any onnxruntime. `student_fp32.onnx` is the exported student; `student_w8a16.onnx` is its "
                "W8A16 QDQ form (8-bit weights, 16-bit activations), the graph the QNN context binary was "
                "compiled from, for other QNN tool chains or for AI Hub (`adcsr hub`).")
    if target == "executorch":
        return ("Android or iOS CPUs through ExecuTorch's XNNPACK delegate (the fp32 `.pte`); a "
                "`student_qnn_<SoC>.pte`, when present, runs on the Hexagon NPU through ExecuTorch's QNN "
                "backend. The runtime must be the ExecuTorch version that wrote the program.")
    if target == "coreml":
        return (f"iPhone, iPad and Mac (Core ML, ML Program; {m.get('minimum_deployment_target', 'iOS17')} / "
                "macOS 14 or later). `student_w8a16.mlpackage` has 8-bit weights and "
                "fp16 compute (ops near fp16's range kept in fp32); `student_fp32.mlpackage` is the float model. "
                "Its predictions could not be checked where it was exported unless that was macOS: its spec "
                "was checked, and its fp16 arithmetic run in PyTorch.")
    return ""


def _snippet(m: dict) -> str:
    t, i = m["lr_tile"], m["input"]["name"]
    files = [a["file"] for a in m.get("artifacts", [])]
    if m["target"] == "qnn_context_binary":
        ctx = next((f for f in files if f.endswith(".onnx")), "student_ctx.onnx")
        return f"""Python (onnxruntime ≥ 1.24 with onnxruntime-qnn, on a Snapdragon device):

```python
import numpy as np, onnxruntime as ort, onnxruntime_qnn
ort.register_execution_provider_library("QNNExecutionProvider", onnxruntime_qnn.get_library_path())
so = ort.SessionOptions()
so.add_provider_for_devices([d for d in ort.get_ep_devices() if d.ep_name == "QNNExecutionProvider"],
                            {{"backend_path": onnxruntime_qnn.get_qnn_htp_path()}})
session = ort.InferenceSession("{ctx}", so)
sr = session.run(None, {{"{i}": np.zeros((1, 3, {t}, {t}), np.float32)}})[0]   # (1, 3, {4 * t}, {4 * t})
```

Android: the demo app (`android_demo/`, `adcsr export android`) opens it with onnxruntime-android's
QNN provider (`backend_path` = `libQnnHtp.so`) and falls back to the CPU program when the device has no HTP."""
    if m["target"] == "onnx":
        return f"""```python
import numpy as np, onnxruntime as ort
session = ort.InferenceSession("student_fp32.onnx")
sr = session.run(None, {{"{i}": np.zeros((1, 3, {t}, {t}), np.float32)}})[0]
```"""
    if m["target"] == "executorch":
        pte = next((f for f in files if f.endswith(".pte")), "student_xnnpack.pte")
        return f"""Python:

```python
import torch
from executorch.runtime import Runtime
method = Runtime.get().load_program("{pte}").load_method("forward")
sr = method.execute([torch.zeros(1, 3, {t}, {t})])[0]
```

Android (Kotlin, `org.pytorch.executorch`):

```kotlin
val module = Module.load(path)
val sr = module.forward(EValue.from(Tensor.fromBlob(lr, longArrayOf(1, 3, {t}, {t}))))[0].toTensor()
```"""
    if m["target"] == "coreml":
        return f"""Swift:

```swift
let model = try MLModel(contentsOf: try MLModel.compileModel(at: url))   // url of student_w8a16.mlpackage
let lr = try MLMultiArray(shape: [1, 3, {t}, {t}], dataType: .float32)
let out = try model.prediction(from: try MLDictionaryFeatureProvider(dictionary: ["{i}": lr]))
let sr = out.featureValue(for: "{m['output']['name']}")!.multiArrayValue!   // [1, 3, {4 * t}, {4 * t}]
```

Python on macOS: `coremltools.models.MLModel("student_w8a16.mlpackage").predict({{"{i}": lr}})`."""
    return ""

