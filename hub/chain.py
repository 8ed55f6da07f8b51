"""The AI Hub chain, one numbered step per job (as qai-hub-models' export drivers run it):

  1. pick the device          `get_devices` by name or chipset attribute
  2. quantize (optional)      `submit_quantize_job`: fp32 ONNX → QDQ ONNX, INT8 weights / INT16 activations
  3. compile                  `submit_compile_job` for the target runtime
  4. profile and infer        `submit_inference_job(profile=True)`: timings, memory, compute units, outputs
  5. compare                  on-device outputs against the PyTorch student's

Every call goes through `_call` and every job through `_finish`, so a service or network error
and a job that fails on the service both end as one `HubError` line naming the job and its page,
with the token redacted. Retries are the client's own (`retry=True`).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from adcsr.core.errors import UserError

from .config import DEFAULT_DEVICE, QUANTIZE_MODES, RUNTIMES, SOC_DEVICES
from .credentials import Credentials, redact
from .profile import summarize_profile



class HubError(UserError):
    """AI Hub refused a request, a job failed on the service, or the network failed."""


@dataclass
class Part:
    """One graph to take through the service: the whole student or one half of its split."""

    name: str
    onnx: Path
    input_specs: dict[str, tuple[tuple[int, ...], str]]
    quantize: str = "local"  # hub: fp32 ONNX + a quantize job; local: this toolkit's W8A16 QDQ ONNX; none: fp32
    calibration: dict[str, list[np.ndarray]] | None = None  # for quantize="hub"

    def __post_init__(self):
        if self.quantize not in QUANTIZE_MODES:
            raise UserError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}, got {self.quantize!r}")
        if self.quantize == "hub" and not self.calibration:
            raise UserError(f"{self.name}: a quantize job needs calibration data")


@dataclass
class Session:
    """An AI Hub client and the credentials it uses (for redaction)."""

    client: Any
    creds: Credentials
    log: Callable[[str], None] = print
    jobs: dict[str, dict[str, str]] = field(default_factory=dict)  # "<part>.<step>" -> {id, url}

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - network and service errors, as one line
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise HubError(redact(f"AI Hub {what} failed: {first}", self.creds)) from None

    def _finish(self, key: str, job):
        """Wait for `job`; record its id and page; a failed job is a HubError with its reason."""
        self.jobs[key] = {"id": job.job_id, "url": job.url}
        self.log(f"  {key}: job {job.job_id} ({job.url})")
        status = self._call(f"{key} job {job.job_id}", job.wait)
        if not status.success:
            reason = status.message or status.code
            raise HubError(redact(f"AI Hub {key} job {job.job_id} {status.code.lower()}: {reason} (see {job.url})",
                                  self.creds))
        return job

    # 1 -------------------------------------------------------------------------------------
    def device(self, name: str | None = DEFAULT_DEVICE, chipset: str | None = None):
        """The AI Hub device for a phone name, a SoC name (SM8750, SM8650) or a chipset attribute."""
        import qai_hub

        if chipset:
            query = {"attributes": chipset if chipset.startswith("chipset:") else f"chipset:{chipset}"}
        else:
            query = {"name": SOC_DEVICES.get(name, name)}
        found = self._call("device lookup", self.client.get_devices, **query)
        if not found:
            raise HubError(f"AI Hub lists no device for {next(iter(query.values()))!r} "
                           "(`qai-hub list-devices` shows them)")
        return qai_hub.Device(name=query["name"]) if "name" in query else qai_hub.Device(attributes=[query["attributes"]])

    # 2 + 3 ---------------------------------------------------------------------------------
    def compile(self, part: Part, device, runtime: str = "qnn_context_binary", quantize_io: bool = False):
        """(compile job, its target model): the part quantized if asked, compiled for `runtime`;
        `quantize_io` makes a quantized graph's inputs and outputs 16-bit integers on the phone."""
        import qai_hub

        if runtime not in RUNTIMES:
            raise UserError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        model: Any = str(part.onnx)
        if part.quantize == "hub":
            job = self._call("quantize", self.client.submit_quantize_job, model=model,
                             calibration_data=part.calibration, weights_dtype=qai_hub.QuantizeDtype.INT8,
                             activations_dtype=qai_hub.QuantizeDtype.INT16, name=f"adcsr-{part.name}-w8a16")
            model = self._finish(f"{part.name}.quantize", job).get_target_model()
        options = f"--target_runtime {runtime}"
        if quantize_io:
            if part.quantize == "none":
                raise UserError("--quantize-io needs a quantized model (quantize: hub or local)")
            options += " --quantize_io"
        job = self._call("compile", self.client.submit_compile_job, model=model, device=device,
                         name=f"adcsr-{part.name}", input_specs=part.input_specs, options=options)
        job = self._finish(f"{part.name}.compile", job)
        return job, job.get_target_model()

    def download(self, job, folder: Path, stem: str) -> Path:
        """The compiled model, downloaded into a temp folder and renamed into `folder` (the
        client picks the file's extension for the runtime)."""
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder, prefix=f".{stem}.") as tmp:
            written = self._call("download", job.download_target_model, str(Path(tmp) / stem))
            if not written:
                raise HubError(f"AI Hub compile job {job.job_id} has no compiled model to download (see {job.url})")
            final = folder / Path(written).name
            os.replace(written, final)
        return final

    # 4 -------------------------------------------------------------------------------------
    def run(self, key: str, model, device, inputs: dict[str, list[np.ndarray]] | None = None) -> dict[str, Any]:
        """Profile `model` on `device` and, with `inputs`, return its outputs too."""
        job = self._call("inference", self.client.submit_inference_job, model=model, device=device,
                         inputs=inputs, name=f"adcsr-{key}", profile=True)
        job = self._finish(key, job)
        out: dict[str, Any] = {"profile": summarize_profile(self._call("profile download", job.download_profile))}
        if inputs is not None:
            out["outputs"] = self._call("output download", job.download_output_data)
        out["hub_version"] = getattr(job, "hub_version", None)
        return out


def tool_versions(model) -> dict[str, str]:
    """The SDK versions AI Hub records on a compiled model (QNN / QAIRT)."""
    try:
        metadata = model.metadata
    except Exception:  # noqa: BLE001 - models compiled for runtimes that record none
        return {}
    return {getattr(k, "name", str(k)).lower(): str(v) for k, v in metadata.items()}
