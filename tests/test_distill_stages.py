"""Evidence for the three stages on real sample photos with real Real-ESRGAN degradations (tiny
presets, CI-sized step budgets): stage 0 → stage 1 → stage 2 chained once per module.

These runs are a few dozen Adam steps on batches of 4, so their held-out figures move with float
rounding (1 or 2 threads change them by several dB) as much as with the seed. Learning rates, steps
and thresholds are set from the figures measured over trainer seeds 0–2 with 1 thread and seed 0
with 2 (quoted at each assertion as min…max), so each assertion holds with margin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from adcsr.core.models.student import AdcSRStudent
from adcsr.core.models.vae_decoder import PrunedVAEDecoder
from adcsr.distill.stage0 import train_autoencoder
from adcsr.distill.stage1 import pretrain_decoder
from adcsr.distill.stage2 import distill

TRAINER = dict(batch_size=4, checkpoint_every=1000, keep_last=1, progress=False)


def _evals(run: Path) -> list[dict]:
    return json.loads((run / "metrics.json").read_text())["eval"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("chain")
    ae = train_autoencoder(dict(run_dir=str(root / "s0"), lr=1e-3,
                                trainer=dict(TRAINER, steps=40, eval_every=40)))
    dec = pretrain_decoder(dict(run_dir=str(root / "s1"), vae=str(ae), lr=3e-4, disc_lr=2e-4, adv_start=30, adv_weight=0.02,
                                perceptual_weight=0.1, disc_channels=32,
                                trainer=dict(TRAINER, steps=40, eval_every=20)))
    st = distill(dict(run_dir=str(root / "s2"), vae=str(ae), decoder=str(dec), lr=1e-3, disc_lr=1e-4,
                      trainer=dict(TRAINER, steps=30, eval_every=15)))
    return {"root": root, "ae": ae, "decoder": dec, "student": st}


def test_stage0_autoencoder_learns_and_says_what_it_stands_in_for(chain):
    ev = _evals(chain["root"] / "s0")
    assert ev[-1]["psnr_y"] > ev[0]["psnr_y"] + 0.5  # measured +1.5…+5.9 dB
    manifest = json.loads((chain["root"] / "s0" / "manifest.json").read_text())
    assert "stands in for the frozen SD VAE" in manifest["role"]
    assert "not LPIPS" in manifest["perceptual_loss"]
    assert (chain["ae"] / "config.json").is_file()


def test_stage1_decoder_heldout_psnr_rises_3db(chain):
    run = chain["root"] / "s1"
    ev = _evals(run)
    assert ev[-1]["psnr_y"] >= ev[0]["psnr_y"] + 3.0, ev  # measured +4.6…+6.9 dB
    manifest = json.loads((run / "manifest.json").read_text())
    assert "stage 0" in manifest["encoder"] and "not LPIPS" in manifest["perceptual_loss"]
    # the saved decoder is the trained one: it reproduces the last held-out figure
    from adcsr.distill.stage1 import DecoderTask, Stage1Config
    from adcsr.core.config import load_config

    task = DecoderTask(load_config(Stage1Config, str(run / "config.yaml")))
    task.decoder = PrunedVAEDecoder.from_pretrained(chain["decoder"]).eval()
    with torch.no_grad():
        again = task.evaluate(0)[0]["psnr_y"]
    assert abs(again - ev[-1]["psnr_y"]) < 1e-3


def test_stage2_distill_loss_halves_and_student_approaches_teacher(chain):
    run = chain["root"] / "s2"
    ev = _evals(run)
    first, last = ev[0], ev[-1]
    assert last["distill"] <= 0.5 * first["distill"], (first, last)  # measured 0.28…0.33
    assert last["psnr_y_student_vs_teacher"] > first["psnr_y_student_vs_teacher"] + 0.2, (first, last)  # +1.6…+6.3 dB
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["teacher"]["name"] == "realesrgan-compact"
    assert "stage 0" in manifest["encoder"]


def test_stage2_trains_only_unet_link_mid_and_lora(chain):
    run = chain["root"] / "s2"
    student = AdcSRStudent.from_pretrained(chain["student"])
    dec = PrunedVAEDecoder.from_pretrained(chain["decoder"])
    up_s = student.decoder.up_blocks.state_dict()
    up_d = dec.decoder.up_blocks.state_dict()
    assert all(torch.equal(up_s[k], up_d[k]) for k in up_d), "the up path must stay frozen"
    mid_s, mid_d = student.decoder.mid_block.state_dict(), dec.decoder.mid_block.state_dict()
    assert any(not torch.equal(mid_s[k], mid_d[k]) for k in mid_d), "the mid-block must train"
    ckpt = sorted((run / "checkpoints").glob("step-*"))[-1]
    disc = load_file(str(ckpt / "model-disc.safetensors"))
    assert disc and all("lora_" in k or "conv_in" in k or k == "prompt_embeds" for k in disc)
    assert any("lora_B" in k and v.abs().max() > 0 for k, v in disc.items()), "LoRA B starts at 0 and must move"


@pytest.mark.parametrize("level", ["pre_mid", "image"])
def test_other_distillation_levels_reduce_their_loss(chain, tmp_path, level):
    distill(dict(run_dir=str(tmp_path / level), vae=str(chain["ae"]), decoder=str(chain["decoder"]),
                 distill_level=level, adv_weight=0.0, lr=1e-3, trainer=dict(TRAINER, steps=20, eval_every=20)))
    first, last = _evals(tmp_path / level)
    assert last["distill"] < 0.9 * first["distill"], (first, last)  # measured pre_mid 0.25…0.46, image 0.59…0.81
    if level == "image":  # its loss is the L1 to the teacher's SR: measured +2.2…+5.9 dB
        assert last["psnr_y_student_vs_teacher"] > first["psnr_y_student_vs_teacher"] + 1.0, (first, last)
    # pre_mid's loss is on the mid-block input; the SR image follows it only loosely in 20 steps
    # (measured +0.9…+7.1 dB here, −0.2 dB with another stage 1), so its PSNR is not asserted


def test_resume_refuses_a_changed_config(chain, tmp_path):
    from adcsr.core.errors import UserError

    cfg = dict(run_dir=str(tmp_path / "r"), vae=str(chain["ae"]), decoder=str(chain["decoder"]),
               adv_weight=0.0, trainer=dict(TRAINER, steps=1, eval_every=1))
    distill(cfg)
    with pytest.raises(UserError, match="differs .* at lr"):
        distill({**cfg, "lr": 0.5}, resume=True)
    with pytest.raises(UserError, match="finished run"):
        distill(cfg)


def test_discriminator_reads_per_image_embeddings_named_in_the_manifest(chain, tmp_path):
    from safetensors.torch import save_file

    from adcsr.core.errors import UserError
    from adcsr.core.models.sd_configs import unet_config
    from adcsr.core.photos import split_photos

    width = unet_config("tiny")["cross_attention_dim"]
    names = split_photos("train")
    g = torch.Generator().manual_seed(0)
    save_file({n: torch.randn(3, width, generator=g) for n in names}, str(tmp_path / "embeds.safetensors"))
    cfg = dict(run_dir=str(tmp_path / "r"), vae=str(chain["ae"]), decoder=str(chain["decoder"]), adv_start=0,
               discriminator=dict(image_embeds=str(tmp_path / "embeds.safetensors")),
               trainer=dict(TRAINER, steps=2, eval_every=2))
    distill(cfg)
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert manifest["discriminator"]["conditioning"].startswith("per-image text embeddings")
    assert manifest["discriminator"]["lora_scale"] == 2.0
    save_file({n: torch.randn(3, width) for n in names[1:]}, str(tmp_path / "short.safetensors"))
    with pytest.raises(UserError, match="no embedding for 1 training image"):
        distill({**cfg, "run_dir": str(tmp_path / "r2"),
                 "discriminator": dict(image_embeds=str(tmp_path / "short.safetensors"))})


def test_stage1_trains_the_decoder_compress_wrote(chain, tmp_path):
    from adcsr.core.errors import UserError
    from adcsr.distill.stage1 import Stage1Config, initial_decoder, load_vae

    vae = load_vae(str(chain["ae"]))
    pruned = PrunedVAEDecoder(**PrunedVAEDecoder.config_from_vae(dict(vae.config), 0.75))  # not the default ratio
    pruned.save_pretrained(tmp_path / "dec")
    start = initial_decoder(Stage1Config(vae=str(chain["ae"]), decoder=str(tmp_path / "dec"), init="pruned"), vae)
    fresh = initial_decoder(Stage1Config(vae=str(chain["ae"]), decoder=str(tmp_path / "dec")), vae)
    ref = pruned.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in start.state_dict().items())
    # compress's widths, whatever stage 1's decoder_ratio says
    assert list(fresh.config.block_out_channels) == list(pruned.config.block_out_channels) == [8, 16, 16, 16]
    assert not torch.equal(fresh.decoder.conv_in.weight, pruned.decoder.conv_in.weight)
    other = PrunedVAEDecoder(**{**PrunedVAEDecoder.config_from_vae(dict(vae.config)), "latent_channels": 8})
    other.save_pretrained(tmp_path / "other")
    with pytest.raises(UserError, match="latent channels"):
        initial_decoder(Stage1Config(vae=str(chain["ae"]), decoder=str(tmp_path / "other")), vae)


def test_lr_skip_student_starts_as_bicubic_and_learns_a_residual_bicubic_lacks(chain, tmp_path):
    """With `lr_skip` the first held-out evaluation (step 0) is the bicubic LR itself; training on
    an 8-crop teacher pool then fits those crops' teacher SR better than bicubic does."""
    import torch.nn.functional as F

    from adcsr.core.metrics.fidelity import mean_psnr_y
    from adcsr.core.config import load_config
    from adcsr.distill.stage2 import DistillTask, Stage2Config

    cfg = dict(run_dir=str(tmp_path / "skip"), vae=str(chain["ae"]), decoder=str(chain["decoder"]), lr_skip=True,
               image_weight=1.0, train_decoder=True, zero_residuals=True, distill_weight=0.0, adv_weight=0.0,
               teacher_pool=8, lr=1e-3, trainer=dict(TRAINER, steps=30, eval_every=30))
    out = distill(cfg)
    first = _evals(tmp_path / "skip")[0]
    task = DistillTask(load_config(Stage2Config, cfg))
    h = task.data.heldout()
    up = lambda lr: F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    assert abs(first["psnr_y_student_vs_hr"] - mean_psnr_y(up(h["lr"]), h["hr"])) < 1e-3, first
    pool = task.samples(list(range(8)), torch.device("cpu"))
    student = AdcSRStudent.from_pretrained(out).eval()
    assert student.config.lr_skip
    with torch.no_grad():
        trained = mean_psnr_y(student(pool["lr"]), pool["teacher_sr"])
    bicubic = mean_psnr_y(up(pool["lr"]), pool["teacher_sr"])
    assert trained > bicubic + 0.3, (trained, bicubic)  # measured +1.46 dB (1 thread, seed 0)
    assert "lr_skip" in json.loads((tmp_path / "skip" / "manifest.json").read_text())["student_init"]
