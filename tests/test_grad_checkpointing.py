"""Gradient checkpointing of every module the trainer switches it on for (`grad_checkpointing:
true`): the checkpointed forward and backward give the plain one's outputs and gradients, and
autograd keeps far fewer activation bytes between forward and backward."""

from __future__ import annotations

import pytest
import torch
from torch.autograd.graph import saved_tensors_hooks

from adcsr.core.models.sd_configs import unet_config
from adcsr.core.models.student import AdcSRStudent
from adcsr.core.models.vae_decoder import PrunedVAEDecoder
from adcsr.distill.discriminator import FeatureDiscriminator

torch.set_num_threads(1)


def _student():
    return AdcSRStudent.from_preset("tiny"), torch.rand(2, 3, 32, 32)


def _decoder():
    return PrunedVAEDecoder.from_preset("tiny"), torch.randn(2, 4, 16, 16)


def _discriminator():
    from diffusers import UNet2DConditionModel

    return FeatureDiscriminator(UNet2DConditionModel(**unet_config("tiny")), 32), torch.randn(2, 32, 16, 16)


def _run(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
    """(output, parameter gradients, activation bytes autograd saved for backward)."""
    params = {p.data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if t.data_ptr() not in params:  # weights are kept anyway; count activations only
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    model.zero_grad(set_to_none=True)
    with saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    (out.float() ** 2).mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.detach(), grads, sum(saved.values())


@pytest.mark.parametrize("build", [_student, _decoder, _discriminator], ids=["student", "decoder", "discriminator"])
def test_checkpointed_forward_backward_equals_the_plain_one_and_saves_memory(build):
    torch.manual_seed(0)
    model, x = build()
    model.train()
    out, grads, plain_bytes = _run(model, x)
    model.enable_gradient_checkpointing()
    assert model.is_gradient_checkpointing
    ck_out, ck_grads, ck_bytes = _run(model, x)
    torch.testing.assert_close(ck_out, out, rtol=1e-5, atol=1e-6)
    assert ck_grads.keys() == grads.keys() and len(grads) > 10
    for name in grads:
        torch.testing.assert_close(ck_grads[name], grads[name], rtol=1e-4, atol=1e-6, msg=name)
    assert ck_bytes < 0.25 * plain_bytes, (ck_bytes, plain_bytes)
