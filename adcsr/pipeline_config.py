"""The pipeline's config: one section per stage, each the stage's own config class (so its
defaults are the only ones), loaded over the embedded default and checked before anything runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from adcsr.compress import CompressConfig
from adcsr.core.config import load_config, path_field
from adcsr.core.errors import UserError
from adcsr.distill import Stage0Config, Stage1Config, Stage2Config
from adcsr.export import ExportConfig
from adcsr.report import ReportSettings

CONFIG_DIR = Path(__file__).parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "pipeline.yaml"


@dataclass
class ExportSettings:
    targets: list[str] = field(default_factory=lambda: ["qnn", "executorch", "coreml"])
    options: ExportConfig = field(default_factory=ExportConfig)


@dataclass
class HubSettings:
    """`adcsr hub` as a stage after export (off by default; it needs an AI Hub token, checked
    before anything runs). The fields are `adcsr hub`'s options."""

    enabled: bool = False
    step: Literal["compile", "profile", "infer", "run"] = "run"
    device: Optional[str] = "Samsung Galaxy S25 (Family)"
    chipset: Optional[str] = None  # a chipset attribute instead of a device name
    runtime: Literal["qnn_context_binary", "precompiled_qnn_onnx", "qnn_dlc", "tflite"] = "qnn_context_binary"
    quantize: Literal["auto", "hub", "local", "none"] = "auto"
    quantize_io: bool = False
    graphs: list[str] = field(default_factory=lambda: ["whole", "features", "decode"])


@dataclass
class PipelineConfig:
    run_dir: str = "runs/default"
    seed: int = 0
    # An SD2.1-base diffusers folder (unet/, vae/): its UNet is compressed and its VAE encoder is the
    # frozen encoder. Without one, the `preset` UNet (random weights) is compressed and a small
    # autoencoder is trained first (stage 0) to play the SD VAE's role.
    sd_folder: Optional[str] = path_field()
    preset: Literal["tiny", "sd21"] = "tiny"
    # How training stages (0, 1, 2) are run: in this process when empty, else as a subprocess
    # `<launch...> adcsr.cli distill stageK CONFIG`, e.g. ["accelerate", "launch", "--num_processes",
    # "8", "-m"] or ["torchrun", "--nproc_per_node", "8", "-m"] for data-parallel training.
    launch: list[str] = field(default_factory=list)
    compress: CompressConfig = field(default_factory=CompressConfig)
    stage0: Stage0Config = field(default_factory=Stage0Config)
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    export: ExportSettings = field(default_factory=ExportSettings)
    report: ReportSettings = field(default_factory=ReportSettings)
    hub: HubSettings = field(default_factory=HubSettings)


def load_pipeline_config(source: str | Path | dict | None = None) -> PipelineConfig:
    """The embedded default when `source` is None; otherwise a YAML path or dict over the defaults."""
    from adcsr.core.config import read_yaml

    data = read_yaml(DEFAULT_CONFIG)
    if source is not None:
        override = source if isinstance(source, dict) else read_yaml(source)
        for key, value in override.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = _merge(data[key], value)
            else:
                data[key] = value
    try:
        _refuse_pipeline_owned(data)
        cfg = load_config(PipelineConfig, data)
        _check_targets(cfg)
    except UserError as e:
        raise UserError(f"pipeline config, {e}") from None
    return cfg


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# what the pipeline sets in each stage's section from the stages before it
PIPELINE_OWNED = {"stage0": ("run_dir",), "stage1": ("run_dir", "vae", "decoder", "decoder_ratio"),
                  "stage2": ("run_dir", "vae", "decoder", "student")}


def _refuse_pipeline_owned(data: dict[str, Any]) -> None:
    for name, keys in PIPELINE_OWNED.items():
        section = data.get(name)
        for key in keys if isinstance(section, dict) else ():
            if key in section:
                by = "compress.decoder_ratio" if key == "decoder_ratio" else "the pipeline"
                raise UserError(f"{name}: {key} is set by {by} (remove it)")


def _check_targets(cfg: PipelineConfig) -> None:
    """What the sections' own types cannot say: known export targets, a hub stage that can run."""
    from adcsr.export import TARGETS

    bad = [t for t in cfg.export.targets if t not in TARGETS]
    if bad or not cfg.export.targets:
        raise UserError(f"export.targets: unknown target {bad[0] if bad else '(none)'!r} "
                        f"(known: {', '.join(TARGETS)})")
    if not cfg.hub.enabled:
        return
    from adcsr.hub import require_credentials

    if "qnn" not in cfg.export.targets and cfg.hub.quantize == "local":
        raise UserError("hub: quantize 'local' needs the qnn export target (its W8A16 ONNX)")
    bad = [g for g in cfg.hub.graphs if g not in ("whole", "features", "decode")]
    if bad or not cfg.hub.graphs:
        raise UserError(f"hub.graphs: unknown graph {bad[0] if bad else '(none)'!r}"
                        " (known: whole, features, decode)")
    try:
        require_credentials()
    except UserError as e:
        raise UserError(f"hub is enabled but {e}") from None
