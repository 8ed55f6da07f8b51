"""Every shipped training config builds into its real trainer and takes two optimizer steps on CPU:
`distill/configs/*.yaml`, the stage sections of the pipeline's embedded default and those of the
SD2.1 + OSEDiff example. Only what a CPU test cannot afford is changed: presets become `tiny`,
paths (placeholders and earlier stages' outputs) point to small local fixtures built here, and the
run is 2 steps of batch 2 on 64² crops with the adversarial term on from step 1 (so every
optimizer steps). Everything else — learning rates, schedules, loss weights, `mixed_precision`,
`deterministic`, `grad_checkpointing` — is as shipped."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from adcsr.core.config import PLACEHOLDER, config_to_dict, load_config
from adcsr.core.models.sd_configs import unet_config, vae_config
from adcsr.distill.dfosd import DFOSDConfig, DFOSDTask
from adcsr.distill.tadsr import TADSRConfig, TADSRTask
from adcsr.distill.tsdsr import TSDSRConfig, TSDSRTask
from adcsr.distill.stage0 import AutoencoderTask, Stage0Config
from adcsr.distill.stage1 import DecoderTask, Stage1Config
from adcsr.distill.stage2 import DistillTask, Stage2Config
from adcsr.distill.trainer import Trainer
from adcsr.pipeline import build_pipeline, load_pipeline_config
from adcsr.pipeline_config import CONFIG_DIR

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
STAGES = {"stage0": (Stage0Config, AutoencoderTask), "stage1": (Stage1Config, DecoderTask),
          "stage2": (Stage2Config, DistillTask), "dfosd": (DFOSDConfig, DFOSDTask),
          "tsdsr": (TSDSRConfig, TSDSRTask), "tadsr": (TADSRConfig, TADSRTask)}
PIPELINE_STAGE = {"autoencoder": "stage0", "stage1": "stage1", "stage2": "stage2"}
CASES = [(p.name, p.name.split("-")[0]) for p in sorted((ROOT / "distill" / "configs").glob("*.yaml"))] + [
    ("pipeline.yaml", "stage0"), ("pipeline.yaml", "stage1"), ("pipeline.yaml", "stage2"),
    ("pipeline-sd21-osediff.yaml", "stage1"), ("pipeline-sd21-osediff.yaml", "stage2"),
    ("pipeline-quality.yaml", "stage0"), ("pipeline-quality.yaml", "stage1"), ("pipeline-quality.yaml", "stage2"),
]


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> dict[str, str]:
    """Small stand-ins for every file a shipped config names, by the key that names it."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from adcsr.core.imaging import write_image
    from adcsr.core.metrics import build_metric, save_weights
    from adcsr.core.models.student import AdcSRStudent
    from adcsr.core.models.teachers.osediff import OSEDiffTeacher
    from adcsr.core.models.vae_decoder import PrunedVAEDecoder
    from adcsr.core.photos import TRAIN_PHOTOS, hr_crops

    root = tmp_path_factory.mktemp("fixtures")
    torch.manual_seed(0)
    sd = root / "sd"  # a tiny SD folder: the UNet and VAE (encoder) the configs name
    UNet2DConditionModel(**unet_config("tiny")).save_pretrained(sd / "unet")
    AutoencoderKL(**vae_config("tiny")).save_pretrained(sd / "vae")
    PrunedVAEDecoder.from_preset("tiny").save_pretrained(root / "decoder")
    AdcSRStudent.from_preset("tiny").save_pretrained(root / "student")
    OSEDiffTeacher.from_preset("tiny", seed=1).save_checkpoint(root / "osediff")
    lpips = save_weights(build_metric("lpips"), root / "lpips.safetensors")
    dists = save_weights(build_metric("ea-dists"), root / "dists.safetensors")
    from diffusers import SD3Transformer2DModel

    from adcsr.core.models.sd3_configs import PROMPT_SHAPES, transformer_config
    from adcsr.core.models.sd3_configs import vae_config as sd3_vae_config

    sd3 = root / "sd3"  # a tiny SD3 folder and prompt embeddings of its widths
    SD3Transformer2DModel(**transformer_config("tiny")).save_pretrained(sd3 / "transformer")
    AutoencoderKL(**sd3_vae_config("tiny")).save_pretrained(sd3 / "vae")
    torch.save(torch.randn(PROMPT_SHAPES["tiny"][0]), root / "prompt_embeds.pt")
    torch.save(torch.randn(PROMPT_SHAPES["tiny"][1]), root / "pool_embeds.pt")
    from adcsr.core.models.resshift_unet import ResShiftUNet
    from adcsr.core.models.vqgan_f4 import build_vqgan

    # ResShift's release files in their format (.pth state dicts), of the tiny architecture
    torch.save(ResShiftUNet.from_preset("tiny").state_dict(), root / "resshift.pth")
    torch.save(build_vqgan("tiny").state_dict(), root / "autoencoder_vq_f4.pth")
    for i, crop in enumerate(hr_crops("train", 96, len(TRAIN_PHOTOS), seed=3)):
        write_image(crop, root / "hr" / f"{i}.png")
    return {"vae": str(sd / "vae"), "sd_folder": str(sd), "unet": str(sd / "unet"),
            "decoder": str(root / "decoder"), "student": str(root / "student"),
            "checkpoint": str(root / "osediff.safetensors"), "lpips_weights": str(lpips),
            "hr_folder": str(root / "hr"), "dists_weights": str(dists), "sd3_folder": str(sd3),
            "prompt_embeds": str(root / "prompt_embeds.pt"), "pooled_embeds": str(root / "pool_embeds.pt"),
            "teacher_checkpoint": str(root / "resshift.pth"), "autoencoder": str(root / "autoencoder_vq_f4.pth")}


def _local(data, fixtures: dict[str, str], key: str = ""):
    """Placeholders and earlier stages' outputs → the fixture for their key; presets and
    architectures → tiny."""
    if isinstance(data, dict):
        return {k: _local(v, fixtures, k) for k, v in data.items()}
    if key in ("preset", "student_preset", "architecture"):
        return "tiny"
    if isinstance(data, str) and data.startswith((PLACEHOLDER, "runs/")) and key != "run_dir":
        return fixtures[key]  # a KeyError here: a new path key needs a fixture
    return data


def _cpu_sized(section: dict, run_dir: Path) -> dict:
    trainer = {**section.get("trainer", {}), "steps": 2, "batch_size": 2, "progress": False}
    data = {**section.get("data", {}), "hr_size": 64, "heldout_size": 64, "heldout_count": 2}
    out = {**section, "run_dir": str(run_dir), "trainer": trainer, "data": data}
    if "adv_start" in section:
        out["adv_start"] = min(section["adv_start"], 1)
    return out


def _section(source: str, stage: str, fixtures: dict[str, str]) -> dict:
    """The stage's config as the user (or the pipeline) would hand it to the stage."""
    if not source.startswith("pipeline"):
        return _local(yaml.safe_load((ROOT / "distill" / "configs" / source).read_text()), fixtures)
    example = None if source == "pipeline.yaml" else _local(yaml.safe_load((CONFIG_DIR / source).read_text()), fixtures)
    cfg = load_pipeline_config(example)
    assert stage in {PIPELINE_STAGE.get(s.name) for s in build_pipeline(cfg).stages}, "the pipeline runs it"
    section = config_to_dict(getattr(cfg, stage))
    # what the pipeline adds (adcsr.pipeline._stage_*): the encoder VAE, compress's and stage 1's outputs
    if stage != "stage0":
        section["vae"] = fixtures["vae"]
    if stage == "stage2":
        section |= {"decoder": fixtures["decoder"], "student": fixtures["student"]}
    return section


@pytest.mark.parametrize("source, stage", CASES, ids=[f"{s}:{k}" for s, k in CASES])
def test_shipped_config_builds_and_takes_two_steps(source, stage, fixtures, tmp_path):
    shipped = _section(source, stage, fixtures)
    config_cls, task_cls = STAGES[stage]
    cfg = load_config(config_cls, _cpu_sized(shipped, tmp_path / "run"))
    trainer = Trainer(cfg.trainer, cfg.run_dir, lambda: task_cls(cfg), name=stage)
    task = trainer.task
    before = {name: [p.detach().clone() for g in opt.param_groups for p in g["params"]]
              for name, opt in trainer.opts.items()}
    trainer.fit()
    assert trainer.step == 2
    for name, opt in trainer.opts.items():  # every optimizer stepped
        after = [p for g in opt.param_groups for p in g["params"]]
        assert any(not torch.equal(a, b) for a, b in zip(after, before[name])), f"{name} did not train"
    assert trainer.history and all(math.isfinite(v) for e in trainer.history for v in e.values())
    for m in task.modules.values():  # grad checkpointing on exactly where the config says
        if hasattr(m, "enable_gradient_checkpointing"):
            assert m.is_gradient_checkpointing == cfg.trainer.grad_checkpointing
    for t in task.teachers.values():  # on the trainer's device, in its precision (fp32 on the CPU)
        assert t.device == trainer.acc.device and t.dtype == trainer.dtype == torch.float32
    if stage == "stage2":
        assert task.teacher.name == shipped["teacher"]
        assert (task.teacher.describe().get("checkpoint") == fixtures["checkpoint"]) == (shipped["teacher"] == "osediff")


def test_stage2_puts_its_teacher_on_the_trainers_device_in_its_precision(fixtures, tmp_path):
    """However the teacher was built (here: in bf16), it runs where and as the trainer does; on the
    CPU that is fp32 even for a `mixed_precision: bf16` config (AMP is CUDA-only)."""
    section = _cpu_sized(_section("stage2-ci.yaml", "stage2", fixtures), tmp_path / "run")
    cfg = load_config(Stage2Config, {**section, "trainer": {**section["trainer"], "mixed_precision": "bf16"}})

    def build():
        task = DistillTask(cfg)
        task.teacher.to("cpu", torch.bfloat16)
        return task

    trainer = Trainer(cfg.trainer, cfg.run_dir, build)
    teacher = trainer.task.teacher
    assert trainer.acc.mixed_precision == "no" and trainer.dtype == torch.float32
    assert teacher.device == trainer.acc.device and teacher.dtype == torch.float32
    assert {p.dtype for p in teacher.net.parameters()} == {torch.float32}
