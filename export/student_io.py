"""Which student an export is made from: a saved folder, or a preset with seeded random weights
(for benchmarks and mechanics tests). Recorded in every manifest so `verify` can rebuild it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from adcsr.core.errors import UserError
from adcsr.core.manifest import sha256_tree
from adcsr.core.models.student import PRESETS, AdcSRStudent


@dataclass(frozen=True)
class StudentRef:
    path: str | None = None
    preset: str | None = None
    seed: int = 0

    @classmethod
    def parse(cls, spec: str, seed: int = 0) -> "StudentRef":
        """A folder saved by `save_pretrained`, or `preset:tiny` / `preset:sd21` (random weights)."""
        if spec.startswith("preset:"):
            name = spec.split(":", 1)[1]
            if name not in PRESETS:
                raise UserError(f"unknown student preset {name!r} (known: {', '.join(PRESETS)})")
            return cls(preset=name, seed=seed)
        if not Path(spec).is_dir():
            raise UserError(f"student folder not found: {spec} (or use preset:tiny / preset:sd21)")
        return cls(path=str(Path(spec).resolve()))

    @classmethod
    def from_manifest(cls, data: dict) -> "StudentRef":
        s = data.get("student") or {}
        if not (s.get("path") or s.get("preset")):
            raise UserError("the artifact's manifest does not say which student it was made from")
        return cls(path=s.get("path"), preset=s.get("preset"), seed=int(s.get("seed", 0)))

    def load(self) -> AdcSRStudent:
        if self.preset:
            with torch.random.fork_rng():
                torch.manual_seed(self.seed)
                model = AdcSRStudent.from_preset(self.preset)
        else:
            model = AdcSRStudent.from_pretrained(self.path)
        return model.eval().float()

    def describe(self) -> dict:
        if self.preset:
            return {"preset": self.preset, "seed": self.seed, "weights": "random init"}
        return {"path": self.path, "sha256": sha256_tree(self.path)}
