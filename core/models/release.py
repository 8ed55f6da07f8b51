"""The AdcSR release's weight files → `AdcSRStudent` (github.com/Guaishou74851/AdcSR, Apache-2.0).

`net_params_200.pkl` is `DataParallel(Net(unet, decoder)).state_dict()`. In the release's `Net`,
`body = Sequential(PixelUnshuffle(2), unet, decoder.mid_block)`, the edited SD UNet's `conv_out` is
the link conv, and the UNet also holds `body = Sequential(*down_blocks, mid_block, *up_blocks,
conv_norm_out, conv_act, conv_out)`: `state_dict()` does not deduplicate, so every UNet tensor but
`conv_in` is saved twice, under its own name and under `module.body.1.body.<i>`. Both names are
required and must hold the same tensor.

`halfDecoder.ckpt` is the stage-1 training checkpoint; its `state_dict` holds the pruned diffusers
`Decoder` under `decoder.` (the release loads exactly those keys, strictly). The release takes only
the up path from it: its `mid_block` is replaced by the trained one and its `conv_in` is not used.
Its other keys (the autoencoder's encoder, quant convs, training losses) are ignored, as the
release ignores them.

The heads and the GroupNorm rule are not in the files: they are the release's (SD2.1-base's heads,
kept by its plain 75% slicing; the first group count of its list dividing each width).
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import UserError
from .vae_decoder import PrunedVAEDecoder

if TYPE_CHECKING:
    from .student import AdcSRStudent

RELEASE_HEADS = (5, 10, 20, 20)
RELEASE_GROUPS = (32, 24, 16, 12, 8, 6, 4, 2, 1)
DECODER_GROUPS = 32
NET = "module.body."  # DataParallel's `module.` + Net's `body.`
UNET = NET + "1."


class _LightningCallbackKey:
    """Stands in for `pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint` in a checkpoint.

    PyTorch Lightning before 1.5 keys a checkpoint's `callbacks` states by the callback's class, so
    the pickle names it (the latent-diffusion code the release points to for stage 1 pins 1.4.2;
    Lightning 2.x, which the release's requirements pin, keys them by strings and needs nothing).
    It is only ever a dict key: the weights-only loader resolves the name to this inert class;
    nothing of Lightning is imported or run, and every other global stays refused.
    """


_ALLOWED_GLOBALS = [(_LightningCallbackKey, "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint")]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def read_checkpoint(path: str | Path, what: str) -> dict:
    """`torch.load(weights_only=True)` of a file holding a dict; anything else is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found: {path}")
    try:
        with torch.serialization.safe_globals(_ALLOWED_GLOBALS):
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as e:
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if refused:
            raise UserError(f"{path}: the weights-only loader refuses the pickled object {refused.group(1)}") from None
        detail = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", str(e))
        with open(path, "rb") as f:
            is_pickle = f.read(1) == b"\x80"  # pickle protocol ≥ 2 opens with PROTO
        if detail and is_pickle:  # a pickle that is not plain tensors (objects, other opcodes): never unpickled
            raise UserError(f"{path}: the weights-only loader refuses it ({detail.group(1).strip()})") from None
        raise UserError(f"{path} is not a PyTorch checkpoint ({_first_line(e)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise UserError(f"{path} is not a PyTorch checkpoint ({_first_line(e)})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path} holds a {type(obj).__name__}, not a dict of tensors")
    return obj


def read_net(path: str | Path) -> dict[str, torch.Tensor]:
    """The trained body (`net_params_*.pkl`): the release's `module.body.*` tensors."""
    sd = read_checkpoint(path, "release network file")
    bad = [k for k, v in sd.items() if not (isinstance(k, str) and k.startswith(NET) and torch.is_tensor(v))]
    if bad or not sd:
        found = f"found {bad[0]!r}" if bad else "it is empty"
        raise UserError(f"{path} is not the AdcSR release's net_params file: expected only tensors named '{NET}*', {found}")
    return sd


def read_decoder(path: str | Path) -> dict[str, torch.Tensor]:
    """The pruned decoder (`halfDecoder.ckpt`): its `state_dict`'s `decoder.*` tensors, prefix removed."""
    ckpt = read_checkpoint(path, "release decoder file")
    sd = ckpt.get("state_dict")
    dec = {k[len("decoder."):]: v for k, v in sd.items() if isinstance(k, str) and k.startswith("decoder.")} \
        if isinstance(sd, dict) else {}
    if not dec or not all(torch.is_tensor(v) for v in dec.values()):
        raise UserError(f"{path} is not the AdcSR release's halfDecoder checkpoint: no state_dict with decoder.* tensors")
    return dec


def _count(sd: dict, prefix: str) -> int:
    """How many numbered children `prefix` has (e.g. `...down_blocks.` → 4)."""
    return len({k[len(prefix):].split(".", 1)[0] for k in sd if k.startswith(prefix)})


def _dim(sd: dict, key: str, axis: int, name: str) -> int:
    if key not in sd:
        raise UserError(f"{name}: missing key {key}")
    if sd[key].dim() <= axis:
        raise UserError(f"{name}: {key} has shape {tuple(sd[key].shape)}, not a layer weight")
    return sd[key].shape[axis]


def release_config(net: dict, dec: dict, net_name: str = "net", dec_name: str = "decoder") -> dict:
    """The `AdcSRStudent` config the release's tensors describe (widths read from their shapes)."""
    levels = _count(net, UNET + "down_blocks.")
    if levels != len(RELEASE_HEADS):
        raise UserError(f"{net_name}: {levels} UNet down blocks, the release has {len(RELEASE_HEADS)}")
    down = [f"{UNET}down_blocks.{lvl}." for lvl in range(levels)]
    widths = [_dim(net, d + "resnets.0.conv1.weight", 0, net_name) for d in down]
    attention = [d + "attentions.0.proj_in.weight" in net for d in down]
    inner = [_dim(net, d + "attentions.0.proj_in.weight", 0, net_name) if a else c
             for d, a, c in zip(down, attention, widths)]
    if any(i % h for i, h in zip(inner, RELEASE_HEADS)):
        raise UserError(f"{net_name}: attention widths {inner} do not split over the release's heads {list(RELEASE_HEADS)}")
    ff = [_dim(net, d + "attentions.0.transformer_blocks.0.ff.net.2.weight", 1, net_name) if a else 4 * c
          for d, a, c in zip(down, attention, widths)]
    n_up = _count(dec, "up_blocks.")
    if n_up == 0:
        raise UserError(f"{dec_name}: no decoder up_blocks.* keys")
    dec_widths = [_dim(dec, f"up_blocks.{i}.resnets.0.conv2.weight", 0, dec_name) for i in reversed(range(n_up))]
    if any(w % DECODER_GROUPS for w in dec_widths):
        raise UserError(f"{dec_name}: decoder widths {dec_widths} are not multiples of the release's {DECODER_GROUPS} norm groups")
    return dict(
        block_out_channels=widths,
        attention_levels=attention,
        num_attention_heads=list(RELEASE_HEADS),
        attention_head_dim=[i // h for i, h in zip(inner, RELEASE_HEADS)],
        ff_inner_dim=ff,
        layers_per_block=_count(net, down[0] + "resnets."),
        norm_group_candidates=list(RELEASE_GROUPS),
        decoder_block_out_channels=dec_widths,
        decoder_layers_per_block=_count(dec, "up_blocks.0.resnets.") - 1,
        decoder_norm_num_groups=DECODER_GROUPS,
    )


def release_names(key: str, levels: int) -> tuple[str, ...] | None:
    """The release's names in `net_params` of a student tensor, its module's own name first, then
    its `unet.body` alias; None for the decoder's up path, which comes from `halfDecoder.ckpt`."""
    if key.startswith("decoder.mid_block."):
        return (NET + "2." + key[len("decoder.mid_block."):],)
    if key.startswith("decoder."):
        return None
    if key.startswith("link."):
        return (UNET + "conv_out." + key[len("link."):], f"{UNET}body.{2 * levels + 3}.{key[len('link.'):]}")
    rest = key[len("unet."):]
    head, _, tail = rest.partition(".")
    if head == "conv_in":
        return (UNET + rest,)
    if head == "conv_norm_out":
        return (UNET + rest, f"{UNET}body.{2 * levels + 1}.{tail}")
    if head == "mid_block":
        return (UNET + rest, f"{UNET}body.{levels}.{tail}")
    index, _, tail = tail.partition(".")
    position = int(index) if head == "down_blocks" else levels + 1 + int(index)
    return (UNET + rest, f"{UNET}body.{position}.{tail}")


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.shape != b.shape:
        return False
    shared = a.data_ptr() == b.data_ptr() and a.stride() == b.stride() and a.dtype == b.dtype
    return shared or torch.equal(a, b)


def _check_keys(found: dict, expected: dict[str, tuple[int, ...]], name: str) -> None:
    """`found` holds exactly the `expected` names, each with its shape."""
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        kind, keys = ("missing key", missing) if missing else ("unexpected key", extra)
        more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
        raise UserError(f"{name} does not have the AdcSR release's layout: {kind} {keys[0]}{more}")
    for k, shape in expected.items():
        if tuple(found[k].shape) != tuple(shape):
            raise UserError(f"{name}: {k} has shape {tuple(found[k].shape)}, the layout needs {tuple(shape)}")


def release_state(net: dict, dec: dict, net_name: str = "net", dec_name: str = "decoder") -> tuple[dict, dict]:
    """(student config, student state_dict) from the release's tensors; every tensor of `net` is
    used (each alias checked equal to its module's own tensor) and every student tensor filled."""
    from .student import AdcSRStudent

    cfg = release_config(net, dec, net_name, dec_name)
    levels = len(cfg["block_out_channels"])
    try:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in AdcSRStudent(**cfg).state_dict().items()}
            ref_dec = PrunedVAEDecoder(block_out_channels=tuple(cfg["decoder_block_out_channels"]),
                                       layers_per_block=cfg["decoder_layers_per_block"],
                                       norm_num_groups=DECODER_GROUPS).decoder
    except (ValueError, RuntimeError) as e:
        raise UserError(f"{net_name}: the release files describe a network that cannot be built ({_first_line(e)})") from None
    names = {k: release_names(k, levels) for k in shapes}
    _check_keys(net, {r: shapes[k] for k, rs in names.items() if rs for r in rs}, net_name)
    _check_keys(dec, {k: tuple(v.shape) for k, v in ref_dec.state_dict().items()}, dec_name)
    state = {}
    for k, rs in names.items():
        if rs is None:
            state[k] = dec[k[len("decoder."):]]
            continue
        for alias in rs[1:]:
            if not _same_tensor(net[alias], net[rs[0]]):
                raise UserError(f"{net_name}: {alias} differs from {rs[0]}: not one network's state_dict")
        state[k] = net[rs[0]]
    return cfg, state


def load_release(net_path: str | Path, decoder_path: str | Path) -> "AdcSRStudent":
    """The released AdcSR model as an `AdcSRStudent` (eval mode, fp32). Its tensors are the files'
    (memory-mapped copy-on-write where the file is a zip checkpoint): nothing is copied twice."""
    from .student import AdcSRStudent

    cfg, state = release_state(read_net(net_path), read_decoder(decoder_path), str(net_path), str(decoder_path))
    with torch.device("meta"):  # no random init of 456 M parameters: the file's tensors become them
        student = AdcSRStudent(**cfg)
    student.load_state_dict(state, strict=True, assign=True)
    return student.float().eval()
