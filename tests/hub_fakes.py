"""A stand-in for the AI Hub service, for tests only (no network here): the client's own
`qai_hub.Client` is used, with its submit/lookup methods substituted as qai-hub-models'
`patch_qai_hub` does. Submitted ONNX models are really run, with onnxruntime on the CPU, so an
"on-device" output is the submitted graph's output; profiles are built by the client's own
ProfileDetail → dict conversion, so their shape is exactly what `download_profile()` returns."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import qai_hub
from qai_hub import public_api_pb2 as pb
from qai_hub.client import _profile_pb_to_python_dict

MB = 2**20


def profile_payload(layers: list[tuple[str, str, str, int]], runs_us: list[int], peak_mb: tuple[float, float],
                    first_load_us: int = 412_000, warm_load_us: int = 23_500, estimated_us: int | None = None) -> dict:
    """A profile as `InferenceJob.download_profile()` returns it; `layers` = (name, type, unit, µs);
    the estimated time is the median run unless given."""
    estimated = int(np.median(runs_us)) if estimated_us is None else estimated_us
    detail = pb.ProfileDetail(major_version=1, minor_version=2, execution_time=estimated,
                              cold_load_time=first_load_us, warm_load_time=warm_load_us,
                              after_execution_peak_memory=int(peak_mb[1] * MB))
    detail.execution_memory.peak.lower, detail.execution_memory.peak.upper = int(peak_mb[0] * MB), int(peak_mb[1] * MB)
    detail.execution_memory.increase.lower, detail.execution_memory.increase.upper = 0, int(peak_mb[0] * MB)
    detail.all_execution_times.extend(runs_us)
    for name, kind, unit, us in layers:
        detail.layer_details.add(name=name, layer_type_name=kind, execution_time=us,
                                 compute_unit=getattr(pb, f"COMPUTE_UNIT_{unit}"))
    return _profile_pb_to_python_dict(detail)


class FakeModel:
    def __init__(self, source, kind: str):
        self.source, self.kind = source, kind  # the ONNX it runs (path), what produced it

    @property
    def onnx(self) -> Path:
        src = self.source
        while isinstance(src, FakeModel):
            src = src.source
        path = Path(src)
        return next(path.glob("*.onnx")) if path.is_dir() else path

    @property
    def metadata(self):
        return {qai_hub.ModelMetadataKey.QNN_SDK_VERSION: "2.40.0.251030"} if self.kind == "compile" else {}


class FakeJob:
    def __init__(self, hub: "FakeHub", kind: str, target=None, outputs=None, profile=None):
        self.job_id = f"j{kind[0]}{next(hub.ids):04d}"
        self.url = f"https://workbench.aihub.qualcomm.com/jobs/{self.job_id}/"
        self.hub_version = "aihub-2026.11.3"
        self.kind, self._target, self._outputs, self._profile, self._hub = kind, target, outputs, profile, hub

    def wait(self, timeout=None):
        failure = self._hub.fail.get(self.kind)
        if failure:
            return qai_hub.JobStatus(qai_hub.JobStatus.State.FAILED, failure)
        return qai_hub.JobStatus(qai_hub.JobStatus.State.SUCCESS)

    def get_target_model(self):
        return self._target

    def download_target_model(self, filename: str) -> str:
        path = filename + ".bin"
        Path(path).write_bytes(b"QNN context binary for " + self._target.onnx.name.encode())
        return path

    def download_profile(self):
        return self._profile

    def download_output_data(self):
        return self._outputs


class FakeHub:
    """Records every call (method, kwargs) and answers like the service would."""

    def __init__(self, monkeypatch, fail: dict[str, str] | None = None, devices=("Samsung Galaxy S25 (Family)",
                                                                               "Samsung Galaxy S24 (Family)")):
        self.calls: list[tuple[str, dict]] = []
        self.fail = fail or {}
        self.ids = itertools.count(1)
        self.devices = devices
        for name in ("get_devices", "submit_quantize_job", "submit_compile_job", "submit_inference_job"):
            monkeypatch.setattr(qai_hub.Client, name, self._recorder(name))

    def _recorder(self, name):
        def method(client, *args, **kwargs):
            assert not args, f"{name} called with positional arguments {args}"
            assert isinstance(client, qai_hub.Client)
            self.clients.append(client)
            self.calls.append((name, kwargs))
            return getattr(self, name)(**kwargs)
        self.clients = getattr(self, "clients", [])
        return method

    def called(self, name):
        return [kw for n, kw in self.calls if n == name]

    def get_devices(self, name="", os="", attributes=None):
        if attributes:
            return [qai_hub.Device("Samsung Galaxy S24 (Family)", "14", ["chipset:qualcomm-snapdragon-8gen3"])]
        return [qai_hub.Device(name, "15")] if name in self.devices else []

    def submit_quantize_job(self, model, calibration_data, weights_dtype, activations_dtype, name=None, options=""):
        return FakeJob(self, "quantize", target=FakeModel(model, "quantize"))

    def submit_compile_job(self, model, device, name=None, input_specs=None, options=""):
        if "compile-error" in self.fail:
            raise RuntimeError(self.fail["compile-error"])
        return FakeJob(self, "compile", target=FakeModel(model, "compile"))

    def submit_inference_job(self, model, device, inputs=None, name=None, profile=True, options=""):
        import onnx
        import onnxruntime as ort

        path = model.onnx
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        outputs = None
        if inputs is not None:
            count = len(next(iter(inputs.values())))
            runs = [session.run(None, {k: v[i] for k, v in inputs.items()}) for i in range(count)]
            outputs = {o.name: [r[j] for r in runs] for j, o in enumerate(session.get_outputs())}
        nodes = onnx.load(str(path), load_external_data=False).graph.node
        # the graph's own nodes as layers: every one on the NPU but the first Resize (as if left on the CPU)
        resize = next((n.name for n in nodes if n.op_type == "Resize"), None)
        layers = [(n.name, n.op_type, "CPU" if n.name == resize else "NPU", 40 + 3 * k) for k, n in enumerate(nodes)]
        payload = profile_payload(layers, runs_us=[2150, 2100, 2230, 2080, 2190], peak_mb=(38.0, 52.5))
        return FakeJob(self, "inference", outputs=outputs, profile=payload)
