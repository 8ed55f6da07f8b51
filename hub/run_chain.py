"""`run_on_hub`: the chain for the student's graphs (the whole, and the two halves of the split
the QNN export ships), with the results written as one JSON file next to the artifact.

Steps: "compile" compiles (and downloads) every part; "profile" adds a profiling job per part on
inputs the service draws; "infer" profiles on held-out LR tiles instead and compares the phone's
SR with the PyTorch student's: the whole directly, the split by feeding the features half's
on-device output into the decode half, as the app runs them; "run" is all of it.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from adcsr.core.atomic import atomic_write_text
from adcsr.core.errors import UserError
from adcsr.core.manifest import sha256_tree
from adcsr.core.metrics.fidelity import parity_psnr

from .chain import Part, Session, tool_versions
from .config import STEPS


def results_path(out: Path, device_label: str, runtime: str) -> Path:
    slug = re.sub(r"[^a-z0-9]+", "-", device_label.lower()).strip("-")
    return out / f"hub-{slug}-{runtime}.json"


def _only_output(outputs: dict[str, list[np.ndarray]], key: str) -> np.ndarray:
    if len(outputs) != 1:
        raise UserError(f"{key}: expected one output from the phone, got {sorted(outputs)}")
    return np.concatenate(next(iter(outputs.values())))


def run_on_hub(session: Session, parts: list[Part], out: Path, *, step: str = "run", device: str | None = None,
               chipset: str | None = None, runtime: str = "qnn_context_binary", quantize_io: bool = False,
               heldout: np.ndarray | None = None, reference: np.ndarray | None = None,
               source: dict[str, Any] | None = None) -> Path:
    """Take `parts` through AI Hub up to `step`; write and return the results JSON in `out`.

    For "infer"/"run", `heldout` holds LR tiles (N, 3, T, T) and `reference` the PyTorch student's
    SR of them; the parts named "features" and "decode" are also run back to back."""
    if step not in STEPS:
        raise UserError(f"step must be one of {', '.join(STEPS)}, got {step!r}")
    infer = step in ("infer", "run")
    if infer and (heldout is None or reference is None):
        raise UserError("inference needs held-out LR tiles and the PyTorch student's SR of them")
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    dev = session.device(device, chipset)
    label = dev.name or ",".join(dev.attributes)
    results: dict[str, Any] = {"device": {"name": dev.name, "attributes": list(dev.attributes)}, "runtime": runtime,
                               "quantize_io": quantize_io, "step": step, "started": started,
                               "source": source or {}, "parts": {}}
    compiled = _compile_parts(session, parts, dev, runtime, quantize_io, out, results["parts"],
                              download=step in ("compile", "run"))
    if step != "compile":
        lr = [heldout[i:i + 1].astype(np.float32) for i in range(len(heldout))] if infer else None
        _run_parts(session, parts, compiled, dev, results["parts"], infer, lr, reference)
        if infer and {"features", "decode"} <= {p.name for p in parts}:
            results["split"] = _split_result(results["parts"])
    results["jobs"] = session.jobs
    path = results_path(out, label, runtime)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(results, indent=1, default=str))
    return path


def _compile_parts(session: Session, parts: list[Part], dev, runtime: str, quantize_io: bool, out: Path,
                   rows: dict[str, dict], download: bool) -> dict:
    """Compile every part for `dev` (downloading the compiled model into `out` with `download`),
    its row in `rows`; returns {part name: compiled model}."""
    compiled = {}
    for part in parts:
        session.log(f"{part.name}: {part.onnx.name} ({part.quantize} quantization)")
        job, model = session.compile(part, dev, runtime, quantize_io)
        compiled[part.name] = model
        row: dict[str, Any] = {"model": {"file": part.onnx.name, "sha256": sha256_tree(part.onnx)},
                               "quantize": part.quantize, "input_specs": {k: [list(s), d] for k, (s, d) in
                                                                          part.input_specs.items()},
                               "tool_versions": tool_versions(model)}
        if download:
            row["compiled"] = session.download(job, out, f"student_{part.name}").name
        rows[part.name] = row
    return compiled


def _run_parts(session: Session, parts: list[Part], compiled: dict, dev, rows: dict[str, dict], infer: bool,
               lr: list[np.ndarray] | None, reference: np.ndarray | None) -> None:
    """Profile every compiled part on `dev`; with `infer`, on the LR tiles `lr` (the decode half on
    the features half's on-device output), each part's SR compared with `reference`."""
    features_out = None
    for part in parts:
        inputs = _part_inputs(part, lr, features_out) if infer else None
        ran = session.run(f"{part.name}.{'inference' if infer else 'profile'}", compiled[part.name], dev, inputs)
        row = rows[part.name]
        row["profile"] = ran["profile"]
        row["tool_versions"]["hub"] = ran.get("hub_version")
        if infer:
            got = _only_output(ran["outputs"], part.name)
            if part.name == "features":
                features_out = got
            else:
                row["psnr_vs_pytorch_db"] = parity_psnr(reference, got)


def _part_inputs(part: Part, lr: list[np.ndarray], features_out: np.ndarray | None) -> dict[str, list[np.ndarray]]:
    """A part's inference inputs: the LR tiles, or for the decode half the features half's
    on-device output (and the LR)."""
    if part.name != "decode":
        return {next(iter(part.input_specs)): lr}
    if features_out is None:
        raise UserError("the decode half needs the features half in the same run")
    names = list(part.input_specs)
    inputs = {names[0]: [features_out[i:i + 1] for i in range(len(features_out))]}
    if len(names) > 1:
        inputs[names[1]] = lr
    return inputs


def _split_result(rows: dict[str, dict]) -> dict:
    """The split's parity (moved off the decode half's row) and its halves' summed inference time."""
    split = rows["decode"].pop("psnr_vs_pytorch_db")
    return {
        "psnr_vs_pytorch_db": split,
        "inference_ms": sum(rows[k]["profile"]["inference_ms"] for k in ("features", "decode")),
    }
