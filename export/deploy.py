"""The deploy form of the student: same weights, same function, a graph each backend runs well.

What changes (everything else is the diffusers modules as trained):
- self-attention runs as 4-D matmul + softmax over (batch, heads, tokens, head_dim) instead of
  SDPA (whose "safe softmax" XNNPACK does not delegate and QNN cannot map);
- GEGLU's one projection + `chunk` becomes two linears (value, gate) holding the same rows;
- GroupNorm per backend: Core ML and executorch's QNN delegate (`qnn_pte`, which has a GroupNorm
  op builder) keep `nn.GroupNorm` (pt2e 16a8w of the trained tiny student: 57.6 dB vs PyTorch
  with it, 52.0 dB with the two-step form); onnxruntime-qnn gets `TwoStepGroupNorm` (below).
  onnxruntime's own decomposition (from QNN preprocessing) reshapes to (N, groups, ·) and sums a
  whole group at once: on the HTP emulator its ReduceMean of the signed input came out wrong once
  a group held ≥ 65 536 elements (the tiny student's decoder at LR tile 64: 29.6 dB against 55 dB
  for the same QDQ model on the CPU provider), consistent with a 32-bit sum of 16-bit codes
  overflowing. InstanceNorm over (N, groups, ·) was exact but wraps every full-resolution norm in
  reshapes and transposes, which inflated the compiled context binary (the full-size student at
  LR tile 128: 544.1 MB with it, 478.3 MB with this form). Per-channel means over W then H, then
  per group on the tiny (N, C) tensor, with `/ sqrt` instead of `rsqrt` (which the HTP got
  wrong: 35 dB against 64 dB on a one-norm net) are exact on the emulator with no full-size
  reshape;
- XNNPACK delegates only what its partitioner accepts, and every op it refuses splits the graph
  (the first deploy form had 256 delegate partitions and took minutes to lower): GroupNorm and
  LayerNorm become 4-D reshape + mean over the two innermost dims (its only mean) + rsqrt,
  attention uses 3-D `bmm` (4-D `matmul` adds `expand`, which it refuses), and nearest ×2
  upsampling is a depthwise transposed conv with a 2×2 kernel of ones (it has no nearest resize);
- SiLU for QNN (both routes) as x·(½ + ½·tanh(x/2)): the HTP (emulator) computes the
  Sigmoid → Mul(x, ·) pair wrongly when it sits between a norm and a conv (half of the tensor came
  out as garbage: 16 dB for the whole tiny student, 40 dB with this form; measured op by op
  against CPU QDQ; still 14.7 dB with the two-step GroupNorm);
- static shapes: one LR tile size per export, no padding branch in the graph.

Written by hand: no library rewrites diffusers modules for mobile backends.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from adcsr.core.errors import UserError

# "qnn": onnxruntime-qnn (ONNX → HTP); "qnn_pte": executorch's QNN delegate, which maps
# `native_group_norm` to QNN's own GroupNorm op (its quantizer annotates it), so GroupNorm stays.
BACKENDS: tuple[str, ...] = ("qnn", "qnn_pte", "xnnpack", "coreml")


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


class TwoStepGroupNorm(_GroupNormForm):
    """GroupNorm for the HTP: per-channel means over W, then H (each reduction sums at most
    max(H, W) 16-bit codes, so none overflows), averaged over each group's channels on the tiny
    (N, C) tensor; divided by sqrt(var + eps) (the HTP got `rsqrt` of that tiny tensor wrong:
    35 dB where this gives 64 dB); the affine as a 4-D broadcast. No reshape or transpose of the
    full tensor, so the compiled program stays small."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        centred = x - self._group_mean(x)
        y = centred / torch.sqrt(self._group_mean(centred * centred) + self.eps)
        if self.weight is not None:
            y = y * self.weight.reshape(1, c, 1, 1) + self.bias.reshape(1, c, 1, 1)
        return y

    def _group_mean(self, t: torch.Tensor) -> torch.Tensor:
        n, c = t.shape[:2]
        per_channel = t.mean(dim=3, keepdim=True).mean(dim=2, keepdim=True)
        per_group = per_channel.reshape(n, self.groups, c // self.groups).mean(dim=2, keepdim=True)
        return per_group.expand(n, self.groups, c // self.groups).reshape(n, c, 1, 1)


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


def _swap_modules(root: nn.Module, backend: str) -> None:
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
            elif backend in ("qnn", "qnn_pte") and isinstance(child, nn.SiLU):
                setattr(module, child_name, TanhSiLU())
            elif backend == "qnn" and isinstance(child, nn.GroupNorm):
                setattr(module, child_name, TwoStepGroupNorm(child))
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
    _swap_modules(model, backend)
    return StaticStudent(model, tile).eval()


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
