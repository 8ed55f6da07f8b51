"""The deploy form of the student: same weights, same function, a graph each backend runs well.

What changes (everything else is the diffusers modules as trained):
- self-attention runs as 4-D matmul + softmax over (batch, heads, tokens, head_dim) instead of
  SDPA (whose "safe softmax" XNNPACK does not delegate and QNN cannot map);
- GEGLU's one projection + `chunk` becomes two linears (value, gate) holding the same rows;
- GroupNorm per backend: Core ML keeps `nn.GroupNorm`. QNN keeps it too (onnxruntime's QNN
  preprocessing decomposes it; fast and exact on the HTP emulator for small groups) except where
  a group holds more than `HTP_MAX_GROUP_ELEMENTS` at the export tile: there that decomposition's
  ReduceMean of the signed input came out wrong on the emulator (the tiny student's decoder at
  LR tile 64: 29.6 dB for the whole model against 55 dB for the same QDQ model on the CPU
  provider; bisected tensor by tensor), and GroupNorm becomes InstanceNorm over (N, groups, ·)
  with the affine on (N, C, H·W) — correct (55.5 dB), but ~7× slower on the emulator, so it is
  used only where needed. A mean/variance/rsqrt decomposition by hand loses ~35 dB on the HTP
  (FACTS §4), so XNNPACK's form below is not used for QNN;
- XNNPACK delegates only what its partitioner accepts, and every op it refuses splits the graph
  (the first deploy form had 256 delegate partitions and took minutes to lower): GroupNorm and
  LayerNorm become 4-D reshape + mean over the two innermost dims (its only mean) + rsqrt,
  attention uses 3-D `bmm` (4-D `matmul` adds `expand`, which it refuses), and nearest ×2
  upsampling is a depthwise transposed conv with a 2×2 kernel of ones (it has no nearest resize);
- SiLU for QNN as x·(½ + ½·tanh(x/2)): the HTP (emulator) computes the Sigmoid → Mul(x, ·) pair
  wrongly when it sits between a norm and a conv (half of the tensor came out as garbage: 16 dB
  for the whole tiny student, 40 dB with this form; measured op by op against CPU QDQ);
- static shapes: one LR tile size per export, no padding branch in the graph.

Written by hand: no library rewrites diffusers modules for mobile backends.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from adcsr.core.errors import UserError

Backend = Literal["qnn", "xnnpack", "coreml"]
BACKENDS: tuple[str, ...] = ("qnn", "xnnpack", "coreml")


class Attention4D:
    """diffusers attention processor: self-attention as two 4-D matmuls around a softmax
    (`batched_3d`: the same as `bmm` over batch × heads, for XNNPACK)."""

    def __init__(self, batched_3d: bool = False):
        self.batched_3d = batched_3d

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kw):
        if encoder_hidden_states is not None or attention_mask is not None or attn.spatial_norm is not None:
            raise UserError("the deploy form supports self-attention only (no cross-attention or masks)")
        residual = hidden_states
        spatial = hidden_states.ndim == 4
        if spatial:
            b, c, h, w = hidden_states.shape
            if attn.group_norm is not None:  # normalise in 4-D: same numbers, a friendlier graph
                hidden_states = attn.group_norm(hidden_states)
            x = hidden_states.reshape(b, c, h * w).transpose(1, 2)
        else:
            x = hidden_states
            if attn.group_norm is not None:
                x = attn.group_norm(x.transpose(1, 2)).transpose(1, 2)
        b, n, _ = x.shape
        heads = attn.heads
        q = attn.to_q(x)
        k = attn.to_k(x)
        v = attn.to_v(x)
        d = q.shape[-1] // heads
        q = q.reshape(b, n, heads, d).permute(0, 2, 1, 3) * attn.scale
        k = k.reshape(b, n, heads, d).permute(0, 2, 3, 1)
        v = v.reshape(b, n, heads, d).permute(0, 2, 1, 3)
        if self.batched_3d:
            probs = torch.softmax(torch.bmm(q.reshape(b * heads, n, d), k.reshape(b * heads, d, n)), dim=-1)
            out = torch.bmm(probs, v.reshape(b * heads, n, d)).reshape(b, heads, n, d)
        else:
            probs = torch.softmax(torch.matmul(q, k), dim=-1)
            out = torch.matmul(probs, v)
        out = out.permute(0, 2, 1, 3).reshape(b, n, heads * d)
        out = attn.to_out[1](attn.to_out[0](out))
        if spatial:
            out = out.transpose(1, 2).reshape(b, -1, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


class SplitGEGLU(nn.Module):
    """GEGLU with the value and gate halves as two linears: no `chunk` in the graph."""

    def __init__(self, geglu: nn.Module):
        super().__init__()
        proj: nn.Linear = geglu.proj
        half = proj.out_features // 2
        bias = proj.bias is not None
        self.value = nn.Linear(proj.in_features, half, bias=bias)
        self.gate = nn.Linear(proj.in_features, half, bias=bias)
        with torch.no_grad():
            self.value.weight.copy_(proj.weight[:half])
            self.gate.weight.copy_(proj.weight[half:])
            if bias:
                self.value.bias.copy_(proj.bias[:half])
                self.gate.bias.copy_(proj.bias[half:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value(x) * F.gelu(self.gate(x))


class TanhSiLU(nn.Module):
    """SiLU as x·(½ + ½·tanh(x/2)): the same function without the Sigmoid → Mul pair (see above)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (0.5 + 0.5 * torch.tanh(0.5 * x))


def _normalise_4d(x: torch.Tensor, eps: float) -> torch.Tensor:
    """(x − mean) / sqrt(var + eps) over the two innermost dims of a 4-D tensor."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    centred = x - mean
    var = (centred * centred).mean(dim=(2, 3), keepdim=True)
    return centred * torch.rsqrt(var + eps)


class _GroupNormForm(nn.Module):
    """A GroupNorm rewritten for one backend: the original's groups, eps and affine parameters."""

    def __init__(self, gn: nn.GroupNorm):
        super().__init__()
        self.groups, self.eps = gn.num_groups, gn.eps
        self.weight = gn.weight
        self.bias = gn.bias


class DecomposedGroupNorm(_GroupNormForm):
    """GroupNorm as 4-D reshape + mean + rsqrt (what XNNPACK delegates); any rank ≥ 3, channels at dim 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = _normalise_4d(x.reshape(shape[0], self.groups, shape[1] // self.groups, -1), self.eps).reshape(shape)
        if self.weight is not None:
            affine = (1, -1) + (1,) * (len(shape) - 2)
            y = y * self.weight.reshape(affine) + self.bias.reshape(affine)
        return y


class InstanceNormGroupNorm(_GroupNormForm):
    """GroupNorm as InstanceNorm over (N, groups, C/groups·H·W), then the per-channel affine on
    (N, C, H·W): as a 4-D broadcast Mul with (1, C, 1, 1) constants it came out wrong on the HTP
    emulator after an 8×8 norm (40.7 dB for the whole student), as a depthwise 1×1 conv too."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = F.instance_norm(x.reshape(shape[0], self.groups, -1), eps=self.eps).reshape(shape[0], shape[1], -1)
        if self.weight is not None:  # on (N, C, H·W) with (C, 1): the 4-D broadcast broke on the HTP
            y = y * self.weight[:, None] + self.bias[:, None]
        return y.reshape(shape)


class DecomposedLayerNorm(nn.Module):
    """LayerNorm over the last dim as 4-D reshape + mean + rsqrt (what XNNPACK delegates)."""

    def __init__(self, ln: nn.LayerNorm):
        super().__init__()
        if len(ln.normalized_shape) != 1:
            raise UserError("the deploy form supports LayerNorm over the last dimension only")
        self.eps = ln.eps
        self.weight = ln.weight
        self.bias = ln.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = _normalise_4d(x.reshape(1, -1, 1, shape[-1]), self.eps).reshape(shape)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y


class ConvTransposeUpsample2D(nn.Module):
    """diffusers' Upsample2D (nearest ×2, then its conv) with the upsampling as a depthwise
    transposed conv whose 2×2 kernel is all ones: the same numbers, an op XNNPACK delegates."""

    def __init__(self, up: nn.Module):
        super().__init__()
        if up.norm is not None or up.use_conv_transpose or not up.interpolate:
            raise UserError("the deploy form supports nearest ×2 Upsample2D only")
        c = up.channels
        self.upsample = nn.ConvTranspose2d(c, c, 2, stride=2, groups=c, bias=False)
        nn.init.ones_(self.upsample.weight)
        self.upsample.weight.requires_grad_(False)
        self.conv = up.conv if up.use_conv else nn.Identity()

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        return self.conv(self.upsample(x))


class StaticStudent(nn.Module):
    """The student at one fixed LR tile: [0,1] NCHW in, [0,1] NCHW out, no padding branch."""

    def __init__(self, student: nn.Module, tile: int):
        super().__init__()
        self.student = student
        self.tile = tile

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return self.student(lr)


def _swap_modules(root: nn.Module, backend: str, large_groups: set[int]) -> None:
    from diffusers.models.activations import GEGLU
    from diffusers.models.attention_processor import Attention
    from diffusers.models.upsampling import Upsample2D

    xnnpack = {nn.GroupNorm: DecomposedGroupNorm, nn.LayerNorm: DecomposedLayerNorm, Upsample2D: ConvTransposeUpsample2D}
    for name, module in list(root.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, GEGLU):
                setattr(module, child_name, SplitGEGLU(child))
            elif backend == "xnnpack" and type(child) in xnnpack:
                setattr(module, child_name, xnnpack[type(child)](child))
            elif backend == "qnn" and isinstance(child, nn.SiLU):
                setattr(module, child_name, TanhSiLU())
            elif backend == "qnn" and isinstance(child, nn.GroupNorm) and id(child) in large_groups:
                setattr(module, child_name, InstanceNormGroupNorm(child))
        if isinstance(module, Attention):
            module.set_processor(Attention4D(batched_3d=backend == "xnnpack"))


def deploy_form(student: nn.Module, backend: str = "qnn", tile: int = 128) -> StaticStudent:
    """A copy of `student` rewritten for `backend` ("qnn", "xnnpack" or "coreml") at LR `tile`²."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
    multiple = int(getattr(student, "size_multiple", 1))
    if tile <= 0 or tile % multiple:
        raise UserError(f"--tile must be a positive multiple of {multiple}, got {tile}")
    model = copy.deepcopy(student).eval().float()
    for p in model.parameters():
        p.requires_grad_(False)
    _swap_modules(model, backend, _large_group_norms(model, tile) if backend == "qnn" else set())
    return StaticStudent(model, tile).eval()


# Above this many elements per group a 32-bit sum of 16-bit codes can overflow (32 768 × 65 535 < 2³¹).
HTP_MAX_GROUP_ELEMENTS = 32768


def _large_group_norms(model: nn.Module, tile: int) -> set[int]:
    """ids of the GroupNorms whose groups exceed `HTP_MAX_GROUP_ELEMENTS` at LR `tile`², found
    by one shape-recording forward pass."""
    large: set[int] = set()

    def record(module, inputs, _output):
        x = inputs[0]
        if x[0].numel() // module.num_groups > HTP_MAX_GROUP_ELEMENTS:
            large.add(id(module))

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, nn.GroupNorm)]
    try:
        with torch.no_grad():
            model(example_input(tile))
    finally:
        for h in hooks:
            h.remove()
    return large


def exported_program(model: nn.Module, tile: int) -> "torch.export.ExportedProgram":
    """`torch.export` of a deploy-form model at its tile, without `aten.alias` nodes and
    inference-mode dropouts: torch 2.13 emits an alias for a no-op crop, which coremltools rejects
    and XNNPACK does not delegate (it split the program in two); diffusers' attention keeps p = 0
    dropouts, which executorch's QNN quantizer has no config for. Both are their input, so their
    users are rewired and they are deleted."""
    with torch.no_grad():
        program = torch.export.export(model, (example_input(tile),))
    graph = program.graph_module.graph
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        identity = node.target == torch.ops.aten.alias.default or (
            node.target == torch.ops.aten.dropout.default and not node.args[2])
        if identity:
            node.replace_all_uses_with(node.args[0])
            graph.erase_node(node)
    program.graph_module.recompile()
    return program


def example_input(tile: int, batch: int = 1) -> torch.Tensor:
    """A deterministic LR input of the export shape (values matter only for tracing)."""
    g = torch.Generator().manual_seed(0)
    return torch.rand(batch, 3, tile, tile, generator=g)


def relative_max_diff(reference: torch.Tensor, other: torch.Tensor) -> float:
    """max |reference − other| / max |reference| (the deploy form's equivalence figure)."""
    return float((reference - other).abs().max() / reference.abs().max().clamp_min(1e-12))
