"""Run an HTP-emulator session in a child process.

onnxruntime-qnn's HTP emulator has crashed with SIGSEGV when a compiled context binary ran in a
process that had already created other QNN sessions. Isolated in a spawned child, such a crash
becomes a one-line error for the caller instead of killing it (and a test run, or a pipeline).
Only numpy arrays cross the pipe between the two processes of this program.
"""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import numpy as np


def _serve(conn, model: str, soc_name: str, cpu_fallback: bool) -> None:
    from .qnn import get_soc, htp_session

    try:
        session = htp_session(model, get_soc(soc_name), cpu_fallback=cpu_fallback)
    except Exception as e:  # noqa: BLE001 - reported to the parent as one line
        conn.send(("error", str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__))
        return
    name = session.get_inputs()[0].name
    # what the session really got (not what was asked for): the SoC the parity is measured on
    options = {k: str(v) for k, v in session.get_provider_options().get("QNNExecutionProvider", {}).items()
               if k in ("soc_model", "htp_arch")}
    conn.send(("ready", {"provider": session.get_providers()[0], **options}))
    while True:
        x = conn.recv()
        if x is None:
            return
        conn.send(session.run(None, {name: x})[0])


class HtpWorker:
    """`worker(x)` runs one input batch (numpy float32) through the model on the HTP emulator;
    `session` is what the child's session reports: its first provider and the `soc_model` /
    `htp_arch` it was created with."""

    def __init__(self, model: str | Path, soc_name: str, cpu_fallback: bool):
        self.model = Path(model)
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(child, str(model), soc_name, cpu_fallback), daemon=True)
        self._proc.start()
        child.close()
        status, detail = self._receive()
        if status == "error":
            self._proc.join()
            raise RuntimeError(f"{self.model.name}: HTP emulator session failed: {detail}")
        self.session = detail

    def _receive(self):
        try:
            return self._conn.recv()
        except EOFError:
            self._proc.join()
            raise RuntimeError(f"{self.model.name}: the HTP emulator crashed "
                               f"(its process exited with code {self._proc.exitcode})") from None

    def submit(self, x: np.ndarray) -> None:
        """Start one batch; `result()` returns its output."""
        self._conn.send(np.ascontiguousarray(x, dtype=np.float32))

    def result(self) -> np.ndarray:
        return self._receive()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.submit(x)
        return self.result()

    def close(self) -> None:
        if self._proc.is_alive():
            self._conn.send(None)
            self._proc.join(timeout=30)
        if self._proc.is_alive():
            self._proc.kill()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: the daemon child dies with us
            pass


class HtpPool:
    """`workers` HTP-emulator processes for one model. The emulator keeps about one core busy per
    run, so tiles spread over the pool's processes run side by side (`map`); `pool(x)` runs one."""

    def __init__(self, model: str | Path, soc_name: str, cpu_fallback: bool, workers: int = 1):
        self.workers: list[HtpWorker] = []
        try:
            for _ in range(max(1, workers)):
                self.workers.append(HtpWorker(model, soc_name, cpu_fallback))
        except BaseException:
            self.close()
            raise
        self.session = self.workers[0].session

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.workers[0](x)

    def map(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for i in range(0, len(batches), len(self.workers)):
            wave = list(zip(self.workers, batches[i:i + len(self.workers)]))
            for worker, x in wave:
                worker.submit(x)
            out += [worker.result() for worker, _ in wave]
        return out

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
