"""Export settings (`export/configs/default.yaml` mirrors these defaults; the pass marks come from
`thresholds.DEFAULTS`, defined there once)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from adcsr.core.config import load_config
from adcsr.core.errors import UserError

from .thresholds import DEFAULTS

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "default.yaml"


@dataclass
class ExportConfig:
    tile: int = 128                      # static LR tile side of every artifact
    soc: str = "SM8750"                  # QNN target: SM8750 or SM8650
    calibration_count: int = 16          # degraded LR tiles from the training photos
    eval_count: int = 4                  # degraded LR tiles from the held-out photos
    seed: int = 0
    keep_16bit: list[str] = field(default_factory=list)  # layers kept at 16-bit weights
    target_psnr: float | None = None     # add the most sensitive layers at 16 bits until met
    max_16bit_layers: int = 16           # bound on what `target_psnr` may keep at 16 bits
    # pass marks (what each one applies to: thresholds.DEFAULTS); every manifest records them
    min_fp32_psnr: float = DEFAULTS["min_fp32_psnr"]
    min_w8a16_psnr: float = DEFAULTS["min_w8a16_psnr"]
    min_fp16_psnr: float = DEFAULTS["min_fp16_psnr"]
    fp16_headroom: float = DEFAULTS["fp16_headroom"]
    max_equivalence: float = DEFAULTS["max_equivalence"]
    jobs: int = 1                        # targets exported at once, each in its own process
    # QNN graph finalization 1 | 2 | 3 (None: the SDK's default) for one graph, or a level per half
    # ({features: ·, decode: ·}) for two graphs split at the features tensor (qnn.compile_context)
    htp_optimization_mode: int | dict[str, int | None] | None = field(default_factory=lambda: {"features": 2, "decode": 1})

    def __post_init__(self) -> None:
        """Settings that would otherwise fail late (after the ONNX export and calibration)."""
        from .qnn import check_optimization_mode, get_soc  # here: the pipeline's config loads this module

        get_soc(self.soc)
        if self.tile <= 0:
            raise UserError(f"tile must be a positive number of LR pixels, got {self.tile}")
        check_optimization_mode(self.htp_optimization_mode)
        if not self.fp16_headroom >= 1:
            raise UserError(f"fp16_headroom must be at least 1 (a factor on fp16's range), got {self.fp16_headroom}")

    def thresholds(self) -> dict[str, float]:
        """The pass marks this export applies, as its manifests record them."""
        return {k: float(getattr(self, k)) for k in DEFAULTS}


def load_export_config(path: str | Path | None = None, **overrides) -> ExportConfig:
    return load_config(ExportConfig, path or DEFAULT_CONFIG, **overrides)
