"""The stage-2 discriminator against the release's rules (FACTS §1, its train.py/utils.py): conv_in
initialised from the old kernel repeated ÷ repeat count, LoRA on exactly the release's targets at
scale 2, ≈4.8 M trainable at full size, per-sample text conditioning; the generator-only schedule;
and the loss terms of `distill/losses.py` against their definitions."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import UNet2DConditionModel
from peft.tuners.lora import LoraLayer
from torch import nn

from adcsr.core.models.sd_configs import unet_config
from adcsr.distill.discriminator import FeatureDiscriminator
from adcsr.distill.losses import discriminator_adv, generator_adv
from adcsr.distill.stage2 import DistillTask

from adcsr.core.config import load_config
from adcsr.distill.config import TrainerConfig
from adcsr.distill.trainer import Trainer
from test_trainer import TOY, ToyTask


def _disc(channels: int = 32, **kw) -> tuple[FeatureDiscriminator, nn.Conv2d]:
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**unet_config("tiny"))
    old = nn.Conv2d(unet.conv_in.in_channels, unet.conv_in.out_channels, 3, padding=1)
    old.load_state_dict(unet.conv_in.state_dict())
    return FeatureDiscriminator(unet, channels, **kw), old


def test_conv_in_is_the_old_kernel_repeated_and_divided_by_the_repeat_count():
    d, old = _disc(32)  # 4 → 32 input channels: 8 repeats
    conv = d.unet.conv_in.base_layer
    assert conv.in_channels == 32
    torch.testing.assert_close(conv.weight, old.weight.repeat(1, 8, 1, 1) / 8, rtol=0, atol=0)
    torch.testing.assert_close(conv.bias, old.bias, rtol=0, atol=0)
    # so a feature map that repeats a latent 8 times gives what the old conv_in gave the latent
    z = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(conv(z.repeat(1, 8, 1, 1)), old(z), atol=1e-5, rtol=1e-5)


def test_lora_sits_on_the_release_targets_at_scale_two():
    d, _ = _disc()
    lora = {n[len("unet."):] for n, m in d.named_modules() if isinstance(m, LoraLayer)}
    # the release's rule read as module kinds: every conv, and every linear but the time embedding's
    base = UNet2DConditionModel(**unet_config("tiny"))
    expected = {n for n, m in base.named_modules()
                if isinstance(m, nn.Conv2d) or (isinstance(m, nn.Linear) and "time_emb" not in n)}
    assert lora == expected
    assert "conv_in" in lora and "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k" in lora
    assert {m.scaling["default"] for m in d.modules() if isinstance(m, LoraLayer)} == {2.0}
    trainable = {n for n, p in d.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("unet.conv_in.") for n in trainable)
    assert {"unet.conv_in.base_layer.weight", "unet.conv_in.base_layer.bias"} <= trainable


def test_full_size_trainable_count_is_the_released_4_8m():
    with torch.device("meta"):
        d = FeatureDiscriminator(UNet2DConditionModel(**unet_config("sd21")), 256)
    n = sum(p.numel() for p in d.parameters() if p.requires_grad)
    assert abs(n - 4.8e6) / 4.8e6 < 0.01, n  # LoRA 4.06 M + conv_in 256 → 320 (0.74 M)


def test_per_sample_embeddings_condition_each_sample():
    d = _disc()[0].eval()
    width = d.unet.config.cross_attention_dim
    feats = torch.randn(2, 32, 16, 16)
    e = torch.randn(2, 3, width)
    with torch.no_grad():
        a, fixed = d(feats, e), d(feats)
        swapped = d(feats.flip(0), e.flip(0))
    torch.testing.assert_close(swapped, a.flip(0), atol=1e-5, rtol=1e-5)  # each sample reads its own
    assert (a - fixed).abs().max() > 1e-4


class _FixedD(ToyTask):
    fixed_lr = ("d",)


def test_halving_schedules_the_generator_only(tmp_path):
    cfg = load_config(TrainerConfig, {**TOY, "steps": 6, "halve_every": 2, "checkpoint_every": 100, "eval_every": 100})
    tr = Trainer(cfg, tmp_path / "run", _FixedD)
    tr.fit()
    assert tr.opts["g"].param_groups[0]["lr"] == pytest.approx(3e-3 * 0.5 ** 3)
    assert tr.opts["d"].param_groups[0]["lr"] == pytest.approx(1e-3)
    assert DistillTask.fixed_lr == ("disc",)  # stage 2's discriminator keeps disc_lr, as released


def test_losses_match_their_definitions():
    fake, real = torch.tensor([[-2.0, 0.0, 3.0]]), torch.tensor([[1.0, -1.0, 0.5]])
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    assert generator_adv(fake).item() == pytest.approx(sum(sp(-x) for x in (-2.0, 0.0, 3.0)) / 3)
    assert generator_adv(torch.zeros(4)).item() == pytest.approx(math.log(2))
    want = sum(sp(x) for x in (-2.0, 0.0, 3.0)) / 3 + sum(sp(-x) for x in (1.0, -1.0, 0.5)) / 3
    assert discriminator_adv(fake, real).item() == pytest.approx(want)
    # a perfect discriminator's loss goes to 0; the generator it fools pays ~|logit|
    assert discriminator_adv(torch.full((3,), -30.0), torch.full((3,), 30.0)).item() < 1e-10
    assert generator_adv(torch.full((3,), -30.0)).item() == pytest.approx(30.0)
