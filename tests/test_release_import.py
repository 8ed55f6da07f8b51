"""The AdcSR release's files → `AdcSRStudent`: checkpoints written in the release's exact key layout
(a diffusers SD UNet edited as its `Net` edits it, `DataParallel(...).state_dict()`; a Lightning-1.4
style decoder checkpoint), the same forward as the release's, save/load, the CLI into `upscale` and
the export stage, and one-line errors for files of any other layout."""

from __future__ import annotations

import copy
import json
import math
import sys
import types
from collections import OrderedDict

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.autoencoders.vae import Decoder
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.downsampling import Downsample2D
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.upsampling import Upsample2D
from torch import nn

from adcsr.cli import main
from adcsr.core.colorfix import adain_color_fix
from adcsr.core.errors import UserError
from adcsr.core.imaging import read_image, write_image
from adcsr.core.models.release import RELEASE_GROUPS, read_checkpoint, release_state
from adcsr.core.models.sd_configs import unet_config
from adcsr.core.models.student import AdcSRStudent
from adcsr.core.photos import load_photo

torch.set_num_threads(1)

KEEP = 0.75  # the release slices every UNet tensor to its first 75% of channels
# SD2.1-base's topology and heads at a sixteenth of the widths; a decoder as small as 32 groups allow
TINY_UNET = {**unet_config("sd21"), "block_out_channels": [40, 80, 160, 160], "cross_attention_dim": 16,
             "norm_num_groups": 8}
TINY_DECODER = (32, 32, 64, 64)


def _groups(channels: int) -> int:
    return next(g for g in RELEASE_GROUPS if channels % g == 0)


def _slice_channels(root: nn.Module) -> None:
    """The release's pruning: every conv / linear / norm keeps its first 75% of channels."""
    cut = lambda n: int(n * KEEP)  # noqa: E731
    for name, m in list(root.named_modules()):
        if isinstance(m, (Downsample2D, Upsample2D)):
            m.channels = cut(m.channels)
            continue
        if isinstance(m, nn.Conv2d):
            new = nn.Conv2d(cut(m.in_channels), cut(m.out_channels), m.kernel_size, m.stride, m.padding)
        elif isinstance(m, nn.Linear):
            new = nn.Linear(cut(m.in_features), cut(m.out_features), bias=m.bias is not None)
        elif isinstance(m, nn.GroupNorm):
            new = nn.GroupNorm(_groups(cut(m.num_channels)), cut(m.num_channels), eps=m.eps)
        elif isinstance(m, nn.LayerNorm):
            new = nn.LayerNorm(cut(m.normalized_shape[0]), eps=m.eps)
        else:
            continue
        with torch.no_grad():
            for p_name, p in new.named_parameters():
                p.copy_(getattr(m, p_name)[tuple(slice(0, n) for n in p.shape)])
        parent_name, _, attr = name.rpartition(".")
        setattr(root.get_submodule(parent_name), attr, new)


def release_net(unet: UNet2DConditionModel, decoder: Decoder) -> nn.Module:
    """The release's `Net(unet, decoder)`: same edits, same attribute names (so the same state_dict keys).
    Removed modules are set to None rather than deleted, so diffusers' own block forwards still run."""
    del unet.time_embedding
    c0, mid = unet.conv_in.out_channels, decoder.mid_block.resnets[0].in_channels
    conv_in = nn.Conv2d(16, c0, 3, padding=1)
    conv_in.weight.data = unet.conv_in.weight.data.repeat(1, 4, 1, 1)
    conv_in.bias.data = unet.conv_in.bias.data
    unet.conv_in = conv_in
    link_full = math.ceil(mid / KEEP)  # 342 for SD's 256-channel mid-block
    link = nn.Conv2d(c0, link_full, 3, padding=1)
    reps = -(-link_full // unet.conv_out.out_channels)
    link.weight.data = unet.conv_out.weight.data.repeat(reps, 1, 1, 1)[:link_full]
    link.bias.data = unet.conv_out.bias.data.repeat(reps)[:link_full]
    unet.conv_out = link
    for m in unet.modules():
        if isinstance(m, ResnetBlock2D):
            m.time_emb_proj = None
        if isinstance(m, BasicTransformerBlock):
            m.attn2, m.norm2 = None, None
    _slice_channels(unet)
    unet.body = nn.Sequential(*unet.down_blocks, unet.mid_block, *unet.up_blocks, unet.conv_norm_out,
                              unet.conv_act, unet.conv_out)
    net = nn.Module()
    net.body = nn.Sequential(nn.PixelUnshuffle(2), unet, copy.deepcopy(decoder).mid_block)
    return net


def release_forward(net: nn.Module, decoder: Decoder, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mid-block features, SR in [-1, 1]) as the release's test script computes them, through
    diffusers' own block forwards (no time embedding, no text)."""
    unshuffle, unet, mid = net.body
    x = unet.conv_in(unshuffle(lr * 2 - 1))
    skips = (x,)
    for blk in unet.down_blocks:
        x, res = blk(hidden_states=x, temb=None)
        skips += res
    x = unet.mid_block(x, None)
    for blk in unet.up_blocks:
        n = len(blk.resnets)
        x, skips = blk(hidden_states=x, res_hidden_states_tuple=skips[-n:], temb=None), skips[:-n]
    feats = mid(unet.conv_out(unet.conv_act(unet.conv_norm_out(x))), None)
    y = feats
    for blk in decoder.up_blocks:
        y = blk(y, None)
    return feats, decoder.conv_out(decoder.conv_act(decoder.conv_norm_out(y)))


def _perturb(module: nn.Module, scale: float = 0.05) -> None:
    """Off every default init (norm weights 1 / biases 0), so a swapped or dropped tensor shows."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * scale)


def _ckpt_module(monkeypatch: pytest.MonkeyPatch) -> type:
    """A class pickled as Lightning 1.4's `ModelCheckpoint` (it keys the checkpoint's callback states)."""
    cls = type("ModelCheckpoint", (), {"__module__": "pytorch_lightning.callbacks.model_checkpoint"})
    parts = cls.__module__.split(".")
    for i in range(1, len(parts) + 1):
        mod = types.ModuleType(".".join(parts[:i]))
        monkeypatch.setitem(sys.modules, mod.__name__, mod)
    mod.ModelCheckpoint = cls
    return cls


def half_decoder_checkpoint(decoder: Decoder, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A stage-1 checkpoint as the latent-diffusion code (PyTorch Lightning 1.4) writes one."""
    state = OrderedDict(("decoder." + k, v) for k, v in decoder.state_dict().items())
    state.update({"encoder.conv_in.weight": torch.randn(8, 3, 3, 3), "quant_conv.weight": torch.randn(8, 8, 1, 1),
                  "post_quant_conv.weight": torch.randn(4, 4, 1, 1), "loss.logvar": torch.zeros(()),
                  "loss.discriminator.main.0.weight": torch.randn(8, 3, 4, 4)})
    adam = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2), "exp_avg_sq": torch.zeros(2)}},
            "param_groups": [{"lr": 1.3e-6, "betas": (0.5, 0.9), "eps": 1e-8, "weight_decay": 0, "params": [0]}]}
    checkpoint_cls = _ckpt_module(monkeypatch)
    return {"epoch": 12, "global_step": 250000, "pytorch-lightning_version": "1.4.2", "state_dict": state,
            "callbacks": {checkpoint_cls: {"monitor": None, "best_model_score": None, "best_model_path": "",
                                           "current_score": None, "dirpath": "logs/checkpoints"}},
            "optimizer_states": [adam, adam], "lr_schedulers": []}


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """(net_params path, halfDecoder path, release Net, its decoder) at tiny widths."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("release")
    decoder = Decoder(in_channels=4, out_channels=3, up_block_types=("UpDecoderBlock2D",) * 4,
                      block_out_channels=TINY_DECODER, layers_per_block=2, norm_num_groups=32, act_fn="silu",
                      mid_block_add_attention=True)
    _perturb(decoder)
    net = release_net(UNet2DConditionModel(**TINY_UNET), decoder)
    _perturb(net)  # "trained": the mid-block now differs from the decoder checkpoint's
    torch.save(nn.DataParallel(net).state_dict(), folder / "net_params_200.pkl")
    with pytest.MonkeyPatch.context() as mp:
        torch.save(half_decoder_checkpoint(decoder, mp), folder / "halfDecoder.ckpt")
    return folder / "net_params_200.pkl", folder / "halfDecoder.ckpt", net.eval(), decoder.eval()


def _lr(h: int = 32, w: int = 48) -> torch.Tensor:
    return load_photo("chelsea")[:, 100:100 + h, 150:150 + w][None]


def test_from_release_computes_the_release_forward(release):
    net_path, dec_path, net, decoder = release
    student = AdcSRStudent.from_release(net_path, dec_path)
    cfg = student.config
    assert list(cfg.block_out_channels) == [30, 60, 120, 120] and list(cfg.attention_head_dim) == [6, 6, 6, 6]
    assert list(cfg.num_attention_heads) == [5, 10, 20, 20] and list(cfg.decoder_block_out_channels) == list(TINY_DECODER)
    # the release's GroupNorm rule, 12 and 6 included: 30 channels → 6 groups, 60 → 12, 90 → 6
    groups = {(m.num_channels, m.num_groups) for m in student.unet.modules() if isinstance(m, nn.GroupNorm)}
    assert {(30, 6), (60, 12), (90, 6), (120, 24)} <= groups
    assert not torch.equal(net.body[2].resnets[0].conv1.weight, decoder.mid_block.resnets[0].conv1.weight)
    lr = _lr()
    with torch.no_grad():
        # in float64 the two forwards agree to rounding: same weights, same operations
        feats, sr = release_forward(copy.deepcopy(net).double(), copy.deepcopy(decoder).double(), lr.double())
        student64 = copy.deepcopy(student).double()
        torch.testing.assert_close(student64.features(lr.double()), feats, rtol=0, atol=1e-10)
        torch.testing.assert_close(student64.train()(lr.double()), (sr + 1) / 2, rtol=0, atol=1e-10)  # unclamped
        # in float32, as it runs: within 1e-5 of the output's scale
        out, ref = student(lr), ((release_forward(net, decoder, lr)[1] + 1) / 2)
    assert 0.05 < ref.clamp(0, 1).std() and ((ref > 0) & (ref < 1)).float().mean() > 0.5  # not a saturated image
    assert (out - ref.clamp(0, 1)).abs().max() < 1e-5 * ref.abs().max()


def test_save_pretrained_round_trips(release, tmp_path):
    student = AdcSRStudent.from_release(*release[:2])
    student.save_pretrained(tmp_path / "s")
    back = AdcSRStudent.from_pretrained(tmp_path / "s").eval()
    assert list(back.config.norm_group_candidates) == list(RELEASE_GROUPS)
    lr = _lr(16, 32)
    with torch.no_grad():
        assert torch.equal(back(lr), student(lr))


def test_full_size_release_layout_maps_onto_the_sd21_student():
    """SD2.1-base edited as the release edits it (on the meta device): every key name and shape of the
    real `net_params_200.pkl`, including the 342 → 256 link, maps onto the `sd21` student."""
    with torch.device("meta"):
        decoder = Decoder(in_channels=4, out_channels=3, up_block_types=("UpDecoderBlock2D",) * 4,
                          block_out_channels=(64, 128, 256, 256), layers_per_block=2, norm_num_groups=32,
                          act_fn="silu", mid_block_add_attention=True)
        net = release_net(UNet2DConditionModel(**unet_config("sd21")), decoder)
        sd21 = AdcSRStudent.from_preset("sd21")
    net_sd = nn.DataParallel(net).state_dict()
    assert net_sd["module.body.1.conv_out.weight"].shape == (256, 240, 3, 3)
    # every UNet tensor but conv_in is saved twice: under its own name and the `unet.body` alias
    unet_keys = [k for k in net_sd if k.startswith("module.body.1.")]
    assert sum(k.startswith("module.body.1.body.") for k in unet_keys) * 2 == len(unet_keys) - 2
    cfg, state = release_state(net_sd, decoder.state_dict())
    plain = lambda d: json.loads(json.dumps({k: d[k] for k in cfg if k != "norm_group_candidates"}))  # noqa: E731
    assert plain(cfg) == plain(sd21.config)
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in sd21.state_dict().items()}


def test_cli_import_writes_a_folder_that_upscale_and_export_accept(release, tmp_path, capsys):
    """`import-release` → `upscale --student` → the export stage's student loading, reference outputs
    and every backend's deploy form (each checked equivalent to the student on held-out photos).
    A full target conversion is not repeated here: it is the same for any student folder and takes
    minutes on two cores (tests/test_export_targets.py covers it)."""
    from adcsr.export.config import ExportConfig
    from adcsr.export.student_io import StudentRef
    from adcsr.export.target_context import Context

    net_path, dec_path, _, _ = release
    out = tmp_path / "adcsr"
    assert main(["import-release", str(net_path), str(dec_path), "--out", str(out)]) == 0
    assert (out / "config.json").is_file() and (out / "diffusion_pytorch_model.safetensors").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["licence"].startswith("Apache-2.0")
    assert manifest["source"]["files"]["net"]["name"] == "net_params_200.pkl"
    capsys.readouterr()
    assert main(["import-release", str(net_path), str(dec_path), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    write_image(_lr(24, 40)[0], tmp_path / "cat.png")
    assert main(["upscale", str(tmp_path / "cat.png"), str(tmp_path / "cat_x4.png"), "--student", str(out)]) == 0
    sr, lr = read_image(tmp_path / "cat_x4.png"), read_image(tmp_path / "cat.png")[None]
    with torch.no_grad():  # one tile: the release model's output with its AdaIN colour match, to 8 bits
        direct = adain_color_fix(AdcSRStudent.from_release(net_path, dec_path)(lr), lr).clamp(0, 1)[0]
    assert sr.shape == (3, 96, 160) and (sr - direct).abs().max() <= 0.5 / 255 + 1e-4
    ctx = Context(StudentRef.parse(str(out)), ExportConfig(tile=16, calibration_count=1, eval_count=2), progress=False)
    assert ctx.ref.describe()["path"] == str(out.resolve()) and ctx.reference.shape == (2, 3, 64, 64)
    for backend in ("qnn", "qnn_pte", "xnnpack", "coreml"):
        ctx.deploy(backend)
    assert max(ctx.equivalence.values()) <= 1e-4


def _net_state(release):
    return torch.load(release[0], weights_only=True)


def _bad_net(release, folder, edit):
    sd = _net_state(release)
    edit(sd)
    torch.save(sd, folder / "net.pkl")
    return folder / "net.pkl", release[1]


class _Opaque:
    pass


@pytest.mark.parametrize("case,message", [
    ("random_dict", "is not the AdcSR release's net_params file"),
    ("missing_key", "missing key module.body.1.body.0.resnets.0.conv1.bias"),
    ("extra_key", "unexpected key module.body.3.weight"),
    ("wrong_shape", "module.body.2.resnets.0.conv2.weight has shape (64, 64, 1, 1), the layout needs (64, 64, 3, 3)"),
    ("alias_differs", "module.body.1.body.11.bias differs from module.body.1.conv_out.bias"),
    ("not_a_checkpoint", "is not a PyTorch checkpoint"),
    ("pickled_object", "refuses the pickled object"),
    ("decoder_without_decoder", "no state_dict with decoder.* tensors"),
    ("swapped", "not the AdcSR release's net_params file"),
    ("decoder_missing_key", "missing key conv_in.weight"),
    ("missing_file", "release network file not found"),
])
def test_bad_files_are_one_line_errors(release, tmp_path, capsys, case, message):
    net, dec = release[:2]
    if case == "random_dict":
        torch.save({"weight": torch.zeros(3), "step": 7}, tmp_path / "net.pkl")
        net = tmp_path / "net.pkl"
    elif case == "missing_key":
        net, dec = _bad_net(release, tmp_path, lambda sd: sd.pop("module.body.1.body.0.resnets.0.conv1.bias"))
    elif case == "extra_key":
        net, dec = _bad_net(release, tmp_path, lambda sd: sd.update({"module.body.3.weight": torch.zeros(1)}))
    elif case == "wrong_shape":
        net, dec = _bad_net(release, tmp_path, lambda sd: sd.update(
            {"module.body.2.resnets.0.conv2.weight": torch.zeros(64, 64, 1, 1)}))
    elif case == "alias_differs":
        net, dec = _bad_net(release, tmp_path, lambda sd: sd.update(
            {"module.body.1.body.11.bias": sd["module.body.1.body.11.bias"] + 1}))
    elif case == "not_a_checkpoint":
        (tmp_path / "net.pkl").write_text("<html>404 Not Found</html>\n")
        net = tmp_path / "net.pkl"
    elif case == "pickled_object":
        torch.save({"module.body.1.conv_in.weight": _Opaque()}, tmp_path / "net.pkl")
        net = tmp_path / "net.pkl"
    elif case == "decoder_without_decoder":
        torch.save({"state_dict": {"encoder.conv_in.weight": torch.zeros(1)}}, tmp_path / "dec.ckpt")
        dec = tmp_path / "dec.ckpt"
    elif case == "swapped":
        net, dec = dec, net
    elif case == "decoder_missing_key":
        ckpt = read_checkpoint(dec, "decoder")
        del ckpt["state_dict"]["decoder.conv_in.weight"]
        torch.save({**ckpt, "callbacks": {}}, tmp_path / "dec.ckpt")
        dec = tmp_path / "dec.ckpt"
    elif case == "missing_file":
        net = tmp_path / "nope.pkl"
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["import-release", str(net), str(dec), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()
    with pytest.raises(UserError):
        AdcSRStudent.from_release(net, dec)
