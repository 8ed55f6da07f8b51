"""FeatureSpace and PrunedVAEDecoder: the released stage-2 feature path, frozen, at 1/8 size."""

from __future__ import annotations

import pytest
import torch
from diffusers import AutoencoderKL

from adcsr.core.errors import UserError
from adcsr.core.models.feature_space import FeatureSpace
from adcsr.core.models.sd_configs import vae_config
from adcsr.core.models.vae_decoder import PrunedVAEDecoder

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    return AutoencoderKL(**vae_config("tiny")).eval(), PrunedVAEDecoder.from_preset("tiny").eval()


def test_presets():
    with torch.device("meta"):
        d = PrunedVAEDecoder.from_preset("sd21")
    assert tuple(d.config.block_out_channels) == (64, 128, 256, 256) and d.feature_channels == 256
    assert d.decoder.mid_block.attentions[0].heads == 1
    assert tuple(PrunedVAEDecoder.from_preset("tiny").config.block_out_channels) == (16, 32, 32, 32)
    with pytest.raises(UserError):
        PrunedVAEDecoder(block_out_channels=(20, 32), norm_num_groups=8)


def test_decoder_maps_scaled_latents_to_unit_images(parts):
    _, dec = parts
    z = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        img = dec(z)
        raw = dec.decode_features(dec.mid_features(z))
    assert img.shape == (2, 3, 64, 64) and img.min() >= 0 and img.max() <= 1
    torch.testing.assert_close(img, ((raw + 1) / 2).clamp(0, 1))
    dec.train()
    try:
        with torch.no_grad():
            torch.testing.assert_close(dec(z), (raw + 1) / 2)  # no clamp in training: gradients survive
    finally:
        dec.eval()


def test_feature_path_is_the_released_one(parts):
    vae, dec = parts
    fs = FeatureSpace(vae, dec)
    img = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        z = fs.encode(img)
        ref_z = vae.encode(img * 2 - 1).latent_dist.mean * vae.config.scaling_factor
        torch.testing.assert_close(z, ref_z)
        f = fs.from_image(img)
        x = dec.post_quant_conv(z / dec.config.scaling_factor)
        ref = dec.decoder.mid_block(dec.decoder.conv_in(x), None)
    torch.testing.assert_close(f, ref)
    assert f.shape == (2, fs.channels, 4, 6) and fs.channels == 32  # 1/8 of the image
    assert not any(p.requires_grad for p in fs.parameters())
    fs.train()
    assert not fs.training and not fs.decoder.training
    with pytest.raises(UserError):
        fs.encode(torch.rand(1, 3, 30, 32))


def test_decoder_save_load(parts, tmp_path):
    _, dec = parts
    dec.save_pretrained(tmp_path / "d")
    back = PrunedVAEDecoder.from_pretrained(tmp_path / "d").eval()
    z = torch.randn(1, 4, 4, 4)
    with torch.no_grad():
        assert torch.equal(back(z), dec(z))
    with pytest.raises(UserError, match="cannot load the decoder"):
        PrunedVAEDecoder.from_pretrained(tmp_path / "nothing")


def test_latent_only_space(parts):
    _, dec = parts
    fs = FeatureSpace(None, dec)
    z = torch.randn(1, 4, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(fs.from_latent(z), dec.mid_features(z))
    with pytest.raises(UserError):
        fs.encode(torch.rand(1, 3, 32, 32))
