"""TSD-SR's training objective: target score distillation with DASM and CFG against numbers
worked out by hand, the LoRA "reg" model, and a CI-sized run on the tiny SD3 preset."""

from __future__ import annotations

import json

import pytest
import torch

from adcsr.distill.losses import cfg, tsd_gradient, tsd_loss

torch.set_num_threads(1)


def test_tsd_loss_pushes_the_latent_along_g():
    latent = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    g = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
    loss = tsd_loss(latent, g)
    assert loss.item() == pytest.approx(0.5 * (0.25 + 1 + 4 + 0) / 4)  # ½·mean(g²)
    loss.backward()
    torch.testing.assert_close(latent.grad, g / 4)


def test_classifier_free_guidance():
    assert cfg(torch.tensor(1.0), torch.tensor(3.0), 7.5).item() == 16.0


def test_dasm_accumulates_vsd_and_tsm_along_the_trajectory():
    sigmas = torch.zeros(1001)
    sigmas[100], sigmas[150] = 0.8, 0.6

    def teacher(lat, i):  # velocity = the latent itself
        return lat.clone()

    def lora(lat, i):
        return 0.5 * lat

    x, z = torch.tensor([2.0]), torch.tensor([1.0])
    g = tsd_gradient(x, z, sigmas, 100, teacher, lora, steps=2, stride=50)
    # k=0, σ=0.8, w=1:   vsd 0.64·(2−1) = 0.64, tsm 0.64·(2−1) = 0.64; Euler −0.2: x = 1.8, z = 0.8
    # k=1, σ=0.6, w=0.3: vsd + 0.3·0.36·(1.8−0.9) = 0.7372, tsm + 0.3·0.36·(1.8−0.8) = 0.748
    assert g.item() == pytest.approx(0.7 * 0.7372 + 0.3 * 0.748)
    one = tsd_gradient(x, z, sigmas, 100, teacher, lora, steps=1)
    assert one.item() == pytest.approx(0.7 * 0.64 + 0.3 * 0.64)


def test_the_lora_model_is_the_teacher_at_start_and_trains_alone():
    from diffusers import SD3Transformer2DModel

    from adcsr.core.models.sd3_configs import PROMPT_SHAPES, transformer_config
    from adcsr.distill.tsdsr import RegModel

    torch.manual_seed(0)
    shapes = PROMPT_SHAPES["tiny"]
    reg = RegModel(SD3Transformer2DModel(**transformer_config("tiny")), 4, torch.randn(shapes[0]), torch.randn(shapes[1]))
    lat, t = torch.randn(2, 16, 8, 8), torch.tensor([500.0, 500.0])
    with torch.no_grad():
        torch.testing.assert_close(reg.velocity(lat, t, 7.5, lora=True), reg.velocity(lat, t, 7.5, lora=False))
    assert all("lora" in n and ".reg." in n for n, p in reg.named_parameters() if p.requires_grad)


def test_a_ci_sized_run_moves_towards_hr(tmp_path):
    from safetensors.torch import load_file

    from adcsr.cli import main
    from adcsr.core.config import read_yaml

    cfg_ = read_yaml("distill/configs/tsdsr-ci.yaml")
    cfg_ |= {"run_dir": str(tmp_path / "run"), "trainer": {**cfg_["trainer"], "progress": False}}
    import yaml

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg_))
    assert main(["train", "tsdsr", str(path)]) == 0
    evals = json.loads((tmp_path / "run" / "manifest.json").read_text())["eval"]
    latent = [e["latent_mse_vs_hr"] for e in evals]
    psnr = [e["psnr_y_vs_hr"] for e in evals]
    assert latent == sorted(latent, reverse=True) and latent[-1] < 0.8 * latent[0], latent
    assert psnr == sorted(psnr) and psnr[-1] > psnr[0], psnr
    keys = list(load_file(str(tmp_path / "run" / "tsdsr" / "transformer.safetensors")))
    assert keys and all(k.startswith("transformer.") for k in keys)  # the release's layout
    assert (tmp_path / "run" / "tsdsr" / "vae.safetensors").is_file()
