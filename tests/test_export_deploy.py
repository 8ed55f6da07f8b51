"""The deploy form computes what the training form computes, with the graph changes it promises."""

import pytest
import torch
from diffusers.models.activations import GEGLU
from diffusers.models.attention_processor import Attention
from diffusers.models.upsampling import Upsample2D
from torch import nn

from adcsr.core.errors import UserError
from adcsr.core.models.student import AdcSRStudent
from adcsr.export.calibration import lr_tiles
from adcsr.export.deploy import (Attention4D, ConvTransposeUpsample2D, DecomposedGroupNorm, DecomposedLayerNorm,
                                 SplitGEGLU, TanhSiLU, TwoStepGroupNorm,
                                 deploy_form, relative_max_diff)

TILE = 32


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    model = AdcSRStudent.from_preset("tiny").eval()
    with torch.no_grad():  # non-trivial norms/biases so a swapped or dropped affine would show
        for m in model.modules():
            if isinstance(m, (nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model


@pytest.fixture(scope="module")
def photos():
    return lr_tiles("heldout", TILE, 2, seed=1)


@pytest.mark.parametrize("backend", ["qnn", "qnn_pte", "xnnpack", "coreml"])
def test_deploy_form_matches_training_form_on_real_photos(student, photos, backend):
    deployed = deploy_form(student, backend, TILE)
    with torch.no_grad():
        ref, out = student(photos), deployed(photos)
    assert relative_max_diff(ref, out) <= 1e-4
    mods = list(deployed.modules())
    assert not any(isinstance(m, GEGLU) for m in mods) and any(isinstance(m, SplitGEGLU) for m in mods)
    assert all(isinstance(m.processor, Attention4D) for m in mods if isinstance(m, Attention))
    norms = {type(m) for m in mods} & {nn.GroupNorm, nn.LayerNorm, DecomposedGroupNorm, DecomposedLayerNorm,
                                       TwoStepGroupNorm}
    assert norms == {"xnnpack": {DecomposedGroupNorm, DecomposedLayerNorm},
                     "qnn": {TwoStepGroupNorm, nn.LayerNorm},
                     "qnn_pte": {nn.GroupNorm, nn.LayerNorm},
                     "coreml": {nn.GroupNorm, nn.LayerNorm}}[backend]
    ups = {type(m) for m in mods} & {Upsample2D, ConvTransposeUpsample2D}
    assert ups == ({ConvTransposeUpsample2D} if backend == "xnnpack" else {Upsample2D})
    # QNN: no SiLU left as Sigmoid → Mul (the HTP computes that pair wrongly after a norm)
    silu = any(type(m) is nn.SiLU for m in mods)
    assert (silu, any(isinstance(m, TanhSiLU) for m in mods)) == ((False, True) if backend.startswith("qnn") else (True, False))
    # the student itself is untouched
    assert any(isinstance(m, GEGLU) for m in student.modules())


@pytest.mark.parametrize("groups, channels, side", [(32, 64, 512), (8, 32, 128), (24, 240, 16), (1, 4, 8)])
def test_two_step_group_norm_is_group_norm(groups, channels, side):
    """Large groups (2 × 512² elements, where a one-step sum of 16-bit codes overflows), the tiny
    decoder's, a UNet level's and a single group: the same function as nn.GroupNorm."""
    torch.manual_seed(0)
    gn = nn.GroupNorm(groups, channels, eps=1e-6)
    with torch.no_grad():
        gn.weight.uniform_(0.5, 1.5)
        gn.bias.uniform_(-0.3, 0.3)
        x = torch.randn(1, channels, side, side) * 3 + 1
        ref = gn(x)
        assert relative_max_diff(ref, TwoStepGroupNorm(gn)(x)) <= 1e-5
        gn.weight[0] += 0.5  # the affine is read from the module, not copied wrong
        assert relative_max_diff(gn(x), TwoStepGroupNorm(gn)(x)) <= 1e-5


def test_split_geglu_is_the_same_function_and_a_broken_split_is_not():
    torch.manual_seed(0)
    g = GEGLU(8, 16)
    x = torch.randn(2, 5, 8)
    split = SplitGEGLU(g)
    assert torch.allclose(split(x), g(x), atol=1e-6)
    split.value, split.gate = split.gate, split.value  # halves swapped must be caught
    assert not torch.allclose(split(x), g(x), atol=1e-3)


def test_tanh_silu_is_silu():
    x = torch.linspace(-12, 12, 2001)
    assert torch.allclose(TanhSiLU()(x), nn.SiLU()(x), atol=1e-6)


def test_deploy_form_rejects_a_tile_the_student_cannot_take(student):
    with pytest.raises(UserError, match="multiple of 16"):
        deploy_form(student, "qnn", 40)
    with pytest.raises(UserError, match="unknown backend"):
        deploy_form(student, "tflite", TILE)
