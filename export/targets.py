"""One function per target: build the artifact in a temporary folder, verify it, write its
manifest, and only then rename the folder into place (a failed check leaves nothing behind).

Layout under `out`: `onnx/` (fp32 + W8A16 QDQ), `qnn-<SOC>/` (EPContext model + QNN context
`.bin` per compiled graph), `executorch/` (XNNPACK `.pte`), `coreml/` (fp32 and W8A16 `.mlpackage`).
"""

from __future__ import annotations

import errno
import multiprocessing as mp
import multiprocessing.connection
import os
import time
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from adcsr.core.atomic import atomic_dir, remove_leftovers
from adcsr.core.errors import UserError, disk_full
from adcsr.core.manifest import sha256_tree, size_on_disk, write_manifest
from adcsr.core.metrics.fidelity import parity_psnr

from . import calibration
from .config import ExportConfig
from .deploy import deploy_form, relative_max_diff
from .deploy_notes import installed_versions, qnn_sdk_version, write_readme
from .resume import settings, target_folders, unfinished
from .runtime import MANIFEST
from .student_io import StudentRef
from .thresholds import meets_minimum

TARGETS = ("qnn", "executorch", "coreml")


class Context:
    """What every target needs: the student, its reference outputs on held-out photos, the
    calibration tiles (training photos), settings and the thresholds its checks apply.

    `student` replaces the one `ref` names (tests export hand-built models; the manifest then says
    so and `verify` cannot rebuild it)."""

    def __init__(self, ref: StudentRef | None, cfg: ExportConfig, progress: bool = True,
                 student: torch.nn.Module | None = None):
        self.ref, self.cfg, self.progress = ref, cfg, progress
        self.student = student.eval() if student is not None else ref.load()
        self.eval_lr = calibration.lr_tiles("heldout", cfg.tile, cfg.eval_count, cfg.seed)
        with torch.no_grad():
            self.reference = self.student(self.eval_lr)
        self.equivalence: dict[str, float] = {}  # deploy backend → max|Δ| / max|y| vs the student
        self._calibration: torch.Tensor | None = None

    @property
    def calibration(self) -> torch.Tensor:
        """The calibration tiles (training photos): what quantization and every choice made during
        an export read; the held-out tiles only report the parity."""
        if self._calibration is None:
            self._calibration = calibration.lr_tiles("train", self.cfg.tile, self.cfg.calibration_count, self.cfg.seed)
        return self._calibration

    def calibration_set(self, count: int | None = None) -> dict:
        d = calibration.describe("train", self.cfg.tile, self.cfg.calibration_count, self.cfg.seed)
        if count is not None and count < self.cfg.calibration_count:
            d.update(count=count, subset=f"the first {count} of the {self.cfg.calibration_count} calibration tiles")
        return d

    def deploy(self, backend: str) -> torch.nn.Module:
        """The deploy form for `backend`, checked equivalent to the training form in fp32."""
        model = deploy_form(self.student, backend, self.cfg.tile)
        with torch.no_grad():
            diff = relative_max_diff(self.reference, model(self.eval_lr))
        if not diff <= self.cfg.max_equivalence:
            raise RuntimeError(f"deploy form ({backend}) differs from the student: {diff:.2e} > {self.cfg.max_equivalence:.0e}")
        self.equivalence[backend] = diff
        return model

    def parity(self, run: Callable[[torch.Tensor], torch.Tensor]) -> float:
        return parity_psnr(self.reference.numpy(), run(self.eval_lr).numpy())

    def manifest(self, folder: Path, target: str, backends: tuple[str, ...], artifacts: list[dict], **fields) -> dict:
        """Write `folder`'s manifest; `backends` are the deploy forms its artifacts were built from."""
        for a in artifacts:
            p = folder / a["file"]
            a.update(sha256=sha256_tree(p), bytes=size_on_disk(p))
        student = self.ref.describe() if self.ref is not None else {"in_memory": type(self.student).__name__}
        runtime = installed_versions(target)
        context = [folder / a["file"] for a in artifacts if a.get("kind") == "qnn_context"]
        if context:
            runtime["qnn_sdk"] = qnn_sdk_version(context[0])
        manifest = write_manifest(
            folder / MANIFEST, target=target, student=student, lr_tile=self.cfg.tile, runtime=runtime,
            input={"name": "lr", "shape": [1, 3, self.cfg.tile, self.cfg.tile], "dtype": "float32", "range": [0, 1]},
            output={"name": "sr", "shape": [1, 3, 4 * self.cfg.tile, 4 * self.cfg.tile], "dtype": "float32"},
            evaluation_set=calibration.describe("heldout", self.cfg.tile, self.cfg.eval_count, self.cfg.seed),
            thresholds=self.cfg.thresholds(),
            export_settings=settings(self.cfg),
            deploy_equivalence={b: self.equivalence[b] for b in backends}, artifacts=artifacts, **fields,
        )
        write_readme(folder, manifest)
        return manifest

    def check(self, name: str, value: float, threshold: str) -> None:
        """`value` (dB) must meet the config's `threshold` (a key of `thresholds.DEFAULTS`); NaN fails."""
        minimum = getattr(self.cfg, threshold)
        if not meets_minimum(value, minimum):
            raise UserError(f"{name}: parity {value:.2f} dB vs PyTorch is below the required {minimum:.1f} dB ({threshold})")


def export_qnn(ctx: Context, out: Path, force: bool = False) -> dict:
    """fp32 ONNX + W8A16 QDQ (`onnx/`) and the QNN context binary for the SoC (`qnn-<SOC>/`).

    Every parity on the HTP emulator runs on a session for the export's own SoC (read back from
    the session and recorded as `parity_session`). The context model is checked as a whole: only
    its EPContext nodes (one per compiled graph) and the float I/O conversions may run outside
    HTP. With `target_psnr`, the mixed-precision search — the layer ranking and the parity each
    try is judged by — reads the first `eval_count` calibration tiles only; the held-out tiles
    give the one parity reported and checked against `min_w8a16_psnr`."""
    from . import qnn, w8a16
    from .onnx_export import export_onnx
    from .runtime import load_artifact

    cfg, soc = ctx.cfg, qnn.get_soc(ctx.cfg.soc)
    with tqdm(total=5, desc=f"export qnn {soc.name}", disable=not ctx.progress) as steps:
        t0 = time.perf_counter()
        onnx_dir, qnn_dir = out / "onnx", out / f"qnn-{soc.name}"
        for d in (onnx_dir, qnn_dir):
            if d.exists() and not force:
                raise UserError(f"{d} already exists (use --force to replace it)")
        with atomic_dir(onnx_dir, overwrite=True) as tmp_onnx, atomic_dir(qnn_dir, overwrite=True) as tmp_qnn:
            model = ctx.deploy("qnn")
            fp32 = export_onnx(model, cfg.tile, tmp_onnx / "student_fp32.onnx")
            steps.update()
            fp32_psnr = ctx.parity(load_artifact(fp32))
            ctx.check("fp32 ONNX", fp32_psnr, "min_fp32_psnr")
            pre = w8a16.preprocess(fp32, tmp_onnx / "student_fp32_qnnprep.onnx")
            calib = ctx.calibration
            qdq = tmp_onnx / "student_w8a16.onnx"
            cache = w8a16.calibrate(pre, calib.numpy(), tmp_onnx / "calibration_ranges.json")
            keep, search = list(cfg.keep_16bit), None
            if cfg.target_psnr is not None:
                # the search's own tiles: calibration photos, never the held-out ones that report the parity
                search_lr = calib[: cfg.eval_count]
                with torch.no_grad():
                    search_ref = ctx.student(search_lr).numpy()
                sensitivity = w8a16.layer_sensitivity(model, search_lr)
                search = {"tiles": ctx.calibration_set(len(search_lr)), "target_psnr": cfg.target_psnr,
                          "sensitivity_db": sensitivity[:20], "tries": []}
            steps.update()
            graphs = qnn.graph_count(cfg.htp_optimization_mode)
            htp = None
            while True:  # each try: quantize, compile the context (checked 100% HTP as a whole), run it
                quant = w8a16.quantize_w8a16(pre, qdq, cache, keep)
                if htp is not None:
                    htp.close()
                qnn.clear_context(tmp_qnn)
                ctx_model = qnn.compile_context(qdq, tmp_qnn, soc, optimization_mode=cfg.htp_optimization_mode)
                htp = load_artifact(ctx_model, soc=soc.name)  # no manifest yet: the SoC is given
                if search is None:
                    break
                tried = parity_psnr(search_ref, htp(search_lr).numpy())
                search["tries"].append({"kept_16bit": list(keep), "psnr_db_calibration": tried})
                if meets_minimum(tried, cfg.target_psnr):
                    break
                more = [n for n, _ in sensitivity if n not in keep]
                if not more or len(keep) >= cfg.max_16bit_layers:
                    break
                keep += more[: max(1, len(keep))][: cfg.max_16bit_layers - len(keep)]
            w8_psnr = ctx.parity(htp)  # held-out tiles, once, on the final model
            session = {**htp.session, "soc": soc.name}
            htp.close()
            coverage = qnn.check_coverage(ctx_model, qdq, soc, graphs)
            steps.update(2)
            ctx.check(f"W8A16 on the {soc.name} HTP emulator", w8_psnr, "min_w8a16_psnr")
            quant_info = {**quant, "calibration_set": ctx.calibration_set(), "mixed_precision_search": search}
            onnx_files = [{"file": fp32.name, "kind": "fp32", "psnr_db": fp32_psnr},
                          {"file": qdq.name, "kind": "w8a16_qdq", "psnr_db_htp_emulator": w8_psnr,
                           "note": "parity measured through its compiled QNN context (the same HTP graph)"}]
            if Path(str(fp32) + ".data").exists():
                onnx_files.insert(1, {"file": fp32.name + ".data", "kind": "fp32_weights"})
            for scratch in (pre, Path(str(pre) + ".data"), cache):
                scratch.unlink(missing_ok=True)
            ctx.manifest(tmp_onnx, "onnx", ("qnn",), onnx_files, soc=soc.name, quantization=quant_info,
                         parity_session=session)
            bins = sorted(p.name for p in tmp_qnn.iterdir() if p.suffix == ".bin")
            ctx.manifest(tmp_qnn, "qnn_context_binary", ("qnn",), [{"file": ctx_model.name, "kind": "qnn_context", "psnr_db_htp_emulator": w8_psnr}]
                         + [{"file": b, "kind": "qnn_context_bin"} for b in bins],
                         soc=soc.name,
                         soc_model=soc.soc_model, htp_arch=soc.htp_arch, htp_optimization_mode=cfg.htp_optimization_mode,
                         quantization=quant_info, parity_session=session,
                         htp_coverage=coverage, export_seconds=time.perf_counter() - t0)
            steps.update()
    return {"onnx": str(onnx_dir), "qnn": str(qnn_dir), "fp32_psnr": fp32_psnr, "w8a16_psnr": w8_psnr,
            "kept_16bit": keep, "htp_coverage": coverage["htp_fraction"]}


def export_executorch(ctx: Context, out: Path, force: bool = False) -> dict:
    """XNNPACK `.pte` (fp32, verified here); the QNN `.pte`'s 16a8w quantization (run in PyTorch on
    the held-out tiles and checked against `min_w8a16_psnr`, SDK or not), lowered to a `.pte`
    when a QNN SDK is configured."""
    from . import executorch_export as et
    from .runtime import load_artifact

    cfg = ctx.cfg
    folder = out / "executorch"
    t0 = time.perf_counter()
    with atomic_dir(folder, overwrite=force) as tmp:
        with tqdm(total=2, desc="export executorch", disable=not ctx.progress) as steps:
            # the QNN .pte's pt2e 16a8w quantization needs no SDK: run it and check it here
            quantized = et.quantize_16a8w(ctx.deploy("qnn_pte"), cfg.tile, ctx.calibration, cfg.soc)
            simulated = ctx.parity(lambda x: et.run_tiles(quantized, x))
            ctx.check("QNN .pte's 16a8w graph (pt2e, run in PyTorch)", simulated, "min_w8a16_psnr")
            qnn_pte = {"scheme": et.PT2E_SCHEME, "soc": cfg.soc, "psnr_db_pytorch": simulated,
                       "calibration_set": ctx.calibration_set()}
            steps.update()
            pte = et.export_xnnpack(ctx.deploy("xnnpack"), cfg.tile, tmp / "student_xnnpack.pte")
            # the runtime needs the tile from the manifest: write a first one, then the final one
            ctx.manifest(tmp, "executorch", ("xnnpack",), [{"file": pte.name, "kind": "xnnpack_fp32"}])
            parity = ctx.parity(load_artifact(pte))
            ctx.check("XNNPACK .pte", parity, "min_fp32_psnr")
            files = [{"file": pte.name, "kind": "xnnpack_fp32", "psnr_db": parity,
                      "delegate_partitions": et.delegated_partitions(pte)}]
            notes = []
            if et.qnn_sdk_root():
                q = et.lower_qnn_pte(quantized, cfg.tile, tmp / f"student_qnn_{cfg.soc}.pte", cfg.soc)
                files.append({"file": q.name, "kind": "qnn_16a8w", "psnr_db_pytorch": simulated,
                              "note": "runs on a phone only; parity of its quantized graph run in PyTorch"})
            else:
                notes.append("QNN .pte not lowered: QNN_SDK_ROOT does not point at a QNN SDK "
                             "(its pt2e 16a8w quantization ran here: see qnn_pte_quantization)")
            steps.update()
            ctx.manifest(tmp, "executorch", ("xnnpack", "qnn_pte"), files, notes=notes, qnn_pte_quantization=qnn_pte,
                         export_seconds=time.perf_counter() - t0)
    return {"executorch": str(folder), "fp32_psnr": parity, "qnn_pte_16a8w_psnr": simulated, "notes": notes}


def export_coreml(ctx: Context, out: Path, force: bool = False) -> dict:
    """fp32 and W8A16 `.mlpackage`, checked by spec (prediction needs macOS). Before converting,
    the Core ML program runs op by op in PyTorch (`coreml_fp16.check_fp16`): ops whose activation
    peaks on the calibration tiles come within `fp16_headroom` of fp16's range stay fp32 in the
    W8A16 (fp16-compute) package, the package's spec must show them computing in fp32, and the
    fp16-vs-fp32 parity as packaged must meet `min_fp16_psnr` on the held-out tiles."""
    from . import coreml_export as cm
    from .coreml_fp16 import check_fp16

    cfg = ctx.cfg
    folder = out / "coreml"
    t0 = time.perf_counter()
    with atomic_dir(folder, overwrite=force) as tmp:
        with tqdm(total=3, desc="export coreml", disable=not ctx.progress) as steps:
            program = cm.coreml_program(ctx.deploy("coreml"), cfg.tile)
            fp16 = check_fp16(program, ctx.calibration, ctx.eval_lr, cfg.fp16_headroom)
            fp16 = {**fp16, "calibration_set": ctx.calibration_set(),
                    "evaluation_set": calibration.describe("heldout", cfg.tile, cfg.eval_count, cfg.seed)}
            if fp16["overflow_on_heldout"]:
                raise UserError(f"Core ML fp16: {len(fp16['overflow_on_heldout'])} op(s) left in fp16 reach 65504 on the "
                                f"held-out tiles (first: {fp16['overflow_on_heldout'][0]}); raise fp16_headroom")
            ctx.check("Core ML fp16 compute (PyTorch fp16 run, fp32 ops as packaged)",
                      float(fp16["psnr_db"]["as_packaged"]["heldout"]), "min_fp16_psnr")
            steps.update()
            files = []
            for w8a16, name in ((False, "student_fp32.mlpackage"), (True, "student_w8a16.mlpackage")):
                keep = [op["op"] for op in fp16["fp32_ops"]] if w8a16 else []
                path, kept = cm.export_coreml(program, cfg.tile, tmp / name, w8a16, keep)
                spec = cm.spec_report(path)
                cm.check_spec(spec, cfg.tile, w8a16)
                entry = {"file": name, "kind": "w8a16" if w8a16 else "fp32", "spec": spec}
                if w8a16:
                    cm.check_fp32_ops(path, kept)
                    entry["fp32_ops"] = kept  # FX node → its MIL ops, fp32 in the package
                files.append(entry)
                steps.update()
            ctx.manifest(tmp, "coreml", ("coreml",), files,
                         quantization="int8 per-channel symmetric weights, fp16 compute except fp16_compute's "
                                      "fp32_ops (w8a16 package)", minimum_deployment_target=cm.DEPLOYMENT_TARGET,
                         fp16_compute=fp16, export_seconds=time.perf_counter() - t0)
    return {"coreml": str(folder), "fp16_psnr": fp16["psnr_db"]["as_packaged"]["heldout"],
            "fp32_ops": len(fp16["fp32_ops"])}


EXPORTERS = {"qnn": export_qnn, "executorch": export_executorch, "coreml": export_coreml}


def export(student: str | os.PathLike, out: str | os.PathLike, targets: list[str], cfg: ExportConfig,
           force: bool = False, progress: bool = True, resume: bool = False,
           log: Callable[[str], None] = print) -> dict:
    """Export `student` (a saved folder or a preset name) to each target under `out`.

    With `resume`, targets an earlier (interrupted) export finished for the same student and
    settings are kept (`resume.unfinished`), what it left half-written is removed, the rest is
    exported again."""
    from .qnn import get_soc

    unknown = [t for t in targets if t not in EXPORTERS]
    if unknown:
        raise UserError(f"unknown export target {unknown[0]!r} (known: {', '.join(EXPORTERS)})")
    if resume and force:
        raise UserError("--resume keeps finished targets and --force replaces them: give one")
    get_soc(cfg.soc)
    if cfg.tile <= 0 or cfg.tile % 16:
        raise UserError(f"--tile must be a positive multiple of 16, got {cfg.tile}")
    if cfg.jobs < 1:
        raise UserError(f"jobs must be at least 1, got {cfg.jobs}")
    ref, out = StudentRef.parse(str(student), cfg.seed), Path(out)
    kept: dict[str, dict] = {}
    if resume:
        described = ref.describe()
        for t in targets:
            names = target_folders(t, cfg)
            removed = remove_leftovers([out / n for n in names.values()])
            why = unfinished(out, t, cfg, described)
            if why is None:
                kept[t] = {**{k: str(out / n) for k, n in names.items()}, "kept": "finished before"}
            log(f"{t}: " + ("kept (finished before)" if why is None else f"exporting ({why})")
                + (f"; {removed} half-written folder(s) of an interrupted export removed" if removed else ""))
        force = True  # what is not kept is incomplete or stale: replace it
    todo = [t for t in targets if t not in kept]
    if not todo:
        results = {}
    elif cfg.jobs == 1 or len(todo) == 1:
        ctx = Context(ref, cfg, progress)
        results = {t: EXPORTERS[t](ctx, out, force) for t in todo}
    else:
        results = _export_in_processes(ref, out, todo, cfg, force, progress)
    return {t: kept.get(t) or results[t] for t in targets}


def _export_in_processes(ref: StudentRef, out: Path, targets: list[str], cfg: ExportConfig, force: bool,
                         progress: bool) -> dict:
    """Each target in its own spawned process, `cfg.jobs` at a time. Lowering to ExecuTorch and
    converting to Core ML are single-threaded Python, so on a few cores they overlap well with
    each other and with the QNN path. Every target still writes atomically; after a failure the
    others finish, then the first error is raised."""
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
                proc = ctx.Process(target=_export_one, args=(child, ref, out, target, cfg, force, threads))
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


def _export_one(conn, ref: StudentRef, out: Path, target: str, cfg: ExportConfig, force: bool,
                threads: int) -> None:
    torch.set_num_threads(threads)
    try:
        ctx = Context(ref, cfg, progress=False)
        conn.send(("ok", EXPORTERS[target](ctx, out, force)))
    except UserError as e:
        conn.send(("user", str(e)))
    except Exception as e:  # noqa: BLE001 - reported in the parent with the target's name
        if disk_full(e):
            conn.send(("disk", getattr(e, "filename", None) or f"the {target} export's files"))
            return
        conn.send(("error", f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"))
