"""Coupled channel groups of the student UNet and the VAE decoder, found by walking their forward.

A group is one channel axis shared by several tensors (residual adds tie a block's output to its
input; concatenations place a group at an offset inside a consumer's input). Attention q/k/v and
the output projection's input form one head-structured group, so heads stay whole and every head
keeps the same number of dims; GEGLU's value and gate halves are two slots of one group, so they
stay aligned. torch-pruning's dependency tracer cannot follow diffusers' head reshapes, so the
coupling is derived here from the architecture; torch-pruning does the tensor surgery (prune.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn


@dataclass
class Slot:
    module: nn.Module
    kind: str  # conv_out, conv_in, linear_out, linear_in, gn, ln
    offset: int = 0


@dataclass
class Group:
    name: str
    size: int
    keep: int
    heads: int = 1
    slots: list[Slot] = field(default_factory=list)
    query: nn.Module | None = None  # the q projection of an attention head group (see prune.py)

    def add(self, module: nn.Module, kind: str, offset: int = 0) -> None:
        self.slots.append(Slot(module, kind, offset))


Parts = list[tuple[Group, int]]  # a tensor as (group, channel offset) pieces


def kept(n: int, ratio: float, multiple: int = 1) -> int:
    """Channels kept when pruning `ratio` of `n`, a multiple of `multiple` (at least one)."""
    return min(n, max(multiple, int(round(n * (1.0 - ratio) / multiple)) * multiple))


class Walker:
    def __init__(self):
        self.groups: list[Group] = []

    def new(self, name: str, size: int, keep: int, heads: int = 1) -> Group:
        g = Group(name, size, keep, heads)
        self.groups.append(g)
        return g

    @staticmethod
    def ins(parts: Parts, module: nn.Module, kind: str) -> None:
        for g, off in parts:
            g.add(module, kind, off)

    @staticmethod
    def cat(a: Parts, b: Parts) -> Parts:
        width = sum(g.size for g, _ in a)
        return a + [(g, off + width) for g, off in b]

    def resnet(self, name: str, parts: Parts, r: nn.Module, keep: int) -> Parts:
        self.ins(parts, r.norm1, "gn")
        self.ins(parts, r.conv1, "conv_in")
        h = self.new(f"{name}.conv1", r.conv1.out_channels, keep)
        h.add(r.conv1, "conv_out")
        h.add(r.norm2, "gn")
        h.add(r.conv2, "conv_in")
        if r.conv_shortcut is None:  # identity shortcut: the output is the input's group
            (g, _), = parts
        else:
            self.ins(parts, r.conv_shortcut, "conv_in")
            g = self.new(name, r.conv2.out_channels, keep)
            g.add(r.conv_shortcut, "conv_out")
        g.add(r.conv2, "conv_out")
        return [(g, 0)]

    def attention(self, name: str, g: Group, a: nn.Module, hd_keep: int) -> None:
        """diffusers `Attention` (self-attention): q/k/v + to_out input as one head group."""
        qkv = self.new(f"{name}.qkv", a.inner_dim, a.heads * hd_keep, heads=a.heads)
        qkv.query = a.to_q
        for lin in (a.to_q, a.to_k, a.to_v):
            g.add(lin, "linear_in")
            qkv.add(lin, "linear_out")
        qkv.add(a.to_out[0], "linear_in")
        g.add(a.to_out[0], "linear_out")

    def transformer(self, name: str, parts: Parts, a: nn.Module, hd_keep: int, ff_keep: int) -> Parts:
        """`SelfAttnTransformer`: norm → proj_in → (LN, self-attn, LN, GEGLU) → proj_out, residual."""
        (g, _), = parts
        g.add(a.norm, "gn")
        g.add(a.proj_in, "linear_in")
        blk = a.transformer_blocks[0]
        t = self.new(f"{name}.inner", a.inner_dim, a.heads * hd_keep)
        t.add(a.proj_in, "linear_out")
        t.add(blk.norm1, "ln")
        self.attention(f"{name}.attn1", t, blk.attn1, hd_keep)
        t.add(blk.norm3, "ln")
        proj, out = blk.ff.net[0].proj, blk.ff.net[2]
        t.add(proj, "linear_in")
        half = proj.out_features // 2
        ff = self.new(f"{name}.ff", half, ff_keep)
        ff.add(proj, "linear_out", 0)  # GEGLU value half
        ff.add(proj, "linear_out", half)  # GEGLU gate half, same indices
        ff.add(out, "linear_in")
        t.add(out, "linear_out")
        t.add(a.proj_out, "linear_in")
        g.add(a.proj_out, "linear_out")
        return parts

    def conv_new(self, name: str, parts: Parts, conv: nn.Conv2d, keep: int) -> Parts:
        self.ins(parts, conv, "conv_in")
        g = self.new(name, conv.out_channels, keep)
        g.add(conv, "conv_out")
        return [(g, 0)]


def unet_groups(unet: nn.Module, link: nn.Conv2d, ratio: float, cand_keep) -> list[Group]:
    """Groups of a full-width `StudentUNet` (its last feature feeds `link`).

    `cand_keep(width)` gives the kept width of a level stream; head dims and GEGLU widths are
    pruned by `ratio` per head / per half.
    """
    w = Walker()

    def tr(name, parts, a):
        hd = a.inner_dim // a.heads
        return w.transformer(name, parts, a, kept(hd, ratio), kept(a.transformer_blocks[0].ff.net[2].in_features, ratio))

    x = w.new("conv_in", unet.conv_in.out_channels, cand_keep(unet.conv_in.out_channels))
    x.add(unet.conv_in, "conv_out")
    parts: Parts = [(x, 0)]
    skips = [parts]
    for lvl, blk in enumerate(unet.down_blocks):
        for i, r in enumerate(blk.resnets):
            parts = w.resnet(f"down{lvl}.res{i}", parts, r, cand_keep(r.conv2.out_channels))
            if len(blk.attentions):
                parts = tr(f"down{lvl}.attn{i}", parts, blk.attentions[i])
            skips.append(parts)
        if hasattr(blk, "downsamplers"):
            conv = blk.downsamplers[0].conv
            parts = w.conv_new(f"down{lvl}.ds", parts, conv, cand_keep(conv.out_channels))
            skips.append(parts)
    mid = unet.mid_block
    parts = w.resnet("mid.res0", parts, mid.resnets[0], cand_keep(mid.resnets[0].conv2.out_channels))
    parts = tr("mid.attn0", parts, mid.attentions[0])
    parts = w.resnet("mid.res1", parts, mid.resnets[1], cand_keep(mid.resnets[1].conv2.out_channels))
    for j, blk in enumerate(unet.up_blocks):
        for i, r in enumerate(blk.resnets):
            parts = w.resnet(f"up{j}.res{i}", w.cat(parts, skips.pop()), r, cand_keep(r.conv2.out_channels))
            if len(blk.attentions):
                parts = tr(f"up{j}.attn{i}", parts, blk.attentions[i])
        if hasattr(blk, "upsamplers"):
            conv = blk.upsamplers[0].conv
            parts = w.conv_new(f"up{j}.us", parts, conv, cand_keep(conv.out_channels))
    w.ins(parts, unet.conv_norm_out, "gn")
    w.ins(parts, link, "conv_in")
    return w.groups


def decoder_groups(dec: nn.Module, ratio: float, groups: int) -> tuple[list[Group], Group]:
    """Groups of a diffusers VAE `Decoder` (with conv_in); also returns the mid-block stream group."""
    w = Walker()

    def k(n: int) -> int:
        return kept(n, ratio, groups)

    m = w.new("dec.conv_in", dec.conv_in.out_channels, k(dec.conv_in.out_channels))
    m.add(dec.conv_in, "conv_out")
    parts: Parts = [(m, 0)]
    mb = dec.mid_block
    parts = w.resnet("dec.mid.res0", parts, mb.resnets[0], k(mb.resnets[0].conv2.out_channels))
    for i, a in enumerate(mb.attentions):
        (g, _), = parts
        g.add(a.group_norm, "gn")
        w.attention(f"dec.mid.attn{i}", g, a, k(a.inner_dim // a.heads))
        parts = w.resnet(f"dec.mid.res{i + 1}", parts, mb.resnets[i + 1], k(mb.resnets[i + 1].conv2.out_channels))
    for j, blk in enumerate(dec.up_blocks):
        for i, r in enumerate(blk.resnets):
            parts = w.resnet(f"dec.up{j}.res{i}", parts, r, k(r.conv2.out_channels))
        if blk.upsamplers is not None:
            conv = blk.upsamplers[0].conv
            parts = w.conv_new(f"dec.up{j}.us", parts, conv, k(conv.out_channels))
    w.ins(parts, dec.conv_norm_out, "gn")
    w.ins(parts, dec.conv_out, "conv_in")
    return w.groups, m
