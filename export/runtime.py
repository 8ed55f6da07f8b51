"""Run an exported artifact here: `load_artifact(path)(lr) -> sr`, NCHW float32 in [0, 1].

- fp32 `.onnx`: onnxruntime on the CPU;
- W8A16 QDQ `.onnx` or a QNN context (`*_ctx.onnx` + `.bin`): the HTP emulator (onnxruntime-qnn)
  for the SoC given, else the one recorded in the artifact's manifest — never a default one: an
  export measures its parity before its manifest exists, and a silent fallback once ran an
  SM8650 export's parity on an SM8750 session;
- `.pte` (XNNPACK): `executorch.runtime`.
Artifacts have a static LR tile; other sizes are cut into overlapping tiles (`core.tiling`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from adcsr.core.errors import UserError
from adcsr.core.manifest import sha256_tree
from adcsr.core.upscaler import Upscaler

from .qnn import get_soc

MANIFEST = "manifest.json"


class Artifact(Upscaler):
    """A loaded artifact, an `Upscaler` whose `static_tile` is its LR side (other sizes are tiled
    through it); `session` (HTP-emulator artifacts) is what the emulator session reports:
    provider, soc_model, htp_arch."""

    def __init__(self, path: Path, kind: str, tile: int, run_tile: Callable[[np.ndarray], np.ndarray], scale: int = 4):
        from adcsr.core.models.student import AdcSRStudent

        super().__init__()
        self.path, self.kind, self.scale = path, kind, scale
        self.static_tile = self.size_multiple = tile
        self.default_color_fix = AdcSRStudent.default_color_fix  # an artifact is the student's graph
        self._run_tile = run_tile
        self.session: dict | None = getattr(run_tile, "session", None)

    def describe(self) -> dict:
        return {"name": "artifact", "kind": self.kind, "path": str(self.path), "tile": self.static_tile}

    def close(self) -> None:
        """End the artifact's HTP-emulator process, if it has one."""
        close = getattr(self._run_tile, "close", None)
        if close is not None:
            close()

    def _tiles(self, lr: torch.Tensor) -> torch.Tensor:
        tiles = [np.ascontiguousarray(x[None].numpy(), dtype=np.float32) for x in lr]
        run_many = getattr(self._run_tile, "map", None)  # an HTP pool runs its tiles side by side
        outs = run_many(tiles) if run_many is not None else [self._run_tile(t) for t in tiles]
        return torch.from_numpy(np.concatenate(outs))

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        if lr.ndim != 4 or lr.shape[1] != 3:
            raise UserError(f"expected an (N, 3, H, W) batch, got {tuple(lr.shape)}")
        lr = lr.detach().float().cpu()
        if tuple(lr.shape[-2:]) == (self.static_tile, self.static_tile):
            return self._tiles(lr)
        return self.upscale(lr, color_fix="none")  # forward is the network's own output


def artifact_manifest(path: str | os.PathLike) -> dict:
    """The manifest written next to an artifact (empty if there is none)."""
    m = Path(path).parent / MANIFEST
    return json.loads(m.read_text()) if m.is_file() else {}


def load_artifact(path: str | os.PathLike, soc: str | None = None, htp_workers: int | None = None,
                  check_manifest: bool = True) -> Artifact:
    """`path` (a file or an export folder) ready to run; `soc` picks the HTP emulator of a QNN
    artifact (default: the SoC its manifest records; without either, a `UserError`);
    `htp_workers` emulator processes run a QNN artifact's tiles side by side (default: one per
    core, up to 4; each keeps about one core busy); `check_manifest` first checks the files
    against the sha256 their export manifest records (`check_files`)."""
    path = Path(path)
    if path.is_dir() and not path.suffix == ".mlpackage":
        path = _main_file(path)
    if not path.exists():
        raise UserError(f"artifact not found: {path}")
    if check_manifest:
        check_files(path)
    if path.suffix == ".onnx":
        return _load_onnx(path, soc, htp_workers)
    if path.suffix == ".pte":
        return _load_pte(path)
    if path.suffix == ".mlpackage":
        raise UserError(f"{path.name}: Core ML models run only on macOS/iOS; here they are checked by spec")
    raise UserError(f"{path}: not an artifact this runtime can run (.onnx, .pte)")


def check_files(path: Path) -> None:
    """The artifact's files as its manifest records them (the file, and a QNN context model's
    `.bin` files): one missing, truncated or changed is a one-line error naming it, before any
    runtime opens it (a QNN emulator or ExecuTorch would fail deep inside, or crash)."""
    manifest = path.parent / MANIFEST
    if not manifest.is_file():
        return
    try:
        entries = json.loads(manifest.read_text()).get("artifacts", [])
    except (ValueError, AttributeError):
        raise UserError(f"{manifest}: not a valid export manifest: export again") from None
    by_file = {e["file"]: e for e in entries if isinstance(e, dict) and "file" in e}
    if path.name not in by_file:
        return
    names = [path.name]
    if by_file[path.name].get("kind") == "qnn_context":
        names += [e["file"] for e in by_file.values() if e.get("kind") == "qnn_context_bin"]
    for name in names:
        f = path.parent / name
        if not f.exists():
            raise UserError(f"{f}: missing (its {MANIFEST} lists it): export again")
        if by_file[name].get("sha256") and sha256_tree(f) != by_file[name]["sha256"]:
            raise UserError(f"{f}: does not match its {MANIFEST} (sha256 differs: truncated or changed): "
                            "export again")


def _main_file(folder: Path) -> Path:
    files = artifact_manifest(folder / MANIFEST).get("artifacts", [])
    runnable = [folder / a["file"] for a in files if Path(a["file"]).suffix in (".onnx", ".pte")]
    if not runnable:
        raise UserError(f"{folder}: no runnable artifact listed in its {MANIFEST}")
    return runnable[-1]


def _onnx_kind(path: Path) -> tuple[str, int]:
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - a truncated or foreign file: protobuf's own errors
        raise UserError(f"{path}: not a readable ONNX model ({str(e).splitlines()[0][:200]}): export again") from None
    ops = {n.op_type for n in proto.graph.node}
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    tile = int(dims[-1].dim_value)
    if "EPContext" in ops:
        for node in proto.graph.node:  # a context model names its .bin files: one missing is one line
            attrs = {a.name: a for a in node.attribute}
            if node.op_type == "EPContext" and attrs.get("embed_mode") and attrs["embed_mode"].i == 0:
                binary = path.parent / attrs["ep_cache_context"].s.decode()
                if not binary.is_file():
                    raise UserError(f"{path.name} needs its QNN context binary {binary}, which is missing: "
                                    "copy the whole export folder, or export again")
        return "qnn_context", tile
    return ("w8a16_qdq" if "QuantizeLinear" in ops else "fp32"), tile


def _load_onnx(path: Path, soc_name: str | None = None, htp_workers: int | None = None) -> Artifact:
    import onnxruntime as ort

    kind, tile = _onnx_kind(path)
    if kind == "fp32":
        so = ort.SessionOptions()
        so.log_severity_level = 3
        session = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    else:
        soc_name = soc_name or artifact_manifest(path).get("soc")
        if not soc_name:
            raise UserError(f"{path.name}: no {MANIFEST} beside it records the SoC its QNN graph targets "
                            "(run it from its export folder)")
        soc = get_soc(soc_name)
        # the context model keeps its graph-boundary Q/DQ on the CPU (see qnn.coverage)
        workers = htp_workers or min(4, len(os.sched_getaffinity(0)))
        return htp_artifact(path, soc.name, kind, tile, cpu_fallback=kind == "qnn_context", workers=workers)
    name = session.get_inputs()[0].name
    return Artifact(path, kind, tile, lambda x: session.run(None, {name: x})[0])


def htp_artifact(path: Path, soc_name: str, kind: str, tile: int, cpu_fallback: bool, workers: int = 1) -> Artifact:
    """An artifact run on the HTP emulator in `workers` processes of its own (see `htp_worker`)."""
    from .htp_worker import HtpPool

    worker = HtpPool(path, soc_name, cpu_fallback, workers)
    want = get_soc(soc_name)
    got = (worker.session.get("soc_model"), worker.session.get("htp_arch"))
    if got != (str(want.soc_model), str(want.htp_arch)):
        worker.close()
        raise RuntimeError(f"{path.name}: the HTP emulator session runs soc_model/htp_arch {got[0]}/{got[1]}, "
                           f"not {want.name}'s {want.soc_model}/{want.htp_arch}")
    return Artifact(path, kind, tile, worker)


@contextlib.contextmanager
def _native_stderr_captured(lines: list[str]):
    """executorch's CPU-info probe prints five `[cpuinfo_utils.cpp:…]` lines to file descriptor 2
    (below Python) when a method is loaded; keep them out of the one-line error output of the CLI.
    If loading fails, what the runtime printed is left in `lines` for the error message."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            lines.extend(captured.read().decode(errors="replace").splitlines())
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _load_pte(path: Path) -> Artifact:
    from executorch.runtime import Runtime

    tile = artifact_manifest(path).get("lr_tile")
    if not tile:
        raise UserError(f"{path}: its {MANIFEST} (with lr_tile) is missing")
    printed: list[str] = []
    try:
        with _native_stderr_captured(printed):
            method = Runtime.get().load_program(str(path)).load_method("forward")
    except RuntimeError as e:
        said = next((ln.split("] ", 1)[-1] for ln in reversed(printed) if "cpuinfo" not in ln and ln.strip()), str(e))
        raise UserError(f"{path}: ExecuTorch cannot load it ({said.strip()}): truncated, or not a .pte? "
                        "Export it again") from None

    def run(x: np.ndarray) -> np.ndarray:
        return method.execute([torch.from_numpy(x)])[0].numpy()

    return Artifact(path, "xnnpack_pte", int(tile), run)
