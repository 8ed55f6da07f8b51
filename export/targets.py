"""`export(student, out, targets, cfg)` and one function per target (QNN's in `qnn_target`): build the
artifact in a temporary folder, verify it, write its manifest, and only then rename the folder
into place (a failed check leaves nothing behind).

Layout under `out`: `onnx/` (fp32 + W8A16 QDQ), `qnn-<SOC>/` (EPContext model + QNN context
`.bin` per compiled graph), `executorch/` (XNNPACK `.pte`), `coreml/` (fp32 and W8A16 `.mlpackage`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from tqdm.auto import tqdm

from adcsr.core.atomic import atomic_dir, remove_leftovers
from adcsr.core.errors import UserError

from . import calibration
from .config import ExportConfig
from .qnn_target import export_qnn
from .resume import target_folders, unfinished
from .student_io import StudentRef
from .target_context import Context
from .target_processes import export_in_processes

TARGETS = ("qnn", "executorch", "coreml")


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
        results = export_in_processes(ref, out, todo, cfg, force, progress, EXPORTERS)
    return {t: kept.get(t) or results[t] for t in targets}

