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
    by_name = {p.name: p for p in parts}
    results: dict[str, Any] = {"device": {"name": dev.name, "attributes": list(dev.attributes)}, "runtime": runtime,
                               "quantize_io": quantize_io, "step": step, "started": started,
                               "source": source or {}, "parts": {}}
    compiled = {}
    for part in parts:
        session.log(f"{part.name}: {part.onnx.name} ({part.quantize} quantization)")
        job, model = session.compile(part, dev, runtime, quantize_io)
        compiled[part.name] = model
        row: dict[str, Any] = {"model": {"file": part.onnx.name, "sha256": sha256_tree(part.onnx)},
                               "quantize": part.quantize, "input_specs": {k: [list(s), d] for k, (s, d) in
                                                                          part.input_specs.items()},
                               "tool_versions": tool_versions(model)}
        if step in ("compile", "run"):
            row["compiled"] = session.download(job, out, f"student_{part.name}").name
        results["parts"][part.name] = row
    if step != "compile":
        lr = [heldout[i:i + 1].astype(np.float32) for i in range(len(heldout))] if infer else None
        features_out = None
        for part in parts:
            inputs = None
            if infer and part.name != "decode":
                inputs = {next(iter(part.input_specs)): lr}
            elif infer:  # the decode half reads the features half's on-device output (and the LR)
                if features_out is None:
                    raise UserError("the decode half needs the features half in the same run")
                names = list(part.input_specs)
                inputs = {names[0]: [features_out[i:i + 1] for i in range(len(features_out))]}
                if len(names) > 1:
                    inputs[names[1]] = lr
            ran = session.run(f"{part.name}.{'inference' if infer else 'profile'}", compiled[part.name], dev, inputs)
            row = results["parts"][part.name]
            row["profile"] = ran["profile"]
            row["tool_versions"]["hub"] = ran.get("hub_version")
            if infer:
                got = _only_output(ran["outputs"], part.name)
                if part.name == "features":
                    features_out = got
                else:
                    row["psnr_vs_pytorch_db"] = parity_psnr(reference, got)
        if infer and {"features", "decode"} <= by_name.keys():
            split = results["parts"]["decode"].pop("psnr_vs_pytorch_db")
            results["split"] = {
                "psnr_vs_pytorch_db": split,
                "inference_ms": sum(results["parts"][k]["profile"]["inference_ms"] for k in ("features", "decode")),
            }
    results["jobs"] = session.jobs
    path = results_path(out, label, runtime)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(results, indent=1, default=str))
    return path
