"""W8A16 quantization and export to QNN (Hexagon), ExecuTorch and Core ML, each verified against
PyTorch.

The face: `export(student, out, targets, cfg)` writes and verifies each target's folder;
`ExportConfig` / `load_export_config` its settings; `TARGETS` the target names; `verify(folder)`
re-checks an exported folder against its manifest's thresholds; `load_artifact(path)` runs one;
`shipped_onnx(model, tile, path)` writes a model's fp32 ONNX as the export ships it;
`quantize_int8_cpu(onnx, out, tiles)` makes its int8 QDQ for onnxruntime's CPU provider;
`artifact_rows(folder)` summarises an exported folder, a row per shipped file;
`split_onnx(model, folder)` cuts a student ONNX into the halves QNN ships; `lr_tiles(split, tile,
count)` the degraded photo tiles calibration and verification use; `stage_for_android(run, app)`
stages artifacts and their model contract into the Android demo app; `CONTEXT_BUDGET_BYTES` the
size a QNN context binary must stay under; `add_parser` the `adcsr export` subcommand.
Imported on first use (core/faces.py).
"""

from adcsr.core.faces import lazy_face

__getattr__, __all__ = lazy_face(__name__, {
    "export": "targets", "TARGETS": "targets", "ExportConfig": "config", "load_export_config": "config",
    "verify": "verify", "load_artifact": "runtime", "shipped_onnx": "onnx_export", "quantize_int8_cpu": "int8_cpu",
    "artifact_rows": "summary", "split_onnx": "qnn_split", "lr_tiles": "calibration", "stage_for_android": "android",
    "CONTEXT_BUDGET_BYTES": "thresholds", "add_parser": "cli",
})
