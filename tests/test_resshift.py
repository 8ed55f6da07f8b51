"""ResShift / TAD-SR at inference: the Swin-UNet in the release's key layout and size (meta device),
its shifted-window mask as the release computes it, the VQGAN-f4 and its LDM-format weights, the
residual-shifting schedule against the release's values, and both teachers at the tiny preset."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from adcsr.core.errors import UserError
from adcsr.core.models import resshift_unet as U
from adcsr.core.models.padding import pad_to_multiple
from adcsr.core.models.resshift_schedule import ResShiftSchedule
from adcsr.core.models.resshift_swin import release_shift_mask
from adcsr.core.models.teachers import get_teacher
from adcsr.core.models.teachers.resshift import ResShiftTeacher, TADSRTeacher
from adcsr.core.models.vqgan_f4 import build_vqgan, load_ldm_vqgan
from adcsr.core.photos import load_photo

torch.set_num_threads(1)


# ---------------------------------------------------------------- the network


def release_unet_keys(cfg: dict) -> dict[str, tuple[int, ...]]:
    """Every state-dict entry the release's `UNetModelSwin(**config)` creates, with its shape, written
    from reading models/unet.py and models/swin_transformer.py of zsyOAOA/ResShift (lq_size ==
    image_size: no feature extractor; conv_resample, no resblock_updown, patch_norm off)."""
    keys: dict[str, tuple[int, ...]] = {}

    def affine(p, c):
        keys[p + ".weight"], keys[p + ".bias"] = (c,), (c,)

    def linear(p, i, o):
        keys[p + ".weight"], keys[p + ".bias"] = (o, i), (o,)

    def conv(p, i, o, k):
        keys[p + ".weight"], keys[p + ".bias"] = (o, i, k, k), (o,)

    mc, emb, embed = cfg["model_channels"], 4 * cfg["model_channels"], cfg["swin_embed_dim"]
    heads, win = embed // cfg["num_head_channels"], cfg["window_size"]

    def resblock(p, i, o):
        affine(p + ".in_layers.0", i)
        conv(p + ".in_layers.2", i, o, 3)
        linear(p + ".emb_layers.1", emb, 2 * o)  # use_scale_shift_norm
        affine(p + ".out_layers.0", o)
        conv(p + ".out_layers.3", o, o, 3)
        if i != o:
            conv(p + ".skip_connection", i, o, 1)

    def basic_layer(p, c, ds):
        conv(p + ".patch_embed.proj", c, embed, 1)
        conv(p + ".patch_unembed.proj", embed, c, 1)
        w = min(win, ds)  # SwinTransformerBlock: window shrinks to the resolution, no shift then
        for b in range(cfg["swin_depth"]):
            q = f"{p}.blocks.{b}"
            affine(q + ".norm1", embed)
            affine(q + ".norm2", embed)
            keys[q + ".attn.relative_position_bias_table"] = ((2 * w - 1) ** 2, heads)
            keys[q + ".attn.relative_position_index"] = (w * w, w * w)
            linear(q + ".attn.qkv", embed, 3 * embed)
            linear(q + ".attn.proj", embed, embed)
            conv(q + ".mlp.fc1", embed, int(embed * cfg["mlp_ratio"]), 1)
            conv(q + ".mlp.fc2", int(embed * cfg["mlp_ratio"]), embed, 1)
            if b % 2 and ds > win:
                keys[q + ".attn_mask"] = ((ds // w) ** 2, w * w, w * w)

    linear("time_embed.0", mc, emb)
    linear("time_embed.2", emb, emb)
    ch = mc * cfg["channel_mult"][0]
    conv("input_blocks.0.0", cfg["in_channels"] + cfg["lq_channels"], ch, 3)
    chans, ds, n = [ch], cfg["image_size"], 1
    levels = len(cfg["channel_mult"])
    for level, mult in enumerate(cfg["channel_mult"]):
        for j in range(cfg["num_res_blocks"]):
            resblock(f"input_blocks.{n}.0", ch, mc * mult)
            ch = mc * mult
            if ds in cfg["attention_resolutions"] and j == 0:
                basic_layer(f"input_blocks.{n}.1", ch, ds)
            chans.append(ch)
            n += 1
        if level != levels - 1:
            conv(f"input_blocks.{n}.0.op", ch, ch, 3)
            chans.append(ch)
            n, ds = n + 1, ds // 2
    resblock("middle_block.0", ch, ch)
    basic_layer("middle_block.1", ch, ds)
    resblock("middle_block.2", ch, ch)
    n = 0
    for level, mult in reversed(list(enumerate(cfg["channel_mult"]))):
        for i in range(cfg["num_res_blocks"] + 1):
            resblock(f"output_blocks.{n}.0", ch + chans.pop(), mc * mult)
            ch, k = mc * mult, 1
            if ds in cfg["attention_resolutions"] and i == 0:
                basic_layer(f"output_blocks.{n}.1", ch, ds)
                k = 2
            if level and i == cfg["num_res_blocks"]:
                conv(f"output_blocks.{n}.{k}.conv", ch, ch, 3)
                ds *= 2
            n += 1
    affine("out.0", ch)
    conv("out.2", ch, cfg["out_channels"], 3)
    return keys


def test_full_unet_has_the_released_size_and_key_layout():
    with torch.device("meta"):
        net = U.ResShiftUNet.from_preset("full")
    n = sum(p.numel() for p in net.parameters())
    assert round(n / 1e6, 2) == 118.59 and n == 118_593_583  # the release's UNetModelSwin, also counted on meta
    got = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    want = release_unet_keys(U.PRESETS["full"])
    assert set(got) == set(want) and got == want and len(got) == 564
    # the shifted blocks of the 64/32/16 levels carry their mask; the 8×8 level (window = resolution) does not
    masks = sorted(k for k in got if k.endswith("attn_mask"))
    assert got["input_blocks.1.1.blocks.1.attn_mask"] == (64, 64, 64) and len(masks) == 6
    assert not any(k.startswith(("middle_block", "input_blocks.10")) for k in masks)
    assert net.size_multiple == 64  # the release pads the LR to its lq_size, 64


def test_tiny_unet_key_layout_and_config_round_trip(tmp_path):
    torch.manual_seed(0)
    net = U.ResShiftUNet.from_preset("tiny").eval()
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == release_unet_keys(U.PRESETS["tiny"])
    net.save_pretrained(tmp_path / "unet")
    again = U.ResShiftUNet.from_pretrained(tmp_path / "unet").eval()
    x, lq, t = torch.randn(1, 3, 16, 16), torch.randn(1, 3, 16, 16), torch.tensor([5])
    with torch.no_grad():
        assert torch.equal(net(x, t, lq), again(x, t, lq))
    with pytest.raises(UserError, match="unknown ResShift UNet preset"):
        U.ResShiftUNet.from_preset("huge")


def release_mask_as_written(h: int, w: int, ws: int, s: int) -> torch.Tensor:
    """SwinTransformerBlock.calculate_mask of the release, step by step as written: the mask image
    is N×1×H×W but indexed `img_mask[:, h, w, :]` (a channels-last habit), and the windows are
    flattened after `.permute(0, 2, 3, 1)`."""
    img = torch.zeros(1, 1, h, w)
    cnt = 0
    slices = (slice(0, -ws), slice(-ws, -s), slice(-s, None))
    for a in slices:
        for b in slices:
            img[:, a, b, :] = cnt
            cnt += 1
    win = img.view(1, 1, h // ws, ws, w // ws, ws).permute(0, 2, 4, 3, 5, 1).reshape(-1, ws, ws, 1)
    win = win.permute(0, 2, 3, 1).reshape(-1, ws * ws)
    m = win[:, None, :] - win[:, :, None]
    return m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0)


def swin_textbook_mask(h: int, w: int, ws: int, s: int) -> torch.Tensor:
    img = torch.zeros(h, w)
    slices = (slice(0, -ws), slice(-ws, -s), slice(-s, None))
    for i, a in enumerate(slices):
        for j, b in enumerate(slices):
            img[a, b] = 3 * i + j
    win = img.view(h // ws, ws, w // ws, ws).permute(0, 2, 1, 3).reshape(-1, ws * ws)
    return (win[:, None, :] != win[:, :, None]).float() * -100.0


@pytest.mark.parametrize("h,w,ws,s", [(8, 8, 4, 2), (16, 24, 8, 4), (64, 64, 8, 4), (32, 16, 4, 2)])
def test_shift_mask_is_the_releases_not_the_textbook_one(h, w, ws, s):
    got = release_shift_mask(h, w, ws, s)
    assert torch.equal(got, release_mask_as_written(h, w, ws, s))
    assert not torch.equal(got, swin_textbook_mask(h, w, ws, s))  # the checkpoints were trained with this one
    assert got[: -(w // ws)].abs().sum() == 0  # only the bottom row of windows is masked


def test_unet_takes_any_size_by_reflect_padding():
    torch.manual_seed(0)
    net = U.ResShiftUNet.from_preset("tiny").eval()
    assert net.size_multiple == 8
    x, lq, t = torch.randn(1, 3, 20, 12), torch.randn(1, 3, 20, 12), torch.tensor([3])
    with torch.no_grad():
        out = net(x, t, lq)
        padded = net(pad_to_multiple(x, 8)[0], t, pad_to_multiple(lq, 8)[0])
    assert out.shape == (1, 3, 20, 12) and torch.equal(out, padded[..., :20, :12])


# ---------------------------------------------------------------- the autoencoder


def to_ldm(state: dict[str, torch.Tensor], levels: int) -> dict[str, torch.Tensor]:
    """diffusers VQModel names → LDM's (ldm/modules/diffusionmodules/model.py of the release),
    written independently of the module's converter."""
    out = {}
    for key, v in state.items():
        if m := re.match(r"(encoder|decoder)\.(down|up)_blocks\.(\d+)\.(.+)", key):
            side, kind, i, rest = m.groups()
            level = int(i) if kind == "down" else levels - 1 - int(i)  # LDM's up[0] is the full-res level
            rest = re.sub(r"^resnets\.(\d+)\.", r"block.\1.", rest).replace("conv_shortcut", "nin_shortcut")
            rest = rest.replace("downsamplers.0.", "downsample.").replace("upsamplers.0.", "upsample.")
            key = f"{side}.{kind}.{level}.{rest}"
        key = key.replace("mid_block.resnets.0.", "mid.block_1.").replace("mid_block.resnets.1.", "mid.block_2.")
        for new, old in (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")):
            key = key.replace(f"mid_block.attentions.0.{new}.", f"mid.attn_1.{old}.")
        key = key.replace("conv_norm_out", "norm_out")
        if ".attn_1." in key and v.dim() == 2:
            v = v[:, :, None, None]  # LDM's attention projections are 1×1 convs
        out[key] = v.clone()
    return out


def test_full_vqgan_size():
    with torch.device("meta"):
        n = sum(p.numel() for p in build_vqgan("full").parameters())
    assert round(n / 1e6, 2) == 55.32 and n == 55_322_782


@pytest.fixture(scope="module")
def vq():
    torch.manual_seed(0)
    model = build_vqgan("tiny").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
        model.quantize.embedding.weight.normal_()
    return model


def test_ldm_checkpoint_converts_to_the_same_autoencoder(vq, tmp_path):
    ldm = to_ldm(vq.state_dict(), levels=3)
    assert ldm["encoder.mid.attn_1.q.weight"].shape == (32, 32, 1, 1)
    assert {"encoder.down.0.block.0.norm1.weight", "decoder.up.0.block.1.conv2.weight", "decoder.up.2.upsample.conv.bias",
            "encoder.down.1.block.0.nin_shortcut.weight", "quantize.embedding.weight", "post_quant_conv.weight",
            "encoder.norm_out.weight", "decoder.mid.block_2.conv1.weight"} <= set(ldm)
    torch.save({"state_dict": {"module." + k: v for k, v in ldm.items()}}, tmp_path / "vq.pth")
    loaded = load_ldm_vqgan(tmp_path / "vq.pth", "tiny")
    x = load_photo("chelsea")[None, :, 100:164, 150:214] * 2 - 1
    with torch.no_grad():
        z = vq.encode(x).latents
        assert torch.equal(loaded.encode(x).latents, z)
        assert torch.equal(loaded.decode(z).sample, vq.decode(z).sample)
        # decode quantises, as the release's VQModelTorch.decode does
        assert not torch.equal(vq.decode(z).sample, vq.decode(z, force_not_quantize=True).sample)


def test_vqgan_files_that_do_not_fit_are_one_line_errors(vq, tmp_path):
    ldm = to_ldm(vq.state_dict(), levels=3)
    cases = {
        "missing encoder.mid_block.attentions.0.to_q.weight": {k: v for k, v in ldm.items() if k != "encoder.mid.attn_1.q.weight"},
        "unexpected encoder.extra.weight": {**ldm, "encoder.extra.weight": torch.zeros(1)},
        "quant_conv.weight has shape": {**ldm, "quant_conv.weight": torch.zeros(3, 3, 3, 3)},
    }
    for message, state in cases.items():
        torch.save(state, tmp_path / "bad.pth")
        with pytest.raises(UserError, match=re.escape(message)) as e:
            load_ldm_vqgan(tmp_path / "bad.pth", "tiny")
        assert "\n" not in str(e.value)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read VQGAN autoencoder checkpoint"):
        load_ldm_vqgan(tmp_path / "junk.pth", "tiny")
    with pytest.raises(UserError, match="not found"):
        load_ldm_vqgan(tmp_path / "absent.pth", "tiny")


# ---------------------------------------------------------------- the schedule


def test_schedule_matches_the_release():
    s = ResShiftSchedule()
    assert s.steps == 15 and s.kappa == 2.0
    # endpoints: √η_T = etas_end; min_noise_level 0.04 is κ√η_1, so √η_1 = min(0.04/κ, 0.04) = 0.02
    assert s.sqrt_etas[-1].item() == pytest.approx(0.99, abs=1e-15)
    assert s.sqrt_etas[0].item() == 0.02 and s.kappa * s.sqrt_etas[0].item() == pytest.approx(0.04, abs=1e-15)
    # re-derived: √η_t geometric from √η_1 to √η_T in ((t−1)/(T−1))^p
    i = torch.arange(15, dtype=torch.float64)
    torch.testing.assert_close(s.sqrt_etas, 0.02 * (0.99 / 0.02) ** ((i / 14) ** 0.3), atol=1e-14, rtol=0)
    # printed by the release's own get_named_eta_schedule("exponential", 15, min_noise_level=0.04,
    # etas_end=0.99, kappa=2.0, kwargs={"power": 0.3}) (models/gaussian_diffusion.py)
    released = {1: 0.11716508229842353, 4: 0.2915741277643212, 7: 0.4758577309189876, 13: 0.908606387785769}
    for k, v in released.items():
        assert s.sqrt_etas[k].item() == pytest.approx(v, abs=1e-15)
    assert bool((s.sqrt_etas.diff() > 0).all())


def test_q_sample_prior_and_input_scale():
    s = ResShiftSchedule()
    g = torch.Generator().manual_seed(0)
    x0, y, noise = (torch.randn(3, 3, 4, 4, generator=g) for _ in range(3))
    t = torch.tensor([0, 7, 14])
    eta = s.sqrt_etas[t].float().view(3, 1, 1, 1) ** 2
    torch.testing.assert_close(s.q_sample(x0, y, t, noise), x0 + eta * (y - x0) + 2.0 * eta.sqrt() * noise)
    torch.testing.assert_close(s.prior_sample(y, noise), y + 2.0 * 0.99 * noise)
    torch.testing.assert_close(s.q_sample(y, y, torch.full((3,), 14), noise), s.prior_sample(y, noise))
    torch.testing.assert_close(s.input_scale(t, x0).flatten(), 1 / torch.sqrt(eta.flatten() * 4 + 1))


def test_posterior_is_the_gaussian_conditional_of_the_forward_chain():
    """x_{t−1} ~ N(x0 + η_{t−1}(y − x0), κ²η_{t−1}) and x_t = x_{t−1} + (η_t − η_{t−1})(y − x0) + noise
    of variance κ²(η_t − η_{t−1}): condition x_{t−1} on x_t (y enters the mean, then cancels)."""
    s = ResShiftSchedule()
    g = torch.Generator().manual_seed(1)
    x0, y, x_t = (torch.randn(1, 3, 4, 4, generator=g, dtype=torch.float64) for _ in range(3))
    for t in (1, 6, 14):
        e, ep = s.etas[t].item(), s.etas[t - 1].item()
        m_prev, m_t = x0 + ep * (y - x0), x0 + e * (y - x0)
        want_mean = m_prev + (ep / e) * (x_t - m_t)  # Cov/Var = κ²η_{t−1} / κ²η_t
        want_var = 4.0 * ep - (4.0 * ep) ** 2 / (4.0 * e)
        mean, var, log_var = s.posterior(x0.float(), x_t.float(), torch.tensor([t]))
        torch.testing.assert_close(mean.double(), want_mean, atol=1e-6, rtol=0)
        assert var.item() == pytest.approx(want_var, rel=1e-6) and log_var.item() == pytest.approx(math.log(want_var), rel=1e-6)
    mean, var, log_var = s.posterior(x0.float(), x_t.float(), torch.tensor([0]))
    assert torch.equal(mean, x0.float()) and var.item() == 0  # the last step returns x̂0 itself
    assert log_var.item() == s.posterior(x0.float(), x_t.float(), torch.tensor([1]))[2].item()  # clipped as released


# ---------------------------------------------------------------- the teachers


@pytest.fixture(scope="module")
def nets(vq):
    torch.manual_seed(1)
    unet = U.ResShiftUNet.from_preset("tiny").eval()
    with torch.no_grad():
        for p in unet.parameters():  # the zero-initialised convs too, so every path carries signal
            p.add_(torch.randn_like(p) * 0.05)
    return unet, vq


@pytest.fixture(scope="module")
def lr():
    return F.interpolate(load_photo("chelsea")[None, :, 100:228, 150:278], size=(32, 32), mode="area")


def test_both_teachers_upscale_a_32px_lr_deterministically(lr):
    for name, steps in (("resshift", 15), ("tadsr", 1)):
        teacher = get_teacher(name, preset="tiny", seed=3)
        sr = teacher.upscale(lr)
        assert sr.shape == (1, 3, 128, 128) and sr.dtype == torch.float32 and 0 <= sr.min() and sr.max() <= 1
        assert sr.std() > 0.01  # not a constant image
        assert torch.equal(teacher.upscale(lr), sr)  # the seed fixes the noise
        assert not torch.equal(get_teacher(name, preset="tiny", seed=3).upscale(lr.flip(-1)), sr)
        d = teacher.describe()
        assert d["name"] == name and d["steps"] == steps and d["seed"] == 3 and teacher.default_color_fix == "none"


def test_the_sampler_is_deterministic_for_a_seed_and_ends_on_its_last_x0(nets, lr):
    class Recording(ResShiftTeacher):
        def predict_x0(self, x_t, lq, t):
            out = super().predict_x0(x_t, lq, t)
            self.calls.append((t, x_t, out))
            return out

    teacher = Recording(*nets, {}, seed=5)
    teacher.calls = []
    sr = teacher(lr)
    ts = [t for t, _, _ in teacher.calls]
    assert ts == list(range(14, -1, -1))  # T = 15 network calls, t = T−1 … 0
    assert torch.equal(sr, teacher.decode(teacher.calls[-1][2]))  # q(x_{-1}|x_0, x̂0) has mean x̂0, no noise
    # replay the seeded noise: x_T = y + κ√η_T ε, then x_{t−1} = posterior mean + σ_t ε_t (t ≥ 1)
    g = torch.Generator().manual_seed(5)
    y, _ = teacher.lr_latent(lr)
    torch.testing.assert_close(teacher.calls[0][1], y + 1.98 * torch.randn(y.shape, generator=g))
    s = teacher.schedule
    for (t, x_t, x0), (_, x_next, _) in zip(teacher.calls, teacher.calls[1:]):
        mean = (s.etas[t - 1] / s.etas[t]).item() * x_t + (1 - (s.etas[t - 1] / s.etas[t]).item()) * x0
        sigma = math.sqrt(4.0 * (s.etas[t - 1] * (s.etas[t] - s.etas[t - 1]) / s.etas[t]).item())
        torch.testing.assert_close(x_next, mean + sigma * torch.randn(y.shape, generator=g), atol=1e-5, rtol=0)
    first = teacher.calls[0][2]
    assert not torch.allclose(first, teacher.calls[-1][2], atol=1e-3)  # the 14 further steps change the latent
    calls = teacher.calls
    teacher.calls = []
    assert torch.equal(teacher(lr), sr)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(calls, teacher.calls))
    other = ResShiftTeacher(*nets, {}, seed=6)(lr)
    assert not torch.allclose(other, sr, atol=1e-3)


def test_tadsr_is_one_step_of_the_sampler(nets, lr):
    unet, vq = nets
    tadsr = TADSRTeacher(unet, vq, {}, seed=5)
    # by hand: x_T = y + κ√η_T ε with the seeded generator, x̂0 = net(x_T / √(η_T κ² + 1), T−1, LR in [-1, 1])
    with torch.no_grad():
        lq = lr * 2 - 1
        y = vq.encode(F.interpolate(lq, scale_factor=4, mode="bicubic")).latents
        eps = torch.randn(y.shape, generator=torch.Generator().manual_seed(5))
        x_t = y + 2.0 * 0.99 * eps
        x0 = unet(x_t / math.sqrt(0.99**2 * 4 + 1), torch.tensor([14]), lq)
        want = (vq.decode(x0).sample.clamp(-1, 1) + 1) / 2
    got = tadsr(lr)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)

    class FirstStep(ResShiftTeacher):
        def predict_x0(self, x_t, lq, t):
            out = super().predict_x0(x_t, lq, t)
            if t == 14:
                self.first = out
            return out

    sampler = FirstStep(unet, vq, {}, seed=5)
    sampler(lr)
    assert torch.equal(tadsr.decode(sampler.first), got)  # TAD-SR = the sampler's first x0 prediction


def test_the_network_input_is_scaled(nets, lr):
    unet, vq = nets
    teacher = TADSRTeacher(unet, vq, {}, seed=0)
    _, lq = teacher.lr_latent(lr)
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2
    with torch.no_grad():
        for t in (0, 9, 14):
            eta = (0.02 * (0.99 / 0.02) ** ((t / 14) ** 0.3)) ** 2
            right = unet(x / math.sqrt(eta * 4 + 1), torch.tensor([t]), lq)
            unscaled = unet(x, torch.tensor([t]), lq)
            got = teacher.predict_x0(x, lq, t)
            torch.testing.assert_close(got, right, atol=2e-5, rtol=0)  # float32 vs float64 scale
            if t:  # at t = 0 the scale is 1/√1.0016 (η_1 = 0.0004), nearly 1
                assert (got - unscaled).abs().max() > 0.05


def test_released_checkpoints_load(nets, lr, tmp_path):
    unet, vq = nets
    state = unet.state_dict()
    # a training checkpoint (under state_dict, DDP names) and a bare EMA state dict (compiled names)
    torch.save({"iters_start": 30000, "state_dict": {"module." + k: v for k, v in state.items()}}, tmp_path / "ckpt.pth")
    torch.save({"_orig_mod." + k: v for k, v in state.items()}, tmp_path / "ema.pth")
    torch.save(to_ldm(vq.state_dict(), levels=3), tmp_path / "vq.pth")
    want = TADSRTeacher(unet, vq, {}, seed=4).upscale(lr)
    for ckpt in ("ckpt.pth", "ema.pth"):
        t = get_teacher("tadsr", preset="tiny", checkpoint=str(tmp_path / ckpt), autoencoder=str(tmp_path / "vq.pth"),
                        seed="4")
        assert torch.equal(t.upscale(lr), want) and t.describe()["checkpoint"].endswith(ckpt)
    broken = {k: v for k, v in state.items() if "attn_mask" not in k}
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(UserError, match=r"missing input_blocks\.1\.1\.blocks\.1\.attn_mask") as e:
        get_teacher("resshift", preset="tiny", checkpoint=str(tmp_path / "broken.pth"), autoencoder=str(tmp_path / "vq.pth"))
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="needs both checkpoint"):
        get_teacher("resshift", preset="tiny", checkpoint=str(tmp_path / "ckpt.pth"))


def test_a_trained_tadsr_folder_is_a_checkpoint_too(nets, lr, tmp_path):
    """`adcsr train tadsr` saves a `save_pretrained` folder: it runs as the teacher's checkpoint."""
    unet, vq = nets
    unet.save_pretrained(tmp_path / "tadsr")
    torch.save(to_ldm(vq.state_dict(), levels=3), tmp_path / "vq.pth")
    t = get_teacher("tadsr", preset="tiny", checkpoint=str(tmp_path / "tadsr"), autoencoder=str(tmp_path / "vq.pth"))
    # equal weights; not bit-equal outputs: the loaded tensors sit unaligned, so other kernels run
    torch.testing.assert_close(t.upscale(lr), TADSRTeacher(unet, vq, {}).upscale(lr), atol=1e-5, rtol=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="cannot load the ResShift UNet folder from"):
        get_teacher("tadsr", preset="tiny", checkpoint=str(tmp_path / "empty"), autoencoder=str(tmp_path / "vq.pth"))
    with pytest.raises(UserError, match="seed must be an integer, got 'x'"):
        get_teacher("resshift", preset="tiny", seed="x")


def test_targets_are_the_padded_srs_features(nets):
    from diffusers import AutoencoderKL

    from adcsr.core.models.feature_space import FeatureSpace
    from adcsr.core.models.sd_configs import vae_config
    from adcsr.core.models.student import AdcSRStudent
    from adcsr.core.models.vae_decoder import PrunedVAEDecoder

    teacher = TADSRTeacher(*nets, {}, seed=0)
    torch.manual_seed(0)
    student = AdcSRStudent.from_preset("tiny").eval()
    space = FeatureSpace(AutoencoderKL(**vae_config("tiny")), PrunedVAEDecoder.from_preset("tiny"))
    odd = load_photo("grace_hopper")[None, :, 200:220, 200:228]
    with torch.no_grad():
        sr, feats = teacher.targets(odd, space, student.size_multiple)
        assert feats.shape == student.features(odd).shape and sr.shape == (1, 3, 80, 112)
        padded, _ = pad_to_multiple(odd, student.size_multiple)
        full = teacher.upscale(padded)
        assert torch.equal(sr, full[..., :80, :112])
        torch.testing.assert_close(feats, space.from_image(full), atol=1e-5, rtol=0)
