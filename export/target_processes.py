"""Export targets in spawned processes, `cfg.jobs` at a time (`export_in_processes`)."""

from __future__ import annotations

import errno
import multiprocessing as mp
import multiprocessing.connection
import os
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from adcsr.core.errors import UserError, disk_full

from .config import ExportConfig
from .student_io import StudentRef
from .target_context import Context

Exporter = Callable[[Context, Path, bool], dict]


def export_in_processes(ref: StudentRef, out: Path, targets: list[str], cfg: ExportConfig, force: bool,
                        progress: bool, exporters: dict[str, Exporter]) -> dict:
    """Each target in its own spawned process, `cfg.jobs` at a time. Lowering to ExecuTorch and
    converting to Core ML are single-threaded Python, so on a few cores they overlap well with
    each other and with the QNN path. Every target still writes atomically; after a failure the
    others finish, then the first error is raised. `exporters` maps a target to its export function."""
    ctx = mp.get_context("spawn")
    # the cores shared out between the processes: torch's default (every core in each process)
    # oversubscribes the machine, which slows torch's CPU kernels many times over
    threads = max(1, len(os.sched_getaffinity(0)) // min(cfg.jobs, len(targets)))
    pending, running, results, errors = list(targets), {}, {}, []
    with tqdm(total=len(targets), desc="export targets", disable=not progress) as bar:
        while pending or running:
            while pending and len(running) < cfg.jobs:
                target = pending.pop(0)
                parent, child = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_export_one,
                                   args=(child, ref, out, target, exporters[target], cfg, force, threads))
                proc.start()
                child.close()
                running[parent] = (target, proc)
            for conn in mp.connection.wait(list(running)):
                target, proc = running.pop(conn)
                try:
                    status, value = conn.recv()
                    proc.join()
                except EOFError:
                    proc.join()
                    status, value = "error", f"its process died (exit code {proc.exitcode})"
                if status == "ok":
                    results[target] = value
                else:
                    errors.append((status, value if status == "disk" else f"export {target}: {value}"))
                bar.update()
    if errors:
        status, message = errors[0]
        if status == "disk":  # the child's full disk, as the CLI reports one
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), message)
        raise (UserError if status == "user" else RuntimeError)(message)
    return {t: results[t] for t in targets}


def _export_one(conn, ref: StudentRef, out: Path, target: str, exporter: Exporter, cfg: ExportConfig,
                force: bool, threads: int) -> None:
    """A spawned process's work: export `target` with `exporter`, then send back its result or error."""
    torch.set_num_threads(threads)
    try:
        ctx = Context(ref, cfg, progress=False)
        conn.send(("ok", exporter(ctx, out, force)))
    except UserError as e:
        conn.send(("user", str(e)))
    except Exception as e:  # noqa: BLE001 - reported in the parent with the target's name
        if disk_full(e):
            conn.send(("disk", getattr(e, "filename", None) or f"the {target} export's files"))
            return
        conn.send(("error", f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"))
