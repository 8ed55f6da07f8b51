"""`Context`: what every export target needs — the student, its reference outputs on held-out
photos, the calibration tiles, the deploy forms, the manifest writer and the parity checks."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from adcsr.core.errors import UserError
from adcsr.core.manifest import sha256_tree, size_on_disk, write_manifest
from adcsr.core.metrics.fidelity import parity_psnr

from . import calibration
from .config import ExportConfig
from .deploy import deploy_form, relative_max_diff
from .deploy_notes import installed_versions, qnn_sdk_version, write_readme
from .resume import settings
from .runtime import MANIFEST
from .student_io import StudentRef
from .thresholds import meets_minimum


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
