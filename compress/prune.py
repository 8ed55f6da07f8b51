"""Choose the channels each group keeps (by a criterion) and cut them out with torch-pruning.

Criteria:
- `release`: the AdcSR release's cut (FACTS §1): every tensor keeps the leading channels along each
  axis it shrinks, ignoring head, GEGLU-half and concatenation boundaries (`leading_block`).
- `first`: the first channels of every coupled group (groups.py): each head keeps its own first
  dims, GEGLU's value and gate halves stay aligned, each part of a concatenation keeps its own
  first channels. Structurally consistent, so it is not the release's cut.
- `magnitude`, `taylor`: the group's channels ranked by weight norm / |weight × gradient|.
"""

from __future__ import annotations

from collections import defaultdict

import torch
import torch_pruning as tp
from torch import nn

from adcsr.core.errors import UserError

from .config import CRITERIA
from .groups import Group, Slot


_PRUNE_FN = {
    "conv_out": tp.prune_conv_out_channels,
    "conv_in": tp.prune_conv_in_channels,
    "linear_out": tp.prune_linear_out_channels,
    "linear_in": tp.prune_linear_in_channels,
    "gn": tp.prune_groupnorm_out_channels,
    "ln": tp.prune_layernorm_out_channels,
}


def _slices(slot: Slot, size: int) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """(value, grad) views with the group's channels on dim 0 (size `size`)."""
    m, s = slot.module, slice(slot.offset, slot.offset + size)
    out = []
    if slot.kind in ("conv_in", "linear_in"):
        out.append((m.weight[:, s].transpose(0, 1), _g(m.weight, lambda t: t[:, s].transpose(0, 1))))
    else:
        for p in (m.weight, m.bias):
            if p is not None:
                out.append((p[s], _g(p, lambda t: t[s])))
    return out


def _g(p: torch.Tensor, view):
    return view(p.grad) if p.grad is not None else None


def leading_block(source: dict[str, torch.Tensor], target: nn.Module) -> None:
    """Fill `target` (the pruned architecture) with the leading block of each `source` tensor.

    Written by hand: this is the release's plain slicing, which no pruning library does, because it
    does not keep coupled channels together (a head's dims, a GEGLU gate and its value, the two parts
    of a skip concatenation are cut as one flat axis)."""
    state = target.state_dict()
    if set(state) != set(source):
        raise UserError(f"pruned layout does not match its source (e.g. {sorted(set(state) ^ set(source))[0]})")
    target.load_state_dict({k: source[k][tuple(slice(0, n) for n in v.shape)] for k, v in state.items()})


def importance(group: Group, criterion: str) -> torch.Tensor:
    """One score per channel of the group (higher = keep)."""
    if criterion == "first":
        return -torch.arange(group.size, dtype=torch.float64)
    score = torch.zeros(group.size, dtype=torch.float64)
    for slot in group.slots:
        for val, grad in _slices(slot, group.size):
            v = val.detach().double().reshape(group.size, -1)
            if criterion == "magnitude":
                score += v.pow(2).sum(1)
            elif criterion == "taylor":
                if grad is None:
                    raise UserError("the taylor criterion needs gradients: give calibration photos")
                score += (v * grad.detach().double().reshape(group.size, -1)).abs().sum(1)
            else:
                raise UserError(f"unknown pruning criterion {criterion!r} (choose {', '.join(CRITERIA)})")
    return score


def select(group: Group, criterion: str) -> torch.Tensor:
    """Sorted indices to keep; head groups keep the same number of dims in every head."""
    imp = importance(group, criterion)
    per = group.size // group.heads
    k = group.keep // group.heads
    if k * group.heads != group.keep or per * group.heads != group.size:
        raise UserError(f"{group.name}: {group.keep} of {group.size} channels do not split over {group.heads} heads")
    # stable sort so ties (e.g. all-zero channels) resolve to the first channels
    idx = [torch.sort(-imp[h * per:(h + 1) * per], stable=True).indices[:k] + h * per for h in range(group.heads)]
    return torch.sort(torch.cat(idx)).values


def apply(groups: list[Group], keep: dict[str, torch.Tensor]) -> None:
    """Remove every channel not kept, one torch-pruning call per (module, axis)."""
    drop: dict[tuple[int, str], set[int]] = defaultdict(set)
    mods = {}
    for g in groups:
        gone = sorted(set(range(g.size)) - set(keep[g.name].tolist()))
        for slot in g.slots:
            key = (id(slot.module), "in" if slot.kind.endswith("_in") else slot.kind)
            mods[key] = (slot.module, slot.kind)
            drop[key].update(i + slot.offset for i in gone)
    for key, idxs in drop.items():
        module, kind = mods[key]
        if idxs:
            _PRUNE_FN[kind](module, sorted(idxs))
            module.zero_grad(set_to_none=True)


def keep_attention_temperature(groups: list[Group]) -> None:
    """diffusers' attention scales logits by 1/sqrt(head_dim): after head dims are cut, scale q by
    sqrt(new/old) so q·k/sqrt(d) is what the kept dims gave before (the release does not)."""
    for g in groups:
        if g.query is not None and g.keep != g.size:
            factor = (g.keep / g.size) ** 0.5
            with torch.no_grad():
                g.query.weight.mul_(factor)
                if g.query.bias is not None:
                    g.query.bias.mul_(factor)


def prune(groups: list[Group], criterion: str, keep_temperature: bool | None = None) -> dict[str, torch.Tensor]:
    """Select and apply; returns the kept indices of every group. `keep_temperature` (default: on for
    the ranking criteria, off for `first`) rescales attention queries."""
    keep = {g.name: select(g, criterion) for g in groups}
    apply(groups, keep)
    if keep_temperature if keep_temperature is not None else criterion != "first":
        keep_attention_temperature(groups)
    return keep
