"""The QNN target (`export_qnn`): fp32 ONNX + W8A16 QDQ in `onnx/` and the QNN context binary for
the SoC in `qnn-<SOC>/`, with the mixed-precision search that picks the layers kept 16-bit."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from adcsr.core.atomic import atomic_dir
from adcsr.core.errors import UserError
from adcsr.core.metrics.fidelity import parity_psnr

from .target_context import Context
from .thresholds import meets_minimum


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
    from .qnn_coverage import check_coverage
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
            qdq = tmp_onnx / "student_w8a16.onnx"
            cache = w8a16.calibrate(pre, ctx.calibration.numpy(), tmp_onnx / "calibration_ranges.json")
            search = _MixedPrecisionSearch(ctx, model) if cfg.target_psnr is not None else None
            steps.update()
            quant, ctx_model, htp, keep = _quantize_and_compile(ctx, soc, pre, cache, qdq, tmp_qnn, search)
            w8_psnr = ctx.parity(htp)  # held-out tiles, once, on the final model
            session = {**htp.session, "soc": soc.name}
            htp.close()
            coverage = check_coverage(ctx_model, qdq, soc, qnn.graph_count(cfg.htp_optimization_mode))
            steps.update(2)
            ctx.check(f"W8A16 on the {soc.name} HTP emulator", w8_psnr, "min_w8a16_psnr")
            quant_info = {**quant, "calibration_set": ctx.calibration_set(),
                          "mixed_precision_search": None if search is None else search.record}
            onnx_files = _onnx_files(fp32, fp32_psnr, qdq, w8_psnr)
            for scratch in (pre, Path(str(pre) + ".data"), cache):
                scratch.unlink(missing_ok=True)
            ctx.manifest(tmp_onnx, "onnx", ("qnn",), onnx_files, soc=soc.name, quantization=quant_info,
                         parity_session=session)
            _qnn_manifest(ctx, tmp_qnn, soc, ctx_model, w8_psnr, quantization=quant_info, parity_session=session,
                          htp_coverage=coverage, export_seconds=time.perf_counter() - t0)
            steps.update()
    return {"onnx": str(onnx_dir), "qnn": str(qnn_dir), "fp32_psnr": fp32_psnr, "w8a16_psnr": w8_psnr,
            "kept_16bit": keep, "htp_coverage": coverage["htp_fraction"]}


def _quantize_and_compile(ctx: Context, soc, pre: Path, cache: Path, qdq: Path, folder: Path,
                          search: _MixedPrecisionSearch | None) -> tuple:
    """Quantize `pre` to `qdq`, compile its context in `folder` (checked 100% HTP as a whole) and
    load it; with a `search`, try again with more layers kept 16-bit until it says stop.
    Returns (what the quantization did, the context model, its loaded run, the layers kept 16-bit)."""
    from . import qnn, w8a16
    from .runtime import load_artifact

    keep, htp = list(ctx.cfg.keep_16bit), None
    while True:  # each try: quantize, compile the context, run it
        quant = w8a16.quantize_w8a16(pre, qdq, cache, keep)
        if htp is not None:
            htp.close()
        qnn.clear_context(folder)
        ctx_model = qnn.compile_context(qdq, folder, soc, optimization_mode=ctx.cfg.htp_optimization_mode)
        htp = load_artifact(ctx_model, soc=soc.name)  # no manifest yet: the SoC is given
        if search is None or not search.widen(htp, keep):
            return quant, ctx_model, htp, keep


class _MixedPrecisionSearch:
    """With `target_psnr`: layers keep 16-bit weights, the most W8-sensitive first, until the HTP
    parity meets it. The search's own tiles are calibration photos (the first `eval_count`), never
    the held-out ones that report the parity. `record` is what the manifest keeps of it."""

    def __init__(self, ctx: Context, model: torch.nn.Module):
        from . import w8a16

        self.cfg = ctx.cfg
        self.lr = ctx.calibration[: self.cfg.eval_count]
        with torch.no_grad():
            self.ref = ctx.student(self.lr).numpy()
        self.sensitivity = w8a16.layer_sensitivity(model, self.lr)
        self.record = {"tiles": ctx.calibration_set(len(self.lr)), "target_psnr": self.cfg.target_psnr,
                       "sensitivity_db": self.sensitivity[:20], "tries": []}

    def widen(self, htp, keep: list[str]) -> bool:
        """Record the parity of the try that kept `keep` 16-bit; when it falls short and layers are
        left to add, add the next ones to `keep` (in place) and return True: try again."""
        cfg = self.cfg
        tried = parity_psnr(self.ref, htp(self.lr).numpy())
        self.record["tries"].append({"kept_16bit": list(keep), "psnr_db_calibration": tried})
        if meets_minimum(tried, cfg.target_psnr):
            return False
        more = [n for n, _ in self.sensitivity if n not in keep]
        if not more or len(keep) >= cfg.max_16bit_layers:
            return False
        keep += more[: max(1, len(keep))][: cfg.max_16bit_layers - len(keep)]
        return True


def _onnx_files(fp32: Path, fp32_psnr: float, qdq: Path, w8_psnr: float) -> list[dict]:
    """The `onnx/` folder's manifest entries: the fp32 model (and its external weights), the QDQ."""
    files = [{"file": fp32.name, "kind": "fp32", "psnr_db": fp32_psnr},
             {"file": qdq.name, "kind": "w8a16_qdq", "psnr_db_htp_emulator": w8_psnr,
              "note": "parity measured through its compiled QNN context (the same HTP graph)"}]
    if Path(str(fp32) + ".data").exists():
        files.insert(1, {"file": fp32.name + ".data", "kind": "fp32_weights"})
    return files


def _qnn_manifest(ctx: Context, folder: Path, soc, ctx_model: Path, w8_psnr: float, **fields) -> None:
    """The `qnn-<SOC>/` folder's manifest: the context model and every `.bin` beside it."""
    bins = sorted(p.name for p in folder.iterdir() if p.suffix == ".bin")
    ctx.manifest(folder, "qnn_context_binary", ("qnn",),
                 [{"file": ctx_model.name, "kind": "qnn_context", "psnr_db_htp_emulator": w8_psnr}]
                 + [{"file": b, "kind": "qnn_context_bin"} for b in bins],
                 soc=soc.name, soc_model=soc.soc_model, htp_arch=soc.htp_arch,
                 htp_optimization_mode=ctx.cfg.htp_optimization_mode, **fields)
