"""`adcsr pipeline [CONFIG]`: teacher → compressed student → stage 1 → stage 2 → W8A16 + exports
→ verified artifacts → report, one folder per stage, resumable.

This module only composes the stages' public functions; each stage's section is that stage's own
config class, validated as the whole config is loaded, before anything runs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from adcsr.core.config import config_to_dict, save_config
from adcsr.core.errors import UserError
from adcsr.pipeline_config import PipelineConfig, load_pipeline_config
from adcsr.runner import Pipeline, Stage, StageContext, StageFailed


def _encoder_vae(cfg: PipelineConfig, ctx: StageContext) -> str:
    """The frozen encoder's AutoencoderKL folder: the SD VAE, or stage 0's autoencoder."""
    return str(Path(cfg.sd_folder) / "vae") if cfg.sd_folder else str(ctx.input("autoencoder.vae"))


def _train_dir(ctx: StageContext) -> str:
    return str(ctx.dir / "train")


def _train(cfg: PipelineConfig, ctx: StageContext, stage: str, section: Any) -> Path:
    """Run one training stage in this process, or under `cfg.launch` (multi-process)."""
    import subprocess

    from adcsr.distill import STAGES

    if not cfg.launch:
        return STAGES[stage](section, resume=ctx.resume)
    import yaml

    from adcsr.core.atomic import atomic_write_text

    config = ctx.dir / f"{stage}.yaml"
    atomic_write_text(config, yaml.safe_dump(config_to_dict(section), sort_keys=False))
    cmd = [*cfg.launch, "adcsr.cli", "distill", stage, str(config), *(["--resume"] if ctx.resume else [])]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited with code {done.returncode}")
    return Path(done.stdout.strip().splitlines()[-1])


def _stage_autoencoder(cfg: PipelineConfig):
    def run(ctx: StageContext) -> dict[str, Path]:
        vae = _train(cfg, ctx, "stage0", replace(cfg.stage0, run_dir=_train_dir(ctx)))
        return {"vae": vae, "metrics": ctx.dir / "train" / "metrics.json"}

    return run


def _stage_compress(cfg: PipelineConfig):
    def run(ctx: StageContext) -> dict[str, Path]:
        from diffusers import AutoencoderKL

        from adcsr.compress import compress, load_teacher

        unet, vae = load_teacher(cfg.sd_folder or cfg.preset, seed=cfg.seed)
        if not cfg.sd_folder:
            vae = AutoencoderKL.from_pretrained(ctx.input("autoencoder.vae"))
        out = compress(unet, vae, ctx.dir / "out", cfg.compress, teacher=cfg.sd_folder or cfg.preset,
                       seed=cfg.seed, overwrite=True)
        return {"student": out / "student", "decoder": out / "decoder", "report": out / "report.json"}

    return run


def _stage_decoder(cfg: PipelineConfig):
    def run(ctx: StageContext) -> dict[str, Path]:
        section = replace(cfg.stage1, vae=_encoder_vae(cfg, ctx), run_dir=_train_dir(ctx),
                          decoder=str(ctx.input("compress.decoder")))
        out = _train(cfg, ctx, "stage1", section)
        return {"decoder": out, "metrics": ctx.dir / "train" / "metrics.json"}

    return run


def _stage_distill(cfg: PipelineConfig):
    def run(ctx: StageContext) -> dict[str, Path]:
        section = replace(cfg.stage2, vae=_encoder_vae(cfg, ctx), decoder=str(ctx.input("stage1.decoder")),
                          student=str(ctx.input("compress.student")), run_dir=_train_dir(ctx))
        out = _train(cfg, ctx, "stage2", section)
        return {"student": out, "metrics": ctx.dir / "train" / "metrics.json"}

    return run


def _stage_export(cfg: PipelineConfig):
    def run(ctx: StageContext) -> dict[str, Path]:
        from adcsr.export import export

        out = ctx.dir / "artifacts"
        if not ctx.resume:  # a fresh run rebuilds every artifact; an interrupted one keeps the targets it finished
            shutil.rmtree(out, ignore_errors=True)
        results = export(ctx.input("stage2.student"), out, list(cfg.export.targets),
                         cfg.export.options, force=not ctx.resume, resume=ctx.resume,
                         log=lambda m: print(f"[export] {m}", file=sys.stderr))
        # each target reports the folders it wrote (e.g. qnn: onnx/ and qnn-SM8750/)
        return {key: Path(value) for result in results.values() for key, value in result.items()
                if isinstance(value, str) and Path(value).is_dir()}

    return run


def _stage_hub(cfg: PipelineConfig):
    def run(ctx: StageContext) -> dict[str, Path]:
        from adcsr.hub import require_credentials
        from adcsr.hub_command import send_to_hub

        h = cfg.hub
        out = ctx.dir / "out"
        shutil.rmtree(out, ignore_errors=True)
        send_to_hub(require_credentials(), ctx.input("export.onnx"), out, step=h.step,
                    device=None if h.chipset else h.device, chipset=h.chipset, runtime=h.runtime,
                    quantize=h.quantize, quantize_io=h.quantize_io, graphs=h.graphs)
        return {"results": out}

    return run


def _stage_report(cfg: PipelineConfig):
    def run(ctx: StageContext) -> dict[str, Path]:
        from adcsr.report_stage import build_report

        stage2 = cfg.stage2
        notes = [] if cfg.sd_folder else [
            "No SD weights were given: the frozen encoder is the run's own small autoencoder (stage 0) "
            f"and the compressed UNet started from the randomly initialised `{cfg.preset}` preset."]
        md, html = build_report(ctx, cfg.report, teacher_name=stage2.teacher, teacher_options=stage2.teacher_options,
                                seed=cfg.seed, subtitle=f"run folder {cfg.run_dir}", run_notes=notes)
        return {"markdown": md, "html": html}

    return run


def build_pipeline(cfg: PipelineConfig) -> Pipeline:
    """The stage chain for `cfg`; stage 0 only when no SD folder is given."""
    common = {"seed": cfg.seed, "sd_folder": cfg.sd_folder, "preset": cfg.preset}
    stages: list[Stage] = []
    sd = (Path(cfg.sd_folder),) if cfg.sd_folder else ()
    if not cfg.sd_folder:
        stages.append(Stage("autoencoder", _stage_autoencoder(cfg), settings={**common, **config_to_dict(cfg.stage0)}))
    first = () if cfg.sd_folder else ("autoencoder",)
    stages += [
        Stage("compress", _stage_compress(cfg), settings={**common, **vars(cfg.compress)}, needs=first,
              external_inputs=sd),
        Stage("stage1", _stage_decoder(cfg), settings={**common, **config_to_dict(cfg.stage1)}, needs=(*first, "compress"),
              external_inputs=sd),
        Stage("stage2", _stage_distill(cfg), settings={**common, **config_to_dict(cfg.stage2)},
              needs=(*first, "compress", "stage1"), external_inputs=sd),
        Stage("export", _stage_export(cfg), settings={"targets": cfg.export.targets, **config_to_dict(cfg.export.options)},
              needs=("stage2",)),
    ]
    hub = ("hub",) if cfg.hub.enabled else ()
    if cfg.hub.enabled:  # the token is not a setting: it is never part of a fingerprint or manifest
        stages.append(Stage("hub", _stage_hub(cfg), settings=vars(cfg.hub), needs=("export",)))
    stages.append(Stage("report", _stage_report(cfg), settings={**common, **vars(cfg.report), "stage2": config_to_dict(cfg.stage2)},
                        needs=(*first, "compress", "stage1", "stage2", "export", *hub)))
    return Pipeline(cfg.run_dir, stages)


def run_pipeline(cfg: PipelineConfig, start: str | None = None, only: str | None = None,
                 log=print) -> dict[str, Any]:
    from adcsr.core.run_lock import run_lock

    run_dir = Path(cfg.run_dir)
    with run_lock(run_dir, "pipeline"):  # a second pipeline on this folder is refused before it writes
        save_config(cfg, run_dir / "pipeline.yaml")
        return build_pipeline(cfg).run(start=start, only=only, log=log)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pipeline", help="teacher → student → stage 1 → stage 2 → W8A16 exports → verified report",
        description=__doc__ + "\nWith no CONFIG: the embedded default (offline, tiny student, real photos, "
        "Real-ESRGAN teacher).", formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", help="pipeline YAML, or a shipped config's name (adcsr config list); its sections override the embedded default")
    p.add_argument("--run-dir", help="run folder (overrides the config's run_dir)")
    group = p.add_mutually_exclusive_group()
    stages = "autoencoder (only without sd_folder), compress, stage1, stage2, export, hub (when enabled), report"
    group.add_argument("--from", dest="start", metavar="STAGE", help=f"rerun from this stage on: {stages}")
    group.add_argument("--only", metavar="STAGE", help="rerun only this stage (its inputs must exist)")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    cfg = load_pipeline_config(args.config)
    if args.run_dir:
        cfg.run_dir = args.run_dir
    start = time.perf_counter()
    try:
        manifests = run_pipeline(cfg, start=args.start, only=args.only)
    except StageFailed as e:
        print(f"adcsr pipeline: error: {e} (earlier stages are kept in {cfg.run_dir})", file=sys.stderr)
        return 2 if isinstance(e.cause, UserError) else 1
    minutes = (time.perf_counter() - start) / 60
    print(f"pipeline finished in {minutes:.1f} min")
    if "report" in manifests:
        print(f"report: {Path(cfg.run_dir) / 'report' / manifests['report']['outputs']['html']['path']}")
    return 0
