"""AdcSR student: padding, full-size counts (meta device), any-size forward, features/decode split,
decoder initialisation, save/load."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from adcsr.core.errors import UserError
from adcsr.core.models.macs import count_macs, count_params, macs_breakdown
from adcsr.core.models.padding import crop_to, pad_to_multiple
from adcsr.core.models.student import AdcSRStudent
from adcsr.core.models.student_unet import SelfAttnTransformer
from adcsr.core.models.vae_decoder import PrunedVAEDecoder

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return AdcSRStudent.from_preset("tiny").eval()


def test_pad_reflects_beyond_the_image_size_and_crops_back():
    x = torch.rand(1, 3, 17, 31)
    y, size = pad_to_multiple(x, 16)
    assert y.shape[-2:] == (32, 32) and size == (17, 31)
    assert torch.equal(y[..., :17, :31], x)
    assert torch.equal(y[..., 17, :31], x[..., 15, :])  # reflection, not zeros or edge repeat
    assert torch.equal(y[..., :17, 31], x[..., :, 29])
    assert torch.equal(crop_to(F.interpolate(y, scale_factor=4), size, 4), F.interpolate(y, scale_factor=4)[..., :68, :124])
    y1, _ = pad_to_multiple(torch.rand(1, 1, 1, 5), 16)  # a 1-pixel side cannot reflect: replicated
    assert y1.shape[-2:] == (16, 16) and torch.equal(y1[..., 7, :5], y1[..., 0, :5])
    same, _ = pad_to_multiple(torch.rand(1, 3, 32, 16), 16)
    assert same.shape[-2:] == (32, 16)
    with pytest.raises(UserError):
        pad_to_multiple(torch.rand(3, 8, 8), 16)


def test_sd21_counts_match_the_release():
    with torch.device("meta"):
        s = AdcSRStudent.from_preset("sd21")
        lr = torch.empty(1, 3, 128, 128)
    assert abs(count_params(s) - 456.07e6) / 456.07e6 < 0.002
    assert abs(count_params(s.decoder.mid_block) - 2.63e6) < 0.01e6
    assert abs(count_params(s.unet) + count_params(s.link) - 443.70e6) < 0.01e6
    b = macs_breakdown(s, lr)
    # the published ≈495 GMACs is convs + linear layers (module-hook counters skip QK^T and AV)
    assert abs(count_macs(s, lr, attention=False) - 495e9) / 495e9 < 0.03
    # attention matmuls: QK^T and AV, 2·T²·inner each transformer / the decoder's one-head mid attention
    C, n = [240, 480, 960, 960], 64 * 64
    tokens = {c: n // 4 ** i for i, c in enumerate(C[:3])}
    expected = sum((2 + 3) * 2 * tokens[c] ** 2 * c for c in C[:3]) + 2 * (n // 64) ** 2 * 960 + 2 * n**2 * 256
    assert b["attention"] == expected
    assert count_macs(s, lr) == b["conv"] + b["linear"] + b["attention"]


def test_tiny_preset_same_topology_small():
    with torch.device("meta"):
        big, small = AdcSRStudent.from_preset("sd21"), AdcSRStudent.from_preset("tiny")
    assert count_params(small) <= 5e6
    kinds = lambda m: [type(x).__name__ for x in m.modules()]  # noqa: E731
    assert kinds(big.unet) == kinds(small.unet)
    # decoder: same blocks; only where a 1x1 shortcut sits differs (tiny VAE widths 1/2/2/2, SD 1/2/4/4)
    shape = lambda d: [len(b.resnets) for b in d.up_blocks] + [len(d.mid_block.attentions)]  # noqa: E731
    assert shape(big.decoder) == shape(small.decoder)
    assert sum(isinstance(x, SelfAttnTransformer) for x in small.modules()) == 16
    for blk in small.modules():
        if hasattr(blk, "attn2"):
            assert blk.attn2 is None and blk.norm2 is None  # no cross-attention
        if hasattr(blk, "time_emb_proj"):
            assert blk.time_emb_proj is None
    with pytest.raises(UserError):
        AdcSRStudent.from_preset("huge")


@pytest.mark.parametrize("hw", [(64, 64), (96, 96), (17, 31), (40, 24)])
def test_any_lr_size_is_padded_inside(tiny, hw):
    lr = torch.rand(1, 3, *hw)
    with torch.no_grad():
        sr = tiny(lr)
        padded, _ = pad_to_multiple(lr, tiny.size_multiple)
        ref = tiny(padded)[..., : 4 * hw[0], : 4 * hw[1]]
    assert sr.shape == (1, 3, 4 * hw[0], 4 * hw[1])
    assert torch.isfinite(sr).all() and sr.min() >= 0 and sr.max() <= 1
    torch.testing.assert_close(sr, ref, atol=1e-5, rtol=0)  # = reflect pad, run, crop


def test_features_then_decode_is_forward(tiny):
    lr = torch.rand(2, 3, 20, 36)
    with torch.no_grad():
        f = tiny.features(lr)
        assert f.shape == (2, tiny.feature_channels, 16, 24)  # (padded LR)/2
        torch.testing.assert_close(tiny.decode(f, lr), tiny(lr))
        # the batch is independent per image
        torch.testing.assert_close(tiny.features(lr[1:]), f[1:], atol=1e-5, rtol=0)
    with pytest.raises(UserError):
        tiny.features(torch.rand(1, 4, 16, 16))


def test_stage2_parameters_and_decoder_init(tiny):
    ids = {id(p) for p in tiny.stage2_parameters()}
    assert all(id(p) in ids for p in tiny.unet.parameters())
    assert all(id(p) in ids for p in tiny.decoder.mid_block.parameters())
    assert all(id(p) not in ids for p in tiny.decoder.up_blocks.parameters())
    assert all(id(p) not in ids for p in tiny.decoder.conv_out.parameters())
    torch.manual_seed(1)
    dec = PrunedVAEDecoder.from_preset("tiny")
    s = AdcSRStudent.from_preset("tiny")
    s.init_decoder_from(dec)
    for name, p in s.decoder.state_dict().items():
        assert torch.equal(p, dec.decoder.state_dict()[name])
    # the student's decode(mid features) is the decoder's own up path
    m = torch.rand(1, dec.feature_channels, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(s.eval().decode(m, torch.rand(1, 3, 16, 16)), dec.eval().decode_features(m).add(1).div(2).clamp(0, 1))
    with pytest.raises(UserError):
        s.init_decoder_from(PrunedVAEDecoder.from_preset("tiny", ratio=0.0))


def test_save_load_round_trip_and_mismatched_weights(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "s")
    back = AdcSRStudent.from_pretrained(tmp_path / "s").eval()
    lr = torch.rand(1, 3, 24, 40)
    with torch.no_grad():
        assert torch.equal(back(lr), tiny(lr))
    cfg = json.loads((tmp_path / "s" / "config.json").read_text())
    cfg["block_out_channels"] = [16, 48, 96, 96]
    (tmp_path / "s" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="cannot load the student"):
        AdcSRStudent.from_pretrained(tmp_path / "s")
    with pytest.raises(UserError):
        AdcSRStudent.from_pretrained(tmp_path / "missing")


def test_zero_residual_branches_makes_every_block_start_as_identity():
    from diffusers.models.resnet import ResnetBlock2D

    from adcsr.core.models.identity_init import zero_residual_branches

    unet = AdcSRStudent.from_preset("tiny").unet
    resnets = [m for m in unet.modules() if isinstance(m, ResnetBlock2D)]
    attentions = [m for m in unet.modules() if isinstance(m, SelfAttnTransformer)]
    assert zero_residual_branches(unet) >= len(resnets) + len(attentions) > 0
    torch.manual_seed(0)
    for block in resnets:
        x = torch.randn(1, block.in_channels, 4, 4)
        skip = block.conv_shortcut(x) if block.conv_shortcut is not None else x
        assert torch.equal(block(x, None), skip / block.output_scale_factor)
    for block in attentions:
        x = torch.randn(1, block.norm.num_channels, 4, 4)
        assert torch.equal(block(x), x)
    # the UNet still learns: its zeroed layers get gradients at once
    out = unet(torch.randn(1, 12, 16, 16))
    out.square().mean().backward()
    assert all(b.conv2.weight.grad.abs().sum() > 0 for b in resnets)


def test_lr_skip_starts_as_bicubic_and_learns_the_residual(tmp_path):
    torch.manual_seed(0)
    plain = AdcSRStudent.from_preset("tiny")
    skip = plain.with_lr_skip()
    assert skip.config.lr_skip and not plain.config.lr_skip
    for lr in (torch.rand(2, 3, 20, 36), torch.rand(1, 3, 16, 16)):
        with torch.no_grad():
            out = skip.eval()(lr)
        ref = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False)
        torch.testing.assert_close(out, ref.clamp(0, 1), atol=1e-6, rtol=0)
    # same weights but the output conv: the UNet and decoder body carry over
    assert set(plain.state_dict()) == set(skip.state_dict())  # the fixed filters are not saved
    for name, p in plain.state_dict().items():
        if not name.startswith("decoder.conv_out"):
            assert torch.equal(p, skip.state_dict()[name]), name
    # the residual path learns at once: the zeroed output conv gets a gradient
    skip.train()
    skip(lr).sub(torch.rand(1, 3, 64, 64)).abs().mean().backward()
    assert skip.decoder.conv_out.weight.grad.abs().sum() > 0
    skip.save_pretrained(tmp_path / "s")
    assert AdcSRStudent.from_pretrained(tmp_path / "s").config.lr_skip


def test_bicubic_upsample_equals_torch_bicubic_at_every_scale_and_edge():
    import torch.nn.functional as F

    from adcsr.core.models.lr_upsample import BicubicUpsample

    for scale in (2, 4):
        for shape in ((1, 3, 2, 3), (2, 3, 13, 21)):
            x = torch.rand(*shape)
            ref = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
            torch.testing.assert_close(BicubicUpsample(3, scale)(x), ref, atol=1e-6, rtol=0)


def test_macs_are_counted_without_running_the_model_and_fall_back_when_an_op_needs_data():
    """A CPU module is counted on a meta copy (its weights untouched); a forward that reads data
    (`.item()` has no meta kernel) is counted by a real run, to the same figure."""
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    before = conv.weight.detach().clone()

    class ReadsData(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x):
            return self.conv(x) * (1.0 if x.mean().item() >= 0 else -1.0)

    x = torch.rand(1, 3, 16, 16)
    expected = 16 * 16 * 8 * 3 * 3 * 3
    assert count_macs(conv, x) == expected and conv.weight.device.type == "cpu"
    assert torch.equal(conv.weight, before)
    assert count_macs(ReadsData(), x) == expected
