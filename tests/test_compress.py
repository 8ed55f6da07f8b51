"""Structural compression: tiny SD teacher → student (each criterion), the release's slicing for
`release`, coupled groups for `first`,
whole heads / aligned GEGLU halves / valid GroupNorms, lossless removal of dead channels, the CLI
and the params/MACs report."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers.models.attention_processor import Attention
from diffusers.models.activations import GEGLU

from adcsr.cli import main as cli_main
from adcsr.compress.accounting import compression_report
from adcsr.compress.from_teacher import Ratios, from_teacher
from adcsr.compress.groups import Walker
from adcsr.compress.prune import prune
from adcsr.compress.sd_teacher import load_teacher
from adcsr.core.errors import UserError
from adcsr.core.models.macs import count_macs, count_params
from adcsr.core.models.student import AdcSRStudent
from adcsr.core.models.student_unet import SelfAttnTransformer
from adcsr.core.photos import hr_crops

torch.set_num_threads(1)
_CACHE: dict = {}


@pytest.fixture(scope="module")
def teacher():
    return load_teacher("tiny", seed=0)


def compressed(teacher, criterion):
    if criterion not in _CACHE:
        calib = hr_crops("train", 64, 2, seed=0) if criterion == "taylor" else None  # real photos
        _CACHE[criterion] = from_teacher(*teacher, Ratios(), criterion, calib)
    return _CACHE[criterion]


def _release_cut(t: torch.Tensor, ratio: float, fixed: dict[int, int]) -> torch.Tensor:
    """The release's rule written from FACTS §1: the leading (1 − ratio) of every channel axis
    (dims 0 and 1; a conv kernel's spatial dims are never cut), axes in `fixed` kept at that size."""
    n = [fixed.get(d, int(t.shape[d] * (1 - ratio))) if d < 2 else t.shape[d] for d in range(t.dim())]
    return t[tuple(slice(0, k) for k in n)]


def test_release_cuts_every_tensor_to_its_leading_block(teacher):
    unet, vae = teacher
    st, dec = compressed(teacher, "release")
    public = lambda m: {k: v for k, v in json.loads(m.to_json_string()).items() if not k.startswith("_")}  # noqa: E731
    assert public(AdcSRStudent.from_preset("tiny")) == public(st)  # the tiny preset is this student
    t, s = unet.state_dict(), st.unet.state_dict()
    # conv_in: the teacher's 4-channel kernel repeated over the 12 unshuffled channels, then cut
    torch.testing.assert_close(s.pop("conv_in.weight"), t["conv_in.weight"][:24].repeat(1, 3, 1, 1), rtol=0, atol=0)
    for k, v in s.items():  # every other UNet tensor, heads, GEGLU halves and skip concatenations included
        torch.testing.assert_close(v, _release_cut(t[k], 0.25, {}), rtol=0, atol=0, msg=k)
    assert len(s) > 500
    # link = the teacher's conv_out repeated over the decoder's 64 mid channels, leading 32 × 24 kept
    torch.testing.assert_close(st.link.weight, unet.conv_out.weight[torch.arange(32) % 4][:, :24], rtol=0, atol=0)
    # decoder: the leading half of every VAE decoder tensor (its 4 latent / 3 RGB axes kept)
    d, vd = dec.decoder.state_dict(), vae.decoder.state_dict()
    for k, v in d.items():
        fixed = {1: 4} if k.startswith("conv_in.") else {0: 3} if k.startswith("conv_out.") else {}
        torch.testing.assert_close(v, _release_cut(vd[k], 0.5, fixed), rtol=0, atol=0, msg=k)
    for k, v in st.decoder.state_dict().items():
        assert torch.equal(v, d[k])
    # heads stay as many as the teacher's; each has 3/4 of its dims (a flat cut, so heads mix)
    th = {n[: -len(".transformer_blocks.0.attn1")]: (a.heads, a.inner_dim // a.heads * 3 // 4)
          for n, a in unet.named_modules() if n.endswith("attn1")}
    sh = {n: (b.heads, b.head_dim) for n, b in st.unet.named_modules() if isinstance(b, SelfAttnTransformer)}
    assert sh == th and len(sh) == 16


def test_first_keeps_heads_geglu_halves_and_skip_parts_aligned(teacher):
    """`first` is not the release's cut: it differs exactly where channels are coupled."""
    unet, _ = teacher
    t = unet.state_dict()
    s = compressed(teacher, "first")[0].unet.state_dict()
    r = compressed(teacher, "release")[0].unet.state_dict()
    differ = {k for k in s if not torch.equal(s[k], r[k])}
    coupled = ("to_q.", "to_k.", "to_v.", "to_out.", "ff.net.0.")
    skip_input = lambda k: k.startswith("up_blocks.") and (".norm1." in k or ".conv1." in k or ".conv_shortcut." in k)  # noqa: E731
    assert differ and all(any(x in k for x in coupled) or skip_input(k) for k in differ)
    # an up resnet reads cat([x, skip]): the first 96 of each 128-channel half
    idx = torch.cat([torch.arange(96), 128 + torch.arange(96)])
    k = "up_blocks.1.resnets.0.conv1.weight"
    torch.testing.assert_close(s[k], t[k][:96][:, idx])
    # attention: the first dims of every head (level 0 has 2 heads of 16 → 12)
    k = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"
    torch.testing.assert_close(s[k], t[k][torch.cat([torch.arange(12), 16 + torch.arange(12)])][:, :24])
    # GEGLU: the first channels of the value half and of the gate half
    k = "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight"
    torch.testing.assert_close(s[k], t[k][torch.cat([torch.arange(96), 128 + torch.arange(96)])][:, :24])


@pytest.mark.parametrize("criterion", ["release", "first", "magnitude", "taylor"])
def test_pruned_structure_is_consistent_and_runs(teacher, criterion):
    st, dec = compressed(teacher, criterion)
    attns = [m for m in st.modules() if isinstance(m, Attention)]
    assert len(attns) == 16 + 1  # 16 UNet transformer blocks + the decoder's mid attention
    for a in attns:
        hd = a.to_q.out_features // a.heads
        assert a.heads * hd == a.inner_dim == a.to_k.out_features == a.to_v.out_features == a.to_out[0].in_features
    for blk in st.modules():
        if isinstance(blk, SelfAttnTransformer):
            assert blk.heads * blk.head_dim == blk.inner_dim == blk.proj_in.out_features
            assert blk.transformer_blocks[0].attn1.heads == blk.heads
    for g in [m for m in st.modules() if isinstance(m, GEGLU)]:
        assert g.proj.out_features % 2 == 0
    for n in [m for m in st.modules() if isinstance(m, torch.nn.GroupNorm)]:
        assert n.num_channels % n.num_groups == 0 and n.weight.numel() == n.num_channels
    sizes = [(64, 64), (17, 31)] + ([(96, 96), (120, 120), (200, 136)] if criterion == "magnitude" else [])
    with torch.no_grad():
        for h, w in sizes:
            y = st(torch.rand(1, 3, h, w))
            assert y.shape == (1, 3, 4 * h, 4 * w) and torch.isfinite(y).all()


def test_criteria_choose_different_channels(teacher):
    a = compressed(teacher, "first")[0].state_dict()
    b = compressed(teacher, "magnitude")[0].state_dict()
    c = compressed(teacher, "taylor")[0].state_dict()
    k = "unet.down_blocks.1.resnets.1.conv1.weight"
    assert not torch.equal(a[k], b[k]) and not torch.equal(b[k], c[k])


def _boosted_transformer():
    torch.manual_seed(0)
    m = SelfAttnTransformer(32, heads=2, head_dim=16, ff_inner=64, groups=8, upcast=False).eval()
    blk = m.transformer_blocks[0]
    with torch.no_grad():
        # dead channels: removing them must not change the output if the bookkeeping is right
        dead_ff = torch.tensor([1, 5, 9, 40])
        for half in (0, 64):  # value and gate rows of the same channels
            blk.ff.net[0].proj.weight[half + dead_ff] = 0
            blk.ff.net[0].proj.bias[half + dead_ff] = 0
        blk.ff.net[2].weight[:, dead_ff] = 0
        dead_dims = torch.tensor([3, 7, 16 + 2, 16 + 11])  # two dims in each head
        for lin in (blk.attn1.to_q, blk.attn1.to_k, blk.attn1.to_v):
            lin.weight[dead_dims] = 0
        blk.attn1.to_out[0].weight[:, dead_dims] = 0
    return m, dead_ff, dead_dims


@pytest.mark.parametrize("keep_temperature", [True, False])
def test_dead_channels_are_removed_losslessly_with_whole_heads_and_aligned_geglu(keep_temperature):
    m, dead_ff, dead_dims = _boosted_transformer()
    x = torch.rand(1, 32, 6, 6)
    with torch.no_grad():
        ref = m(x)
    w = Walker()
    parts = [(w.new("stream", 32, 32), 0)]
    w.transformer("t", parts, m, hd_keep=14, ff_keep=60)
    for g in w.groups:
        if g.name == "t.inner":
            g.keep = g.size  # LayerNorm statistics would change: keep the inner stream whole
    keep = prune(w.groups, "magnitude", keep_temperature)
    assert not set(dead_ff.tolist()) & set(keep["t.ff"].tolist())
    assert not set(dead_dims.tolist()) & set(keep["t.attn1.qkv"].tolist())
    blk = m.transformer_blocks[0]
    blk.attn1.inner_dim = 28  # diffusers' attribute, as the rebuilt-from-config student has it
    with torch.no_grad():
        if keep_temperature:
            torch.testing.assert_close(m(x), ref, atol=1e-5, rtol=1e-5)
        else:  # plain slicing (the release) changes the softmax temperature of every pruned head
            assert (m(x) - ref).abs().max() > 1e-4
    assert blk.ff.net[0].proj.out_features == 120 and blk.attn1.to_q.out_features == 28


def test_bad_arguments(teacher):
    with pytest.raises(UserError):
        Ratios(unet=1.0)
    with pytest.raises(UserError):
        from_teacher(*teacher, Ratios(), "random")
    with pytest.raises(UserError):
        from_teacher(*teacher, Ratios(), "taylor", calibration=torch.rand(2, 3, 100, 100))
    with pytest.raises(UserError):
        load_teacher("/no/such/folder")


def test_report_counts_match_the_models(teacher):
    unet, vae = teacher
    st, _ = compressed(teacher, "first")
    rep = compression_report(dict(unet.config), dict(vae.config), None, dict(st.config),
                             {"unet": 0.25, "decoder": 0.5}, "first", lr_size=32)
    assert rep["totals"]["student"]["params"] == count_params(st)
    teacher_unet = next(r for r in rep["rows"] if r["model"] == "teacher" and r["part"] == "UNet")
    assert teacher_unet["params"] == count_params(unet)
    with torch.no_grad():
        assert rep["totals"]["student"]["macs"] == count_macs(st, torch.rand(1, 3, 32, 32))
    assert rep["change"]["params"] < -0.4 and rep["change"]["macs"] < -0.5


def test_cli_writes_student_decoder_and_report(teacher, tmp_path, capsys):
    folder = tmp_path / "sd"
    unet, vae = teacher
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    out = tmp_path / "out"
    args = ["compress", "--teacher", str(folder), "--out", str(out), "--lr-size", "32"]
    assert cli_main(args) == 0
    st = AdcSRStudent.from_pretrained(out / "student").eval()
    ref, dec = compressed(teacher, "release")  # the default criterion
    lr = torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        assert torch.equal(st(lr), ref(lr))
    assert (out / "decoder" / "config.json").is_file()
    rep = json.loads((out / "report.json").read_text())
    assert rep["totals"]["student"]["params"] == count_params(st)
    assert "| student | UNet |" in (out / "report.md").read_text()
    before = sorted(p.name for p in out.iterdir())
    assert cli_main(args) == 2  # exists: refused, untouched
    assert sorted(p.name for p in out.iterdir()) == before
    assert cli_main(["compress", "--out", str(tmp_path / "x"), "--decoder-ratio", "-0.1"]) == 2
    (folder / "vae" / "config.json").unlink()
    assert cli_main(["compress", "--teacher", str(folder), "--out", str(tmp_path / "y")]) == 2
    assert "no vae/config.json" in capsys.readouterr().err


def test_full_size_compress_on_meta_gives_the_released_shapes():
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from adcsr.core.models.sd_configs import unet_config, vae_config

    with torch.device("meta"):
        unet, vae = UNet2DConditionModel(**unet_config("sd21")), AutoencoderKL(**vae_config("sd21"))
    st, dec = from_teacher(unet, vae, Ratios(), "release")  # shapes only
    public = lambda m: {k: v for k, v in json.loads(m.to_json_string()).items() if not k.startswith("_")}  # noqa: E731
    with torch.device("meta"):
        assert public(st) == public(AdcSRStudent.from_preset("sd21"))
    assert abs(count_params(st) - 456.07e6) / 456.07e6 < 0.002
    assert tuple(dec.config.block_out_channels) == (64, 128, 256, 256)
    odd = {(n.num_channels, n.num_groups) for n in st.unet.modules() if isinstance(n, torch.nn.GroupNorm) and n.num_groups != 32}
    assert odd == {(240, 24), (720, 24)}  # the release's group rule: first of 32, 24, 16 … dividing C
    heads = [(b.heads, b.head_dim) for b in st.unet.modules() if isinstance(b, SelfAttnTransformer)]
    assert len(heads) == 16 and {h for h, _ in heads} == {5, 10, 20} and {d for _, d in heads} == {48}
